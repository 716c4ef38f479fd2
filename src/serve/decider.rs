//! The deciding thread. Requests queue here; the thread takes every request waiting (a
//! group), decides their events one at a time against the one state, in the order they
//! came, then commits the group's changes and answers in one transaction and answers the
//! group's requests once that commit is durable. Deciding one event at a time is what makes
//! limits exact under any concurrency; committing a group at a time is what makes a durable
//! answer cheap (one sync for every request waiting). While a group's commit is in flight
//! the next group is decided.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::http::StatusCode;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::live::Live;
use super::metrics::Metrics;
use crate::engine::{evaluate, Evaluation, InvalidEvent, Outcome, State};
use crate::io::event_json::parse_event;
use crate::io::output::{write_json_line, LineHeads};
use crate::model::Event;
use crate::store::{GroupCommits, Store, StoredAnswer};

/// The most requests decided and committed as one group.
const MAX_GROUP: usize = 512;

/// One event of a request: its JSON text and the hash of its canonical form.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub text: String,
    pub hash: [u8; 16],
}

/// A request for decisions.
#[derive(Debug)]
pub struct Job {
    /// The ruleset live when the request came: it decides the request.
    pub live: Arc<Live>,
    pub events: Vec<Incoming>,
    pub dry_run: bool,
    pub reply: oneshot::Sender<Result<Vec<Answer>, ApiError>>,
}

/// What the service answers for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub event_id: String,
    pub version: String,
    pub replay: bool,
    pub dry_run: bool,
    /// The decisions, a JSON array of decision lines.
    pub decisions: String,
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
    /// Answers not yet committed (all of them, in memory), by event id.
    pub answers: HashMap<String, StoredAnswer>,
    pub eval: Evaluation,
    /// Line heads of the ruleset they were made for (by version).
    pub heads: (String, LineHeads),
}

