//! The `promo` binary: parses arguments and dispatches to `promo::cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use promo::cli::{self, Exit};

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
    Check {
        /// The ruleset directory (holding ruleset.yaml).
        rules_dir: PathBuf,
    },
    /// Evaluate a transaction file; decisions as JSONL (or CSV).
    Eval(cli::eval::EvalArgs),
}

fn main() -> Exit {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { rules_dir } => cli::check::run(&rules_dir),
        Command::Eval(args) => cli::eval::run(&args),
    }
}
