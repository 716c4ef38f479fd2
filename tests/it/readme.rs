/*!
The README's commands run as written. Every fenced `sh` block runs, in order, as one bash
script (`bash -e`: the block fails at its first failing command) in one temporary directory
holding copies of `rules/` and `examples/`, with the `promo` under test first on the PATH;
each must exit 0, and the blocks named in `KEY_OUTPUT` must print what they promise. Every
rule file shown in a `yaml` block (one starting `id:`) must pass `promo check` in the shipped
ruleset. What is left out, and why, is listed here, and each entry must still be needed.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Blocks not run: they need something a test cannot have.
const SKIPPED_BLOCKS: &[(&str, &str)] = &[(
    "promo serve",
    "starts the network service and curls it; tests/it/serve.rs drives the service",
)];

/// Lines not run, the rest of their block runs.
const SKIPPED_LINES: &[(&str, &str)] = &[
    ("cargo test", "this test runs under it"),
    (
        "cargo install --path .",
        "installs into ~/.cargo/bin; the test runs the binary cargo built for it",
    ),
    (
        "export PATH=",
        "would put an installed promo ahead of the one under test",
    ),
    ("cargo bench", "minutes of benchmarks"),
];

/// Rewritten before running: the README's first command builds a release binary.
const REWRITES: &[(&str, &str)] = &[("cargo run --release -- ", "promo ")];

/// What a block must print (standard output and error together), by a command it holds.
const KEY_OUTPUT: &[(&str, &str)] = &[
    (
        "eval --rules rules --input examples/events.jsonl --customers examples/customers.jsonl\n",
        "24 lines read: 23 decided, 0 rejected, 1 duplicates, 0 blank; 19 decisions written",
    ),
    ("promo eval --help", "Examples:"),
    (
        "--input day.csv",
        "E102,points-conversion,approve,C003,W003",
    ),
    ("--input bad.jsonl", "exit status 3"),
    ("cat bad.out.jsonl.rejects.jsonl", "\"code\":\"bad_amount\""),
    ("--summary-json summary.json", "\"ruleset_version\": "),
    (
        "promo state inspect --state state/ --wallet W001",
        "E016:bill-returning:1",
    ),
    (
        "--input day2.jsonl",
        "nothing new: every event was decided by an earlier run",
    ),
    ("promo simulate", "rules changed: bill-returning"),
    ("promo simulate", "total (HKD)"),
    ("promo test rules", " passed, 0 failed"),
    (
        "grep big-bill-bonus bonus.jsonl",
        "\"event_id\":\"E003\",\"rule\":\"big-bill-bonus\"",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced blocks of `text` in the language `lang`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    out
}

/// `block` as it runs, with what was skipped noted in `used`.
fn runnable(block: &str, used: &mut Vec<&'static str>) -> String {
    let mut script = String::new();
    for line in block.lines() {
        if let Some((skip, _)) = SKIPPED_LINES
            .iter()
            .find(|(s, _)| line.trim_start().starts_with(s))
        {
            used.push(skip);
            continue;
        }
        let mut line = line.to_string();
        for (from, to) in REWRITES {
            if line.contains(from) {
                used.push(from);
                line = line.replace(from, to);
            }
        }
        script.push_str(&line);
        script.push('\n');
    }
    script
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-R")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A directory like the project root for a user: the rules and examples, and `bin/promo`.
fn workspace(dir: &Dir) -> (PathBuf, String) {
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    copy_tree(&root().join("rules"), &work.join("rules"));
    copy_tree(&root().join("examples"), &work.join("examples"));
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_promo"), bin.join("promo")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (work, path)
}

#[test]
fn every_sh_block_of_the_readme_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let dir = Dir::new("readme");
    let (work, path) = workspace(&dir);
    let mut used: Vec<&'static str> = Vec::new();
    let mut ran = 0;
    let mut checked_output = Vec::new();
    for block in blocks(&readme, "sh") {
        if let Some((skip, _)) = SKIPPED_BLOCKS.iter().find(|(s, _)| block.contains(s)) {
            used.push(skip);
            continue;
        }
        let script = runnable(&block, &mut used);
        let out = Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&work)
            .env("PATH", &path)
            .output()
            .unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "README block failed:\n{script}\noutput:\n{shown}"
        );
        for (i, (command, expected)) in KEY_OUTPUT.iter().enumerate() {
            if block.contains(command) {
                assert!(
                    shown.contains(expected),
                    "README block with `{command}` should print `{expected}`:\n{script}\noutput:\n{shown}"
                );
                checked_output.push(i);
            }
        }
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} blocks ran");
    for (i, (command, _)) in KEY_OUTPUT.iter().enumerate() {
        assert!(
            checked_output.contains(&i),
            "no README block holds `{command}` any more"
        );
    }
    for (skip, why) in SKIPPED_BLOCKS.iter().chain(SKIPPED_LINES) {
        assert!(used.contains(skip), "nothing skipped as `{skip}` ({why})");
    }
    for (from, _) in REWRITES {
        assert!(used.contains(from), "nothing rewritten from `{from}`");
    }
}

#[test]
fn every_rule_file_shown_in_the_readme_passes_check() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rules_shown: Vec<String> = blocks(&readme, "yaml")
        .into_iter()
        .filter(|b| b.starts_with("id: "))
        .collect();
    assert!(!rules_shown.is_empty());
    for rule in rules_shown {
        let dir = Dir::new("readme-rule");
        let rules = dir.copy_rules();
        let id = rule
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("id: "))
            .unwrap()
            .trim();
        std::fs::write(rules.join(format!("promotions/{id}.yaml")), &rule).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_promo"))
            .arg("check")
            .arg(&rules)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rule}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
