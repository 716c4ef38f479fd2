//! `promo eval --state postgres://...`: the run decides on a state shared with `promo
//! serve` instances, one transaction per block of input (see `store::pg::run`).

use super::eval::EvalArgs;
use crate::batch::InputFormat;
use crate::engine::State;
use crate::rules::Ruleset;
use crate::store::pg::run::SharedRun;

/// Input units per transaction at most: a block holds the locks of every customer and
/// wallet it reaches until it commits, so that live requests for them wait that long.
const BLOCK: u64 = 1_000;

/// How many units each block of a run on the shared state holds.
pub fn block_size(args: &EvalArgs) -> u64 {
    args.checkpoint_every.clamp(1, BLOCK)
}

/// Connects to the shared state at `url`, checks the ruleset against it, seeds it with the
/// customer snapshot loaded into `state` (owners it does not know yet), and opens the first
/// block into `state`.
pub fn open<'r>(
    args: &EvalArgs,
    url: &str,
    (ruleset, version): (&'r Ruleset, &str),
    format: InputFormat,
    state: &mut State,
) -> Result<SharedRun<'r>, String> {
    if args.input.as_os_str() == "-" {
        return Err("--state postgres://... reads its input twice (once ahead, for what each block locks): give a file, not standard input".into());
    }
    if let Some(out) = &args.output {
        if std::fs::metadata(out).is_ok_and(|m| m.len() > 0) {
            return Err(format!(
                "{} holds decisions already: with a postgres state every event is decided once, and a rerun counts those an earlier run decided as duplicates; write to a new --output",
                out.display()
            ));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let pg = runtime
        .block_on(async {
            let pg = crate::store::pg::connect(url, 1).await?;
            pg.adopt(ruleset).await?;
            if args.customers.is_some() {
                pg.seed(ruleset, state).await?;
            }
            Ok::<_, crate::store::pg::PgError>(pg)
        })
        .map_err(|e| e.to_string())?;
    SharedRun::start(
        &pg,
        runtime,
        (ruleset, version),
        (&args.input, format),
        block_size(args),
        state,
    )
    .map_err(|e| e.to_string())
}