/// Requests decided, waiting for their commit to be answered.
type Waiting = Vec<(
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
    /// Decides requests until every sender is gone, then commits and answers the last.
    pub fn run(mut self) {
        let mut waiting: Waiting = Vec::new();
        let mut in_flight: Vec<String> = Vec::new();
        let mut stopping = false;
        while !stopping {
            let first = if waiting.is_empty() {
                self.jobs.blocking_recv().unwrap_or(Msg::Stop)
            } else {
                match self.jobs.try_recv() {
                    Ok(msg) => msg,
                    Err(TryRecvError::Empty) => {
                        self.finish(&mut waiting, &mut in_flight);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => Msg::Stop,
                }
            };
            let mut group = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Decide(job) => group.push(job),
                    Msg::Stop => {
                        stopping = true;
                        break;
                    }
                }
                if group.len() < MAX_GROUP {
                    next = self.jobs.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.group(group, &mut waiting, &mut in_flight);
            }
        }
        self.finish(&mut waiting, &mut in_flight);
    }

    /// Decides a group, answers the group before it once its commit is durable, and hands
    /// this group's commit over.
    fn group(&mut self, group: Vec<Job>, waiting: &mut Waiting, in_flight: &mut Vec<String>) {
        let state = Arc::clone(&self.state);
        let mut decided: Waiting = Vec::with_capacity(group.len());
        let mut answers = Vec::new();
        let mut last_live = None;
        {
            let mut state = lock(&state);
            for job in group {
                let result = if self.ready.load(Ordering::Acquire) {
                    self.job(&mut state, &job, &mut answers)
                } else {
                    Err(ApiError::unavailable(
                        "the state could not be committed; the service decides nothing more",
                    ))
                };
                if job.dry_run || self.durable.is_none() {
                    let _ = job.reply.send(result);
                } else {
                    decided.push((job.reply, result));
                }
                last_live = Some(job.live);
            }
        }
        self.finish(waiting, in_flight);
        let (Some(durable), Some(live)) = (&mut self.durable, last_live) else {
            return;
        };
        if answers.is_empty() && decided.is_empty() {
            return;
        }
        let ids: Vec<String> = answers.iter().map(|a| a.event_id.clone()).collect();
        let submitted = {
            let mut state = lock(&state);
            durable
                .commits
                .submit(&live.ruleset, &mut state, answers, false)
        };
        match submitted {
            Ok(()) => {
                *waiting = decided;
                *in_flight = ids;
            }
            Err(e) => self.fail(decided, &e.to_string()),
        }
    }

    /// Waits for the commit in flight and answers the requests it held.
    fn finish(&mut self, waiting: &mut Waiting, in_flight: &mut Vec<String>) {
        if waiting.is_empty() && in_flight.is_empty() {
            return;
        }
        let Some(durable) = &mut self.durable else {
            return;
        };
        let started = Instant::now();
        let committed = durable.commits.wait();
        self.metrics.commit(started.elapsed());
        let waiting = std::mem::take(waiting);
        for id in in_flight.drain(..) {
            self.answers.remove(&id);
        }
        match committed {
            Ok(()) => {
                for (reply, result) in waiting {
                    let _ = reply.send(result);
                }
            }
            Err(e) => self.fail(waiting, &e.to_string()),
        }
    }

    /// A commit failed: the decisions of `waiting` may not be durable, so they are not
    /// given, and nothing more is decided.
    fn fail(&self, waiting: Waiting, why: &str) {
        tracing::error!(
            error = why,
            "state commit failed; the service stops deciding"
        );
        self.ready.store(false, Ordering::Release);
        for (reply, _) in waiting {
            let _ = reply.send(Err(ApiError::unavailable(format!(
                "the decisions could not be committed: {why}"
            ))));
        }
    }

    /// Decides one request: all of it, or (on an error before deciding) none of it.
    fn job(
        &mut self,
        state: &mut State,
        job: &Job,
        committed: &mut Vec<StoredAnswer>,
    ) -> Result<Vec<Answer>, ApiError> {
        let ruleset = &job.live.ruleset;
        let mut events = Vec::with_capacity(job.events.len());
        for (i, e) in job.events.iter().enumerate() {
            let ev = parse_event(&e.text).map_err(|m| bad_event(job, i, m))?;
            crate::engine::admit::event_kind(ruleset, &ev)
                .map_err(|err| invalid_event(job, i, &err))?;
            events.push(ev);
        }
        let plans = self.plans(state, job, &events)?;
        let mut scratch = job.dry_run.then(|| State::new(ruleset));
        let mut out: Vec<Answer> = Vec::with_capacity(events.len());
        for ((ev, incoming), plan) in events.iter().zip(&job.events).zip(plans) {
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
                    let decisions = self.decide(state, scratch.as_mut(), &job.live, ev)?;
                    if !job.dry_run {
                        let stored = StoredAnswer {
                            event_id: ev.id.to_string(),
                            body_hash: incoming.hash.to_vec(),
                            version: job.live.version.clone(),
                            decisions: decisions.clone(),
                        };
                        self.answers.insert(stored.event_id.clone(), stored.clone());
                        committed.push(stored);
                    }
                    Answer {
                        event_id: ev.id.to_string(),
                        version: job.live.version.clone(),
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
    fn plans(&self, state: &State, job: &Job, events: &[Event<'_>]) -> Result<Vec<Plan>, ApiError> {
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(events.len());
        for (i, (ev, incoming)) in events.iter().zip(&job.events).enumerate() {
            let id: &str = &ev.id;
            if let Some(&earlier) = first.get(id) {
                let same = job.events.get(earlier).map(|e| e.hash) == Some(incoming.hash);
                if !same {
                    return Err(conflict(job, i, id));
                }
                plans.push(Plan::AsEarlier(earlier));
                continue;
            }
            first.insert(id, i);
            match self.answer_for(state, id)? {
                Some(a) if !a.body_hash.is_empty() && a.body_hash != incoming.hash => {
                    return Err(conflict(job, i, id))
                }
                Some(a) => plans.push(Plan::Replay(a)),
                None => plans.push(Plan::Decide),
            }
        }
        Ok(plans)
    }

    /// The answer given for `id`, if it was decided. An id a batch run decided has no
    /// answer kept: it replays with no decisions (that run's output holds them).
    fn answer_for(&self, state: &State, id: &str) -> Result<Option<StoredAnswer>, ApiError> {
        if let Some(a) = self.answers.get(id) {
            return Ok(Some(a.clone()));
        }
        let decided = state
            .decided(id)
            .map_err(|e| ApiError::unavailable(format!("cannot read the decided ids: {e}")))?;
        if !decided {
            return Ok(None);
        }
        let stored = match &self.durable {
            Some(d) => d
                .store
                .answer(id)
                .map_err(|e| ApiError::unavailable(e.to_string()))?,
            None => None,
        };
        Ok(Some(stored.unwrap_or_else(|| StoredAnswer {
            event_id: id.to_string(),
            body_hash: Vec::new(),
            version: String::new(),
            decisions: "[]".into(),
        })))
    }

    /// Decides one event, on the state or (a dry run) on `scratch`; its decisions as a
    /// JSON array.
    fn decide(
        &mut self,
        state: &mut State,
        scratch: Option<&mut State>,
        live: &Live,
        ev: &Event<'_>,
    ) -> Result<String, ApiError> {
        let ruleset = &live.ruleset;
        let unreadable = |e: crate::engine::ledger::LedgerUnreadable| {
            ApiError::unavailable(format!("cannot read the coupon ledger: {e}"))
        };
        let dry_run = scratch.is_some();
        let decided = match scratch {
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
                evaluate(ruleset, scratch, ev, &mut self.eval)
            }
            None => evaluate(ruleset, state, ev, &mut self.eval),
        };
        match decided.map_err(unreadable)? {
            Ok(Outcome::Decided) => {}
            Ok(Outcome::Duplicate) => return Ok("[]".into()),
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
        if self.heads.0 != live.version {
            self.heads = (live.version.clone(), LineHeads::default());
        }
        let mut json = Vec::with_capacity(256);
        json.push(b'[');
        for (i, d) in self.eval.decisions.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_json_line(&mut json, &mut self.heads.1, ruleset, ev, d);
            if json.last() == Some(&b'\n') {
                json.pop();
            }
            if !dry_run {
                let rule = ruleset.rules.get(d.rule).map_or("", |r| r.id.as_str());
                self.metrics.decision(rule, d.kind.as_str());
            }
        }
        json.push(b']');
        String::from_utf8(json).map_err(|_| ApiError::unavailable("a decision was not UTF-8"))
    }
}

fn field(job: &Job, i: usize, name: &str) -> String {
    if job.events.len() == 1 {
        name.to_string()
    } else {
        format!("[{i}].{name}")
    }
}

fn bad_event(job: &Job, i: usize, message: String) -> ApiError {
    let at = if job.events.len() == 1 {
        None
    } else {
        Some(format!("[{i}]"))
    };
    let e = ApiError::new(StatusCode::BAD_REQUEST, "bad_event", message);
    match at {
        Some(at) => e.at(at),
        None => e,
    }
}

fn invalid_event(job: &Job, i: usize, err: &InvalidEvent) -> ApiError {
    let e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_event",
        err.to_string(),
    );
    match err {
        InvalidEvent::UnknownType(_) => e.at(field(job, i, "type")),
        InvalidEvent::MissingField { field: f, .. } => e.at(field(job, i, f)),
        InvalidEvent::Unchecked(_) => e,
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
    .at(field(job, i, "id"))
}
