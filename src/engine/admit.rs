//! Admitting an event before it is decided: its type is declared and carries the fields the
//! type requires, its id was not decided before, and its customer and wallet have ids. That
//! takes only the ruleset and the keys of a state (interned names and decided ids), never
//! facts, counters or coupons, so a reading thread can admit events ahead of the deciding
//! thread while that one decides earlier events.

use rustc_hash::{FxHashMap, FxHashSet};

use super::evaluate::InvalidEvent;
use super::state::{intern_in, name_hash};
use crate::model::Event;
use crate::rules::Ruleset;

/// An event admitted for deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The index of its event type.
    pub kind: usize,
    /// The hash its id is remembered by.
    pub id_hash: u128,
    pub customer: u32,
    pub wallet: u32,
    /// The customer's name, if admitting gave it its id.
    pub new_customer: Option<Box<str>>,
    /// The wallet's name, if admitting gave it its id.
    pub new_wallet: Option<Box<str>>,
}

/// What admitting an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Fresh(Admitted),
    /// Its id was decided before.
    Duplicate,
    /// It cannot be decided under the ruleset: the line is rejected.
    Invalid(InvalidEvent),
}

/// The index of `ev`'s event type, once the fields its type requires are checked.
pub fn event_kind(ruleset: &Ruleset, ev: &Event<'_>) -> Result<usize, InvalidEvent> {
    let kind = ruleset
        .event_type(&ev.kind)
        .ok_or_else(|| InvalidEvent::UnknownType(ev.kind.to_string()))?;
    if let Some(et) = ruleset.event_types.get(kind) {
        if let Some(missing) = et.requires.iter().find(|f| !ev.has(f)) {
            return Err(InvalidEvent::MissingField {
                field: missing.name().to_string(),
                kind: et.name.clone(),
            });
        }
    }
    Ok(kind)
}

/// The keys of a state, lent out (`State::lend_keys`) to admit events on another thread:
/// customer and wallet ids by name hash, and the hashes of decided ids. The names themselves
/// stay with the state, which learns each new one from the admission that introduced it.
#[derive(Debug, Default)]
pub struct Keys {
    pub(super) customers: FxHashMap<u128, u32>,
    pub(super) wallets: FxHashMap<u128, u32>,
    pub(super) seen: FxHashSet<u128>,
}

impl Keys {
    /// Admits `ev`: a fresh event's id is remembered from here on.
    pub fn admit(&mut self, ruleset: &Ruleset, ev: &Event<'_>) -> Admission {
        admit_with(
            ruleset,
            &mut self.customers,
            &mut self.wallets,
            &mut self.seen,
            ev,
        )
    }
}

/// Admits `ev` with these keys. A name new to them gets the next id and travels with the
/// admission, for the state to learn when it decides the event.
pub(super) fn admit_with(
    ruleset: &Ruleset,
    customers: &mut FxHashMap<u128, u32>,
    wallets: &mut FxHashMap<u128, u32>,
    seen: &mut FxHashSet<u128>,
    ev: &Event<'_>,
) -> Admission {
    let kind = match event_kind(ruleset, ev) {
        Ok(kind) => kind,
        Err(e) => return Admission::Invalid(e),
    };
    let id_hash = name_hash(&ev.id);
    if !seen.insert(id_hash) {
        return Admission::Duplicate;
    }
    let mut new_customer = None;
    let customer = intern_in(customers, &ev.customer, || {
        new_customer = Some(ev.customer.as_ref().into());
    });
    let mut new_wallet = None;
    let wallet = intern_in(wallets, &ev.wallet, || {
        new_wallet = Some(ev.wallet.as_ref().into());
    });
    Admission::Fresh(Admitted {
        kind,
        id_hash,
        customer,
        wallet,
        new_customer,
        new_wallet,
    })
}
