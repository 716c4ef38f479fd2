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

// ---------------------------------------------------------------------------------------
// The property: any one bit flipped in a state is refused, or changes nothing.

/// How many single-bit flips the property test tries (a few seconds on two cores).
const FLIPS: u64 = 250;

/// A state directory after two runs (the first folded into the tables, the second left in
/// the change log over several checkpoints), and the input of a third run.
struct Written {
    state: PathBuf,
    rest: PathBuf,
}

fn write_state(d: &Dir) -> Written {
    let (events, snapshot) = (d.path().join("all.jsonl"), d.path().join("customers.jsonl"));
    let cfg = crate::gen::GenConfig {
        seed: 15,
        events: 360,
        customers: 40,
    };
    crate::gen::generate_files(&cfg, &events, &snapshot, None).unwrap();
    let all = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let part =
        |name: &str, from: usize, to: usize| d.write(name, &(lines[from..to].join("\n") + "\n"));
    let (first, second) = (part("first.jsonl", 0, 150), part("second.jsonl", 150, 260));
    let rest = part("rest.jsonl", 260, lines.len());
    let state = d.path().join("S");
    let run = |input: &Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_promo"))
            .args(["eval", "--rules"])
            .arg(shipped_rules())
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(input.with_extension("out.jsonl"))
            .arg("--state")
            .arg(&state)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}",
            text(&out.stderr)
        );
    };
    let customers = snapshot.display().to_string();
    run(&first, &["--customers", &customers, "--compact-after", "0"]);
    run(&second, &["--checkpoint-every", "20"]);
    Written { state, rest }
}

/// What a reader made of a state: refused (as damaged or unreadable), or what it showed.
#[derive(Debug, PartialEq)]
enum Read {
    Refused(&'static str),
    Shown { code: Option<i32>, shown: Vec<u8> },
}

/// Exit 2 with a damaged-state message is a refusal; anything else is what was shown.
/// A panic or another refusal fails the test.
fn classify(what: &str, o: &Output, shown: Vec<u8>) -> Result<Read, String> {
    let stderr = text(&o.stderr);
    if stderr.contains("panicked") || !matches!(o.status.code(), Some(0 | 2 | 3)) {
        return Err(format!("{what}: {:?}\n{stderr}", o.status.code()));
    }
    if o.status.code() != Some(2) {
        return Ok(Read::Shown {
            code: o.status.code(),
            shown,
        });
    }
    if stderr.contains("does not match its checksum") {
        Ok(Read::Refused("checksum"))
    } else if stderr.contains("SQLite's check of its pages failed") {
        Ok(Read::Refused("page check"))
    } else if stderr.contains("is not a readable promo state") {
        Ok(Read::Refused("unreadable"))
    } else {
        Err(format!("{what}: refused, but not as damaged:\n{stderr}"))
    }
}

/// What `state inspect` and a third run made of a state, or how they went wrong.
type Both = Result<(Read, Read), String>;

/// `state inspect --json` and a third run over the state in `dir`.
fn read_both(dir: &Path, rest: &Path) -> Both {
    let state = dir.join("S");
    let shown = inspect(&state);
    let inspected = classify("inspect", &shown, shown.stdout.clone())?;
    let out = dir.join("rest.out.jsonl");
    let run = eval_rest(&state, rest, &out);
    let decisions = std::fs::read(&out).unwrap_or_default();
    let evaluated = classify("eval", &run, decisions)?;
    if matches!(evaluated, Read::Refused(_)) && out.exists() {
        return Err("eval refused the state, yet wrote its output".into());
    }
    Ok((inspected, evaluated))
}

fn eval_rest(state: &Path, rest: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["eval", "--rules"])
        .arg(shipped_rules())
        .arg("--input")
        .arg(rest)
        .arg("--output")
        .arg(out)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

/// Copies the database into `dir/S` with bit `bit` flipped (none: unflipped).
fn copy_flipped(db: &[u8], dir: &Path, bit: Option<u64>) {
    let mut bytes = db.to_vec();
    if let Some(bit) = bit {
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
    }
    std::fs::create_dir_all(dir.join("S")).unwrap();
    std::fs::write(dir.join("S").join("promo-state.db"), bytes).unwrap();
}

// A state written by real runs, one bit flipped at a time (FLIPS of them, seeded): each is
// refused as damaged by both `state inspect` and `eval`, or both read it as the unflipped
// state: the same inspect document, and a third run deciding the same bytes.
#[test]
fn any_flipped_bit_is_refused_or_changes_nothing() {
    let d = Dir::new("integrity-flips");
    let written = write_state(&d);
    let db = std::fs::read(written.state.join("promo-state.db")).unwrap();
    let names: Vec<String> = files(&written.state).into_keys().collect();
    assert_eq!(names, ["promo-state.db"], "a closed state is one file");
    copy_flipped(&db, &d.path().join("unflipped"), None);
    let expected = read_both(&d.path().join("unflipped"), &written.rest).unwrap();
    assert!(
        matches!(&expected.1, Read::Shown { shown, .. } if !shown.is_empty()),
        "the third run decides something: {expected:?}"
    );
    let mut prng = crate::gen::SplitMix64::new(15);
    let bits: Vec<u64> = (0..FLIPS)
        .map(|_| prng.below(db.len() as u64 * 8))
        .collect();
    let results: Vec<(u64, Both)> = std::thread::scope(|s| {
        let workers: Vec<_> = bits
            .chunks(bits.len().div_ceil(4))
            .map(|chunk| {
                let (db, d, rest) = (&db, &d, &written.rest);
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&bit| {
                            let dir = d.path().join(format!("flip-{bit}"));
                            copy_flipped(db, &dir, Some(bit));
                            let read = read_both(&dir, rest);
                            let _ = std::fs::remove_dir_all(&dir);
                            (bit, read)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (bit, read) in &results {
        let at = format!("byte {} bit {}", bit / 8, bit % 8);
        match read {
            Err(e) => wrong.push(format!("{at}: {e}")),
            Ok((Read::Refused(a), Read::Refused(b))) => {
                *tally.entry(format!("refused ({a} / {b})")).or_default() += 1;
            }
            Ok(both) if *both == expected => *tally.entry("identical".into()).or_default() += 1,
            Ok((inspected, evaluated)) => wrong.push(format!(
                "{at}: read as another state (inspect same: {}, eval same: {})",
                *inspected == expected.0,
                *evaluated == expected.1
            )),
        }
    }
    eprintln!(
        "{} flips of a {}-byte state: {tally:?}",
        results.len(),
        db.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
