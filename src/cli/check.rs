//! `promo check RULES_DIR`: load and validate every rule file and script.

use std::path::Path;

use super::Exit;
use crate::rules::load_ruleset;

/// Runs `check`, printing every problem found, or a one-line summary.
pub fn run(dir: &Path) -> Exit {
    match load_ruleset(dir) {
        Ok(r) => {
            println!(
                "ok: {} rules, {} facts, {} calendars, {} event types in {}",
                r.rules.len(),
                r.facts.len(),
                r.calendars.len(),
                r.event_types.len(),
                dir.display()
            );
            Exit::Success
        }
        Err(e) => {
            for d in &e.diagnostics {
                eprintln!("{d}");
            }
            eprintln!("{} error(s) in {}", e.diagnostics.len(), dir.display());
            Exit::Failure
        }
    }
}
