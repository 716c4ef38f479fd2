//! The engine benchmark: how fast `promo eval` decides a large generated stream, measured
//! against the cost of merely parsing it.
//!
//! ```sh
//! cargo bench --bench engine                        # 1,000,000 events, 100,000 customers
//! cargo bench --bench engine -- --events 200000 --customers 20000 --seed 7
//! cargo bench --bench engine -- --only floor-jsonl,eval-jsonl
//! ```
//!
//! Options: `--events N` (default 1,000,000), `--customers N` (default 100,000), `--seed S`
//! (default 1), `--repeat N` (default 3: rounds of every variant in turn, each variant
//! reporting its fastest round, as the machine is shared and noisy), `--only
//! VARIANT[,VARIANT...]` (default: all, in the order below).
//!
//! The stream comes from the deterministic test generator (`tests/gen/mod.rs`): the seed's
//! mix of event types (purchases, bill and autopay payments, activations, card links,
//! points authorizations and redemptions, a few unknown types and repeated ids), the
//! customers, and the customer snapshot. The same stream is written as `events.jsonl` and
//! `events.csv`, with `customers.jsonl`, into `$TMPDIR/promo-bench-<seed>-<events>-<customers>-<generator hash>`
//! and reused by later runs with the same configuration and generator. Before the
//! variants run, the bench evaluates the JSONL stream once in process (the reference run)
//! to get the engine's decisions, `decisions.jsonl`, and its summary.
//!
//! Each variant then runs in its own child process (this binary again, with
//! `--only VARIANT --dir DIR`), so each reports its own wall time and peak RSS (`VmHWM`
//! of `/proc/self/status` at its end). The times include everything the variant does:
//! loading rules and the snapshot, reading, deciding, writing and flushing.
//!
//! | variant | what it does |
//! |---|---|
//! | `floor-jsonl` | the parse floor, the yardstick: each line read into a reused buffer and deserialized with plain `serde_json` into a `#[derive(Deserialize)]` struct of owned strings (the event contract's fields; unknown fields ignored), and the engine's output bytes written: `decisions.jsonl`, held in memory (read before the clock starts), is written to a `BufWriter<File>` in step with the input, up to the proportional byte offset after each line. No rules. |
//! | `floor-csv` | the same from `events.csv`, deserialized with the `csv` crate (`coupons` and `face_values` as plain strings), writing the same bytes. |
//! | `eval-jsonl`, `eval-csv` | exactly what `promo eval --rules rules --input events.jsonl\|csv --customers customers.jsonl --output out.jsonl` does, through the library: `load_ruleset`, `State::new`, `load_snapshot` (inside `State::expect_input_while`, which sizes the state for the input file meanwhile), a `Batch` writing decisions (and rejected lines) through `FileSink`s, `run_jsonl` / `run_csv`. |
//! | `eval-v2-jsonl` | `eval-jsonl` with the three promotions of `benches/v2` in place of the seed's (a monthly-spend threshold on an accumulator of purchases and bill payments, a percentage cashback on payments with a weekend tier, a monthly partial-filled cap and a computed minimum spend, amount tiers on working days with a weekly cap), their accumulators appended to the seed manifest; compared with its own reference run. The line `eval-v2-jsonl / eval-jsonl speed` gives its events/s over the seed rules'. |
//! | `eval-state-jsonl` | the same with `--state` on a fresh state directory: `Store::open`, `store.load`, `state.track_changes()`, and a checkpoint (outputs synced, changes committed to SQLite) every 50,000 lines and at the end. |
//! | `rhai-only-jsonl` | the baseline: every seed rule (clauses S1-S18) written as one Rhai script, `benches/seed.rhai`, compiled once and run once per event, with the event as a map (as the engine shows events to scripts: HK `date`, decimal `amount` and `face_values`) and the customer, wallet and coupon-ledger maps in its scope; the decisions it returns are written as the engine writes them. |
//!
//! Run with no argument at all (as `cargo test --all-targets` runs it), the bench is a smoke
//! test: 2,000 events, 200 customers, and any disagreement with the engine is an error.
//!
//! The table gives, per variant: events, seconds, events/s, its time as a multiple of its
//! format's floor (1.00 = as fast as parsing; 2.00 = twice the time), peak RSS, and whether
//! its output is byte-identical to the reference decisions. The decision count per rule of
//! the Rhai baseline is checked against the engine's summary; a mismatch prints a warning.
//! The machine's `nproc` and load average are printed too: the times are only as good as
//! the machine was quiet.

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::File;
use std::hint::black_box;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::Instant;

use promo::batch::{Batch, InputFormat, Summary};
use promo::engine::State;
use promo::io::{load_snapshot, DecisionWriter, FileSink, OutputFormat, Sink};
use promo::model::Money;
use promo::rules::load_ruleset;
use promo::store::Store;

/// The allocator the `promo` binary uses, for every variant alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use rhai::{Dynamic, ImmutableString, Map, Scope};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

// The deterministic event generator shared with the integration tests.
#[path = "common/report.rs"]
mod report;
use report::{copy_dir, fixed, grouped, load_average, nanos_since, per_second};

