//! The deciding thread. Requests queue here; the thread takes the requests waiting, until
//! they hold `GROUP_EVENTS` (a group), and decides their events one at a time against the
//! one state, in the order they came, then hands what the group changed and its answers to
//! a commit. The committing threads write every group waiting in one transaction and answer
//! the requests once it is durable. Deciding one event at a time is what makes limits exact
//! under any concurrency; committing many requests at a time is what makes a durable answer
//! cheap (one sync for every request waiting). While a commit is written and synced,
//! deciding goes on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use super::answers::Answers;
use super::body::{field, BodyEvent, ParsedBody};
use super::error::ApiError;
use super::live::Live;
use super::metrics::Metrics;
use crate::engine::{
    decide, Evaluation, EventHashes, InvalidEvent, Outcome, Prepared, StagedCounters, State,
};
use crate::io::output::{write_json_line, LineHeads};
use crate::model::DecisionKind;
use crate::store::{GroupCommits, Store, StoredAnswer, Then};
use prometheus_client::metrics::counter::Counter;
use rustc_hash::FxHashMap;

/// The body hash of an id decided by a batch run, which kept no answer: any body replays.
const NO_HASH: [u8; 16] = [0; 16];

/// The most requests decided and committed as one group.
const MAX_GROUP: usize = 512;

/// Events from which a group takes no more requests. A smaller group hands its commit over
/// sooner, and the next one is decided while it is written and synced: eight connections
/// sending 100 events each otherwise came as one group, and deciding and committing took
/// turns.
const GROUP_EVENTS: usize = 400;

/// How many events ahead of the one looked up the tables of decided ids and names are
/// prefetched: far larger than the caches, they would otherwise cost a miss per lookup.
const PREFETCH_AHEAD: usize = 4;

/// How many events at a time the facts and counters they read are prefetched, a run ahead
/// of deciding them (as a batch run does, `Consume::ahead`).
const PREFETCH_RUN: usize = 8;

/// A request for decisions.
#[derive(Debug)]
pub struct Job {
    /// The ruleset live when the request came: it decides the request.
    pub live: Arc<Live>,
    /// The request's events, read.
    pub events: ParsedBody,
    /// What the ruleset says of each event alone, worked out on the request's thread.
    pub prepared: Vec<Prepared>,
    /// Whether they came as an array (errors name fields as `[i].name`).
    pub many: bool,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Vec<Answer>, ApiError>>,
}

/// What the service answers for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub event_id: Arc<str>,
    pub version: Arc<str>,
    pub replay: bool,
    pub dry_run: bool,
    /// The decisions, a JSON array of decision lines.
    pub decisions: Arc<str>,
}

/// What the deciding thread is sent.
#[derive(Debug)]
pub enum Msg {
    Decide(Job),
    /// Commit and answer what was sent before, then end.
    Stop,
}

/// The state, shared between the deciding thread and the readers of coupons and facts.
pub type SharedState = Arc<Mutex<State>>;

/// Locks the state; a panic elsewhere while it was held does not make it unreadable.
pub fn lock(state: &SharedState) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where decisions become durable: a state directory, or nowhere (in memory).
pub struct Durable {
    pub store: Store,
    pub commits: GroupCommits,
}

/// The deciding thread's own data.
pub struct Decider {
    pub jobs: Receiver<Msg>,
    pub state: SharedState,
    pub durable: Option<Durable>,
    pub metrics: Arc<Metrics>,
    /// Cleared when a commit fails: the service then decides nothing more.
    pub ready: Arc<AtomicBool>,
    /// The answers given, by event id.
    pub answers: Answers,
    pub core: Deciding,
    /// Requests decided and not yet handed to a commit, and the ruleset of the last.
    pub decided: Waiting,
    pub live: Option<Arc<Live>>,
    /// The commits handed over whose results are not yet taken, oldest first: their batch
    /// of answers.
    pub committing: VecDeque<Option<i64>>,
    /// What the requests decided since the last commit leave behind, freed with that commit
    /// on the syncing thread rather than here.
    pub spent: Spent,
}

/// Request bodies decided, and batches of answers committed (read from the state since):
/// thousands of small allocations per group, whose freeing the one deciding thread is
/// spared.
#[derive(Default)]
pub struct Spent {
    bodies: Vec<ParsedBody>,
    answers: Vec<Arc<Vec<StoredAnswer>>>,
}

