//! The `promo` command line: one module per subcommand; `main.rs` only dispatches.

pub mod check;
pub mod eval;

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
}

impl Termination for Exit {
    fn report(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}
