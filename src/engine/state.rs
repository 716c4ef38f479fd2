//! What the engine remembers between events: customer and wallet facts, counters of limits,
//! the coupon ledger and the ids of events already decided. Customers and wallets are
//! interned to dense ids (`Keys`, `Names`) so that per-event lookups hash a string once.

use std::borrow::Cow;

use chrono::NaiveDate;
use fixedbitset::FixedBitSet;
use rust_decimal::Decimal;
use rustc_hash::FxHashSet;

use super::admit::{intern_in, name_hash, Admission, Admitted, EventHashes, Keys, Prepared};
use super::chunked::Chunked;
use super::counters::CounterTable;
use super::evaluate::InvalidEvent;
use super::footprint::footprint;
use super::ledger::{CouponLedger, LedgerStats, LedgerUnreadable};
use super::seen::SeenIds;
use crate::model::Event;
use crate::rules::ruleset::{FactType, Scope, Window, WindowDay};
use crate::rules::Ruleset;

/// Events per coupon granted, as a guess to reserve room in the ledger by: most events of
/// a promotion grant none.
const COUPON_EVERY: usize = 4;

/// The value of a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FactValue {
    /// Never set: counts read as 0, flags as false, dates and decimals as unknown.
    #[default]
    Absent,
    Int(i64),
    Date(NaiveDate),
    Bool(bool),
    Decimal(Decimal),
}

/// The names of interned customers or wallets, in id order. The ids themselves are found by
/// name in the state's `Keys`; a name is learnt here when the event that introduced it is
/// decided, or when a snapshot or a store interns it.
#[derive(Debug, Default)]
struct Names(Vec<Box<str>>);

impl Names {
    /// The name of an id.
    fn name(&self, id: u32) -> &str {
        self.0.get(id as usize).map_or("", |n| n)
    }

    /// Learns the name of the next id, if admitting gave one.
    fn learn(&mut self, name: Option<Box<str>>) {
        if let Some(name) = name {
            self.0.push(name);
        }
    }
}

/// Fact rows of one scope: `stride` values per interned id.
#[derive(Debug)]
pub struct FactTable {
    stride: usize,
    /// The rows one after another, in chunks that never move.
    values: Chunked<FactValue>,
}

/// Fact values per chunk, as a power of two (65,536: about 1.5 MB).
const FACT_CHUNK_BITS: u32 = 16;

impl FactTable {
    fn new(stride: usize) -> Self {
        FactTable {
            stride,
            values: Chunked::with_chunk_bits(FACT_CHUNK_BITS),
        }
    }

    /// Makes each next chunk ready ahead (`State::grow_ahead`).
    fn grow_ahead(&mut self) {
        self.values.grow_ahead();
    }

    fn ensure(&mut self, id: u32) {
        let needed = (id as usize + 1) * self.stride;
        while self.values.len() < needed {
            self.values.push(FactValue::Absent);
        }
    }

    /// The value of slot `slot` of `id`.
    pub fn get(&self, id: u32, slot: usize) -> FactValue {
        self.values
            .get(id as usize * self.stride + slot)
            .copied()
            .unwrap_or_default()
    }

    /// Prefetches the row of `id`: a slot in each cache line it may span, and its last.
    fn prefetch(&self, id: u32) {
        let first = id as usize * self.stride;
        let last = first + self.stride.saturating_sub(1);
        let per_line = (64 / std::mem::size_of::<FactValue>()).max(1);
        for at in (first..last).step_by(per_line).chain([last]) {
            if let Some(value) = self.values.get(at) {
                super::prefetch::prefetch(value);
            }
        }
    }

    /// Sets slot `slot` of `id`.
    fn set(&mut self, id: u32, slot: usize, value: FactValue) {
        self.ensure(id);
        if let Some(v) = self.values.get_mut(id as usize * self.stride + slot) {
            *v = value;
        }
    }
}

/// Key of a counter: which counter, whose (customer or wallet id, 0 for all), which day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub counter: u32,
    /// Whose ids `owner` is among.
    pub per: Scope,
    pub owner: u32,
    /// Days since the common era of the window's day, or `i32::MIN` for no window.
    pub day: i32,
}

impl CounterKey {
    /// The key of `counter`, kept per `per` (and per bucket of `window`), for an event of
    /// this customer, wallet and date.
    pub fn new(
        counter: usize,
        per: Scope,
        window: Window,
        (customer, wallet, date): (u32, u32, WindowDay),
    ) -> Self {
        CounterKey {
            counter: counter as u32,
            per,
            owner: match per {
                Scope::Customer => customer,
                Scope::Wallet => wallet,
                Scope::All => 0,
            },
            day: window.bucket(date),
        }
    }