/// Decides the events of requests against a state: what the deciding thread runs on its
/// state, and each transaction on the shared state (`shared`) runs on the rows it loaded.
pub struct Deciding {
    pub metrics: Arc<Metrics>,
    pub eval: Evaluation,
    /// What is kept per ruleset (by version): its line heads, and the metric counters of
    /// its rules' decisions.
    pub per_ruleset: (
        Arc<str>,
        LineHeads,
        FxHashMap<(usize, DecisionKind), Counter>,
    ),
    /// Where an event's decisions are written before they are shared.
    pub scratch: Vec<u8>,
    /// The counters whose slots the last prefetch fetched (`State::prefetch_prepared`).
    pub staged: StagedCounters,
    /// `[]`, shared by the answers of every event that decided nothing (most of them).
    pub no_decisions: Arc<str>,
}

impl Deciding {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Deciding {
            metrics,
            eval: Evaluation::default(),
            per_ruleset: ("".into(), LineHeads::default(), FxHashMap::default()),
            scratch: Vec::new(),
            staged: StagedCounters::default(),
            no_decisions: "[]".into(),
        }
    }
}

/// The answers given before, and where a new one is recorded.
pub trait AnswerBook {
    /// The answer given for `id` (an event's, with these hashes), if it was decided.
    fn given(
        &self,
        state: &State,
        id: &str,
        keys: &EventHashes,
    ) -> Result<Option<StoredAnswer>, ApiError>;
    /// Records the answer given for an event just decided.
    fn record(&mut self, answer: StoredAnswer);
    /// Prefetches what `given` and `record` will look up for an event with these hashes.
    fn prefetch(&self, _keys: &EventHashes) {}
}

/// The deciding thread's answers: those of this run in memory, older ones in the store.
struct LocalBook<'a> {
    answers: &'a mut Answers,
    store: Option<&'a Store>,
}

impl AnswerBook for LocalBook<'_> {
    fn given(
        &self,
        state: &State,
        id: &str,
        keys: &EventHashes,
    ) -> Result<Option<StoredAnswer>, ApiError> {
        // Every id answered is among the decided ones, which are cheaper to ask.
        let decided = state
            .decided(keys)
            .map_err(|e| ApiError::unavailable(format!("cannot read the decided ids: {e}")))?;
        if !decided {
            return Ok(None);
        }
        let given = self
            .answers
            .find(self.store, id)
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        // An id a batch run decided has no answer kept: it replays with no decisions (that
        // run's output holds them).
        Ok(Some(given.unwrap_or_else(|| StoredAnswer {
            event_id: id.into(),
            body_hash: NO_HASH,
            version: "".into(),
            decisions: "[]".into(),
        })))
    }

    fn record(&mut self, answer: StoredAnswer) {
        self.answers.record(answer);
    }

    fn prefetch(&self, keys: &EventHashes) {
        self.answers.prefetch(keys.id());
    }
}

/// Requests decided, waiting for their commit to be answered.
pub type Waiting = Vec<(
    oneshot::Sender<Result<Vec<Answer>, ApiError>>,
    Result<Vec<Answer>, ApiError>,
)>;

/// How an event of a request is to be answered.
enum Plan {
    Decide,
    /// With the answer given before.
    Replay(StoredAnswer),
    /// With the answer to the event of this index in the same request.
    AsEarlier(usize),
}

