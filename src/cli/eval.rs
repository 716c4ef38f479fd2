//! `promo eval`: batch evaluation of a transaction file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IsTerminal, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::eval_shared;
use super::summary::{Files, SummaryJson};
use super::Exit;
use crate::batch::{Batch, Durability, Finish, InputFormat, Summary};
use crate::engine::State;
use crate::io::paths::{distinct_outputs, given, Named};
use crate::io::{
    load_snapshot, DecisionWriter, FileSink, OutputFormat, Sink, SnapshotLoad, StreamSink,
};
use crate::model::Money;
use crate::rules::{load_ruleset, ruleset_version};
use crate::store::pg::run::{RunKey, SharedRun};
use crate::store::{InputHead, RunRecord, Store, Upkeep};

/// Arguments of `promo eval`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  promo eval --rules rules --input examples/events.jsonl --customers examples/customers.jsonl --output decisions.jsonl\n  \
promo eval --rules rules --input day.csv --output day.out.jsonl --summary-json day.summary.json\n  \
promo eval --rules rules --input day1.jsonl --output day1.out.jsonl --state state/   # rerun to resume\n\n\
Rejected lines go to <output>.rejects.jsonl (promo-rejects.jsonl when decisions go to standard output),\n\
one JSON line each with its line number, code and reason (docs/summary.md).\n\n\
Exit status: 0 all lines decided; 3 finished but some lines (or snapshot rows) were rejected or a rule\n\
failed on an event (see the rejects file); 2 fatal error; 130 stopped by Ctrl-C (rerun to resume)."
)]
pub struct EvalArgs {
    /// The ruleset directory (holding ruleset.yaml).
    #[arg(long, value_name = "RULES_DIR")]
    pub rules: PathBuf,
    /// The events: a JSONL or CSV file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub input: PathBuf,
    /// The customer snapshot at the start of the stream (JSONL, CSV or YAML).
    #[arg(long, value_name = "FILE")]
    pub customers: Option<PathBuf>,
    /// Where decisions go; standard output if absent.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Input format; by default from the input's extension (`.csv`), else JSONL.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Output format; by default from the output's extension (`.csv`), else JSONL.
    #[arg(long, value_enum)]
    pub output_format: Option<OutputFormat>,
    /// Where rejected lines go (JSONL with line number, code and reason); by default
    /// `<output>.rejects.jsonl`, or `promo-rejects.jsonl` (removed if it stays empty) when
    /// decisions go to standard output; `-` for standard error.
    #[arg(long, value_name = "FILE|-")]
    pub rejects: Option<PathBuf>,
    /// Keep customer facts, the coupon ledger, counters and decided event ids in this
    /// directory across runs; a killed run resumes exactly where it stopped when rerun.
    /// A `postgres://` URL decides on the state `promo serve` instances share instead
    /// (docs/postgres.md): blocks of at most 1,000 lines, one transaction each.
    #[arg(long, value_name = "DIR|URL")]
    pub state: Option<PathBuf>,
    /// With --state: commit a checkpoint after this many input lines (records).
    #[arg(long, value_name = "N", default_value_t = CHECKPOINT_EVERY, hide_short_help = true)]
    pub checkpoint_every: u64,
    /// With --state: fold the change log into the state's tables once it passes this many
    /// bytes (0: at every checkpoint).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub compact_after: Option<u64>,
    /// Memory for the ids of decided events before older ones go to temporary files
    /// (default 32 MiB).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub id_memory: Option<usize>,
    /// Memory for coupons before older ones go to temporary files (default 16 MiB); a run
    /// given it says at its end where the coupons ended up.
    #[arg(long, value_name = "BYTES", hide = true)]
    pub coupon_memory: Option<usize>,
    /// After each event's decisions, a line saying which rules were considered and, for each
    /// that did not fire, the first condition that failed (by its name in the rule file).
    #[arg(long)]
    pub explain: bool,
    /// No summary on standard error.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file, for machines (fields: docs/summary.md);
    /// written at the end of the run, and when Ctrl-C stops it (`"complete": false`).
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn fatal(message: impl std::fmt::Display) -> Exit {
    errln!("promo eval: {message}");
    Exit::Error
}

/// How a run with `--state` starts, given what the state recorded for its output.
enum Start {
    /// No earlier run wrote to this output: start it empty.
    Fresh,
    /// An earlier run was cut short: truncate the outputs to what it committed and go on
    /// after the input it committed.
    Resume(RunRecord),
    /// An earlier run finished: append only what is new (nothing, for the same input).
    Rerun(RunRecord),
}

impl Start {
    /// How a run starts after the earlier one whose record this is, if any.
    fn after(record: Option<RunRecord>) -> Start {
        match record {
            Some(r) if !r.complete => Start::Resume(r),
            Some(r) => Start::Rerun(r),
            None => Start::Fresh,
        }
    }

