//! Why expressions have their own evaluator (`src/rules/expr.rs`) rather than Rhai: the two
//! spec examples, `min(amount * 10%, 50)` and `qualifying_spend + amount`, evaluated
//! 1,000,000 times each by `Expr` and by a Rhai expression (the project's sandbox engine,
//! decimals as in scripts) over the same values, in ns per evaluation.
//!
//! ```sh
//! cargo bench --bench expr
//! cargo bench --bench expr -- --n 200000
//! ```
//!
//! Run with no argument at all (as `cargo test --all-targets` runs it), it is a smoke test of
//! 2,000 evaluations. Each measurement is the fastest of three rounds, as the machine is
//! shared and noisy. The two are first checked to agree on every 997th value.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use promo::rules::expr::{Expr, Resolved, Var};
use promo::rules::script::{sandbox, ScriptLimits};
use rhai::{Dynamic, Scope};
use rust_decimal::Decimal;

const ROUNDS: usize = 3;

/// The ith event's amount and qualifying spend: varied, so that nothing is a constant.
fn values(i: u64) -> (Decimal, Decimal) {
    let i = i64::try_from(i % 100_000).unwrap_or(0);
    (Decimal::new(i * 7 + 1, 2), Decimal::new(i * 13, 1))
}

fn resolve(name: &str) -> Option<Resolved> {
    match name {
        "amount" => Some(Resolved::Var(Var::Amount)),
        "qualifying_spend" => Some(Resolved::Var(Var::Fact(0))),
        _ => None,
    }
}

/// The fastest of `ROUNDS` runs of `n` calls of `f`, in picoseconds per call (integers, as
/// the crate denies float arithmetic).
fn time(
    n: u64,
    mut f: impl FnMut(u64) -> Result<Decimal, Box<dyn Error>>,
) -> Result<u128, Box<dyn Error>> {
    let mut best = u128::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..n {
            black_box(f(black_box(i))?);
        }
        let ps = start.elapsed().as_nanos() * 1000 / u128::from(n.max(1));
        best = best.min(ps);
    }
    Ok(best.max(1))
}

/// Picoseconds as nanoseconds with one decimal.
fn ns(ps: u128) -> String {
    format!("{}.{}", ps / 1000, ps % 1000 / 100)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1).peekable();
    // Run with no argument at all (as `cargo test --all-targets` runs it): a smoke test.
    let mut n: u64 = if args.peek().is_none() {
        2_000
    } else {
        1_000_000
    };
    while let Some(arg) = args.next() {
        if arg == "--n" {
            n = args.next().ok_or("--n needs a number")?.parse()?;
        }
        // Other arguments (`--bench` from cargo) are not ours.
    }
    let known = ["amount".to_string(), "qualifying_spend".to_string()];
    let engine = sandbox(&ScriptLimits::default());
    let cases = [
        ("min(amount * 10%, 50)", "min(amount * 0.10, 50.0)"),
        ("qualifying_spend + amount", "qualifying_spend + amount"),
    ];
    println!("{n} evaluations each, fastest of {ROUNDS} rounds");
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "expression", "expr ns", "rhai ns", "ratio"
    );
    for (text, rhai_text) in cases {
        let expr = Expr::compile(text, &resolve, &known)?;
        let mut scope = Scope::new();
        scope.push("amount", Decimal::ZERO);
        scope.push("qualifying_spend", Decimal::ZERO);
        let ast = engine.compile_expression_with_scope(&scope, rhai_text)?;
        let ours = |i| -> Result<Decimal, Box<dyn Error>> {
            let (amount, spend) = values(i);
            Ok(expr.eval(&mut |v| if v == Var::Amount { amount } else { spend })?)
        };
        let mut rhai = |i| -> Result<Decimal, Box<dyn Error>> {
            let (amount, spend) = values(i);
            scope.set_value("amount", amount);
            scope.set_value("qualifying_spend", spend);
            let v: Dynamic = engine.eval_ast_with_scope(&mut scope, &ast)?;
            Ok(v.as_decimal()?)
        };
        for i in (0..n).step_by(997) {
            let (a, b) = (ours(i)?, rhai(i)?);
            if a != b {
                return Err(format!("{text} at {i}: expr {a}, rhai {b}").into());
            }
        }
        let ours_ps = time(n, ours)?;
        let rhai_ps = time(n, rhai)?;
        let ratio = ns(rhai_ps * 1000 / ours_ps);
        println!(
            "{text:<28} {:>10} {:>10} {ratio:>7}x",
            ns(ours_ps),
            ns(rhai_ps)
        );
    }
    Ok(())
}
