//! Deciding on a state shared with other instances, in PostgreSQL (`--state postgres://`).
//! Requests queue as for the deciding thread; whatever waits is taken as one group and
//! decided in one transaction:
//!
//! 1. lock every customer, wallet and coupon the group's events reach, in one sorted order,
//!    then (as it reads them) the rows of the total counters they count on (instances
//!    deciding for the same customer, wallet or budget take turns; no two transactions can
//!    wait for each other);
//! 2. read the answers already given to its event ids (replays, and 409s);
//! 3. load the rows its events reach into a fresh engine `State`;
//! 4. decide each request there, as the deciding thread does;
//! 5. write what changed and the answers, commit, and only then answer.
//!
//! Up to `concurrency` groups are in flight at once (one connection each); a group gathers
//! the requests that came while the others were in flight, so a slow commit makes the next
//! group larger rather than the queue longer. A deadlock or another instance answering an id
//! first rolls the group back and runs it again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio::sync::mpsc::Receiver;
use tokio::sync::Semaphore;

use super::decider::{Answer, AnswerBook, Deciding, Job, Msg};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::engine::footprint::footprint;
use crate::engine::{EventHashes, State};
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;
use crate::store::pg::state::{self as rows, Reach, RowError};
use crate::store::pg::{PgError, PgStore};
use crate::store::StoredAnswer;

/// The most events decided in one transaction.
const MAX_GROUP_EVENTS: usize = 2_000;
/// How many times a group is tried before its requests are answered 503.
const ATTEMPTS: u32 = 8;
/// What a 503 for a full pool asks the client to wait, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The shared state's deciding loop.
pub struct SharedDecider {
    pub jobs: Receiver<Msg>,
    pub pg: Arc<PgStore>,
    pub metrics: Arc<Metrics>,
    /// Groups in flight at once: the pool's size.
    pub concurrency: usize,
}

/// What a group of requests comes to: an answer per request.
type Replies = Vec<Result<Vec<Answer>, ApiError>>;