    /// The input units an earlier run committed, to read past.
    fn skip(&self) -> u64 {
        match self {
            Start::Resume(r) => r.consumed,
            _ => 0,
        }
    }

    /// Where the run starts: the input units to read past, and those whose rejects a
    /// finished earlier run wrote already; a resumed run continues its summary.
    fn position(&self, summary: &mut Summary) -> (u64, u64) {
        match self {
            Start::Resume(r) => {
                summary.resume(&r.summary);
                (r.consumed, 0)
            }
            Start::Rerun(r) => (0, r.consumed),
            Start::Fresh => (0, 0),
        }
    }
}

/// Set by Ctrl-C: stop at the next checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

/// Units of input between checkpoints of a run with `--state`, by default.
const CHECKPOINT_EVERY: u64 = 50_000;

fn open_sink(
    path: &Path,
    start: &Start,
    committed: impl Fn(&RunRecord) -> u64,
) -> io::Result<FileSink> {
    let mut options = OpenOptions::new();
    options.create(true).write(true);
    match start {
        Start::Fresh => {
            let f = options.truncate(true).open(path)?;
            Ok(FileSink::new(f, 0))
        }
        Start::Resume(record) => {
            let mut f = options.truncate(false).open(path)?;
            let len = committed(record);
            let now = f.metadata()?.len();
            if now < len {
                // Extending it would pad with zeros: refuse rather than resume into that.
                return Err(io::Error::other(format!(
                    "it holds {now} bytes but the interrupted run had committed {len}; it was changed since, so the run cannot resume into it (write to a new --output, or start a new state)"
                )));
            }
            f.set_len(len)?;
            f.seek(SeekFrom::End(0))?;
            Ok(FileSink::new(f, len))
        }
        Start::Rerun(_) => {
            let mut f = options.truncate(false).open(path)?;
            let len = f.seek(SeekFrom::End(0))?;
            Ok(FileSink::new(f, len))
        }
    }
}

/// What a run's record is kept under: its output's absolute path, `-` for standard output.
fn run_key(args: &EvalArgs) -> String {
    let Some(p) = &args.output else {
        return "-".into();
    };
    std::path::absolute(p)
        .unwrap_or_else(|_| p.clone())
        .display()
        .to_string()
}

/// `--format`, or else CSV for a `.csv` input and JSON lines for any other.
fn input_format(args: &EvalArgs) -> InputFormat {
    args.format.unwrap_or(if has_ext(&args.input, "csv") {
        InputFormat::Csv
    } else {
        InputFormat::Jsonl
    })
}

/// A state with the memory budgets the arguments give.
fn empty_state(args: &EvalArgs, ruleset: &crate::rules::Ruleset) -> State {
    let mut state = State::new(ruleset);
    if let Some(bytes) = args.id_memory {
        state.limit_id_memory(bytes);
    }
    if let Some(bytes) = args.coupon_memory {
        state.limit_coupon_memory(bytes);
    }
    state
}

/// Where a run writes.
struct Outputs {
    /// The decisions (a file, or standard output).
    out: Box<dyn Sink>,
    /// What `out` holds already: a resumed or rerun output, its CSV header among it.
    held: u64,
    rejects: Box<dyn Sink>,
}

/// Opens the outputs of a run that starts so.
fn open_outputs(
    args: &EvalArgs,
    start: &Start,
    rejects_path: Option<&Path>,
) -> Result<Outputs, String> {
    let cannot = |p: &Path, e: io::Error| format!("cannot write {}: {e}", p.display());
    let mut out: Box<dyn Sink> = match &args.output {
        Some(p) => Box::new(open_sink(p, start, |r| r.output_bytes).map_err(|e| cannot(p, e))?),
        None => Box::new(StreamSink::new(io::stdout().lock())),
    };
    let held = out
        .flush_len()
        .map_err(|e| format!("cannot write the output: {e}"))?;
    let rejects: Box<dyn Sink> = match rejects_path {
        Some(p) => Box::new(open_sink(p, start, |r| r.rejects_bytes).map_err(|e| cannot(p, e))?),
        None => Box::new(StreamSink::new(io::stderr())),
    };
    Ok(Outputs { out, held, rejects })
}

/// Where rejects go when decisions go to standard output and `--rejects` is not given:
/// a file, so that they are neither lost in a pipe nor mixed with the summary.
pub const DEFAULT_REJECTS: &str = "promo-rejects.jsonl";

/// The rejects file: `--rejects` (`None` for `-`, standard error), else beside the output,
/// else `DEFAULT_REJECTS`.
fn rejects_path(args: &EvalArgs) -> Option<PathBuf> {
    match (&args.rejects, &args.output) {
        (Some(r), _) if r.as_os_str() == "-" => None,
        (Some(r), _) => Some(r.clone()),
        (None, Some(o)) => {
            let mut name = o.clone().into_os_string();
            name.push(".rejects.jsonl");
            Some(PathBuf::from(name))
        }
        (None, None) => Some(PathBuf::from(DEFAULT_REJECTS)),
    }
}

/// Removes the default rejects file of a run to standard output that rejected nothing: a
/// clean run leaves no empty file behind in the current directory. With a state the file
/// stays, as the run record counts its bytes.
fn tidy_default_rejects(args: &EvalArgs, path: Option<&Path>) {
    let defaulted = args.rejects.is_none() && args.output.is_none() && args.state.is_none();
    if let (true, Some(p)) = (defaulted, path) {
        if std::fs::metadata(p).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Before anything is opened for writing: no output may be an input or another output.
/// The state's database (and SQLite's files beside it) is read and written by the run.
fn outputs_apart(args: &EvalArgs, rejects: Option<&Path>) -> Result<(), String> {
    let state_files: Vec<PathBuf> = args
        .state
        .iter()
        .flat_map(|dir| {
            ["", "-wal", "-shm"].map(|end| dir.join(format!("{}{end}", crate::store::DB_FILE)))
        })
        .collect();
    let mut inputs = given([
        ("--input", Some(args.input.as_path())),
        ("--customers", args.customers.as_deref()),
    ]);
    inputs.extend(state_files.iter().map(|f| Named::new("--state", f)));
    let outputs = given([
        ("--output", args.output.as_deref()),
        ("--rejects", rejects),
        ("--summary-json", args.summary_json.as_deref()),
    ]);
    distinct_outputs(&inputs, &[Named::new("--rules", &args.rules)], &outputs)
}

/// Whether a resume or a rerun continues the run it names: the same rules' version, and
/// the same input (or that input grown at its end), or it would mix two rulesets' decisions
/// in one output or skip lines of another file. The head of the input, to record with the
/// run (none for standard input or without a state).
fn same_run(
    args: &EvalArgs,
    start: &Start,
    kept: bool,
    run_key: &str,
    version: &str,
) -> Result<Option<InputHead>, String> {
    let earlier = match start {
        Start::Resume(r) | Start::Rerun(r) => Some(r),
        Start::Fresh => None,
    };
    if let (Some(recorded), true) = (earlier.and_then(|r| r.ruleset.as_deref()), kept) {
        if version != recorded {
            return Err(format!(
                "the earlier run into {run_key} used ruleset version {recorded}, but the rules in {} are version {version}; continuing it would mix the decisions of two rulesets in one output. Use the rules it started with, or write to a new --output",
                args.rules.display(),
            ));
        }
    }
    let unreadable = |e: io::Error| format!("cannot read {}: {e}", args.input.display());
    if args.input.as_os_str() == "-" || !kept {
        return Ok(None);
    }
    match earlier.and_then(|r| r.input) {
        Some(head) => match head.matches(&args.input) {
            Ok(true) => Ok(Some(head)),
            Ok(false) => Err(format!(
                "the input {} is not the one the earlier run into {run_key} read (its first {} bytes differ); write to a new --output to evaluate it",
                args.input.display(),
                head.bytes
            )),
            Err(e) => Err(unreadable(e)),
        },
        None => InputHead::of(&args.input).map(Some).map_err(unreadable),
    }
}

/// Runs `eval`.
pub fn run(args: &EvalArgs) -> Exit {
    match evaluate(args) {
        Ok(exit) => exit,
        Err(message) => fatal(message),
    }
}

/// Where a run keeps its state, if anywhere, and how it starts given what that state
/// recorded for its output.
struct Kept {
    store: Option<Store>,
    shared: Option<eval_shared::Shared>,
    start: Start,
}

/// Opens the state `--state` names (a SQLite directory or a PostgreSQL URL), loads what it
/// holds into `state`, and reads the record of an earlier run into the same output.
fn open_kept(
    args: &EvalArgs,
    ruleset: &crate::rules::Ruleset,
    state: &mut State,
    run_key: &str,
) -> Result<Kept, String> {
    let shared_url = crate::store::pg::url_in(args.state.as_deref());
    let mut kept = Kept {
        store: None,
        shared: None,
        start: Start::Fresh,
    };
    match (&args.state, shared_url) {
        (_, Some(url)) => {
            let shared = eval_shared::connect(args, url, ruleset)?;
            // The snapshot's facts are seeded from the changes it makes.
            state.track_changes();
            kept.start = Start::after(shared.record(run_key)?);
            kept.shared = Some(shared);
        }
        (Some(dir), None) => {
            let store = Store::open(dir, ruleset).map_err(|e| e.to_string())?;
            store.load(ruleset, state).map_err(|e| e.to_string())?;
            state.track_changes();
            kept.start = Start::after(store.run(run_key).map_err(|e| e.to_string())?);
            kept.store = Some(store);
        }
        (None, None) => {}
    }
    Ok(kept)
}

/// Loads `--customers` into `state` (meanwhile making room for the input's events, when
/// its size is known); the snapshot's warnings, already shown.
fn load_customers(
    args: &EvalArgs,
    ruleset: &crate::rules::Ruleset,
    state: &mut State,
    (stored, expected_events): (bool, Option<usize>),
) -> Result<Vec<String>, String> {
    let snapshot = |state: &mut State| match &args.customers {
        Some(path) => load_snapshot(path, ruleset, state, stored),
        None => Ok(SnapshotLoad::default()),
    };
    let loaded = match expected_events {
        Some(events) => state.expect_input_while(events, snapshot),
        None => snapshot(state),
    };
    // Rows rejected and columns no fact declares: shown now and at the end, and the run
    // exits 3, as for rejected lines.
    let warnings = match (loaded, &args.customers) {
        (Err(e), _) => return Err(format!("bad customer snapshot: {e}")),
        (Ok(load), Some(path)) => load.warnings(path),
        (Ok(_), None) => Vec::new(),
    };
    for w in &warnings {
        errln!("promo eval: warning: {w}");
    }
    Ok(warnings)
}

/// The events to read: `--input`, or standard input for `-`.
fn open_input(args: &EvalArgs) -> Result<Box<dyn io::Read + Send>, String> {
    if args.input.as_os_str() == "-" {
        return Ok(Box::new(io::stdin()));
    }
    File::open(&args.input)
        .map(|f| Box::new(f) as Box<dyn io::Read + Send>)
        .map_err(|e| format!("cannot open {}: {e}", args.input.display()))
}

/// `eval` up to its report; an error is fatal. A closed standard output (`| head`) ends
/// the run quietly.
fn evaluate(args: &EvalArgs) -> Result<Exit, String> {
    let rejects_path = rejects_path(args);
    outputs_apart(args, rejects_path.as_deref())?;
    let ruleset = load_ruleset(&args.rules)
        .map_err(|e| format!("invalid rules in {}:\n{e}", args.rules.display()))?;
    let mut state = empty_state(args, &ruleset);
    let run_key = run_key(args);
    let Kept {
        mut store,
        shared,
        start,
    } = open_kept(args, &ruleset, &mut state, &run_key)?;
    // The version of the rules (the one `promo serve` puts on its decisions): shown in the
    // summary and recorded with the run, as a resume or a rerun into the same output with
    // other rules would mix the decisions of two rulesets in one output.
    let version = ruleset_version(&args.rules)
        .map_err(|e| format!("cannot read {}: {e}", args.rules.display()))?;
    let kept = store.is_some() || shared.is_some();
    let stdin = args.input.as_os_str() == "-";
    let input_head = same_run(args, &start, kept, &run_key, &version)?;
    let input_len = if stdin {
        None
    } else {
        std::fs::metadata(&args.input).ok().map(|m| m.len())
    };
    let input_format = input_format(args);
    let expected = input_len.map(|bytes| input_format.events_in(bytes));
    let snapshot_warnings =
        load_customers(args, &ruleset, &mut state, (store.is_some(), expected))?;
    let run = RunKey {
        output: run_key.clone(),
        input: input_head,
        version: version.clone(),
    };
    let mut shared = shared
        .map(|s| {
            s.start(
                args,
                (&ruleset, run),
                input_format,
                start.skip(),
                &mut state,
            )
        })
        .transpose()?;
    let output_format = args.output_format.unwrap_or(match &args.output {
        Some(p) if has_ext(p, "csv") => OutputFormat::Csv,
        _ => OutputFormat::Jsonl,
    });
    let Outputs { out, held, rejects } = open_outputs(args, &start, rejects_path.as_deref())?;
    let input = open_input(args)?;
    let bar = progress_bar(input_len, args.quiet);
    let mut batch = Batch::new(
        &ruleset,
        &mut state,
        DecisionWriter::new(out, output_format).continuing(held),
        rejects,
    );
    set_up(&mut batch, args, kept, shared.is_some());
    let (skip, rejects_known) = start.position(&mut batch.summary);
    let at = RunAt {
        key: run_key.clone(),
        input: input_head,
        version: version.clone(),
        skip,
        rejects_known,
    };
    let upkeep = store.as_ref().map(Store::upkeep);
    batch.durability = durability(args, &ruleset, (store.as_mut(), shared.as_mut()), at)?;
    if let (Start::Resume(r), false) = (&start, args.quiet) {
        let n = r.consumed;
        errln!("promo eval: resuming after {n} input lines committed by an earlier run");
    }
    let run = run_batch(batch, input_format, input, &bar);
    let closed = |e: &io::Error| e.kind() == io::ErrorKind::BrokenPipe;
    let (finish, summary) = match run {
        Ok(ended) => ended,
        Err(e) if closed(&e) => return Ok(Exit::Success),
        Err(e) => return Err(e.to_string()),
    };
    let ended = Ended {
        summary: &summary,
        finish,
        version: &version,
        currency: ruleset.currency.as_deref(),
        rejects: rejects_path.as_deref(),
        snapshot_warnings: &snapshot_warnings,
        rerun: matches!(start, Start::Rerun(_)),
        upkeep: upkeep.as_deref(),
    };
    Ok(conclude(args, &ended, &mut state))
}

/// Sets `batch` up for the run `args` ask for: explained, or read on one thread; and, for a
/// run that keeps state (`kept`), Ctrl-C stops it at its next checkpoint.
fn set_up(batch: &mut EvalBatch<'_>, args: &EvalArgs, kept: bool, shared: bool) {
    if args.explain {
        batch.explain = crate::batch::ExplainMode::Inline;
    }
    // A reader thread blocked on an interactive terminal would outlive a stop at a
    // checkpoint; with a shared state, blocks are read ahead by unit, and the batch reads
    // them in the same order.
    if args.input.as_os_str() == "-" || shared {
        batch.parallel = false;
    }
    if kept {
        if let Err(e) = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)) {
            errln!("promo eval: Ctrl-C will not stop cleanly: {e}");
        }
    }
}

/// The batch of `eval`: decisions and rejects to files or standard output.
type EvalBatch<'r> = Batch<'r, Box<dyn Sink>, Box<dyn Sink>>;

/// Runs `batch` over `input`, showing its progress on `bar`, and finishes it.
fn run_batch(
    mut batch: EvalBatch<'_>,
    format: InputFormat,
    input: Box<dyn io::Read + Send>,
    bar: &ProgressBar,
) -> io::Result<(Finish, Summary)> {
    let mut progress = |bytes: u64| bar.set_position(bytes);
    let reader = BufReader::with_capacity(1 << 16, input);
    let run = match format {
        InputFormat::Jsonl => batch.run_jsonl(reader, &mut progress),
        InputFormat::Csv => batch.run_csv(reader, &mut progress),
    };
    bar.finish_and_clear();
    Ok((run?, batch.finish()?))
}

/// Where a kept run is: its record's key, input and rules, and where it starts.
struct RunAt {
    key: String,
    input: Option<InputHead>,
    version: String,
    skip: u64,
    rejects_known: u64,
}

/// The checkpoints of a run that keeps state: a block per transaction on PostgreSQL,
/// every `--checkpoint-every` units on SQLite; `None` in memory.
fn durability<'r>(
    args: &EvalArgs,
    ruleset: &'r crate::rules::Ruleset,
    kept: (Option<&'r mut Store>, Option<&'r mut SharedRun<'r>>),
    at: RunAt,
) -> Result<Option<Durability<'r>>, String> {
    match kept {
        (_, Some(run)) => Ok(Some(Durability {
            every: eval_shared::block_size(args),
            skip: at.skip,
            rejects_known: at.rejects_known,
            commit: Box::new(|state, summary, unit, files| {
                run.checkpoint(state, summary, unit, files)
            }),
            stop: Some(&STOP),
        })),
        (Some(store), None) => {
            if let Some(bytes) = args.compact_after {
                store.compact_after(bytes);
            }
            let durability = store
                .durability(
                    ruleset,
                    at.key,
                    at.input,
                    Some(at.version),
                    args.checkpoint_every,
                )
                .map_err(|e| e.to_string())?;
            Ok(Some(Durability {
                skip: at.skip,
                rejects_known: at.rejects_known,
                stop: Some(&STOP),
                ..durability
            }))
        }
        (None, None) => Ok(None),
    }
}