    /// The same counter of the same owner, in the bucket starting on `day`.
    pub fn in_bucket(self, day: i32) -> Self {
        CounterKey { day, ..self }
    }
}

/// The keys of counters whose index slots `State::prefetch` fetched, to fetch the counters
/// themselves on its next call.
#[derive(Debug, Default)]
pub struct StagedCounters(Vec<CounterKey>);

/// What a counter has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub grants: u64,
    pub coupons: u64,
    pub value: Decimal,
}

/// A coupon in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRecord {
    pub wallet: u32,
    pub face_value: Decimal,
    pub min_spend: Decimal,
    pub usable_for: u64,
    pub credit_by: NaiveDate,
    pub valid_until: Option<NaiveDate>,
    pub used: bool,
}

/// Everything the engine remembers. Its fields are private: every change goes through a
/// method that records it for the store (`set_fact`, `tally_mut`, `insert_coupon`,
/// `spend_coupon`), and coupons are read through `coupon`, which loads a spilled one first.
#[derive(Debug)]
pub struct State {
    /// Customer and wallet ids by name, and the decided event ids: lent to the reading
    /// thread during a parallel run (`lend_keys`).
    keys: Keys,
    customers: Names,
    wallets: Names,
    customer_facts: FactTable,
    wallet_facts: FactTable,
    counters: CounterTable,
    /// How many counters each customer or wallet keeps, a window's bucket at a time: the
    /// counters to make room for per owner a snapshot brings (`expect_customers`).
    counters_per_owner: usize,
    coupons: CouponLedger,
    /// What changed since the last checkpoint, when a store keeps the state (else `None`).
    dirty: Option<Dirty>,
    /// The changes of a checkpoint before, cleared (`recycle_changes`): the next ones are
    /// recorded into them rather than into sets grown again from empty, every checkpoint.
    spare_changes: Dirty,
}

/// What changed since the last checkpoint: the rows a store must write.
#[derive(Debug, Default)]
struct Dirty {
    /// Customer ids, a bit each: cheaper to mark than a set to insert into, and they list
    /// in id order, which walks the fact table forwards.
    customers: FixedBitSet,
    wallets: FixedBitSet,
    counters: FxHashSet<CounterKey>,
    /// Coupons by ledger index: the ledger keeps them in memory (see `settle_coupons`).
    coupons: FixedBitSet,
    seen: Vec<u128>,
}

impl Dirty {
    /// Nothing changed, the room kept.
    fn clear(&mut self) {
        self.customers.clear();
        self.wallets.clear();
        self.counters.clear();
        self.coupons.clear();
        self.seen.clear();
    }
}

/// What changed since the last checkpoint, read from the state it changed. It borrows the
/// state, so no spill renumbers the coupons it lists while it is read.
#[derive(Debug)]
pub struct Changes<'s> {
    state: &'s State,
    dirty: Dirty,
}

impl<'s> Changes<'s> {
    /// The state the changes are in, to read their values from.
    pub fn state(&self) -> &'s State {
        self.state
    }

    /// The customers (or wallets) whose facts changed, in id order.
    pub fn owners(&self, scope: Scope) -> impl Iterator<Item = u32> + '_ {
        let owners = if scope == Scope::Wallet {
            &self.dirty.wallets
        } else {
            &self.dirty.customers
        };
        owners.ones().filter_map(|o| u32::try_from(o).ok())
    }

    /// The counters that changed, with their tallies.
    pub fn counters(&self) -> impl Iterator<Item = (CounterKey, Tally)> + '_ {
        let state = self.state;
        let counters = self.dirty.counters.iter();
        counters.filter_map(move |k| Some((*k, state.tally(k)?)))
    }

    /// The coupons granted or spent, with their ids.
    pub fn coupons(&self) -> impl Iterator<Item = (&'s str, &'s CouponRecord)> + '_ {
        let ledger = &self.state.coupons;
        self.dirty
            .coupons
            .ones()
            .filter_map(move |i| ledger.entry(i))
    }

    /// The hashes of the ids of the events decided.
    pub fn seen(&self) -> &[u128] {
        &self.dirty.seen
    }

    /// Done with: what is left to hand back to the state (`State::recycle_changes`).
    pub fn done(self) -> Recorded {
        Recorded(self.dirty)
    }
}

/// Changes read and done with, to record the next ones into.
#[derive(Debug)]
pub struct Recorded(Dirty);

