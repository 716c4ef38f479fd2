//! `eval --state postgres://`: a batch run deciding on the shared state, block by block,
//! beside any `promo serve` instances deciding on it. The run is the usual `Batch` with a
//! checkpoint every block; each block is one transaction. Before a block is decided, the
//! rows its events reach are locked and loaded into the batch's `State` (emptied first); at
//! the block's checkpoint the outputs are synced, what changed is written with an answer row
//! per event decided, and the transaction commits. Knowing what a block reaches before
//! deciding it takes reading it ahead: a thread reads the input a second time, one block in
//! front of the batch (so the input must be a file). Each block's transaction also records
//! where the run stands (table `runs`, the SQLite state's `RunRecord`), so that a stopped
//! run resumes exactly as on SQLite.

use std::fs::File;
use std::io::{self, BufReader};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};

use deadpool_postgres::Object;

use super::state::{self as rows, Reach};
use super::PgStore;
use crate::batch::Summary;
use crate::batch::{Checkpoint, InputFormat};
use crate::engine::footprint::footprint;
use crate::engine::State;
use crate::io::read::{read_csv, read_jsonl, Unit};
use crate::model::Event;
use crate::rules::Ruleset;
use crate::store::{InputHead, RunRecord, StoredAnswer};

/// The events of one block of input units, read ahead.
type Block = io::Result<(u64, Vec<Event<'static>>)>;

/// What identifies a run in its record.
#[derive(Debug, Clone)]
pub struct RunKey {
    pub output: String,
    pub input: Option<InputHead>,
    pub version: String,
}

/// A batch run's link to the shared state.
pub struct SharedRun<'r> {
    runtime: tokio::runtime::Runtime,
    client: Object,
    ruleset: &'r Ruleset,
    /// The run's key (its output), the head of its input and its ruleset version, as its
    /// record keeps them; the version is also that of the answer rows.
    run: RunKey,
    ahead: Receiver<Block>,
    /// A block read ahead of the one wanted (blocks of no event are not sent).
    early: Option<(u64, Vec<Event<'static>>)>,
    /// The block being decided, by index from 0.
    block: u64,
    /// The ids the open transaction decides: its events', but those answered before.
    deciding: Vec<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("the shared state: {what}: {e}"))
}

