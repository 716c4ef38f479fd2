//! The `promo` binary: parses arguments and dispatches to `promo::cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use promo::cli::{self, Exit};

/// Events are parsed on one thread and freed on another; mimalloc frees across threads
/// without the arena lock glibc's allocator takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rules-engine driven promotion evaluator: promotions as YAML rules and Rhai scripts,
/// evaluated over transaction streams.
#[derive(Parser)]
#[command(
    name = "promo",
    version,
    about,
    after_help = "Example:\n  promo check rules\n  promo eval --rules rules --input examples/events.jsonl --customers examples/customers.jsonl"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate every rule file and script; exit 1 on any error.
    #[command(
        after_help = "Example:\n  promo check rules\n  promo check rules --format json   # for editors and CI tools"
    )]
    Check {
        /// The ruleset directory (holding ruleset.yaml).
        rules_dir: PathBuf,
        /// How to print problems.
        #[arg(long, value_enum, default_value = "human")]
        format: cli::check::ErrorFormat,
    },
    /// Evaluate a transaction file; decisions as JSONL (or CSV).
    Eval(cli::eval::EvalArgs),
    /// Print the JSON Schema of rule files (or of the manifest or calendars), for editor
    /// autocompletion and validation.
    #[command(
        after_help = "Example:\n  promo schema > promo-rule.schema.json\n  promo schema --kind manifest > promo-manifest.schema.json\n\nThen start a rule file with the YAML language server's modeline:\n  # yaml-language-server: $schema=../promo-rule.schema.json"
    )]
    Schema {
        /// Which file's schema.
        #[arg(long, value_enum, default_value = "rule")]
        kind: promo::rules::schema::SchemaKind,
    },
    /// Decide events live over HTTP/JSON; rule edits swap in once they pass their tests.
    Serve(cli::serve::ServeArgs),
    /// What a rule change would have decided differently over a stream: per rule, per kind of
    /// decision and per customer, in count and value; both rulesets in one pass.
    Simulate(cli::simulate::SimulateArgs),
    /// Look into a state directory kept by `promo eval --state`.
    #[command(subcommand)]
    State(StateCommand),
    /// Run the golden cases in RULES_DIR/tests/<case>/ (events, optional customers,
    /// expected decisions); prints a field-level diff per failing case and `N passed, N failed`.
    #[command(
        after_help = "Example:\n  promo test rules\n  promo test rules s14          # only cases whose name contains s14\n  promo test rules --bless      # rewrite expected.jsonl of failing cases"
    )]
    Test {
        /// The ruleset directory (holding ruleset.yaml and tests/).
        rules_dir: PathBuf,
        /// Run only the cases whose name contains this.
        filter: Option<String>,
        /// Rewrite the expected decisions of failing cases with what the rules decide.
        #[arg(long)]
        bless: bool,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Show what the engine knows: facts, counters, coupons and their status, runs.
    Inspect(cli::state::InspectArgs),
}

fn main() -> Exit {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules_dir, format } => cli::check::run(&rules_dir, format),
        Command::Eval(args) => cli::eval::run(&args),
        Command::Schema { kind } => cli::schema::run(kind),
        Command::Serve(args) => cli::serve::run(&args),
        Command::Simulate(args) => cli::simulate::run(&args),
        Command::State(StateCommand::Inspect(args)) => cli::state::run(&args),
        Command::Test {
            rules_dir,
            filter,
            bless,
        } => cli::test::run(&rules_dir, filter.as_deref(), bless),
    }
}