impl State {
    /// Empty state for `ruleset`.
    pub fn new(ruleset: &Ruleset) -> Self {
        State {
            keys: Keys::default(),
            customers: Names::default(),
            wallets: Names::default(),
            customer_facts: FactTable::new(ruleset.facts_of(Scope::Customer).count()),
            wallet_facts: FactTable::new(ruleset.facts_of(Scope::Wallet).count()),
            counters: CounterTable::default(),
            counters_per_owner: ruleset
                .counter_shapes()
                .iter()
                .filter(|&&(_, per, _)| per != Scope::All)
                .count(),
            coupons: CouponLedger::default(),
            dirty: None,
            spare_changes: Dirty::default(),
        }
    }

    /// Keeps at most about `bytes` of decided ids in memory, the rest in temporary files
    /// (see `SeenIds`). For a fresh state: the ids it holds are forgotten.
    pub fn limit_id_memory(&mut self, bytes: usize) {
        self.keys.seen = SeenIds::with_budget(bytes);
    }

    /// Writes decided ids past their budget to temporary files on a helper thread, so that
    /// deciding goes on meanwhile (see `SeenIds::spill_aside`): for the service.
    pub fn spill_ids_aside(&mut self) {
        self.keys.seen.spill_aside();
    }

    /// Grows the large tables (names, facts, coupons) into room helper threads made
    /// ready, rather than into fresh memory on the deciding thread, whose first touch
    /// stalled it for hundreds of milliseconds: for the service. Both rooms are held while
    /// the values move, so a batch run, which counts its peak memory, grows in place.
    pub fn grow_ahead(&mut self) {
        self.keys.customers.grow_ahead();
        self.keys.wallets.grow_ahead();
        self.customer_facts.grow_ahead();
        self.wallet_facts.grow_ahead();
        self.coupons.grow_ahead();
    }

    /// Keeps at most about `bytes` of coupons in memory, the rest in temporary files (see
    /// `CouponLedger`). For a fresh state: the coupons it holds are forgotten.
    pub fn limit_coupon_memory(&mut self, bytes: usize) {
        self.coupons = CouponLedger::with_budget(bytes);
    }

    /// Makes room for about `n` more decided events, so the set of their ids is not rebuilt
    /// again and again as it grows.
    pub fn expect_events(&mut self, n: usize) {
        self.keys.seen.reserve(n);
        self.coupons.reserve(n / COUPON_EVERY);
    }

    /// Runs `load` (reading a customer snapshot, say) while another thread makes room for
    /// about `events` events (`expect_events`) and touches every page of the decided-ids
    /// table: a fresh table's pages are otherwise provided by the kernel one fault at a
    /// time as the first events land on them, on the reading thread, when the second core
    /// has little to do during `load`.
    pub fn expect_input_while<T>(
        &mut self,
        events: usize,
        load: impl FnOnce(&mut State) -> T,
    ) -> T {
        let mut seen = std::mem::take(&mut self.keys.seen);
        let (out, seen) = std::thread::scope(|scope| {
            let ready = scope.spawn(move || {
                seen.reserve(events);
                seen.touch_pages();
                seen
            });
            let out = load(self);
            (out, ready.join())
        });
        match seen {
            Ok(seen) => self.keys.seen = seen,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        // The decided ids have their room already: this reserves the ledger's.
        self.expect_events(events);
        out
    }

    /// Waits for the merges of temporary files still running, so that the warnings and the
    /// ledger's statistics that follow are final.
    pub fn finish_merges(&mut self) {
        self.keys.seen.finish_merges();
        self.coupons.finish_merges();
    }

    /// What went wrong with the temporary files of decided ids and coupons, once each: a
    /// file that could not be written leaves its entries in memory, past the budget, and
    /// one that could not be merged leaves more files; nothing is lost either way.
    pub fn storage_warnings(&self) -> impl Iterator<Item = &str> {
        [self.keys.seen.warning(), self.coupons.warning()]
            .into_iter()
            .flatten()
    }

    /// Makes room for about `n` more customers and wallets, as a snapshot of `n` rows will
    /// bring, so their tables are not rebuilt again and again as they grow. Counters are
    /// guessed at one per owner and per counter kept per owner, so that a stream counting
    /// per customer does not rebuild the counters' table (its largest) as it fills.
    pub fn expect_customers(&mut self, n: usize) {
        self.keys.customers.reserve(n);
        self.keys.wallets.reserve(n);
        self.customers.0.reserve(n);
        self.wallets.0.reserve(n);
        self.counters
            .reserve(n.saturating_mul(self.counters_per_owner.max(1)));
    }

    /// Starts recording changes for a store's checkpoints.
    pub fn track_changes(&mut self) {
        self.dirty.get_or_insert_with(Dirty::default);
    }

    /// Takes the changes recorded since the last call.
    pub fn take_changes(&mut self) -> Changes<'_> {
        let dirty = match &mut self.dirty {
            Some(d) => std::mem::replace(d, std::mem::take(&mut self.spare_changes)),
            None => Dirty::default(),
        };
        Changes { state: self, dirty }
    }

