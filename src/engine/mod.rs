//! The engine: evaluates events against a compiled ruleset and a state. No I/O.

pub mod evaluate;
pub mod script_view;
pub mod state;

pub use evaluate::{evaluate, Evaluation, InvalidEvent, Outcome, RuleTrace};
pub use state::State;
