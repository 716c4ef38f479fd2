//! The Rhai sandbox: an engine with only the packages and limits the ruleset allows (no
//! file imports, no clock), and the scripts of a ruleset compiled once.

use std::path::PathBuf;

use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, Scope, AST};

use super::error::Location;
use super::ruleset::FactType;

/// What a script reads for a fact with no value: a count 0, a flag false, a decimal 0 (so
/// that `facts.total + event.amount` works on a customer's first event), a date `()`
/// (there is no date to default to: scripts test `facts.x == ()`).
pub fn absent_fact(kind: FactType) -> Dynamic {
    match kind {
        FactType::Count => Dynamic::from(0_i64),
        FactType::Flag => Dynamic::FALSE,
        FactType::Decimal => Dynamic::from(rust_decimal::Decimal::ZERO),
        FactType::Date => Dynamic::UNIT,
    }
}

/// Sandbox limits for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    pub operations: u64,
    pub call_depth: usize,
    pub expr_depth: usize,
    pub string_len: usize,
    pub array_len: usize,
    pub map_len: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            operations: 100_000,
            call_depth: 32,
            expr_depth: 64,
            string_len: 10_000,
            array_len: 10_000,
            map_len: 10_000,
        }
    }
}

/// The most lines of `print` and `debug` kept between two [`take_printed`], and the most
/// characters of each: a script printing in a loop must not fill the memory.
const PRINTED_LINES: usize = 64;
const PRINTED_CHARS: usize = 1_000;

thread_local! {
    /// What scripts run on this thread printed since the last `take_printed`. The engine is
    /// shared by every thread; each evaluation runs its scripts on one thread.
    static PRINTED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn keep_printed(line: &str) {
    PRINTED.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < PRINTED_LINES {
                p.push(line.chars().take(PRINTED_CHARS).collect());
            }
        }
    });
}

/// Takes what scripts run on this thread printed (`print` and `debug`) since the last call,
/// giving each line to `to`; nothing to do, and no allocation, when nothing was printed.
pub fn take_printed(mut to: impl FnMut(String)) {
    PRINTED.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if !p.is_empty() {
                p.drain(..).for_each(&mut to);
            }
        }
    });
}

/// Builds the sandboxed script engine.
pub fn sandbox(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new_raw();
    engine.on_print(keep_printed);
    engine.on_debug(|text, _, _| keep_printed(text));
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine
        .set_max_operations(limits.operations)
        .set_max_call_levels(limits.call_depth)
        .set_max_expr_depths(limits.expr_depth, limits.expr_depth)
        .set_max_string_size(limits.string_len)
        .set_max_array_size(limits.array_len)
        .set_max_map_size(limits.map_len)
        .set_strict_variables(true);
    engine
}

/// Where a script came from, to map its positions to the rule file.
#[derive(Debug, Clone)]
pub struct ScriptOrigin {
    pub file: PathBuf,
    /// Line of the rule file (1-based) holding the script's first line.
    pub first_line: usize,
    /// Column of the rule file (1-based) where the script's lines start.
    pub first_column: usize,
    /// Where each character of each of the script's lines is in the file, when known (a
    /// script in a quoted or folded YAML scalar is not laid out as it reads).
    pub lines: Vec<Vec<super::span::Pos>>,
    pub rule: String,
    pub condition: String,
}

impl ScriptOrigin {
    /// The place in the rule file of a position inside the script: through the scalar's
    /// character positions where known, else by the script's first line and column.
    pub fn locate(&self, pos: rhai::Position) -> Location {
        self.locate_at(pos.line().unwrap_or(1), pos.position().unwrap_or(1))
    }

    /// The place in the rule file of the script's `line` and `col` (1-based, in characters).
    pub fn locate_at(&self, line: usize, col: usize) -> Location {
        let mapped = self
            .lines
            .get(line.saturating_sub(1))
            .and_then(|l| l.get(col.saturating_sub(1)));
        let (line, col) = if let Some(p) = mapped {
            (p.line, p.column)
        } else if line <= 1 {
            (self.first_line, self.first_column + col.saturating_sub(1))
        } else {
            (
                self.first_line + line - 1,
                self.first_column + col.saturating_sub(1),
            )
        };
        Location {
            file: self.file.clone(),
            line,
            column: col,
        }
    }
}