    /// Keeps the room of changes done with for the next ones.
    pub fn recycle_changes(&mut self, Recorded(mut dirty): Recorded) {
        dirty.clear();
        self.spare_changes = dirty;
    }

    /// The name of a customer's or wallet's id.
    pub fn name(&self, scope: Scope, id: u32) -> &str {
        if scope == Scope::Wallet {
            self.wallets.name(id)
        } else {
            self.customers.name(id)
        }
    }

    /// A fact of a customer or wallet.
    #[inline]
    pub fn fact(&self, scope: Scope, owner: u32, slot: usize) -> FactValue {
        self.table(scope).get(owner, slot)
    }

    /// The tally of a counter, if it has counted anything.
    #[inline]
    pub fn tally(&self, key: &CounterKey) -> Option<Tally> {
        self.counters.get(key).copied()
    }

    /// Sets a fact of a customer or wallet.
    pub fn set_fact(&mut self, scope: Scope, owner: u32, slot: usize, value: FactValue) {
        self.table_mut(scope).set(owner, slot, value);
        if let Some(d) = &mut self.dirty {
            if scope == Scope::Wallet {
                d.wallets.grow_and_insert(owner as usize);
            } else {
                d.customers.grow_and_insert(owner as usize);
            }
        }
    }

    /// The tally of a counter, to update.
    pub fn tally_mut(&mut self, key: CounterKey) -> &mut Tally {
        if let Some(d) = &mut self.dirty {
            d.counters.insert(key);
        }
        self.counters.tally_mut(key)
    }

    /// Adds a coupon to the ledger.
    pub fn insert_coupon(&mut self, id: &str, record: CouponRecord) {
        let i = self.coupons.insert(id, record);
        if let Some(d) = &mut self.dirty {
            d.coupons.grow_and_insert(i);
        }
    }

    /// A point between events where the ledger may spill coupons to a file (keeping those
    /// a store has yet to save in memory).
    pub fn settle_coupons(&mut self) {
        self.coupons
            .settle(self.dirty.as_mut().map(|d| &mut d.coupons));
    }

    /// Readies the ledger for deciding an event that names the coupons `ids`: a spill if
    /// one is due, then those coupons in memory, so that one that cannot be read back
    /// stops the event before anything of it changed, and `coupon` finds them without a
    /// read.
    pub(super) fn prepare_coupons<'i>(
        &mut self,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<(), LedgerUnreadable> {
        self.settle_coupons();
        for id in ids {
            self.coupons.promote(id)?;
        }
        Ok(())
    }

    /// The coupon `id`, brought back into memory first if it was spilled, so that it never
    /// reads as unknown; an error if it could not be read back. After `prepare_coupons`
    /// named it, it is in memory already.
    #[inline]
    pub fn coupon(&mut self, id: &str) -> Result<Option<&CouponRecord>, LedgerUnreadable> {
        let i = self.coupons.load(id)?;
        Ok(i.and_then(|i| self.coupons.record(i)))
    }

    /// Marks a coupon spent (bringing it back into memory first, as `coupon`).
    pub fn spend_coupon(&mut self, id: &str) -> Result<(), LedgerUnreadable> {
        let Some(i) = self.coupons.load(id)? else {
            return Ok(());
        };
        if let Some(c) = self.coupons.record_mut(i) {
            c.used = true;
        }
        if let Some(d) = &mut self.dirty {
            d.coupons.grow_and_insert(i);
        }
        Ok(())
    }

    /// Where the coupons are, for a run's statistics.
    pub fn coupon_stats(&self) -> LedgerStats {
        self.coupons.stats()
    }

    /// Makes the ledger spill every coupon at each settle into runs that cannot be read
    /// back, for tests of what a run does when it meets one.
    #[cfg(all(test, unix))]
    pub(crate) fn make_coupon_runs_unreadable(&mut self) {
        self.coupons = CouponLedger::with_unreadable_runs();
    }

    /// The fact table of a scope.
    pub fn table(&self, scope: Scope) -> &FactTable {
        if scope == Scope::Wallet {
            &self.wallet_facts
        } else {
            &self.customer_facts
        }
    }

    fn table_mut(&mut self, scope: Scope) -> &mut FactTable {
        if scope == Scope::Wallet {
            &mut self.wallet_facts
        } else {
            &mut self.customer_facts
        }
    }

    /// Admits `ev` with the state's own keys (see `Keys::admit`); `decide` learns its names.
    pub fn admit(&mut self, ruleset: &Ruleset, ev: &Event<'_>) -> Admission {
        self.keys.admit(ruleset, ev)
    }

