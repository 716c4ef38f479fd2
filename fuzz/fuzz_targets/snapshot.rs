//! A mutated customer snapshot loaded against the shipped rules: its first byte picks the
//! format (JSONL, CSV, YAML), the rest is the file. Loaded or refused, rows applied or
//! rejected, are all fine; a panic is not.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use promo::engine::State;
use promo::rules::Ruleset;

const FORMATS: [&str; 3] = ["jsonl", "csv", "yaml"];

fn ruleset() -> &'static Ruleset {
    static RULES: OnceLock<Ruleset> = OnceLock::new();
    RULES.get_or_init(|| {
        promo::rules::load_ruleset(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")).unwrap()
    })
}

fn file(ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("promo-fuzz-snapshot-{}.{ext}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let path = file(FORMATS[usize::from(pick) % FORMATS.len()]);
    std::fs::write(&path, text).unwrap();
    let rules = ruleset();
    let mut state = State::new(rules);
    let _ = promo::io::load_snapshot(&path, rules, &mut state, false);
});