/// A script failed while evaluating an event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{at}: script of condition `{condition}` in rule `{rule}` failed: {message}")]
pub struct ScriptError {
    /// Where in the rule file the script failed.
    pub at: Location,
    pub rule: String,
    pub condition: String,
    pub message: String,
    /// The script broke a sandbox limit (operations, call depth, sizes).
    pub exceeded_limit: bool,
}

/// A script that does not compile: where, and Rhai's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{at}: {message}")]
pub struct SyntaxError {
    pub at: Location,
    pub message: String,
}

/// The compiled scripts of a ruleset and the engine that runs them.
pub struct Scripts {
    engine: Engine,
    compiled: Vec<(AST, ScriptOrigin)>,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts")
            .field("count", &self.compiled.len())
            .finish()
    }
}

impl Scripts {
    /// An empty set of scripts run under `limits`.
    pub fn new(limits: &ScriptLimits) -> Self {
        Scripts {
            engine: sandbox(limits),
            compiled: Vec::new(),
        }
    }

    /// Compiles a script; on error returns where in the rule file and why.
    pub fn compile(&mut self, source: &str, origin: ScriptOrigin) -> Result<usize, SyntaxError> {
        // Strict variables: a misspelt name fails at load, so scripts are compiled with the
        // names they will see at run time already in scope. As variables, not constants: the
        // optimizer would fold constants' placeholder values into the script.
        let mut names = Scope::new();
        for name in ["event", "facts", "params"] {
            names.push(name, rhai::Map::new());
        }
        match self.engine.compile_with_scope(&names, source) {
            Ok(ast) => {
                self.compiled.push((ast, origin));
                Ok(self.compiled.len() - 1)
            }
            Err(e) => Err(SyntaxError {
                at: origin.locate(e.position()),
                message: e.err_type().to_string(),
            }),
        }
    }