    /// `admit`, with the event's hashes worked out already (on another thread, say).
    pub fn admit_hashed(&mut self, ruleset: &Ruleset, ev: &Event<'_>, h: EventHashes) -> Admission {
        self.keys.admit_hashed(ruleset, ev, h)
    }

    /// `admit`, with what the ruleset and the event alone say worked out already
    /// (`Prepared`, on another thread, say).
    pub fn admit_prepared(&mut self, ev: &Event<'_>, h: EventHashes, p: &Prepared) -> Admission {
        self.keys.admit_prepared(ev, h, p)
    }

    /// Prefetches what admitting an event with these hashes, or asking whether its id was
    /// decided, will look up (see `Keys::prefetch`).
    pub fn prefetch_keys(&self, h: &EventHashes) {
        self.keys.prefetch(h);
    }

    /// The id of a customer's or wallet's name, assigning the next one if it is new.
    pub fn intern(&mut self, scope: Scope, name: &str) -> u32 {
        let (ids, names) = if scope == Scope::Wallet {
            (&mut self.keys.wallets, &mut self.wallets)
        } else {
            (&mut self.keys.customers, &mut self.customers)
        };
        intern_in(ids, name, || names.0.push(name.into()))
    }

    /// Prefetches where interning these names will look (see `Keys::prefetch`).
    pub fn prefetch_names(&self, customer: &str, wallet: Option<&str>) {
        self.keys.prefetch_names(customer, wallet);
    }

    /// The id of a customer's or wallet's name, if known.
    pub fn id_of(&self, scope: Scope, name: &str) -> Option<u32> {
        self.keys.id_of(scope, name)
    }

    /// Lends the keys out to admit events elsewhere; until they are restored, events are
    /// decided only as admitted with them (`decide`).
    pub fn lend_keys(&mut self) -> Keys {
        std::mem::take(&mut self.keys)
    }

    /// Takes lent keys back; `undecided` are admissions made with them that were never
    /// decided: their ids are forgotten, so they are decided when they come again.
    pub fn restore_keys(&mut self, keys: Keys, undecided: impl IntoIterator<Item = Admitted>) {
        self.keys = keys;
        for a in undecided {
            self.keys.seen.remove(a.id_hash);
            self.learn_names(a);
        }
    }

    /// Prefetches the fact rows and limit counters that deciding the admitted events among
    /// `next`, soon, will read: the tables are far larger than the caches, so fetching what
    /// a few events need ahead lets their cache misses overlap instead of stalling deciding
    /// one by one (see `Consume::ahead`). A counter takes two steps, its index slot and
    /// then the counter the slot points to: `staged` keeps the keys whose slots the last
    /// call fetched, and this call fetches their counters.
    pub fn prefetch(&self, ruleset: &Ruleset, next: &[Admission], staged: &mut StagedCounters) {
        let admitted = next.iter().filter_map(|a| match a {
            Admission::Fresh(a) => Some((a.kind, a.customer, a.wallet, a.day)),
            _ => None,
        });
        self.prefetch_reads(ruleset, admitted, staged);
    }

