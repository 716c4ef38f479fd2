//! Refusing an output that would overwrite an input or another output: checked on the paths
//! a command is given, before anything is opened for writing.
//!
//! Two paths name the same file when their canonical paths are equal or (on Unix) they are
//! the same device and inode (a hard link); an output that does not exist yet is compared by
//! its canonical parent directory and its name. An output inside an input directory (the
//! rules) is refused too.

use std::path::{Path, PathBuf};

/// What a path names, as far as it exists.
#[derive(Debug)]
struct Identity {
    /// The canonical path (of the parent, joined with the name, if the file is missing).
    canonical: PathBuf,
    /// Device and inode of an existing file.
    file: Option<(u64, u64)>,
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn identity(path: &Path) -> Identity {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        let file = std::fs::metadata(&canonical).ok().and_then(|m| file_id(&m));
        return Identity { canonical, file };
    }
    // Not there (yet): its canonical parent and its own name.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let canonical = match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(absolute.clone()),
        _ => absolute.clone(),
    };
    Identity {
        canonical,
        file: None,
    }
}

impl Identity {
    fn same(&self, other: &Identity) -> bool {
        self.canonical == other.canonical || (self.file.is_some() && self.file == other.file)
    }
}

/// A path a command reads or writes, with the option that named it.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub option: &'a str,
    pub path: &'a Path,
}

impl<'a> Named<'a> {
    pub fn new(option: &'a str, path: &'a Path) -> Self {
        Named { option, path }
    }
}

/// The options of `options` that were given, named.
pub fn given<'a>(options: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>) -> Vec<Named<'a>> {
    options
        .into_iter()
        .filter_map(|(option, path)| path.map(|p| Named::new(option, p)))
        .collect()
}

/// Refuses an output that is an input file, lies inside an input directory, or is
/// another output. `-` (a standard stream) is never a file here.
pub fn distinct_outputs(
    inputs: &[Named<'_>],
    dirs: &[Named<'_>],
    outputs: &[Named<'_>],
) -> Result<(), String> {
    let is_stream = |n: &Named<'_>| n.path.as_os_str() == "-";
    let outs: Vec<(Named<'_>, Identity)> = outputs
        .iter()
        .filter(|n| !is_stream(n))
        .map(|n| (*n, identity(n.path)))
        .collect();
    for (i, (out, id)) in outs.iter().enumerate() {
        for input in inputs.iter().filter(|n| !is_stream(n)) {
            if identity(input.path).same(id) {
                return Err(format!(
                    "{} {} is the same file as {} {}: writing it would destroy the input; choose another output",
                    out.option,
                    out.path.display(),
                    input.option,
                    input.path.display()
                ));
            }
        }
        for dir in dirs {
            if let Ok(d) = std::fs::canonicalize(dir.path) {
                if id.canonical.starts_with(&d) {
                    return Err(format!(
                        "{} {} is inside {} {}; choose an output outside it",
                        out.option,
                        out.path.display(),
                        dir.option,
                        dir.path.display()
                    ));
                }
            }
        }
        for (other, other_id) in outs.iter().take(i) {
            if other_id.same(id) {
                return Err(format!(
                    "{} {} is the same file as {} {}: the two outputs would overwrite each other; give them different paths",
                    out.option,
                    out.path.display(),
                    other.option,
                    other.path.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_by_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "x\n").unwrap();
        let other_name = dir.path().join(".").join("in.jsonl");
        let r = distinct_outputs(
            &[Named::new("--input", &input)],
            &[],
            &[Named::new("--output", &other_name)],
        );
        assert!(r.is_err_and(|e| e.contains("--input")));
        let fresh = dir.path().join("sub/../new.jsonl");
        let fresh2 = dir.path().join("new.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let r = distinct_outputs(
            &[Named::new("--input", &input)],
            &[],
            &[
                Named::new("--output", &fresh),
                Named::new("--rejects", &fresh2),
            ],
        );
        assert!(r.is_err_and(|e| e.contains("--rejects")));
        let r = distinct_outputs(
            &[Named::new("--input", &input)],
            &[],
            &[Named::new("--output", &fresh2)],
        );
        assert!(r.is_ok());
    }
}
