//! Rule files -> a validated, compiled `Ruleset`.

pub mod calendar;
pub mod compile;
pub mod error;
pub mod expr;
pub mod load;
pub mod matching;
pub mod raw;
pub mod ruleset;
pub mod scalar;
pub mod schema;
pub mod script;
pub mod span;

pub use error::{Diagnostic, RulesetError};
pub use load::{load_checked, load_ruleset, ruleset_version};
pub use ruleset::Ruleset;
