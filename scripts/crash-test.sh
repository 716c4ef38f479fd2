#!/usr/bin/env bash
# crash-test.sh: kill -9 `promo eval --state` at random points, resume it, and check that
# the result is exactly what an uninterrupted run gives.
#
# Usage:  scripts/crash-test.sh [EVENTS [CUSTOMERS [KILLS [SEED]]]]
#         (defaults: 200000 events, 20000 customers, 5 kills, seed 11)
#
# Steps:
#   1. cargo build --release (promo and the `generate` example);
#   2. generates the stream with
#        cargo run --release --example generate -- --events N --customers M --seed 11 --out DIR --no-csv
#   3. run A: `promo eval --state A/` uninterrupted, timing it (T);
#   4. run B: the same command with another state and output, killed with `kill -9` after a
#      random 5%-35% of T (the random numbers come from bash's $RANDOM seeded with SEED), and
#      rerun (which resumes) until KILLS kills landed while it was running; then rerun to the
#      end. If B finishes on its own (or is killed only after committing its end) before
#      KILLS kills landed, B starts over from a fresh state with the upper end of the range
#      halved: kills come earlier, never fewer;
#   5. compares A's and B's decisions and rejects files with cmp, and
#      `promo state inspect --json` of both states with python3: everything equal, the
#      `runs` equal but for their keys (the output paths differ).
# Prints PASS or FAIL with the number of kills; exit status 0 on PASS, 1 on FAIL, 2 when
# the script cannot run.
#
# Environment: WORK=DIR keeps the files there (default: a temporary directory, removed on
# PASS, kept on FAIL); CHECKPOINT_EVERY=N is passed to both runs (default 10000);
# CARGO_TARGET_DIR is honoured.

set -euo pipefail

EVENTS=${1:-200000}
CUSTOMERS=${2:-20000}
KILLS=${3:-5}
SEED=${4:-11}
EVERY=${CHECKPOINT_EVERY:-10000}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PROMO="${CARGO_TARGET_DIR:-$ROOT/target}/release/promo"
if [[ -n "${WORK:-}" ]]; then
    mkdir -p "$WORK"
    W=$(cd "$WORK" && pwd)
    KEEP=1
else
    W=$(mktemp -d "${TMPDIR:-/tmp}/promo-crash.XXXXXX")
    KEEP=0
fi

now_ms() { echo $(($(date +%s%N) / 1000000)); }

echo "crash-test: building (release)"
cargo build --release --quiet
cargo run --release --quiet --example generate -- \
    --events "$EVENTS" --customers "$CUSTOMERS" --seed "$SEED" --out "$W" --no-csv
[[ -x "$PROMO" ]] || { echo "crash-test: no binary at $PROMO" >&2; exit 2; }

# The command lines of runs A and B. (Arrays, not a function: `"${RUN_B[@]}" &` makes $! the
# pid of promo itself, where a function in the background would be a subshell whose kill
# leaves promo running.)
common=(eval --rules "$ROOT/rules" --input "$W/events.jsonl" --customers "$W/customers.jsonl"
    --checkpoint-every "$EVERY")
RUN_A=("$PROMO" "${common[@]}" --output "$W/a.jsonl" --state "$W/SA")
RUN_B=("$PROMO" "${common[@]}" --output "$W/b.jsonl" --state "$W/SB")

# complete STATE: whether the state holds a completed run.
complete() {
    "$PROMO" state inspect --state "$1" 2>/dev/null | grep -q ': [0-9]* input lines, complete$'
}

echo "crash-test: run A (uninterrupted), $EVENTS events, checkpoint every $EVERY"
t0=$(now_ms)
rc_a=0
"${RUN_A[@]}" 2>"$W/a.err" || rc_a=$?
T=$(($(now_ms) - t0))
if [[ $rc_a -ne 0 && $rc_a -ne 3 ]]; then
    echo "crash-test: run A failed with exit $rc_a" >&2
    cat "$W/a.err" >&2
    exit 2
fi
echo "crash-test: run A took ${T} ms, exit $rc_a"

RANDOM=$SEED
spread=300 # per mille above the 50 per mille minimum
kills=0
attempt=0
while :; do
    attempt=$((attempt + 1))
    rm -rf "$W/SB" "$W/b.jsonl" "$W/b.jsonl.rejects.jsonl"
    kills=0
    restart=0
    while ((kills < KILLS)); do
        pm=$((50 + RANDOM % spread))
        delay=$((T * pm / 1000))
        "${RUN_B[@]}" 2>"$W/b.err" &
        pid=$!
        sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
        kill -9 "$pid" 2>/dev/null || true
        rc=0
        { wait "$pid"; } 2>/dev/null || rc=$?
        if [[ $rc -eq 137 ]]; then
            if complete "$W/SB"; then
                echo "  attempt $attempt: the kill after ${delay} ms landed after B committed its end"
                restart=1
                break
            fi
            kills=$((kills + 1))
            resumed=$(grep -o 'resuming after [0-9]* input lines' "$W/b.err" || true)
            echo "  kill $kills after ${delay} ms (${pm} per mille of T)${resumed:+, had been $resumed}"
        elif [[ $rc -eq 0 || $rc -eq 3 ]]; then
            echo "  attempt $attempt: B finished on its own before the kill after ${delay} ms"
            restart=1
            break
        else
            echo "FAIL: a rerun of B exited $rc after $kills kills:" >&2
            cat "$W/b.err" >&2
            echo "FAIL (kills: $kills; files in $W)"
            exit 1
        fi
    done
    if ((restart == 0)); then
        break
    fi
    if ((spread <= 20)); then
        echo "FAIL: B kept finishing before $KILLS kills landed (files in $W)"
        exit 1
    fi
    spread=$((spread / 2))
    echo "  starting B over with kills at 5%-$(((50 + spread) / 10)).$(((50 + spread) % 10))% of T"
done

rc_b=0
"${RUN_B[@]}" 2>"$W/b.err" || rc_b=$?
grep -o 'resuming after [0-9]* input lines' "$W/b.err" | sed 's/^/  last rerun: /' || true

fail=0
if [[ $rc_b -ne $rc_a ]]; then
    echo "  exit status: A $rc_a, B $rc_b"
    cat "$W/b.err"
    fail=1
fi
cmp "$W/a.jsonl" "$W/b.jsonl" || fail=1
cmp "$W/a.jsonl.rejects.jsonl" "$W/b.jsonl.rejects.jsonl" || fail=1
"$PROMO" state inspect --state "$W/SA" --json >"$W/a.state.json"
"$PROMO" state inspect --state "$W/SB" --json >"$W/b.state.json"
python3 -c '
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ra, rb = list(a.pop("runs").values()), list(b.pop("runs").values())
ok = True
if a != b:
    for k in a:
        if a[k] != b.get(k):
            print("  state differs in", k)
    ok = False
if ra != rb:
    print("  run records differ:\n   A", ra, "\n   B", rb)
    ok = False
sys.exit(0 if ok else 1)
' "$W/a.state.json" "$W/b.state.json" || fail=1

bytes=$(wc -c <"$W/a.jsonl")
if ((fail == 0)); then
    echo "PASS: $kills kills (attempt $attempt); decisions ($bytes bytes), rejects and state identical to the uninterrupted run"
    if ((KEEP == 0)); then rm -rf "$W"; fi
    exit 0
fi
echo "FAIL: $kills kills; files in $W"
exit 1