impl Decider {
    /// Decides requests until told to stop (or every sender is gone), then waits for the
    /// last commits. Each group of requests is handed to a commit as soon as it is decided;
    /// the committing threads answer them once their commit is durable, so that the
    /// deciding thread never waits for a commit.
    pub fn run(mut self) {
        let mut stopping = false;
        while !stopping {
            let (mut group, mut events) = (Vec::new(), 0);
            let mut next = Some(self.jobs.blocking_recv().unwrap_or(Msg::Stop));
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Decide(job) => {
                        events += job.events.events().len();
                        group.push(job);
                    }
                    Msg::Stop => {
                        stopping = true;
                        break;
                    }
                }
                if group.len() < MAX_GROUP && events < GROUP_EVENTS {
                    next = self.jobs.try_recv().ok();
                }
            }
            self.group(group);
            self.commit();
            self.settle(false);
        }
        self.settle(true);
    }

    /// Decides a group of requests. Their answers wait for a commit (but dry runs', and all
    /// of them without a state directory).
    fn group(&mut self, group: Vec<Job>) {
        let state = Arc::clone(&self.state);
        let mut state = lock(&state);
        for job in group {
            let result = if self.ready.load(Ordering::Acquire) {
                let mut book = LocalBook {
                    answers: &mut self.answers,
                    store: self.durable.as_ref().map(|d| &d.store),
                };
                self.core.job(&mut book, &mut state, &job)
            } else {
                Err(ApiError::unavailable(
                    "the state could not be committed; the service decides nothing more",
                ))
            };
            if job.dry_run || self.durable.is_none() {
                let _ = job.reply.send(result);
            } else {
                self.decided.push((job.reply, result));
                self.spent.bodies.push(job.events);
                self.live = Some(job.live);
            }
        }
    }

    /// Hands over one commit of everything decided since the last, with a `then` that
    /// answers its requests once it is durable (or fails them).
    fn commit(&mut self) {
        let (Some(durable), Some(live)) = (&mut self.durable, &self.live) else {
            return;
        };
        if self.decided.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.decided);
        let batch = self.answers.seal();
        let sealed = batch.as_ref().map(|(b, _)| *b);
        let (metrics, ready, started) = (
            Arc::clone(&self.metrics),
            Arc::clone(&self.ready),
            Instant::now(),
        );
        let spent = std::mem::take(&mut self.spent);
        let then: Then = Box::new(move |result| {
            match result {
                Ok(()) => {
                    metrics.commit(started.elapsed());
                    for (reply, result) in waiting {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => fail(&ready, waiting, &e.to_string()),
            }
            drop(spent);
        });
        let mut state = lock(&self.state);
        let submitted = durable
            .commits
            .submit(&live.ruleset, &mut state, batch, Some(then), false);
        // On a failure `then` was told.
        if submitted.is_ok() {
            self.committing.push_back(sealed);
        }
    }

    /// Takes the results of the commits that are done (of all of them, waiting, with
    /// `block`): their answers are read from the state from now on.
    fn settle(&mut self, block: bool) {
        let Some(durable) = &mut self.durable else {
            return;
        };
        while let Some(batch) = self.committing.pop_front() {
            let result = if block {
                Some(durable.commits.wait_next())
            } else {
                durable.commits.poll()
            };
            match result {
                None => {
                    self.committing.push_front(batch);
                    return;
                }
                Some(Ok(())) => {
                    if let Some(batch) = batch.and_then(|b| self.answers.committed(b)) {
                        self.spent.answers.push(batch);
                    }
                }
                // `then` answered the requests.
                Some(Err(_)) => {}
            }
        }
    }
}

/// A commit failed: the decisions of `waiting` may not be durable, so they are not given,
/// and nothing more is decided.
fn fail(ready: &AtomicBool, waiting: Waiting, why: &str) {
    tracing::error!(
        error = why,
        "state commit failed; the service stops deciding"
    );
    ready.store(false, Ordering::Release);
    for (reply, _) in waiting {
        let _ = reply.send(Err(ApiError::unavailable(format!(
            "the decisions could not be committed: {why}"
        ))));
    }
}

impl Deciding {
    /// Decides one request: all of it, or (on an error before deciding) none of it.
    pub fn job(
        &mut self,
        book: &mut dyn AnswerBook,
        state: &mut State,
        job: &Job,
    ) -> Result<Vec<Answer>, ApiError> {
        let ruleset = &job.live.ruleset;
        let events = job.events.events();
        let plans = Self::plans(book, state, job, events)?;
        let mut scratch = job.dry_run.then(|| State::new(ruleset));
        let mut out: Vec<Answer> = Vec::with_capacity(events.len());
        let ahead = |from: usize| {
            let run = events
                .iter()
                .zip(&job.prepared)
                .skip(from)
                .take(PREFETCH_RUN);
            run.map(|(e, p)| (&e.keys, p))
        };
        state.prefetch_prepared(ruleset, ahead(0), &mut self.staged);
        for (i, ((e, prepared), plan)) in events.iter().zip(&job.prepared).zip(plans).enumerate() {
            if i % PREFETCH_RUN == 0 {
                state.prefetch_prepared(ruleset, ahead(i + PREFETCH_RUN), &mut self.staged);
            }
            let answer = match plan {
                Plan::Replay(a) => Answer {
                    event_id: a.event_id,
                    version: a.version,
                    replay: true,
                    dry_run: job.dry_run,
                    decisions: a.decisions,
                },
                Plan::AsEarlier(i) => {
                    let mut a = out.get(i).cloned().ok_or_else(|| {
                        ApiError::unavailable("an earlier event of the request went missing")
                    })?;
                    a.replay = true;
                    a
                }
                Plan::Decide => {
                    let decisions = self.decide(state, scratch.as_mut(), &job.live, e, prepared)?;
                    let event_id: Arc<str> = Arc::from(&*e.event.id);
                    if !job.dry_run {
                        book.record(StoredAnswer {
                            event_id: Arc::clone(&event_id),
                            body_hash: e.body_hash,
                            version: Arc::clone(&job.live.version),
                            decisions: Arc::clone(&decisions),
                        });
                    }
                    Answer {
                        event_id,
                        version: Arc::clone(&job.live.version),
                        replay: false,
                        dry_run: job.dry_run,
                        decisions,
                    }
                }
            };
            out.push(answer);
        }
        Ok(out)
    }

