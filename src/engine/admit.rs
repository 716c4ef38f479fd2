//! Admitting an event before it is decided: its type is declared and carries the fields the
//! type requires, its id was not decided before, and its customer and wallet have ids; it
//! is dated in the ruleset's zone on the way. That
//! takes only the ruleset and the keys of a state (interned names and decided ids), never
//! facts, counters or coupons, so a reading thread can admit events ahead of the deciding
//! thread while that one decides earlier events.

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;

use super::evaluate::{known_tests, InvalidEvent, KnownTests};
use super::name_ids::NameIds;
use super::seen::SeenIds;
use super::zone::LocalDates;
use crate::model::Event;
use crate::rules::ruleset::{Scope, WindowDay};
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
    /// Its date in the ruleset's zone.
    pub date: NaiveDate,
    /// `date` as counters' windows bucket it.
    pub day: WindowDay,
    /// Its time of day in the ruleset's zone.
    pub time: NaiveTime,
    /// The customer's name, if admitting gave it its id.
    pub new_customer: Option<Box<str>>,
    /// The wallet's name, if admitting gave it its id.
    pub new_wallet: Option<Box<str>>,
    /// Its shared event-only tests, worked out.
    pub known: KnownTests,
}

/// What admitting an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Fresh(Admitted),
    /// Its id was decided before.
    Duplicate,
    /// It cannot be decided under the ruleset: the line is rejected.
    Invalid(InvalidEvent),
    /// Whether its id was decided before is unknown (the decided ids could not be read):
    /// the line is rejected with this reason, and its id is not remembered.
    Failed(String),
}

/// The index of `ev`'s event type, once the fields its type requires are checked: `id`,
/// `customer` and `wallet` are not empty, and no amount has more decimals than the
/// ruleset's currency.
pub fn event_kind(ruleset: &Ruleset, ev: &Event<'_>) -> Result<usize, InvalidEvent> {
    for (field, value) in [
        ("id", &ev.id),
        ("customer", &ev.customer),
        ("wallet", &ev.wallet),
    ] {
        if value.is_empty() {
            return Err(InvalidEvent::EmptyField(field));
        }
    }
    let allowed = ruleset.amount_decimals;
    if let Some(a) = ev.amount.filter(|a| a.scale() > allowed) {
        return Err(too_many_decimals(ruleset, "amount", a));
    }
    if let Some(a) = ev
        .face_values
        .iter()
        .flatten()
        .find(|a| a.scale() > allowed)
    {
        return Err(too_many_decimals(ruleset, "face_values", *a));
    }
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

#[cold]
fn too_many_decimals(ruleset: &Ruleset, field: &'static str, amount: Decimal) -> InvalidEvent {
    InvalidEvent::AmountDecimals {
        field,
        amount,
        decimals: amount.scale(),
        allowed: ruleset.amount_decimals,
        currency: ruleset
            .currency
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
    }
}

/// The hash a name or event id is known by.
pub(crate) fn name_hash(name: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(name.as_bytes())
}

/// The id of `name` in `ids`, assigning the next one (and calling `new`) if it is new.
pub(super) fn intern_in(ids: &mut NameIds, name: &str, new: impl FnOnce()) -> u32 {
    intern_hashed(ids, name_hash(name), new)
}

/// `intern_in`, by the name's hash.
fn intern_hashed(ids: &mut NameIds, hash: u128, new: impl FnOnce()) -> u32 {
    let (id, is_new) = ids.intern(hash);
    if is_new {
        new();
    }
    id
}

/// What admitting an event works out from the ruleset and the event alone: its type (once
/// its fields are checked), its date and time in the ruleset's zone, and its event-only
/// tests. No state goes into it, so any thread can work it out ahead of the deciding one:
/// the service does so on each request's own thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    kind: usize,
    date: NaiveDate,
    day: WindowDay,
    time: NaiveTime,
    known: KnownTests,
}

impl Prepared {
    /// The index of the event's type.
    pub fn kind(&self) -> usize {
        self.kind
    }

    /// The event's date as counters' windows bucket it.
    pub fn day(&self) -> WindowDay {
        self.day
    }

    /// Works out what `ev` says under `ruleset`; `dates` dates it (and keeps what the next
    /// event of the same quarter hour and day reuses).
    pub fn of(
        ruleset: &Ruleset,
        ev: &Event<'_>,
        dates: &mut LocalDates,
    ) -> Result<Self, InvalidEvent> {
        let kind = event_kind(ruleset, ev)?;
        let (date, day, time) = dates.local(&ruleset.timezone, &ev.at);
        let known = known_tests(ruleset, ev, kind, (date, time));
        Ok(Prepared {
            kind,
            date,
            day,
            time,
            known,
        })
    }
}

