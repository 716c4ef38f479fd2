/*!
The integration test suite of `promo`: one test binary, ripgrep style.

Every test writes its events (and maybe a customer snapshot) to a fresh temporary
directory, runs the real `promo eval` binary over them and compares the decisions it
writes with decisions derived by hand from PRODUCT.md and the HK calendar.
*/

// Helpers panic on purpose: a failed helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Running `promo eval`, writing inputs, building expected decisions, comparing them.
mod util;

// The clauses S1-S18 of the seed ruleset, one or more tests each, named after the clause.
mod clauses;

// The input contract: rejected lines, exit codes, time offsets, CSV, extra fields.
mod input;

// A new promotion written as one YAML file, with no change to the engine.
mod generality;

// Rhai scripts in rules: what they see, and the sandbox's limits.
mod scripts;

// No promotion constant in src/.
mod src_clean;

// The deterministic event generator shared with the benchmarks (not part of the library).
#[path = "../gen/mod.rs"]
#[allow(dead_code)]
mod gen;

// A naive, independent model of the clauses S1-S18, for differential tests.
mod model;

// Generated streams: engine vs model, JSONL vs CSV, counts, replays.
mod random;

// The JSON Schema of rule files: shipped rules and fixtures validate, misspelt keys do not.
mod schema;

// `promo test`: golden cases, diffs, --bless, filters.
mod golden;

// `promo check`: one test per class of error, with the exact located message.
mod check;

// `promo simulate`: a rule change's cost, both rulesets in one pass.
mod simulate;

// Durable state (`eval --state`): kills and resumes, split days, reruns, refusals, inspect.
mod state;

// The PostgreSQL store's foundation: migrations, their lock, the pool, against a real server.
mod pg;

// A throwaway PostgreSQL cluster, shared with the shared-state benchmark.
#[path = "../pg_cluster/mod.rs"]
mod pg_cluster;

// `eval --state postgres://`: blocks on the shared state, and a state shared with serve.
mod pg_eval;

// Defect 15: a damaged state is refused, never read as another state.
mod integrity;

// The fast path for flat JSON lines against serde_json.
mod parse;

// `promo serve`: the HTTP service, started as a process on loopback and driven over HTTP.
mod serve;

// Issue 17: `promo serve --state postgres://`, several instances on one database.
mod pg_serve;

// Issue 18: defects that lost data or gave wrong coupons, one test each.
mod defects;

// Issue 18, reporting: reject codes, blank lines, the rejects file, --summary-json, versions.
mod reporting;

// Rule language v2 (issue 16): three fixtures, `promo check`/`promo test` on them, models
// of the three promotions over generated streams, and resumes from `--state`.
mod language_v2;
mod language_v2_operands;

// docs/rules.md documents every key of `promo schema`.
mod rules_doc;

// The README's commands and rule examples run as written.
#[cfg(unix)]
mod readme;
