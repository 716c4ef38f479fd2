//! Issue 18, defect 15: a damaged state database is refused, never taken as another state.
//! Each test damages the `promo-state.db` a real run wrote, then asks `state inspect` and
//! `eval` to read it: both must refuse it (exit 2) naming what is damaged, and leave the
//! directory as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `promo eval` over the shipped examples into `out`, with its state in `state`.
fn eval(state: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("eval")
        .arg("--rules")
        .arg(shipped_rules())
        .arg("--input")
        .arg(example("events.jsonl"))
        .arg("--customers")
        .arg(example("customers.jsonl"))
        .arg("--output")
        .arg(out)
        .arg("--state")
        .arg(state)
        .args(extra)
        .output()
        .unwrap()
}

fn inspect(state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["state", "inspect", "--json", "--state"])
        .arg(state)
        .output()
        .unwrap()
}

/// Every file of a state directory with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Where `needle` starts in `haystack`; it must occur exactly once.
fn find_once(haystack: &[u8], needle: &[u8]) -> usize {
    let at: Vec<usize> = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{:?} occurs {} times", text(needle), at.len());
    at[0]
}

/// Flips `mask` in the byte at `at` of the state's database.
fn flip(state: &Path, at: usize, mask: u8) {
    let db = state.join("promo-state.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[at] ^= mask;
    std::fs::write(&db, bytes).unwrap();
}

/// Both readers refuse the damaged state with `message`, and neither changes a byte of it.
#[track_caller]
fn assert_refused(d: &Dir, state: &Path, message: &[&str]) {
    let before = files(state);
    let shown = inspect(state);
    let out = d.path().join("again.out.jsonl");
    let run = eval(state, &out, &[]);
    for (what, o) in [("state inspect", &shown), ("eval", &run)] {
        let stderr = text(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{what} took a damaged state\n--- stdout\n{}\n--- stderr\n{stderr}",
            text(&o.stdout)
        );
        for m in message {
            assert!(stderr.contains(m), "{what}: expected `{m}` in\n{stderr}");
        }
    }
    assert!(!out.exists(), "eval wrote an output from a damaged state");
    // A reader may leave SQLite's empty log and its index beside the database: no state.
    let mut after = files(state);
    after.retain(|name, bytes| {
        before.contains_key(name) || !(name.ends_with("-shm") || bytes.is_empty())
    });
    assert!(after == before, "refusing the state changed its directory");
}

// A bit flipped in a coupon's min spend, in the `coupons` table (the log folded into it):
// min spend 80 reads as 90.
#[test]
fn a_flipped_bit_in_a_table_row_is_refused() {
    let d = Dir::new("integrity-row");
    let state = d.path().join("S");
    let first = eval(
        &state,
        &d.path().join("out.jsonl"),
        &["--compact-after", "0"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let db = std::fs::read(state.join("promo-state.db")).unwrap();
    let row = b"E003:bill-returning:1W0024080bill_payment";
    let min_spend = find_once(&db, row) + row.len() - "0bill_payment".len() - 1;
    assert_eq!(db[min_spend], b'8');
    flip(&state, min_spend, 0x01);
    assert_refused(
        &d,
        &state,
        &["checksum", "`coupons`", "E003:bill-returning:1"],
    );
}

// A bit flipped in a coupon's min spend inside a change-log blob (no compaction): the
// 16-byte decimal after the coupon's id, wallet and face value.
#[test]
fn a_flipped_bit_in_a_change_log_blob_is_refused() {
    let d = Dir::new("integrity-log");
    let state = d.path().join("S");
    let first = eval(&state, &d.path().join("out.jsonl"), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let db = std::fs::read(state.join("promo-state.db")).unwrap();
    let head = b"\x15E003:bill-returning:1\x04W002";
    // Face value (16 bytes), then the min spend's flags (4) and the low byte of its mantissa.
    let low = find_once(&db, head) + head.len() + 16 + 4;
    assert_eq!(db[low], 80, "min spend 80");
    flip(&state, low, 0x01);
    assert_refused(&d, &state, &["checksum", "`changes`"]);
}