/// The keys of a state: customer and wallet ids by name hash, and the hashes of decided
/// event ids (the only state that grows with events rather than customers: in memory up to
/// a budget, then mostly in temporary files, see `SeenIds`). Lent out (`State::lend_keys`)
/// to admit events on another thread; the names stay with the state, which learns each new
/// one from the admission that introduced it.
#[derive(Debug, Default)]
pub struct Keys {
    pub(super) customers: NameIds,
    pub(super) wallets: NameIds,
    pub(super) seen: SeenIds,
    /// Admitting an event also dates it in the ruleset's zone.
    dates: LocalDates,
}

/// The hashes admitting an event looks up: its id's, its customer's and its wallet's.
#[derive(Debug, Clone, Copy)]
pub struct EventHashes {
    id: u128,
    customer: u128,
    wallet: u128,
}

impl EventHashes {
    pub fn of(ev: &Event<'_>) -> Self {
        EventHashes {
            id: name_hash(&ev.id),
            customer: name_hash(&ev.customer),
            wallet: name_hash(&ev.wallet),
        }
    }

    /// The hash the event's id is remembered by.
    pub fn id(&self) -> u128 {
        self.id
    }
}

impl Keys {
    /// Admits `ev`: a fresh event's id is remembered from here on, and a name new to the
    /// keys gets the next id and travels with the admission.
    pub fn admit(&mut self, ruleset: &Ruleset, ev: &Event<'_>) -> Admission {
        self.admit_hashed(ruleset, ev, EventHashes::of(ev))
    }

    /// Prefetches what admitting an event with these hashes will look up: the tables are
    /// far larger than the caches, so fetching the slots of a few events ahead lets their
    /// cache misses overlap instead of stalling one by one.
    pub fn prefetch(&self, h: &EventHashes) {
        self.seen.prefetch(h.id);
        self.customers.prefetch(h.customer);
        self.wallets.prefetch(h.wallet);
    }

    /// Prefetches the table slots where interning these names will look.
    pub fn prefetch_names(&self, customer: &str, wallet: Option<&str>) {
        self.customers.prefetch(name_hash(customer));
        if let Some(wallet) = wallet {
            self.wallets.prefetch(name_hash(wallet));
        }
    }

    /// `admit`, with the event's hashes computed already.
    pub fn admit_hashed(&mut self, ruleset: &Ruleset, ev: &Event<'_>, h: EventHashes) -> Admission {
        match Prepared::of(ruleset, ev, &mut self.dates) {
            Ok(prepared) => self.admit_prepared(ev, h, &prepared),
            Err(e) => Admission::Invalid(e),
        }
    }

    /// `admit`, with what the ruleset and the event alone say worked out already.
    pub fn admit_prepared(&mut self, ev: &Event<'_>, h: EventHashes, p: &Prepared) -> Admission {
        let id_hash = h.id;
        match self.seen.insert(id_hash) {
            Ok(true) => {}
            Ok(false) => return Admission::Duplicate,
            Err(e) => {
                return Admission::Failed(format!(
                    "cannot check whether the id was decided before: {e}"
                ))
            }
        }
        let mut new_customer = None;
        let customer = intern_hashed(&mut self.customers, h.customer, || {
            new_customer = Some(ev.customer.as_ref().into());
        });
        let mut new_wallet = None;
        let wallet = intern_hashed(&mut self.wallets, h.wallet, || {
            new_wallet = Some(ev.wallet.as_ref().into());
        });
        Admission::Fresh(Admitted {
            kind: p.kind,
            id_hash,
            customer,
            wallet,
            date: p.date,
            day: p.day,
            time: p.time,
            new_customer,
            new_wallet,
            known: p.known,
        })
    }

    /// The ids of an event's customer and wallet, if both are known (without interning).
    pub fn known_ids(&self, h: &EventHashes) -> Option<(u32, u32)> {
        Some((self.customers.get(h.customer)?, self.wallets.get(h.wallet)?))
    }

    /// The id of a customer's or wallet's name, if known.
    pub fn id_of(&self, scope: Scope, name: &str) -> Option<u32> {
        let ids = if scope == Scope::Wallet {
            &self.wallets
        } else {
            &self.customers
        };
        ids.get(name_hash(name))
    }
}