    /// `prefetch`, for events not yet admitted (by their hashes and what they say alone):
    /// those whose customer and wallet the state knows already. The service admits each
    /// event only as it decides it.
    pub fn prefetch_prepared<'p>(
        &self,
        ruleset: &Ruleset,
        next: impl IntoIterator<Item = (&'p EventHashes, &'p Prepared)>,
        staged: &mut StagedCounters,
    ) {
        let known = next.into_iter().filter_map(|(h, p)| {
            let (customer, wallet) = self.keys.known_ids(h)?;
            Some((p.kind(), customer, wallet, p.day()))
        });
        self.prefetch_reads(ruleset, known, staged);
    }

    /// Prefetches what deciding events of these types, customers, wallets and days reads.
    fn prefetch_reads(
        &self,
        ruleset: &Ruleset,
        next: impl Iterator<Item = (usize, u32, u32, WindowDay)>,
        staged: &mut StagedCounters,
    ) {
        for key in staged.0.drain(..) {
            self.counters.prefetch_entry(&key);
        }
        for (kind, customer, wallet, day) in next {
            let Some(reads) = ruleset.reads_by_type.get(kind) else {
                continue;
            };
            if reads.customer {
                self.customer_facts.prefetch(customer);
            }
            if reads.wallet {
                self.wallet_facts.prefetch(wallet);
            }
            for &(counter, per, window) in &reads.counters {
                let key = CounterKey::new(counter, per, window, (customer, wallet, day));
                self.counters.prefetch_slot(&key);
                staged.0.push(key);
            }
        }
    }

    /// Records what admitting `a` changed in the keys: new names, and the decided id for
    /// the store.
    pub(super) fn record_admission(&mut self, a: Admitted) {
        if let Some(d) = &mut self.dirty {
            d.seen.push(a.id_hash);
        }
        self.learn_names(a);
    }

    fn learn_names(&mut self, a: Admitted) {
        self.customers.learn(a.new_customer);
        self.wallets.learn(a.new_wallet);
    }

    /// Remembers a decided id (as a store loads them).
    pub fn remember_id(&mut self, hash: u128) {
        self.keys.seen.remember(hash);
    }

    /// Remembers that the event `id` was decided (as the shared state reads its answers).
    pub fn remember_decided(&mut self, id: &str) {
        self.remember_id(name_hash(id));
    }

    /// The coupons of a wallet, in the order they were granted; `None` when some coupons
    /// are in temporary files (see `limit_coupon_memory`), where they cannot be listed.
    pub fn wallet_coupons(&self, wallet: &str) -> Option<Vec<(&str, &CouponRecord)>> {
        if self.coupons.stats().on_disk > 0 {
            return None;
        }
        let Some(id) = self.id_of(Scope::Wallet, wallet) else {
            return Some(Vec::new());
        };
        Some(
            (0..self.coupons.in_memory())
                .filter_map(|i| self.coupons.entry(i))
                .filter(|(_, c)| c.wallet == id)
                .collect(),
        )
    }

    /// The counters kept per customer (or per wallet) for `owner`, with their tallies.
    pub fn counters_of(&self, per: Scope, owner: u32) -> Vec<(CounterKey, Tally)> {
        self.counters
            .iter()
            .filter(|(k, _)| k.per == per && k.owner == owner)
            .map(|(k, t)| (*k, *t))
            .collect()
    }

    /// Whether an event with these hashes (its id's) was decided, changing nothing. An
    /// error means the decided ids could not be read back from their temporary files.
    pub fn decided(&self, keys: &EventHashes) -> std::io::Result<bool> {
        self.keys.seen.contains(keys.id())
    }

    /// Copies into `scratch` what deciding `ev` reads of this state and `scratch` does not
    /// hold yet: its customer's and wallet's facts, the counters its type's limits count on
    /// (for its date) and the coupons it names. Deciding events on a scratch state so filled
    /// (one by one, in order) decides what they would decide here, and changes nothing
    /// here: a dry run.
    pub fn copy_into(
        &mut self,
        scratch: &mut State,
        ruleset: &Ruleset,
        ev: &Event<'_>,
    ) -> Result<Result<(), InvalidEvent>, LedgerUnreadable> {
        let reach = match footprint(ruleset, ev) {
            Ok(reach) => reach,
            Err(e) => return Ok(Err(e)),
        };
        self.prepare_coupons(reach.coupons.iter().copied())?;
        let here = (
            self.id_of(Scope::Customer, reach.customer),
            self.id_of(Scope::Wallet, reach.wallet),
        );
        let there = (
            self.adopt(scratch, ruleset, Scope::Customer, reach.customer),
            self.adopt(scratch, ruleset, Scope::Wallet, reach.wallet),
        );
        for &(counter, per, day) in &reach.counters {
            let (from, to) = match per {
                Scope::Customer => (here.0, there.0),
                Scope::Wallet => (here.1, there.1),
                Scope::All => (Some(0), 0),
            };
            let key = |owner| CounterKey {
                counter: counter as u32,
                per,
                owner,
                day,
            };
            let Some(tally) = from.and_then(|o| self.tally(&key(o))) else {
                continue;
            };
            if scratch.tally(&key(to)).is_none() {
                *scratch.tally_mut(key(to)) = tally;
            }
        }
        for id in ev.coupons.iter().flatten() {
            if scratch.coupon(id)?.is_some() {
                continue;
            }
            if let Some(record) = self.coupon(id)? {
                let mut record = record.clone();
                let owner = self.wallets.name(record.wallet);
                record.wallet = self.adopt(scratch, ruleset, Scope::Wallet, owner);
                scratch.insert_coupon(id, record);
            }
        }
        Ok(Ok(()))
    }

    /// The id of a customer or wallet in `scratch`; one new to it gets its facts from here.
    fn adopt(&self, scratch: &mut State, ruleset: &Ruleset, scope: Scope, name: &str) -> u32 {
        if let Some(id) = scratch.id_of(scope, name) {
            return id;
        }
        let to = scratch.intern(scope, name);
        if let Some(from) = self.id_of(scope, name) {
            for f in ruleset.facts_of(scope) {
                scratch.set_fact(scope, to, f.slot, self.fact(scope, from, f.slot));
            }
        }
        to
    }

    /// Seeds the facts of one snapshot row, the row of `line`. `value(name)` gives the
    /// row's raw value of a snapshot column; each fact that names a column is parsed by its
    /// type. Nothing of a row is applied if one of its values is not of its fact's type, or
    /// if an earlier row of the same load (`seen`) gave one of its owners' facts another
    /// value: a conflicting duplicate. A row repeating an earlier one is applied (a no-op).
    pub fn apply_snapshot<'v>(
        &mut self,
        ruleset: &Ruleset,
        customer: &str,
        wallet: Option<&str>,
        value: impl Fn(&str) -> Option<SnapshotValue<'v>>,
        line: usize,
        seen: &mut SnapshotSeen,
    ) -> Result<(), String> {
        let cust = self.intern(Scope::Customer, customer);
        let wal = wallet.map(|w| self.intern(Scope::Wallet, w));
        let mut values = std::mem::take(&mut seen.values);
        values.clear();
        let parsed = self.snapshot_values(ruleset, cust, wal, value, line, seen, &mut values);
        if parsed.is_ok() {
            for &(fact, owner, v) in &values {
                if let Some(f) = ruleset.facts.get(fact) {
                    self.set_fact(f.scope, owner, f.slot, v);
                }
            }
            seen.mark(Scope::Customer, cust, line);
            if let Some(w) = wal {
                seen.mark(Scope::Wallet, w, line);
            }
        }
        seen.values = values;
        parsed
    }

    /// The facts a snapshot row sets, checked against what earlier rows of the load set.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one row, taken apart once"
    )]
    fn snapshot_values<'v>(
        &self,
        ruleset: &Ruleset,
        cust: u32,
        wal: Option<u32>,
        value: impl Fn(&str) -> Option<SnapshotValue<'v>>,
        line: usize,
        seen: &SnapshotSeen,
        values: &mut Vec<(usize, u32, FactValue)>,
    ) -> Result<(), String> {
        for (i, fact) in ruleset.facts.iter().enumerate() {
            let Some(column) = &fact.snapshot else {
                continue;
            };
            let Some(raw) = value(column) else { continue };
            let parsed =
                parse_snapshot_value(fact.kind, &raw).map_err(|e| format!("`{column}`: {e}"))?;
            let owner = match fact.scope {
                Scope::Wallet => match wal {
                    Some(w) => w,
                    None => continue,
                },
                _ => cust,
            };
            if let Some(first) = seen.first_line(fact.scope, owner) {
                let earlier = self.fact(fact.scope, owner, fact.slot);
                if earlier != parsed && first != line {
                    let whose = if fact.scope == Scope::Wallet {
                        "wallet"
                    } else {
                        "customer"
                    };
                    return Err(format!(
                        "`{column}`: a duplicate row of this {whose}, conflicting with line {first}: {} there, {} here",
                        earlier.describe(),
                        parsed.describe()
                    ));
                }
            }
            values.push((i, owner, parsed));
        }
        Ok(())
    }
}

