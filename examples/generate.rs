//! Writes a deterministic generated event stream and customer snapshot, for benchmarks and
//! manual runs:
//!
//! ```sh
//! cargo run --release --example generate -- --events 1000000 --customers 100000 --seed 7 --out /tmp/bench
//! # -> /tmp/bench/events.jsonl, /tmp/bench/events.csv, /tmp/bench/customers.jsonl
//! ```

#[path = "../tests/gen/mod.rs"]
#[allow(dead_code, reason = "the generator's API is shared with the tests")]
mod gen;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cfg = gen::GenConfig::default();
    let mut out = PathBuf::from(".");
    let mut csv = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--events" => cfg.events = value().parse().unwrap_or(cfg.events),
            "--customers" => cfg.customers = value().parse().unwrap_or(cfg.customers),
            "--seed" => cfg.seed = value().parse().unwrap_or(cfg.seed),
            "--out" => out = PathBuf::from(value()),
            "--no-csv" => csv = false,
            _ => {
                eprintln!("usage: generate [--events N] [--customers N] [--seed N] [--out DIR] [--no-csv]");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let csv_path = out.join("events.csv");
    match gen::generate_files(
        &cfg,
        &out.join("events.jsonl"),
        &out.join("customers.jsonl"),
        csv.then_some(csv_path.as_path()),
    ) {
        Ok(()) => {
            eprintln!(
                "wrote {} events for {} customers (seed {}) to {}",
                cfg.events,
                cfg.customers,
                cfg.seed,
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("generate: {e}");
            ExitCode::from(2)
        }
    }
}
