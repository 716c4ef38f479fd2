//! `promo eval --state postgres://...`: the run decides on a state shared with `promo
//! serve` instances, one transaction per block of input (see `store::pg::run`).

use super::eval::EvalArgs;
use crate::batch::InputFormat;
use crate::engine::State;
use crate::rules::Ruleset;
use crate::store::pg::run::{RunKey, SharedRun};
use crate::store::pg::PgStore;
use crate::store::RunRecord;

/// Input units per transaction at most: a block holds the locks of every customer and
/// wallet it reaches until it commits, so that live requests for them wait that long.
const BLOCK: u64 = 1_000;

/// How many units each block of a run on the shared state holds.
pub fn block_size(args: &EvalArgs) -> u64 {
    args.checkpoint_every.clamp(1, BLOCK)
}

/// A connection to the shared state, before the run starts.
pub struct Shared {
    runtime: tokio::runtime::Runtime,
    pg: PgStore,
}

/// Connects to the shared state at `url` and checks the ruleset against it.
pub fn connect(args: &EvalArgs, url: &str, ruleset: &Ruleset) -> Result<Shared, String> {
    if args.input.as_os_str() == "-" {
        return Err("--state postgres://... reads its input twice (once ahead, for what each block locks): give a file, not standard input".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let pg = runtime
        .block_on(async {
            let pg = crate::store::pg::connect(url, 1).await?;
            pg.adopt(ruleset).await?;
            Ok::<_, crate::store::pg::PgError>(pg)
        })
        .map_err(|e| e.to_string())?;
    Ok(Shared { runtime, pg })
}

impl Shared {
    /// The record of the run writing to `output`, if any.
    pub fn record(&self, output: &str) -> Result<Option<RunRecord>, String> {
        SharedRun::record(&self.pg, &self.runtime, output).map_err(|e| e.to_string())
    }

    /// Seeds the state with the customer snapshot loaded into `state` (owners it does not
    /// know yet), then opens the first block after the `skip` units an earlier run
    /// committed into `state`.
    pub fn start<'r>(
        self,
        args: &EvalArgs,
        (ruleset, run): (&'r Ruleset, RunKey),
        format: InputFormat,
        skip: u64,
        state: &mut State,
    ) -> Result<SharedRun<'r>, String> {
        if args.customers.is_some() {
            self.runtime
                .block_on(self.pg.seed(ruleset, state))
                .map_err(|e| e.to_string())?;
        }
        SharedRun::start(
            &self.pg,
            self.runtime,
            (ruleset, run),
            (&args.input, format),
            (skip, block_size(args)),
            state,
        )
        .map_err(|e| e.to_string())
    }
}