impl<'r> SharedRun<'r> {
    /// Starts reading `input` ahead in blocks of `every` units after the first `skip` (those
    /// an earlier run committed), takes a connection, and opens the first block's
    /// transaction with its rows loaded into `state`.
    pub fn start(
        pg: &PgStore,
        runtime: tokio::runtime::Runtime,
        (ruleset, run): (&'r Ruleset, RunKey),
        (input, format): (&Path, InputFormat),
        (skip, every): (u64, u64),
        state: &mut State,
    ) -> io::Result<Self> {
        let client = runtime
            .block_on(pg.client())
            .map_err(|e| failed("connecting", e))?;
        let file = File::open(input)?;
        let every = every.max(1);
        let (send, ahead) = sync_channel(2);
        std::thread::Builder::new()
            .name("promo-read-ahead".into())
            .spawn(move || read_ahead(file, format, (skip, every), &send))?;
        let mut run = SharedRun {
            runtime,
            client,
            ruleset,
            run,
            ahead,
            early: None,
            block: 0,
            deciding: Vec::new(),
        };
        run.begin(state)?;
        Ok(run)
    }

    /// The record of the run writing to `output`, if the state has one.
    pub fn record(
        pg: &PgStore,
        runtime: &tokio::runtime::Runtime,
        output: &str,
    ) -> io::Result<Option<RunRecord>> {
        let text = runtime.block_on(async {
            let client = pg.client().await.map_err(|e| failed("connecting", e))?;
            rows::run_record(&client, output)
                .await
                .map_err(|e| failed("reading the run record", e))
        })?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| failed(&format!("the run record of {output}"), e))
        })
        .transpose()
    }

    /// The batch's checkpoint: commits the block decided, then (unless the input is done)
    /// opens the next one.
    pub fn checkpoint(
        &mut self,
        state: &mut State,
        summary: &Summary,
        at: &Checkpoint,
        files: Vec<File>,
    ) -> io::Result<()> {
        for f in &files {
            f.sync_data()?;
        }
        let record = RunRecord::at(at, summary, self.run.input, Some(self.run.version.clone()));
        let record = serde_json::to_string(&record).map_err(io::Error::other)?;
        let answers: Vec<StoredAnswer> = self
            .deciding
            .drain(..)
            .map(|id| StoredAnswer {
                event_id: id.into(),
                // Decided by a batch run, which keeps no answer: any body replays.
                body_hash: [0; 16],
                version: self.run.version.as_str().into(),
                decisions: "[]".into(),
            })
            .collect();
        let (client, ruleset, output) = (&self.client, self.ruleset, &self.run.output);
        self.runtime
            .block_on(async {
                rows::write(client, ruleset, state, &answers).await?;
                rows::put_run(client, output, &record).await?;
                client.batch_execute("COMMIT").await?;
                Ok::<_, rows::RowError>(())
            })
            .map_err(|e| failed("committing a block", e))?;
        if at.done {
            return Ok(());
        }
        self.block += 1;
        self.begin(state)
    }

    /// Opens the transaction of block `self.block`: locks what its events reach, empties
    /// `state` and loads those rows into it, with the ids answered before as decided.
    fn begin(&mut self, state: &mut State) -> io::Result<()> {
        let events = self.events_of_block()?;
        let ruleset = self.ruleset;
        let mut reach = Reach::default();
        for ev in &events {
            if let Ok(print) = footprint(ruleset, ev) {
                reach.add(ruleset, &ev.id, &print);
            }
        }
        *state = State::new(ruleset);
        state.limit_coupon_memory(usize::MAX);
        state.track_changes();
        let client = &self.client;
        let answered = self
            .runtime
            .block_on(async {
                rows::ensure_totals(client, &reach).await?;
                client.batch_execute("BEGIN").await?;
                let ids: Vec<&str> = reach.event_ids.iter().map(String::as_str).collect();
                let keys = reach.lock_keys();
                rows::lock(client, &keys).await?;
                let (answered, loaded) = tokio::join!(
                    rows::answers(client, &ids),
                    rows::load(client, ruleset, &reach, state),
                );
                let (answered, loaded) = (rows::own_first(answered)?, rows::own_first(loaded)?);
                loaded?;
                answered
            })
            .map_err(|e| failed("loading a block", e))?;
        for a in &answered {
            state.remember_decided(&a.event_id);
            reach.event_ids.remove(&*a.event_id);
        }
        self.deciding = reach.event_ids.into_iter().collect();
        Ok(())
    }

    /// The events of the block being opened, from the reader ahead.
    fn events_of_block(&mut self) -> io::Result<Vec<Event<'static>>> {
        loop {
            if let Some((at, _)) = &self.early {
                if *at > self.block {
                    return Ok(Vec::new());
                }
                if let Some((_, events)) = self.early.take().filter(|(at, _)| *at == self.block) {
                    return Ok(events);
                }
            }
            match self.ahead.recv() {
                Ok(block) => self.early = Some(block?),
                // The reader ended: no more events.
                Err(_) => return Ok(Vec::new()),
            }
        }
    }
}

/// Reads the input as the batch will, sending the events of each block of `every` units
/// after the first `skip` that has any, in order.
fn read_ahead(
    file: File,
    format: InputFormat,
    (skip, every): (u64, u64),
    send: &std::sync::mpsc::SyncSender<Block>,
) {
    let mut block = (0u64, Vec::new());
    let mut f = |at: crate::io::read::Position, unit: Unit<'_>| {
        let index = at.unit.saturating_sub(skip + 1) / every;
        if index != block.0 {
            let full = std::mem::replace(&mut block, (index, Vec::new()));
            if !full.1.is_empty() && send.send(Ok(full)).is_err() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if let Unit::Event { event, .. } = unit {
            block.1.push(event.into_owned());
        }
        Ok(ControlFlow::Continue(()))
    };
    let input = BufReader::with_capacity(1 << 16, file);
    let read = match format {
        InputFormat::Jsonl => read_jsonl(input, skip, &mut f),
        InputFormat::Csv => read_csv(input, skip, &mut f),
    };
    let last = read.map(|_| block);
    if !matches!(&last, Ok((_, events)) if events.is_empty()) {
        let _ = send.send(last);
    }
}
