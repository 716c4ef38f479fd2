//! Reads a ruleset directory from disk: the manifest, its calendars and every rule file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::compile::{compile, Parsed, ScriptFile};
use super::error::{Diagnostic, Diagnostics, Location, Problem, RulesetError, SourceFile};
use super::raw::{RawCondition, RawRule};
use super::ruleset::Ruleset;
use super::span::{Pos, Sp};

/// The manifest's file name inside a ruleset directory.
pub const MANIFEST: &str = "ruleset.yaml";
/// The folder of rule files inside a ruleset directory.
pub const RULES_DIR: &str = "promotions";

fn read<T: DeserializeOwned>(path: &Path, d: &mut Diagnostics) -> Option<Parsed<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let problem = Problem::Unreadable {
                what: format!("read `{}`", path.display()),
                reason: e.to_string(),
            };
            d.push(Diagnostic::new(Location::file(path), problem));
            return None;
        }
    };
    let text = match source_text(bytes) {
        Ok(t) => t,
        Err((line, column)) => {
            let at = Location::new(path, Pos { line, column });
            d.push(Diagnostic::new(at, Problem::NotUtf8));
            return None;
        }
    };
    let src = SourceFile {
        path: path.to_path_buf(),
        text,
    };
    match serde_saphyr::from_str_with_options::<T>(&src.text, yaml_options()) {
        Ok(raw) => Some(Parsed {
            src,
            raw,
            scripts: BTreeMap::new(),
        }),
        Err(e) => {
            d.yaml(&src, &e);
            None
        }
    }
}

/// The text of a YAML file: UTF-8, without the byte order mark an editor may have put at its
/// start; else the line, column and message of the first byte that is not UTF-8.
pub(crate) fn source_text(mut bytes: Vec<u8>) -> Result<String, (usize, usize)> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e
            .as_bytes()
            .get(..e.utf8_error().valid_up_to())
            .unwrap_or_default();
        let before = String::from_utf8_lossy(good);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    })
}

/// The YAML reader's options: its default budget, which refuses an alias bomb (a few lines
/// whose aliases expand to billions of nodes) before it is expanded.
///
/// Why serde-saphyr: `serde_yaml` 0.9 is deprecated and unmaintained. Of its successors,
/// `serde_yaml_ng` and `serde_norway` are forks of the same libyaml-based code and keep no
/// position for values, only for errors; `marked-yaml` keeps spans but reads every scalar
/// as text, so `eq: 0` and `eq: "0"` could not be told apart; `saphyr` keeps spans but has
/// no serde support. serde-saphyr is maintained, pure Rust, built to be panic-free on
/// hostile input, budgets aliases, gives every error a line and column, and its
/// `Spanned<T>` gives any value the line, column and offset it was read from.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::Options::default()
}

/// The rule files of a ruleset directory, sorted by name.
pub fn rule_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(RULES_DIR))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads, validates and compiles the ruleset in `dir`, reporting every problem found.
pub fn load_ruleset(dir: &Path) -> Result<Ruleset, RulesetError> {
    load_checked(dir).map(|(ruleset, _warnings)| ruleset)
}

/// Like [`load_ruleset`], with the warnings of a ruleset that loads (`promo check` shows
/// them); a ruleset with errors gives its warnings among its errors.
pub fn load_checked(dir: &Path) -> Result<(Ruleset, Vec<Diagnostic>), RulesetError> {
    let mut d = Diagnostics::default();
    let manifest = read::<super::raw::RawManifest>(&dir.join(MANIFEST), &mut d);
    let mut calendars = Vec::new();
    if let Some(m) = &manifest {
        for path in m.raw.calendars.values() {
            calendars.extend(read(&dir.join(path), &mut d));
        }
    }
    let mut rules = Vec::new();
    match rule_files(dir) {
        Ok(files) => {
            for f in files {
                let mut rule = read::<RawRule>(&f, &mut d);
                if let Some(rule) = &mut rule {
                    rule.scripts = read_scripts(&rule.src.path, &rule.raw.when, &mut d);
                }
                rules.extend(rule);
            }
        }
        Err(e) => {
            let problem = Problem::Unreadable {
                what: "list rule files".into(),
                reason: e.to_string(),
            };
            d.push(Diagnostic::new(
                Location::file(&dir.join(RULES_DIR)),
                problem,
            ));
        }
    }
    let ruleset = manifest.and_then(|m| compile(m, calendars, rules, &mut d));
    match ruleset {
        Some(r) if !d.has_errors() => Ok((r, d.list)),
        _ => Err(RulesetError {
            diagnostics: d.list,
        }),
    }
}

/// The script files the conditions of a rule file name (in `all` and `any` too), read
/// relative to the rule file; one that cannot be read is reported where it is named.
fn read_scripts(
    rule_file: &Path,
    when: &[Sp<RawCondition>],
    d: &mut Diagnostics,
) -> BTreeMap<String, ScriptFile> {
    fn named<'a>(when: &'a [Sp<RawCondition>], out: &mut Vec<&'a Sp<String>>) {
        for c in when {
            out.extend(&c.script_file);
            for nested in [&c.all, &c.any].into_iter().flatten() {
                named(nested, out);
            }
        }
    }
    let mut names = Vec::new();
    named(when, &mut names);
    let mut files = BTreeMap::new();
    for name in names {
        if files.contains_key(name.as_str()) {
            continue;
        }
        let path = rule_file
            .parent()
            .map_or_else(|| PathBuf::from(name.as_str()), |p| p.join(name.as_str()));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                files.insert(name.to_string(), ScriptFile { path, text });
            }
            Err(e) => {
                let at = Location::new(rule_file, name.pos());
                let reason = e.to_string();
                d.push(Diagnostic::new(
                    at,
                    Problem::UnreadableScript { path, reason },
                ));
            }
        }
    }
    files
}

/// The version of the ruleset in `dir`: a hash of the contents of every file under it but
/// the golden cases (`tests/`), by path, as 16 hex digits. Any edit to a rule, the manifest,
/// a calendar or a script gives a new version; the same files always give the same one.
pub fn ruleset_version(dir: &Path) -> std::io::Result<String> {
    fn walk(dir: &Path, top: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if path.parent() == Some(top) && path.file_name() == Some("tests".as_ref()) {
                    continue;
                }
                walk(&path, top, files)?;
            } else {
                files.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for path in files {
        let name = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy();
        let bytes = std::fs::read(&path)?;
        hasher.update(name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("{:016x}", hasher.digest()))
}