/// What a run that went to its end (or to a stop) reports on.
struct Ended<'a> {
    summary: &'a Summary,
    finish: Finish,
    version: &'a str,
    currency: Option<&'a str>,
    rejects: Option<&'a Path>,
    snapshot_warnings: &'a [String],
    /// A rerun of a finished run.
    rerun: bool,
    /// How the upkeep of the state directory went, with one.
    upkeep: Option<&'a Upkeep>,
}

/// Reports the end of a run (the human summary, warnings, hints, `--summary-json`) and
/// tells its exit status.
fn conclude(args: &EvalArgs, ended: &Ended<'_>, state: &mut State) -> Exit {
    let summary = ended.summary;
    let warnings = ended.snapshot_warnings;
    let machine_summary = |exit: Exit| {
        let Some(path) = &args.summary_json else {
            return exit;
        };
        let files = Files {
            input: &args.input,
            output: args.output.as_deref(),
            rejects: ended.rejects,
        };
        let json = SummaryJson {
            complete: ended.finish == Finish::Complete,
            exit_status: exit as i32,
            snapshot_warnings: warnings.len(),
            ..SummaryJson::new(summary, &files, ended.version, ended.currency)
        };
        match json.write(path) {
            Ok(()) => exit,
            Err(e) => fatal(format!("cannot write {}: {e}", path.display())),
        }
    };
    if ended.finish == Finish::Interrupted {
        errln!(
            "promo eval: interrupted; everything up to the last checkpoint is committed. Run the same command again to resume."
        );
        return machine_summary(Exit::Interrupted);
    }
    state.finish_merges();
    // Shown even with --quiet: the run is right, but it used more memory than its budget,
    // or its state's upkeep failed.
    let upkeep = ended.upkeep.and_then(Upkeep::warning);
    for warning in state.storage_warnings().chain(upkeep.as_deref()) {
        errln!("promo eval: warning: {warning}");
    }
    if !args.quiet {
        errln!(
            "{}",
            render_summary(summary, ended.version, ended.rejects).trim_end()
        );
        if args.coupon_memory.is_some() {
            errln!("coupon ledger: {}", state.coupon_stats());
        }
        if ended.rerun && summary.decided == 0 && summary.duplicates > 0 {
            errln!("nothing new: every event was decided by an earlier run with this state");
        }
    }
    // Standard input has no extension to tell CSV by.
    let stdin = args.input.as_os_str() == "-";
    if stdin && args.format.is_none() && summary.decided == 0 && summary.rejected > 0 {
        errln!("promo eval: hint: no line of standard input was a JSON event; if it is CSV, add --format csv");
    }
    if !warnings.is_empty() && !args.quiet {
        errln!(
            "{} customer snapshot warnings (rejected rows, undeclared columns) are above",
            warnings.len()
        );
    }
    tidy_default_rejects(args, ended.rejects);
    let exit = if summary.rejected > 0 || summary.rule_errors > 0 || !warnings.is_empty() {
        Exit::Rejected
    } else {
        Exit::Success
    };
    machine_summary(exit)
}