#[path = "../tests/gen/mod.rs"]
#[allow(dead_code, unused_imports)]
mod gen;

type Res<T> = Result<T, Box<dyn Error>>;

/// The shipped seed ruleset.
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
/// The promotions of `eval-v2-jsonl`.
const V2_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/v2");
/// The seed ruleset as one Rhai script, for `rhai-only-jsonl`.
const SEED_SCRIPT: &str = include_str!("seed.rhai");
/// The generator's source: its hash names the data directory, so a changed generator
/// never reuses stale files.
const GEN_SOURCE: &str = include_str!("../tests/gen/mod.rs");
/// Checkpoint interval of `eval-state-jsonl`, as `promo eval --state` by default.
const CHECKPOINT_EVERY: u64 = 50_000;
/// Buffer sizes, as `promo eval` uses.
const BUF: usize = 1 << 16;
/// The prefix of a child's report line on its standard output.
const REPORT_PREFIX: &str = "REPORT ";

// ---------------------------------------------------------------------------------------
// Variants and arguments.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    FloorJsonl,
    EvalJsonl,
    EvalStateJsonl,
    RhaiOnlyJsonl,
    FloorCsv,
    EvalCsv,
    EvalV2Jsonl,
}

impl Variant {
    /// Every variant, in the order they run and print.
    const ALL: [Variant; 7] = [
        Variant::FloorJsonl,
        Variant::EvalJsonl,
        Variant::EvalV2Jsonl,
        Variant::EvalStateJsonl,
        Variant::RhaiOnlyJsonl,
        Variant::FloorCsv,
        Variant::EvalCsv,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::FloorJsonl => "floor-jsonl",
            Variant::EvalJsonl => "eval-jsonl",
            Variant::EvalStateJsonl => "eval-state-jsonl",
            Variant::RhaiOnlyJsonl => "rhai-only-jsonl",
            Variant::FloorCsv => "floor-csv",
            Variant::EvalCsv => "eval-csv",
            Variant::EvalV2Jsonl => "eval-v2-jsonl",
        }
    }

    fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The floor this variant is compared with: the one of its input format.
    fn floor(self) -> Variant {
        match self {
            Variant::FloorCsv | Variant::EvalCsv => Variant::FloorCsv,
            _ => Variant::FloorJsonl,
        }
    }
}

#[derive(Debug)]
struct Args {
    events: usize,
    customers: usize,
    seed: u64,
    only: Vec<Variant>,
    /// Set in a child: the data directory of the run.
    dir: Option<PathBuf>,
    /// A smoke run: any difference from the engine's decisions is an error.
    strict: bool,
    /// Rounds of every variant; each reports its fastest round.
    repeat: usize,
}

const USAGE: &str = "usage: cargo bench --bench engine -- [--events N] [--customers N] [--seed S] [--repeat N] [--only VARIANT[,VARIANT...]]";