/// The owners one snapshot load has set facts of, with the line of the first row that did,
/// to find duplicate rows; and a scratch list of a row's values.
#[derive(Debug, Default)]
pub struct SnapshotSeen {
    customers: Vec<u32>,
    wallets: Vec<u32>,
    values: Vec<(usize, u32, FactValue)>,
}

impl SnapshotSeen {
    /// The line of the first row of this load that named `owner`.
    pub fn first_line(&self, scope: Scope, owner: u32) -> Option<usize> {
        let lines = if scope == Scope::Wallet {
            &self.wallets
        } else {
            &self.customers
        };
        lines
            .get(owner as usize)
            .filter(|&&l| l != 0)
            .map(|&l| l as usize)
    }

    fn mark(&mut self, scope: Scope, owner: u32, line: usize) {
        let lines = if scope == Scope::Wallet {
            &mut self.wallets
        } else {
            &mut self.customers
        };
        let i = owner as usize;
        if lines.len() <= i {
            lines.resize(i + 1, 0);
        }
        if let Some(l) = lines.get_mut(i).filter(|l| **l == 0) {
            *l = u32::try_from(line).unwrap_or(u32::MAX).max(1);
        }
    }
}

impl FactValue {
    /// The value as a snapshot would give it, for messages.
    fn describe(&self) -> String {
        match self {
            FactValue::Absent => "none".into(),
            FactValue::Int(i) => i.to_string(),
            FactValue::Date(d) => d.to_string(),
            FactValue::Bool(b) => b.to_string(),
            FactValue::Decimal(d) => d.to_string(),
        }
    }
}

/// A raw snapshot cell: JSON and YAML keep their types, CSV gives text, borrowed from the
/// file where it can be.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotValue<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

