//! The `promo` command line: one module per subcommand; `main.rs` only dispatches.

/// `println!` that never panics: a closed pipe (`promo test | head`) ends output quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod check;
pub mod eval;
mod eval_shared;
pub mod schema;
pub mod serve;
pub mod simulate;
pub mod state;
pub mod summary;
pub mod test;

use std::process::{ExitCode, Termination};

/// Exit statuses of `promo`, one per outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went through.
    Success = 0,
    /// The rules are invalid (`check`), or golden tests failed (`test`).
    Failure = 1,
    /// A fatal error: unreadable rules or input, bad arguments.
    Error = 2,
    /// `eval` finished, but some input lines were rejected or a rule failed on an event
    /// (see the rejects file).
    Rejected = 3,
    /// `eval --state` stopped on Ctrl-C at a checkpoint; rerun to resume.
    Interrupted = 130,
}

impl Termination for Exit {
    fn report(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// ANSI colours, on a terminal only.
pub struct Paint(pub bool);

impl Paint {
    /// Red, for failures and actual values.
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    /// Green, for passes and expected values.
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    /// Dim, for context.
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    /// Yellow, for warnings.
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\u{1b}[{code}m{s}\u{1b}[0m")
        } else {
            s.to_string()
        }
    }
}