fn parse_args() -> Res<Args> {
    // `cargo test --all-targets` runs this binary with no argument at all (`cargo bench`
    // passes `--bench`): then it is a quick smoke test of every variant.
    if std::env::args().len() == 1 {
        return Ok(Args {
            events: 2_000,
            customers: 200,
            seed: 1,
            only: Variant::ALL.to_vec(),
            dir: None,
            strict: true,
            repeat: 1,
        });
    }
    let mut args = Args {
        events: 1_000_000,
        customers: 100_000,
        seed: 1,
        only: Variant::ALL.to_vec(),
        dir: None,
        strict: false,
        repeat: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--events" => args.events = value()?.replace(['_', ','], "").parse()?,
            "--customers" => args.customers = value()?.replace(['_', ','], "").parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--repeat" => args.repeat = value()?.parse::<usize>()?.max(1),
            "--only" => {
                args.only = value()?
                    .split(',')
                    .map(|name| {
                        Variant::from_name(name.trim()).ok_or_else(|| {
                            let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                            format!("unknown variant `{name}`; one of {}", names.join(", "))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let run = parse_args().and_then(|args| match &args.dir {
        Some(dir) => child(&args, dir),
        None => parent(&args),
    });
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Files of a run.

/// The data directory of one configuration, and the files in it.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn for_config(cfg: &gen::GenConfig) -> Files {
        let hash = xxhash_rust::xxh3::xxh3_64(GEN_SOURCE.as_bytes());
        let name = format!(
            "promo-bench-{}-{}-{}-{hash:016x}",
            cfg.seed, cfg.events, cfg.customers
        );
        Files {
            dir: std::env::temp_dir().join(name),
        }
    }
    fn events_jsonl(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    fn events_csv(&self) -> PathBuf {
        self.dir.join("events.csv")
    }
    fn customers(&self) -> PathBuf {
        self.dir.join("customers.jsonl")
    }
    /// Written last by the generation: its presence says the files are complete.
    fn marker(&self) -> PathBuf {
        self.dir.join("complete")
    }
    /// The reference decisions, from the in-process eval before the variants.
    fn decisions(&self) -> PathBuf {
        self.dir.join("decisions.jsonl")
    }
    /// The reference decisions of the seed rules with the v2 promotions.
    fn decisions_v2(&self) -> PathBuf {
        self.dir.join("decisions-v2.jsonl")
    }
    /// The decisions a variant's output is compared with.
    fn reference(&self, v: Variant) -> PathBuf {
        match v {
            Variant::EvalV2Jsonl => self.decisions_v2(),
            _ => self.decisions(),
        }
    }
    /// The seed manifest with the promotions of `benches/v2` (written by `prepare`).
    fn v2_rules(&self) -> PathBuf {
        self.dir.join("v2-rules")
    }
    /// Where a variant writes its decisions.
    fn output(&self, v: Variant) -> PathBuf {
        self.dir.join(format!("out-{}.jsonl", v.name()))
    }
    /// The state directory of `eval-state-jsonl`.
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// Removes what a run wrote to `output` (and its rejects, and any state).
    fn clean(&self, output: &Path) {
        let _ = std::fs::remove_file(output);
        let _ = std::fs::remove_file(rejects_path(output));
        let _ = std::fs::remove_dir_all(self.state());
    }
}

/// The seed manifest followed by `benches/v2/accumulators.yaml`, with the promotions
/// `benches/v2/v2-*.yaml` in place of the seed's: each exercising the language's second
/// version (accumulators, windows, expressions, tiers, partial fill, date operands).
fn write_v2_rules(files: &Files) -> Res<()> {
    let to = files.v2_rules();
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(Path::new(RULES_DIR), &to)?;
    std::fs::remove_dir_all(to.join("promotions"))?;
    std::fs::remove_dir_all(to.join("tests"))?;
    std::fs::create_dir(to.join("promotions"))?;
    let v2 = Path::new(V2_DIR);
    let mut manifest = std::fs::read_to_string(to.join("ruleset.yaml"))?;
    manifest.push_str(&std::fs::read_to_string(v2.join("accumulators.yaml"))?);
    std::fs::write(to.join("ruleset.yaml"), manifest)?;
    for entry in std::fs::read_dir(v2)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("v2-") && name.ends_with(".yaml") {
            std::fs::copy(&path, to.join("promotions").join(name))?;
        }
    }
    Ok(())
}

/// Where `promo eval --output OUT` writes rejected lines by default.
fn rejects_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".rejects.jsonl");
    PathBuf::from(name)
}

/// Generates the stream unless the same configuration's files are there.
fn prepare(cfg: &gen::GenConfig, files: &Files) -> Res<()> {
    write_v2_rules(files)?;
    if files.marker().is_file() {
        println!("data: reusing {}", files.dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&files.dir)?;
    let t = Instant::now();
    gen::generate_files(
        cfg,
        &files.events_jsonl(),
        &files.customers(),
        Some(&files.events_csv()),
    )?;
    File::create(files.marker())?;
    println!(
        "data: generated {} in {} s",
        files.dir.display(),
        fixed(t.elapsed().as_nanos(), 1_000_000_000, 1)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parent: prepares the data, runs every variant in a child, prints the table.

/// What a child reports about its variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    variant: String,
    /// Input records read.
    events: u64,
    /// Wall time of the whole variant.
    nanos: u64,
    /// Peak resident set size (`VmHWM`), in KiB.
    peak_rss_kib: Option<u64>,
    /// Decision lines written.
    decisions: u64,
    /// Decision lines per rule, where the variant knows them.
    per_rule: BTreeMap<String, u64>,
}

/// A variant's best round: its report and whether its output matched its reference.
type Best = (Variant, Report, &'static str);

fn parent(args: &Args) -> Res<()> {
    let cfg = gen::GenConfig {
        seed: args.seed,
        events: args.events,
        customers: args.customers,
    };
    let files = Files::for_config(&cfg);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "promo engine bench: {} events, {} customers, seed {}; nproc {nproc}, load average {}",
        grouped(args.events as u64),
        grouped(args.customers as u64),
        args.seed,
        load_average()
    );
    prepare(&cfg, &files)?;
    let reference = reference_runs(args, &files)?;
    let (reports, times) = rounds(args, &files)?;
    print_table(args, &reports, &times);
    // Both report their disagreements, whatever the other found.
    let rhai_ok = rhai_agrees(&reports, &per_rule(&reference));
    let outputs_ok = outputs_agree(&reports, &reference);
    let agrees = rhai_ok && outputs_ok;
    if args.strict && !agrees {
        return Err("smoke run: a variant disagrees with the engine (see the warnings)".into());
    }
    Ok(())
}

/// The in-process runs the variants' outputs are compared with: the seed rules', and the v2
/// promotions' when that variant runs.
fn reference_runs(args: &Args, files: &Files) -> Res<Summary> {
    let t = Instant::now();
    let reference = eval(files, InputFormat::Jsonl, false, &files.decisions())?;
    let _ = std::fs::remove_file(rejects_path(&files.decisions()));
    println!(
        "reference eval (in process, {} s): {} read = {} decided + {} rejected + {} duplicates; {} decisions",
        fixed(t.elapsed().as_nanos(), 1_000_000_000, 2),
        grouped(reference.read),
        grouped(reference.decided),
        grouped(reference.rejected),
        grouped(reference.duplicates),
        grouped(reference.decisions)
    );
    println!(
        "files: events.jsonl {} MB, events.csv {} MB, customers.jsonl {} MB, decisions.jsonl {} MB",
        megabytes(&files.events_jsonl()),
        megabytes(&files.events_csv()),
        megabytes(&files.customers()),
        megabytes(&files.decisions())
    );
    if args.only.contains(&Variant::EvalV2Jsonl) {
        let v2 = eval_rules(
            &files.v2_rules(),
            files,
            InputFormat::Jsonl,
            false,
            &files.decisions_v2(),
        )?;
        let _ = std::fs::remove_file(rejects_path(&files.decisions_v2()));
        let granted = |rule: &str| per_rule(&v2).get(rule).copied().unwrap_or(0);
        println!(
            "reference eval-v2: {} decisions; v2-monthly-spend {}, v2-cashback {}, v2-tiers {}",
            grouped(v2.decisions),
            grouped(granted("v2-monthly-spend")),
            grouped(granted("v2-cashback")),
            grouped(granted("v2-tiers"))
        );
    }
    Ok(reference)
}

/// Each round's time of each variant, in nanoseconds.
type Rounds = Vec<Vec<(Variant, u64)>>;

/// Rounds of every variant in turn, so that a noisy stretch of a shared machine hits them
/// alike; each variant keeps its fastest round and its largest peak RSS. Also gives every
/// round's times.
fn rounds(args: &Args, files: &Files) -> Res<(Vec<Best>, Rounds)> {
    let mut reports: Vec<Best> = Vec::new();
    let mut times: Rounds = Vec::new();
    for round in 1..=args.repeat {
        times.push(Vec::new());
        for &v in &args.only {
            eprintln!(
                "running {} (round {round} of {}) ...",
                v.name(),
                args.repeat
            );
            let report = spawn(v, args, files)?;
            if let Some(this_round) = times.last_mut() {
                this_round.push((v, report.nanos));
            }
            let same = match same_bytes(&files.output(v), &files.reference(v)) {
                Ok(true) => "same",
                Ok(false) => "DIFFERS",
                Err(_) => "missing",
            };
            files.clean(&files.output(v));
            match reports.iter_mut().find(|(r, _, _)| *r == v) {
                None => reports.push((v, report, same)),
                Some((_, best, was)) => {
                    let rss = best.peak_rss_kib.max(report.peak_rss_kib);
                    if report.nanos < best.nanos {
                        *best = report;
                    }
                    best.peak_rss_kib = rss;
                    if *was == "same" {
                        *was = same;
                    }
                }
            }
        }
    }
    Ok((reports, times))
}

/// The variant's best time, if it ran.
fn nanos_of(reports: &[Best], v: Variant) -> Option<u128> {
    reports
        .iter()
        .find(|(r, _, _)| *r == v)
        .map(|(_, r, _)| u128::from(r.nanos))
}

/// The table of the variants, what its columns mean, and the ratios between variants.
fn print_table(args: &Args, reports: &[Best], times: &Rounds) {
    println!();
    println!(
        "{:<17} {:>10} {:>8} {:>12} {:>8} {:>10} {:>9}",
        "variant", "events", "seconds", "events/s", "x floor", "peak RSS", "output"
    );
    for (v, r, same) in reports {
        let ratio = nanos_of(reports, v.floor()).map_or("-".to_string(), |floor| {
            fixed(u128::from(r.nanos), floor, 2)
        });
        let rss = r.peak_rss_kib.map_or("n/a".to_string(), |k| {
            format!("{} MiB", fixed(k.into(), 1024, 1))
        });
        println!(
            "{:<17} {:>10} {:>8} {:>12} {:>8} {:>10} {:>9}",
            v.name(),
            grouped(r.events),
            fixed(r.nanos.into(), 1_000_000_000, 2),
            grouped(per_second(r.events, r.nanos)),
            ratio,
            rss,
            same
        );
    }
    println!();
    println!(
        "seconds: the fastest of {} rounds; peak RSS: the largest.",
        args.repeat
    );
    println!("x floor: the variant's time over the time of the floor of its format (floor-jsonl or floor-csv).");
    println!("output: the variant's decisions compared byte for byte with the reference run's.");
    println!(
        "load average at the end: {} (other processes on the machine skew the times)",
        load_average()
    );
    let eval = nanos_of(reports, Variant::EvalJsonl);
    if let (Some(eval), Some(rhai)) = (eval, nanos_of(reports, Variant::RhaiOnlyJsonl)) {
        println!(
            "eval-jsonl / rhai-only-jsonl time: {} (the engine is {}x the speed of the one-script Rhai baseline)",
            fixed(eval, rhai, 2),
            fixed(rhai, eval, 2)
        );
    }
    if let (Some(seed), Some(v2)) = (eval, nanos_of(reports, Variant::EvalV2Jsonl)) {
        println!(
            "eval-v2-jsonl / eval-jsonl speed: {} (the v2 promotions over the seed rules, on the same stream; target >= 0.80)",
            fixed(seed, v2, 2)
        );
        if let Some(median) = median_round_ratio(times, Variant::EvalJsonl, Variant::EvalV2Jsonl) {
            println!(
                "  the same, the median of each round's own ratio over {} rounds: {} (the fastest rounds of two variants may come from different stretches of a noisy machine; a round runs them one after the other)",
                times.len(),
                fixed(median, 1_000_000, 2)
            );
        }
    }
}

/// The median over rounds of `a`'s time over `b`'s in the same round (`b`'s speed
/// relative to `a`'s), in millionths; `None` unless some round ran both.
fn median_round_ratio(times: &Rounds, a: Variant, b: Variant) -> Option<u128> {
    const MILLION: u128 = 1_000_000;
    let time = |round: &[(Variant, u64)], v: Variant| {
        round
            .iter()
            .find(|(r, _)| *r == v)
            .map(|&(_, nanos)| u128::from(nanos))
    };
    let mut ratios: Vec<u128> = times
        .iter()
        .filter_map(|round| Some(time(round, a)? * MILLION / time(round, b)?.max(1)))
        .collect();
    ratios.sort_unstable();
    let mid = ratios.len() / 2;
    if ratios.len().is_multiple_of(2) {
        Some((ratios.get(mid.checked_sub(1)?)? + ratios.get(mid)?) / 2)
    } else {
        ratios.get(mid).copied()
    }
}

/// Whether the Rhai baseline decided as many decisions per rule as the engine; says so.
fn rhai_agrees(reports: &[Best], expected: &BTreeMap<String, u64>) -> bool {
    let Some((_, rhai, _)) = reports
        .iter()
        .find(|(v, _, _)| *v == Variant::RhaiOnlyJsonl)
    else {
        return true;
    };
    if rhai.per_rule == *expected {
        println!(
            "rhai-only-jsonl decisions per rule match the engine's summary ({} rules, {} decisions).",
            expected.len(),
            grouped(rhai.decisions)
        );
        return true;
    }
    eprintln!("WARNING: rhai-only-jsonl decisions per rule differ from the engine's:");
    let rules: std::collections::BTreeSet<&String> =
        expected.keys().chain(rhai.per_rule.keys()).collect();
    for rule in rules {
        let want = expected.get(rule).copied().unwrap_or(0);
        let got = rhai.per_rule.get(rule).copied().unwrap_or(0);
        let mark = if want == got { "" } else { "  <-- differs" };
        eprintln!("  {rule:<26} engine {want:>9}  rhai {got:>9}{mark}");
    }
    false
}

/// Whether every variant read the whole stream and wrote its reference's decisions.
fn outputs_agree(reports: &[Best], reference: &Summary) -> bool {
    let mut agrees = true;
    for (v, r, same) in reports {
        if r.events != reference.read {
            agrees = false;
            eprintln!(
                "WARNING: {} read {} events, the reference run {}",
                v.name(),
                r.events,
                reference.read
            );
        }
        if *same != "same" {
            agrees = false;
            eprintln!(
                "WARNING: the output of {} differs from the reference decisions",
                v.name()
            );
        }
    }
    agrees
}

/// Runs one variant in a child process and reads its report.
fn spawn(v: Variant, args: &Args, files: &Files) -> Res<Report> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--only")
        .arg(v.name())
        .arg("--dir")
        .arg(&files.dir)
        .arg("--events")
        .arg(args.events.to_string())
        .arg("--customers")
        .arg(args.customers.to_string())
        .arg("--seed")
        .arg(args.seed.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("variant {} failed: {}", v.name(), output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(REPORT_PREFIX))
        .ok_or_else(|| format!("variant {} printed no report", v.name()))?;
    Ok(serde_json::from_str(line)?)
}

/// Decision lines per rule, from an engine summary.
fn per_rule(s: &Summary) -> BTreeMap<String, u64> {
    s.rules
        .iter()
        .map(|(id, c)| {
            let n = c.grants
                + c.approvals
                + c.rejects.values().sum::<u64>()
                + c.coupons_accepted
                + c.coupons_rejected.values().sum::<u64>();
            (id.clone(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut x, mut y) = (vec![0u8; BUF], vec![0u8; BUF]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        let (Some(x), Some(y)) = (x.get(..n), y.get_mut(..n)) else {
            return Ok(false);
        };
        b.read_exact(y)?;
        if x != y {
            return Ok(false);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The child: runs one variant and prints its report.

fn child(args: &Args, dir: &Path) -> Res<()> {
    let [v] = args.only[..] else {
        return Err("a child runs exactly one variant (--only VARIANT --dir DIR)".into());
    };
    let files = Files {
        dir: dir.to_path_buf(),
    };
    let out = files.output(v);
    let started = Instant::now();
    let mut report = match v {
        Variant::FloorJsonl | Variant::FloorCsv => {
            return floor(v, &files, args.events as u64);
        }
        Variant::EvalJsonl => summary_report(&eval(&files, InputFormat::Jsonl, false, &out)?),
        Variant::EvalCsv => summary_report(&eval(&files, InputFormat::Csv, false, &out)?),
        Variant::EvalStateJsonl => summary_report(&eval(&files, InputFormat::Jsonl, true, &out)?),
        Variant::RhaiOnlyJsonl => rhai_only(&files, &out)?,
        Variant::EvalV2Jsonl => summary_report(&eval_rules(
            &files.v2_rules(),
            &files,
            InputFormat::Jsonl,
            false,
            &out,
        )?),
    };
    report.nanos = nanos_since(started);
    finish(v, report)
}

/// Prints the report of `v`, with the process's peak RSS.
fn finish(v: Variant, mut report: Report) -> Res<()> {
    report.variant = v.name().to_string();
    report.peak_rss_kib = peak_rss_kib();
    println!("{REPORT_PREFIX}{}", serde_json::to_string(&report)?);
    Ok(())
}

fn summary_report(s: &Summary) -> Report {
    Report {
        variant: String::new(),
        events: s.read,
        nanos: 0,
        peak_rss_kib: None,
        decisions: s.decisions,
        per_rule: per_rule(s),
    }
}

/// `VmHWM` of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// The parse floors.

/// An event of the contract, as plain serde reads it: owned strings, unknown fields
/// ignored. `L` is `Vec<String>` from JSON and `Option<String>` (the `;`-joined cell) from
/// CSV. The fields are deserialized, never used: that is the floor.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct FloorEvent<L> {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    at: String,
    customer: String,
    wallet: String,
    card_product: Option<String>,
    card_role: Option<String>,
    merchant: Option<String>,
    amount: Option<String>,
    channel: Option<String>,
    #[serde(default)]
    coupons: L,
    #[serde(default)]
    face_values: L,
}

/// Writes the reference decisions in step with the input: after input record `i` of `n`,
/// everything up to byte `len * i / n`.
struct Paced<'a> {
    bytes: &'a [u8],
    records: u64,
    written: usize,
}

impl Paced<'_> {
    fn after(&mut self, i: u64, out: &mut impl Write) -> io::Result<()> {
        let len = self.bytes.len() as u128;
        let target = (len * u128::from(i) / u128::from(self.records.max(1))).min(len) as usize;
        if target > self.written {
            out.write_all(self.bytes.get(self.written..target).unwrap_or_default())?;
            self.written = target;
        }
        Ok(())
    }

    fn rest(&mut self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(self.bytes.get(self.written..).unwrap_or_default())?;
        self.written = self.bytes.len();
        Ok(())
    }
}

fn floor(v: Variant, files: &Files, records: u64) -> Res<()> {
    // The output to reproduce is loaded before the clock starts: producing it is not the
    // floor's work, writing it is.
    let decisions = std::fs::read(files.decisions())?;
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(BUF, File::create(files.output(v))?);
    let mut paced = Paced {
        bytes: &decisions,
        records,
        written: 0,
    };
    let mut read = 0u64;
    if v == Variant::FloorCsv {
        let mut reader = csv::ReaderBuilder::new()
            .buffer_capacity(BUF)
            .from_reader(File::open(files.events_csv())?);
        let headers = reader.headers()?.clone();
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record)? {
            read += 1;
            if let Ok(ev) = record.deserialize::<FloorEvent<Option<String>>>(Some(&headers)) {
                black_box(ev);
            }
            paced.after(read, &mut out)?;
        }
    } else {
        let mut input = BufReader::with_capacity(BUF, File::open(files.events_jsonl())?);
        let mut line = String::with_capacity(1024);
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            read += 1;
            if let Ok(ev) = serde_json::from_str::<FloorEvent<Vec<String>>>(&line) {
                black_box(ev);
            }
            paced.after(read, &mut out)?;
        }
    }
    paced.rest(&mut out)?;
    out.flush()?;
    let report = Report {
        variant: String::new(),
        events: read,
        nanos: nanos_since(started),
        peak_rss_kib: None,
        decisions: decisions.iter().filter(|&&b| b == b'\n').count() as u64,
        per_rule: BTreeMap::new(),
    };
    finish(v, report)
}

// ---------------------------------------------------------------------------------------
// The engine, as `promo eval` runs it (src/cli/eval.rs), without the progress bar.

fn eval(files: &Files, format: InputFormat, keep_state: bool, output: &Path) -> Res<Summary> {
    eval_rules(Path::new(RULES_DIR), files, format, keep_state, output)
}

fn eval_rules(
    rules: &Path,
    files: &Files,
    format: InputFormat,
    keep_state: bool,
    output: &Path,
) -> Res<Summary> {
    let ruleset = load_ruleset(rules)?;
    let mut state = State::new(&ruleset);
    let mut store = if keep_state {
        let state_dir = files.state();
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir)?;
        }
        let store = Store::open(&state_dir, &ruleset)?;
        store.load(&ruleset, &mut state)?;
        state.track_changes();
        Some(store)
    } else {
        None
    };
    let input_path = match format {
        InputFormat::Jsonl => files.events_jsonl(),
        InputFormat::Csv => files.events_csv(),
    };
    // As `promo eval` sizes the state for an input file while it reads the snapshot.
    let input_len = std::fs::metadata(&input_path)?.len();
    state.expect_input_while(format.events_in(input_len), |state| {
        load_snapshot(&files.customers(), &ruleset, state, store.is_some())
    })?;
    let run_key = std::path::absolute(output)?.display().to_string();
    let out: Box<dyn Sink> = Box::new(FileSink::new(File::create(output)?, 0));
    let rejects: Box<dyn Sink> = Box::new(FileSink::new(File::create(rejects_path(output))?, 0));
    let input = File::open(input_path)?;
    let mut batch = Batch::new(
        &ruleset,
        &mut state,
        DecisionWriter::new(out, OutputFormat::Jsonl),
        rejects,
    );
    if let Some(store) = store.as_mut() {
        batch.durability =
            Some(store.durability(&ruleset, run_key, None, None, CHECKPOINT_EVERY)?);
    }
    let reader = BufReader::with_capacity(BUF, input);
    let mut progress = |_: u64| {};
    match format {
        InputFormat::Jsonl => batch.run_jsonl(reader, &mut progress)?,
        InputFormat::Csv => batch.run_csv(reader, &mut progress)?,
    };
    Ok(batch.finish()?)
}

// ---------------------------------------------------------------------------------------
// The Rhai-only baseline.

/// A customer snapshot row (the generator's `customers.jsonl`).
#[derive(Debug, Deserialize)]
struct SnapshotRow {
    customer: String,
    wallet: Option<String>,
    prior_bill_payments: Option<i64>,
    autopay_activated_on: Option<String>,
    points_balance: Option<String>,
    points_authorized: Option<bool>,
}

/// Builds a Rhai map from `(key, value)` pairs.
fn map<const N: usize>(entries: [(&str, Dynamic); N]) -> Map {
    entries.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// The script's `customers` and `wallets` maps, seeded from the snapshot.
fn rhai_snapshot(path: &Path) -> Res<(Map, Map)> {
    let mut customers = Map::new();
    let mut wallets = Map::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: SnapshotRow = serde_json::from_str(&line)?;
        let activated_on = row
            .autopay_activated_on
            .filter(|d| !d.is_empty())
            .map_or(Dynamic::UNIT, Dynamic::from);
        let customer = map([
            (
                "bill_payments",
                Dynamic::from(row.prior_bill_payments.unwrap_or(0)),
            ),
            ("activated_on", activated_on),
            ("reward_1", Dynamic::FALSE),
            ("reward_2", Dynamic::FALSE),
        ]);
        customers.insert(row.customer.into(), customer.into());
        if let Some(wallet) = row.wallet {
            let balance = match row.points_balance.filter(|b| !b.is_empty()) {
                Some(b) => Dynamic::from(Decimal::from_str(&b)?),
                None => Dynamic::UNIT,
            };
            let record = map([
                (
                    "authorized",
                    Dynamic::from(row.points_authorized.unwrap_or(false)),
                ),
                ("balance", balance),
                ("daily", Map::new().into()),
            ]);
            wallets.insert(wallet.into(), record.into());
        }
    }
    Ok((customers, wallets))
}

/// The event as the script sees it, or `None` when the line is not a readable event
/// (the engine rejects such lines).
fn event_map(ev: FloorEvent<Vec<String>>) -> Option<Map> {
    let at = chrono::DateTime::parse_from_rfc3339(ev.at.trim()).ok()?;
    let date = at
        .with_timezone(&chrono_tz::Asia::Hong_Kong)
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let mut m = map([
        ("id", ev.id.into()),
        ("type", ev.kind.into()),
        ("at", ev.at.into()),
        ("date", date.into()),
        ("customer", ev.customer.into()),
        ("wallet", ev.wallet.into()),
    ]);
    for (k, v) in [
        ("card_product", ev.card_product),
        ("card_role", ev.card_role),
        ("merchant", ev.merchant),
        ("channel", ev.channel),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    }
    if let Some(a) = ev.amount {
        m.insert(
            "amount".into(),
            Dynamic::from(Decimal::from_str(a.trim()).ok()?),
        );
    }
    if !ev.coupons.is_empty() {
        let ids: rhai::Array = ev.coupons.into_iter().map(Dynamic::from).collect();
        m.insert("coupons".into(), ids.into());
    }
    if !ev.face_values.is_empty() {
        let values = ev
            .face_values
            .iter()
            .map(|f| Decimal::from_str(f.trim()).ok().map(Dynamic::from))
            .collect::<Option<rhai::Array>>()?;
        m.insert("face_values".into(), values.into());
    }
    Some(m)
}

/// A Rhai string, written as a JSON string.
struct Text(ImmutableString);

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A decision line, fields in the engine's order (src/io/output.rs).
#[derive(Serialize)]
struct DecisionLine {
    event_id: Text,
    rule: Text,
    decision: Text,
    customer: Text,
    wallet: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupons: Option<Vec<CouponLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_id: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<String>,
}

#[derive(Serialize)]
struct CouponLine {
    coupon_id: Text,
    face_value: String,
    min_spend: String,
    usable_for: Vec<Text>,
    credit_by: Text,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<Text>,
}

fn opt_text(m: &Map, key: &str) -> Option<Text> {
    m.get(key)?.clone().into_immutable_string().ok().map(Text)
}

fn text(m: &Map, key: &str) -> Res<Text> {
    opt_text(m, key).ok_or_else(|| format!("a decision of the script has no text `{key}`").into())
}

fn opt_money(m: &Map, key: &str) -> Res<Option<String>> {
    match m.get(key) {
        None => Ok(None),
        Some(d) if d.is_unit() => Ok(None),
        Some(d) => match d.as_decimal() {
            Ok(v) => Ok(Some(Money(v).to_string())),
            Err(_) => Err(format!("`{key}` of a decision of the script is not a decimal").into()),
        },
    }
}

fn money(m: &Map, key: &str) -> Res<String> {
    opt_money(m, key)?.ok_or_else(|| format!("a decision of the script has no `{key}`").into())
}

fn coupon_line(c: Dynamic) -> Res<CouponLine> {
    let c = c
        .try_cast::<Map>()
        .ok_or("a coupon of the script is not a map")?;
    let usable_for = c
        .get("usable_for")
        .and_then(|u| u.clone().try_cast::<rhai::Array>())
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.into_immutable_string().map(Text))
        .collect::<Result<_, _>>()?;
    Ok(CouponLine {
        coupon_id: text(&c, "coupon_id")?,
        face_value: money(&c, "face_value")?,
        min_spend: money(&c, "min_spend")?,
        usable_for,
        credit_by: text(&c, "credit_by")?,
        valid_until: opt_text(&c, "valid_until"),
    })
}

fn decision_line(d: Dynamic) -> Res<DecisionLine> {
    let d = d
        .try_cast::<Map>()
        .ok_or("a decision of the script is not a map")?;
    let coupons = match d
        .get("coupons")
        .and_then(|c| c.clone().try_cast::<rhai::Array>())
    {
        Some(list) => Some(list.into_iter().map(coupon_line).collect::<Res<Vec<_>>>()?),
        None => None,
    };
    Ok(DecisionLine {
        event_id: text(&d, "event_id")?,
        rule: text(&d, "rule")?,
        decision: text(&d, "decision")?,
        customer: text(&d, "customer")?,
        wallet: text(&d, "wallet")?,
        coupons,
        coupon_id: opt_text(&d, "coupon_id"),
        reason: opt_text(&d, "reason"),
        points: opt_money(&d, "points")?,
    })
}

fn rhai_only(files: &Files, output: &Path) -> Res<Report> {
    let mut engine = rhai::Engine::new();
    // The same per-run operation budget as a rule script's sandbox; the state maps are
    // unbounded (the engine's state is too). No string interning: with a million distinct
    // ids its cache only churns (over a tenth of the baseline's time when on).
    engine
        .set_max_operations(100_000)
        .set_max_call_levels(32)
        .set_max_strings_interned(0);
    let ast = engine.compile(SEED_SCRIPT)?;
    let (customers, wallets) = rhai_snapshot(&files.customers())?;
    let mut scope = Scope::new();
    scope
        .push("ready", false)
        .push("cfg", Dynamic::UNIT)
        .push("customers", customers)
        .push("wallets", wallets)
        .push("coupons", Map::new())
        .push("seen", Map::new())
        .push("event", Dynamic::UNIT);
    // Variables the script declares at its top level are dropped after each run.
    let base = scope.len();

    let mut input = BufReader::with_capacity(BUF, File::open(files.events_jsonl())?);
    let mut out = BufWriter::with_capacity(BUF, File::create(output)?);
    let mut line = String::with_capacity(1024);
    let mut read = 0u64;
    let mut decisions = 0u64;
    let mut per_rule: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        read += 1;
        let Some(event) = serde_json::from_str::<FloorEvent<Vec<String>>>(&line)
            .ok()
            .and_then(event_map)
        else {
            continue;
        };
        scope.set_value("event", event);
        let result = engine.eval_ast_with_scope::<rhai::Array>(&mut scope, &ast);
        scope.rewind(base);
        let result = result.map_err(|e| format!("seed.rhai failed on line {read}: {e}"))?;
        for d in result {
            let d = decision_line(d)?;
            *per_rule.entry(d.rule.0.to_string()).or_default() += 1;
            decisions += 1;
            serde_json::to_writer(&mut out, &d)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(Report {
        variant: String::new(),
        events: read,
        nanos: 0,
        peak_rss_kib: None,
        decisions,
        per_rule,
    })
}

// ---------------------------------------------------------------------------------------
// Formatting, in integers.

/// A file's size in MB (10^6 bytes), one decimal.
fn megabytes(path: &Path) -> String {
    std::fs::metadata(path).map_or("?".to_string(), |m| {
        fixed(u128::from(m.len()), 1_000_000, 1)
    })
}
