//! The engine: evaluates events against a compiled ruleset and a state. No I/O but the
//! temporary files where the state keeps what exceeds its memory budgets. Its only threads
//! are helpers that decide nothing: one makes room for the decided ids while a snapshot
//! loads (`State::expect_input_while`), others fault in memory a table will grow into
//! (`ahead`) and merge those temporary files (`runs`).

pub mod admit;
pub(crate) mod ahead;
pub(crate) mod chunked;
pub mod counters;
pub mod evaluate;
pub mod explain;
pub mod footprint;
mod held;
pub mod ledger;
pub(crate) mod name_ids;
mod prefetch;
mod runs;
pub mod script_view;
pub mod seen;
pub mod state;
pub mod zone;

pub use admit::{Admission, Admitted, EventHashes, Keys, Prepared};
pub use evaluate::{decide, evaluate, Evaluation, Failed, InvalidEvent, Outcome, RuleTrace};
pub use explain::{explain, Explanation};
pub use seen::SeenIds;
pub use state::{StagedCounters, State};
