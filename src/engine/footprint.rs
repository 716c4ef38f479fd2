//! What deciding one event reads of a state, by name: a store that keeps the state
//! elsewhere (PostgreSQL) loads exactly this before deciding, and a dry run copies it.

use crate::model::Event;
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;

use super::admit::event_kind;
use super::evaluate::InvalidEvent;

/// One event's reach into the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint<'e> {
    /// The event's type, by index.
    pub kind: usize,
    pub customer: &'e str,
    pub wallet: &'e str,
    /// Each counter its type's limits and accumulators count on, for its date: the
    /// counter's index, whose it is, and the first day of each bucket read (one for a fixed
    /// window, N for a rolling one).
    pub counters: Vec<(usize, Scope, i32)>,
    /// The coupons it names.
    pub coupons: Vec<&'e str>,
}

/// What deciding `ev` may read; an event the ruleset cannot decide is the error deciding it
/// would give.
pub fn footprint<'e>(ruleset: &Ruleset, ev: &'e Event<'_>) -> Result<Footprint<'e>, InvalidEvent> {
    let kind = event_kind(ruleset, ev)?;
    let date = ev.at.with_timezone(&ruleset.timezone).date_naive();
    let reads = ruleset.reads_by_type.get(kind);
    let counters = reads
        .map(|r| r.counters.as_slice())
        .unwrap_or_default()
        .iter()
        .flat_map(|&(counter, per, window)| {
            window.buckets(date).map(move |day| (counter, per, day))
        })
        .collect();
    Ok(Footprint {
        kind,
        customer: &ev.customer,
        wallet: &ev.wallet,
        counters,
        coupons: ev.coupons.iter().flatten().map(|id| id.as_ref()).collect(),
    })
}