fn parse_snapshot_value(kind: FactType, raw: &SnapshotValue) -> Result<FactValue, String> {
    use SnapshotValue as S;
    let text = match raw {
        S::Text(t) if t.trim().is_empty() => return Ok(FactValue::Absent),
        S::Text(t) => t.trim(),
        S::Int(i) => {
            return match kind {
                FactType::Count if *i >= 0 => Ok(FactValue::Int(*i)),
                FactType::Count => Err(format!("expected {}, found {i}", describe(kind))),
                FactType::Decimal => Ok(FactValue::Decimal(Decimal::from(*i))),
                _ => Err(format!("expected {}, found the number {i}", describe(kind))),
            }
        }
        S::Bool(b) => {
            return match kind {
                FactType::Flag => Ok(FactValue::Bool(*b)),
                _ => Err(format!("expected {}, found {b}", describe(kind))),
            }
        }
    };
    let bad = || format!("expected {}, found `{text}`", describe(kind));
    Ok(match kind {
        FactType::Count => FactValue::Int(
            text.parse()
                .ok()
                .filter(|n: &i64| *n >= 0)
                .ok_or_else(bad)?,
        ),
        FactType::Date => FactValue::Date(crate::model::digits::date(text).ok_or_else(bad)?),
        FactType::Flag => FactValue::Bool(match text {
            "true" | "TRUE" | "True" | "1" | "yes" => true,
            "false" | "FALSE" | "False" | "0" | "no" => false,
            _ => return Err(bad()),
        }),
        // A JSON snapshot gives numbers as written: `2.50`, or `7e2`.
        FactType::Decimal => FactValue::Decimal(
            text.parse()
                .or_else(|_| Decimal::from_scientific(text))
                .map_err(|_| bad())?,
        ),
    })
}

fn describe(kind: FactType) -> &'static str {
    match kind {
        FactType::Count => "a whole number, 0 or more",
        FactType::Date => "a date YYYY-MM-DD",
        FactType::Flag => "true or false",
        FactType::Decimal => "a decimal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes taken, done with and recycled keep their room, not their contents: the
    /// next ones taken are only what changed since.
    #[test]
    fn recycled_changes_hold_only_the_next_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let rules = crate::rules::load_ruleset(&dir).unwrap();
        let mut state = State::new(&rules);
        state.track_changes();
        let coupon = |wallet| CouponRecord {
            wallet,
            face_value: Decimal::ONE,
            min_spend: Decimal::ZERO,
            usable_for: 1,
            credit_by: NaiveDate::MIN,
            valid_until: None,
            used: false,
        };
        let change = |state: &mut State, name: &str| {
            let owner = state.intern(Scope::Customer, name);
            state.set_fact(Scope::Customer, owner, 0, FactValue::Int(1));
            let key = CounterKey {
                counter: 0,
                per: Scope::Customer,
                owner,
                day: 1,
            };
            state.tally_mut(key).grants += 1;
            state.insert_coupon(&format!("cp-{name}"), coupon(owner));
            owner
        };
        let taken = |state: &mut State| {
            let changes = state.take_changes();
            let owners: Vec<u32> = changes.owners(Scope::Customer).collect();
            let mut counters: Vec<u32> = changes.counters().map(|(k, _)| k.owner).collect();
            let mut coupons: Vec<String> = changes.coupons().map(|(id, _)| id.into()).collect();
            let recorded = changes.done();
            state.recycle_changes(recorded);
            counters.sort_unstable();
            coupons.sort_unstable();
            (owners, counters, coupons)
        };
        let (a, b) = (change(&mut state, "a"), change(&mut state, "b"));
        let coupons = |names: &[&str]| names.iter().map(|n| format!("cp-{n}")).collect();
        assert_eq!(
            taken(&mut state),
            (vec![a, b], vec![a, b], coupons(&["a", "b"]))
        );
        let c = change(&mut state, "c");
        assert_eq!(taken(&mut state), (vec![c], vec![c], coupons(&["c"])));
        assert_eq!(taken(&mut state), (vec![], vec![], coupons(&[])));
    }

    #[test]
    fn snapshot_decimals_are_read_as_written() {
        let decimal =
            |t: &str| parse_snapshot_value(FactType::Decimal, &SnapshotValue::Text(t.into()));
        match decimal("2.50") {
            Ok(FactValue::Decimal(d)) => assert_eq!((d.mantissa(), d.scale()), (250, 2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(decimal("7e2"), Ok(FactValue::Decimal(Decimal::from(700))));
        assert_eq!(decimal(" 0.1 "), Ok(FactValue::Decimal(Decimal::new(1, 1))));
        assert!(decimal("ten").is_err());
    }
}
