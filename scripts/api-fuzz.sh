#!/usr/bin/env bash
# Schema-driven fuzzing of `promo serve`: schemathesis (from PyPI, installed into a virtual
# environment under target/) generates requests from the server's own /openapi.json for a
# bounded time and fails on any 5xx, any answer that breaks the schema, and any
# schema-invalid request that is not refused. The server runs on a loopback port with a
# fresh state and a copy of the shipped rules, and must stop cleanly on SIGTERM.
#
#   scripts/api-fuzz.sh [PROMO_BINARY] [SECONDS]     # defaults: the debug build, 60
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
promo=${1:-$target/debug/promo}
seconds=${2:-60}
[ -x "$promo" ] || cargo build --locked
venv=$(realpath -m "$target")/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi
work=$(mktemp -d)
cp -r rules "$work/rules"
"$promo" serve --rules "$work/rules" --state "$work/state" --bind 127.0.0.1:0 \
  --customers examples/customers.jsonl >"$work/out" 2>"$work/log" &
server=$!
stop() { kill -TERM "$server" 2>/dev/null || true; }
trap 'stop; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$work/out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$base" ] || { echo "api-fuzz: the server did not start:"; cat "$work/log"; exit 1; }
status=0
# Run from the scratch directory: schemathesis leaves a cache folder where it runs.
(cd "$work" && timeout $((seconds + 120)) "$venv/bin/schemathesis" run "$base/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-time "$seconds" --workers 2 --suppress-health-check all) || status=$?
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
trap 'rm -rf "$work"' EXIT
if grep -q 'panicked' "$work/log"; then
  echo "api-fuzz: the server panicked:"; grep -A5 panicked "$work/log"; exit 1
fi
[ "$rc" -eq 0 ] || { echo "api-fuzz: the server exited $rc on SIGTERM"; tail -20 "$work/log"; exit 1; }
exit "$status"
