//! A mutated rule file through `promo check` (the ruleset loader and compiler): its first
//! byte picks the file it replaces in a copy of the shipped rules (a promotion, a new
//! promotion beside them, the manifest, the calendar), the rest is its text. Any answer,
//! the ruleset or located errors, is fine; a panic, a hang or unbounded memory is not.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The files an input may replace, relative to the ruleset directory.
const TARGETS: [&str; 4] = [
    "promotions/bill-first-time.yaml",
    "promotions/zz-fuzz.yaml",
    "ruleset.yaml",
    "calendars/hk.yaml",
];

/// A private copy of the shipped rules (without their golden cases).
fn rules() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let dir = std::env::temp_dir().join(format!("promo-fuzz-rules-{}", std::process::id()));
        for sub in ["promotions", "calendars"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            for e in std::fs::read_dir(shipped.join(sub)).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
            }
        }
        std::fs::copy(shipped.join("ruleset.yaml"), dir.join("ruleset.yaml")).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let dir = rules();
    let file = dir.join(TARGETS[usize::from(pick) % TARGETS.len()]);
    let original = std::fs::read(&file).ok();
    std::fs::write(&file, text).unwrap();
    let _ = promo::rules::load_ruleset(dir);
    match original {
        Some(bytes) => std::fs::write(&file, bytes).unwrap(),
        None => std::fs::remove_file(&file).unwrap(),
    }
});