    /// How each event of a request is to be answered; an id already decided with another
    /// body refuses the whole request.
    fn plans(
        book: &dyn AnswerBook,
        state: &State,
        job: &Job,
        events: &[BodyEvent<'_>],
    ) -> Result<Vec<Plan>, ApiError> {
        let single = events.len() == 1;
        // Sized once: grown as it filled, it was rehashed six times in a request of 100.
        let room = if single { 0 } else { events.len() };
        let mut first: FxHashMap<&str, usize> =
            FxHashMap::with_capacity_and_hasher(room, Default::default());
        let mut plans = Vec::with_capacity(events.len());
        let prefetch = |e: &BodyEvent<'_>| {
            state.prefetch_keys(&e.keys);
            book.prefetch(&e.keys);
        };
        events.iter().take(PREFETCH_AHEAD).for_each(prefetch);
        for (i, e) in events.iter().enumerate() {
            if let Some(ahead) = events.get(i + PREFETCH_AHEAD) {
                prefetch(ahead);
            }
            let (id, hash): (&str, _) = (&e.event.id, &e.body_hash);
            if let Some(&earlier) = first.get(id) {
                let same = events.get(earlier).map(|e| &e.body_hash) == Some(hash);
                if !same {
                    return Err(conflict(job, i, id));
                }
                plans.push(Plan::AsEarlier(earlier));
                continue;
            }
            if !single {
                first.insert(id, i);
            }
            match book.given(state, id, &e.keys)? {
                Some(a) if a.body_hash != NO_HASH && a.body_hash != *hash => {
                    return Err(conflict(job, i, id))
                }
                Some(a) => plans.push(Plan::Replay(a)),
                None => plans.push(Plan::Decide),
            }
        }
        Ok(plans)
    }

    /// Decides one event, on the state or (a dry run) on `scratch`; its decisions as a
    /// JSON array.
    fn decide(
        &mut self,
        state: &mut State,
        scratch: Option<&mut State>,
        live: &Live,
        e: &BodyEvent<'_>,
        prepared: &Prepared,
    ) -> Result<Arc<str>, ApiError> {
        let (ruleset, ev) = (&live.ruleset, &e.event);
        let unreadable = |e: crate::engine::ledger::LedgerUnreadable| {
            ApiError::unavailable(format!("cannot read the coupon ledger: {e}"))
        };
        let dry_run = scratch.is_some();
        // A dry run decides on a scratch state holding a copy of what the event reads.
        let target = match scratch {
            Some(scratch) => {
                state
                    .copy_into(scratch, ruleset, ev)
                    .map_err(unreadable)?
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_event",
                            e.to_string(),
                        )
                    })?;
                scratch
            }
            None => state,
        };
        let admission = target.admit_prepared(ev, e.keys, prepared);
        let decided = decide(ruleset, target, ev, admission, &mut self.eval);
        match decided.map_err(unreadable)? {
            Ok(Outcome::Decided) => {}
            Ok(Outcome::Duplicate) => return Ok(Arc::clone(&self.no_decisions)),
            Err(InvalidEvent::Unchecked(why)) => return Err(ApiError::unavailable(why)),
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_event",
                    e.to_string(),
                ))
            }
        }
        for e in &self.eval.errors {
            tracing::warn!(event = %ev.id, error = %e, "a rule's script failed; it decided nothing");
        }
        if self.eval.decisions.is_empty() {
            return Ok(Arc::clone(&self.no_decisions));
        }
        if self.per_ruleset.0 != live.version {
            self.per_ruleset = (
                Arc::clone(&live.version),
                LineHeads::default(),
                FxHashMap::default(),
            );
        }
        let (_, heads, counters) = &mut self.per_ruleset;
        let json = &mut self.scratch;
        json.clear();
        json.push(b'[');
        for (i, d) in self.eval.decisions.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_json_line(json, heads, ruleset, ev, d);
            if json.last() == Some(&b'\n') {
                json.pop();
            }
            if !dry_run {
                let metrics = &self.metrics;
                counters
                    .entry((d.rule, d.kind))
                    .or_insert_with(|| {
                        let rule = ruleset.rules.get(d.rule).map_or("", |r| r.id.as_str());
                        metrics.decisions(rule, d.kind.as_str())
                    })
                    .inc();
            }
        }
        json.push(b']');
        std::str::from_utf8(json)
            .map(Arc::from)
            .map_err(|_| ApiError::unavailable("a decision was not UTF-8"))
    }
}

fn conflict(job: &Job, i: usize, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "id_conflict",
        format!(
            "event `{id}` was decided before with a different body; an event id names one event"
        ),
    )
    .at(field(job.many, i, "id"))
}
