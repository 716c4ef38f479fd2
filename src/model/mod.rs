//! Plain data with no I/O: money, events as read from a stream, and decisions.

pub mod decision;
pub mod digits;
pub mod event;
pub mod money;

pub use decision::{Decision, DecisionKind, IssuedCoupon};
pub use event::{Event, ExtraValue, Field};
pub use money::{total, Money};