    /// Runs script `index` with `event`, `facts` and `params` in scope; it must return a bool.
    pub fn run_condition(
        &self,
        index: usize,
        event: rhai::Map,
        facts: rhai::Map,
        params: &rhai::Map,
    ) -> Result<bool, ScriptError> {
        let Some((ast, origin)) = self.compiled.get(index) else {
            return Err(ScriptError {
                at: Location::default(),
                rule: String::new(),
                condition: String::new(),
                message: format!("no script {index}"),
                exceeded_limit: false,
            });
        };
        let mut scope = Scope::new();
        scope.push_constant("event", event);
        scope.push_constant("facts", facts);
        scope.push_constant("params", params.clone());
        let fail = |at: Location, message: String| ScriptError {
            at,
            rule: origin.rule.clone(),
            condition: origin.condition.clone(),
            message,
            exceeded_limit: false,
        };
        match self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast) {
            Ok(value) => value.as_bool().map_err(|found| {
                fail(
                    origin.locate(rhai::Position::new(1, 1)),
                    format!("a condition script must return true or false, not {found}"),
                )
            }),
            Err(mut e) => {
                use rhai::EvalAltResult as E;
                let exceeded_limit = matches!(
                    *e,
                    E::ErrorTooManyOperations(..)
                        | E::ErrorStackOverflow(..)
                        | E::ErrorDataTooLarge(..)
                );
                // The position goes into the location; the message alone follows it.
                let pos = e.take_position();
                Err(ScriptError {
                    exceeded_limit,
                    ..fail(origin.locate(pos), e.to_string())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> ScriptOrigin {
        ScriptOrigin {
            file: "r.yaml".into(),
            first_line: 10,
            first_column: 7,
            lines: Vec::new(),
            rule: "r".into(),
            condition: "c".into(),
        }
    }

    #[test]
    fn decimal_literals_are_decimals_not_floats() {
        let mut s = Scripts::new(&ScriptLimits::default());
        let i = s.compile("let x = 0.1 + 0.2; x == 0.3", origin()).unwrap();
        assert!(s
            .run_condition(i, rhai::Map::new(), rhai::Map::new(), &rhai::Map::new())
            .unwrap());
        let engine = sandbox(&ScriptLimits::default());
        let v: Dynamic = engine.eval("50.0").unwrap();
        assert!(v.is::<rust_decimal::Decimal>());
    }

    #[test]
    fn print_and_debug_are_kept_for_the_thread_until_taken() {
        let mut s = Scripts::new(&ScriptLimits::default());
        let i = s
            .compile(
                "print(\"a \" + 1); debug(\"b\"); for n in 0..100 { print(n) } true",
                origin(),
            )
            .unwrap();
        take_printed(|_| {});
        s.run_condition(i, rhai::Map::new(), rhai::Map::new(), &rhai::Map::new())
            .unwrap();
        let mut lines = Vec::new();
        take_printed(|l| lines.push(l));
        assert_eq!(lines.len(), PRINTED_LINES);
        assert_eq!(lines[..3], ["a 1", "\"b\"", "0"]);
        take_printed(|l| panic!("taken twice: {l}"));
    }

    #[test]
    fn runaway_loop_is_stopped_with_a_located_error() {
        let mut s = Scripts::new(&ScriptLimits::default());
        // The loop hides behind a test of the event, which the optimizer must not fold away.
        let i = s
            .compile(
                "if event.n > 1 {\n  let x = 0;\n  loop { x += 1; }\n}\ntrue",
                origin(),
            )
            .unwrap();
        let mut event = rhai::Map::new();
        event.insert("n".into(), Dynamic::from(5_i64));
        let err = s
            .run_condition(i, event, rhai::Map::new(), &rhai::Map::new())
            .unwrap_err();
        assert!(err.message.contains("operations"), "{err}");
        assert_eq!(
            (err.at.file.to_str(), err.at.line),
            (Some("r.yaml"), 12),
            "{err}"
        );
    }

    #[test]
    fn deep_recursion_and_huge_strings_break_limits_not_the_process() {
        let mut s = Scripts::new(&ScriptLimits::default());
        for script in [
            "fn down(n) { down(n + 1) }\ndown(0)",
            "let s = \"x\";\nloop { s += s; }",
            "let a = [];\nloop { a.push(1); }",
        ] {
            let i = s.compile(script, origin()).unwrap();
            let err = s
                .run_condition(i, rhai::Map::new(), rhai::Map::new(), &rhai::Map::new())
                .unwrap_err();
            assert!(err.exceeded_limit, "{script}: {err}");
            assert_eq!(err.at.file.to_str(), Some("r.yaml"), "{err}");
            assert!((10..=11).contains(&err.at.line), "{err}");
        }
    }

    #[test]
    fn syntax_error_is_located_in_the_rule_file() {
        let mut s = Scripts::new(&ScriptLimits::default());
        let err = s.compile("true &&\n  (", origin()).unwrap_err();
        assert_eq!(err.at.file.to_str(), Some("r.yaml"), "{err}");
        assert!((10..=11).contains(&err.at.line), "{err}");
    }
}

#[cfg(test)]
mod maxima {
    use super::*;

    /// The largest depths `check` accepts (`compile/bounds.rs`) stop runaway recursion and
    /// deep expressions with a located error on a thread of 2 MiB, the smallest stack a
    /// script runs on (the service's threads), rather than overflowing it.
    #[test]
    fn the_largest_accepted_depths_fit_a_small_stack() {
        let limits = ScriptLimits {
            call_depth: 64,
            expr_depth: 128,
            ..ScriptLimits::default()
        };
        let run = move || {
            let mut s = Scripts::new(&limits);
            let origin = ScriptOrigin {
                file: "r.yaml".into(),
                first_line: 1,
                first_column: 1,
                lines: Vec::new(),
                rule: "r".into(),
                condition: "c".into(),
            };
            let i = s
                .compile(
                    "fn down(n) { 1 + down(n + 1) }\ndown(0) > 0",
                    origin.clone(),
                )
                .unwrap();
            let err = s
                .run_condition(i, rhai::Map::new(), rhai::Map::new(), &rhai::Map::new())
                .unwrap_err();
            assert!(err.exceeded_limit, "{err}");
            let deep = format!("{}1{} > 0", "(".repeat(500), ")".repeat(500));
            assert!(s.compile(&deep, origin).is_err());
        };
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }
}