fn progress_bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(len) => {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})") {
                bar.set_style(style);
            }
            bar
        }
        None => ProgressBar::new_spinner(),
    }
}

/// The human summary of a run.
pub fn render_summary(s: &Summary, version: &str, rejects: Option<&Path>) -> String {
    let mut out = format!(
        "{} lines read: {} decided, {} rejected, {} duplicates, {} blank; {} decisions written\n",
        s.read, s.decided, s.rejected, s.duplicates, s.blank, s.decisions
    );
    out += &format!("ruleset version {version}\n");
    if !s.rejected_by.is_empty() {
        let codes: Vec<String> = s
            .rejected_by
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        out += &format!("rejected lines by code: {}\n", codes.join(" "));
    }
    if s.rule_errors > 0 {
        out += &format!(
            "{} rule evaluations failed (script errors)\n",
            s.rule_errors
        );
    }
    if s.rejected > 0 || s.rule_errors > 0 {
        out += &format!(
            "rejected lines and rule errors are in {}\n",
            rejects.map_or("standard error".to_string(), |p| p.display().to_string())
        );
    }
    out += &format!(
        "{:<28} {:>8} {:>14} {:>9} {:>14} {:>9} {:>9}  {}\n",
        "rule",
        "grants",
        "granted",
        "approvals",
        "approved value",
        "accepted",
        "errors",
        "rejects by reason"
    );
    for (id, c) in &s.rules {
        let reasons: Vec<String> = c
            .rejects
            .iter()
            .chain(&c.coupons_rejected)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        out += &format!(
            "{:<28} {:>8} {:>14} {:>9} {:>14} {:>9} {:>9}  {}\n",
            id,
            c.grants,
            Money(c.granted_value).to_string(),
            c.approvals,
            Money(c.approved_value).to_string(),
            c.coupons_accepted,
            c.script_errors,
            reasons.join(" ")
        );
    }
    out
}