impl SharedDecider {
    /// Decides requests until told to stop (or every sender is gone), then waits for the
    /// groups in flight.
    pub async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut carry: Option<Job> = None;
        let mut stopping = false;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None if stopping => break,
                None => match self.jobs.recv().await {
                    Some(Msg::Decide(job)) => job,
                    Some(Msg::Stop) | None => break,
                },
            };
            // A slot is a connection: waited for as long as a checkout waits for one.
            let wait = self.pg.wait();
            let slot = match tokio::time::timeout(wait, Arc::clone(&slots).acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => break,
                Err(_) => {
                    // Every connection is held by a group that is not done: this request and
                    // those queued behind it are told to come back, not left to time out.
                    let full = unavailable(self.pg.exhausted(wait));
                    let _ = first.reply.send(Err(full.clone()));
                    loop {
                        match self.jobs.try_recv() {
                            Ok(Msg::Decide(job)) => {
                                let _ = job.reply.send(Err(full.clone()));
                            }
                            Ok(Msg::Stop) => {
                                stopping = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    continue;
                }
            };
            let mut group = vec![first];
            let mut events = group[0].events.events().len();
            while events < MAX_GROUP_EVENTS {
                match self.jobs.try_recv() {
                    Ok(Msg::Decide(job)) if Arc::ptr_eq(&job.live, &group[0].live) => {
                        events += job.events.events().len();
                        group.push(job);
                    }
                    // Another ruleset: the next group.
                    Ok(Msg::Decide(job)) => {
                        carry = Some(job);
                        break;
                    }
                    Ok(Msg::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let pg = Arc::clone(&self.pg);
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                answer_group(&pg, metrics, group).await;
                drop(slot);
            });
        }
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
    }
}

/// Decides a group and answers its requests once it is committed.
async fn answer_group(pg: &PgStore, metrics: Arc<Metrics>, group: Vec<Job>) {
    let started = Instant::now();
    let mut outcome = Err(ApiError::unavailable("the group was never tried"));
    for attempt in 0..ATTEMPTS {
        // Each try counts its decisions apart; only the committed one adds them to the
        // service's metrics (a rolled-back try decided nothing).
        let mut core = Deciding::new(Arc::new(Metrics::new()));
        match decide_group(pg, &mut core, &group).await {
            Ok(replies) => {
                if let Some(job) = group.first() {
                    count_decisions(&metrics, &job.live.ruleset, &core);
                }
                outcome = Ok(replies);
                break;
            }
            Err(Failure::Retry(e)) => {
                tracing::debug!(attempt, error = %e, "group rolled back; trying again");
                outcome = Err(ApiError::unavailable(format!(
                    "the shared state stayed contended after {ATTEMPTS} tries: {e}"
                )));
                let pause = Duration::from_millis(u64::from(attempt + 1) * 2);
                tokio::time::sleep(pause).await;
            }
            Err(Failure::Answer(e)) => {
                outcome = Err(e);
                break;
            }
        }
    }
    metrics.commit(started.elapsed());
    match outcome {
        Ok(replies) => {
            for (job, reply) in group.into_iter().zip(replies) {
                let _ = job.reply.send(reply);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.body.message, "a group of requests was not decided");
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Adds the decisions `core` counted (on metrics of its own) to the service's `metrics`.
fn count_decisions(metrics: &Metrics, ruleset: &Ruleset, core: &Deciding) {
    for (&(rule, kind), counter) in &core.per_ruleset.2 {
        let n = counter.get();
        if n > 0 {
            let id = ruleset.rules.get(rule).map_or("", |r| r.id.as_str());
            metrics.decisions(id, kind.as_str()).inc_by(n);
        }
    }
}

/// Why a group was not decided.
enum Failure {
    /// Rolled back by a conflict with another transaction: try again.
    Retry(RowError),
    /// The answer every request of the group gets.
    Answer(ApiError),
}

impl From<RowError> for Failure {
    fn from(e: RowError) -> Self {
        if e.retryable() {
            return Failure::Retry(e);
        }
        Failure::Answer(ApiError::unavailable(format!(
            "the shared state could not be read or written; nothing of this request was decided: {e}"
        )))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::from(RowError::Db(e))
    }
}

impl From<PgError> for Failure {
    fn from(e: PgError) -> Self {
        Failure::Answer(unavailable(e))
    }
}

/// The answer to a failed checkout: 503, and after a full pool, when to come back.
pub fn unavailable(e: PgError) -> ApiError {
    let full = matches!(e, PgError::PoolExhausted { .. });
    let answer = ApiError::unavailable(e.to_string());
    if full {
        answer.retry_after(RETRY_AFTER_SECS)
    } else {
        answer
    }
}

/// One try at deciding `group` in one transaction.
async fn decide_group(
    pg: &PgStore,
    core: &mut Deciding,
    group: &[Job],
) -> Result<Replies, Failure> {
    let Some(first) = group.first() else {
        return Ok(Vec::new());
    };
    let ruleset: &Ruleset = &first.live.ruleset;
    let mut reach = Reach::default();
    for job in group {
        for ev in job.events.events().iter().map(|e| &e.event) {
            // An event the ruleset cannot decide reaches nothing; deciding refuses it.
            if let Ok(print) = footprint(ruleset, ev) {
                reach.add(ruleset, &ev.id, &print);
            }
        }
    }
    let mut client = pg.client().await?;
    rows::ensure_totals(&client, &reach).await?;
    let tx = client.transaction().await?;
    let ids: Vec<&str> = reach.event_ids.iter().map(String::as_str).collect();
    let keys = reach.lock_keys();
    let mut state = fresh_state(ruleset);
    state.track_changes();
    rows::lock(&tx, &keys).await?;
    let (given, loaded) = tokio::join!(
        rows::answers(&tx, &ids),
        rows::load(&tx, ruleset, &reach, &mut state),
    );
    let (given, loaded) = (rows::own_first(given)?, rows::own_first(loaded)?);
    loaded?;
    let given = given?;
    let mut book = SharedBook::new(given);
    let replies: Replies = group
        .iter()
        .map(|job| core.job(&mut book, &mut state, job))
        .collect();
    rows::write(&tx, ruleset, &mut state, &book.new).await?;
    tx.commit().await?;
    Ok(replies)
}

/// An empty state whose coupons stay in memory (a transaction's are few).
fn fresh_state(ruleset: &Ruleset) -> State {
    let mut state = State::new(ruleset);
    state.limit_coupon_memory(usize::MAX);
    state
}

/// The answers of one transaction: those given before (read once its locks are held) and
/// those it gives.
struct SharedBook {
    given: FxHashMap<Arc<str>, StoredAnswer>,
    new: Vec<StoredAnswer>,
}

impl SharedBook {
    fn new(given: Vec<StoredAnswer>) -> Self {
        SharedBook {
            given: given
                .into_iter()
                .map(|a| (Arc::clone(&a.event_id), a))
                .collect(),
            new: Vec::new(),
        }
    }
}

impl AnswerBook for SharedBook {
    fn given(
        &self,
        _: &State,
        id: &str,
        _: &EventHashes,
    ) -> Result<Option<StoredAnswer>, ApiError> {
        Ok(self.given.get(id).cloned())
    }

    fn record(&mut self, answer: StoredAnswer) {
        self.given
            .insert(Arc::clone(&answer.event_id), answer.clone());
        self.new.push(answer);
    }
}

/// The state of one customer or wallet, read from the shared state for the read routes.
pub async fn owner_state(
    pg: &PgStore,
    ruleset: &Ruleset,
    scope: Scope,
    name: &str,
) -> Result<State, ApiError> {
    let failed =
        |e: RowError| ApiError::unavailable(format!("the shared state could not be read: {e}"));
    let mut client = pg.client().await.map_err(unavailable)?;
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| failed(e.into()))?;
    let mut state = fresh_state(ruleset);
    rows::load_owner(&tx, ruleset, scope, name, &mut state)
        .await
        .map_err(failed)?;
    Ok(state)
}
