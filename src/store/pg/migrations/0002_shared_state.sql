-- 0002_shared_state: what deciding on the shared state needs beyond 0001.

-- An answer is kept as the exact text given: jsonb would reorder its keys and respace it,
-- and a replay answers byte for byte what was answered first.
ALTER TABLE answers ALTER COLUMN decisions TYPE text USING decisions::text;

-- A coupon's channels by name, joined by `,` as in the SQLite state: bit positions follow
-- a ruleset's channel order, which a new ruleset may change.
ALTER TABLE coupons ALTER COLUMN usable_for TYPE text USING '';

-- A wallet's coupons are listed by `GET /v1/wallets/{wallet}/coupons`, in the order they
-- were granted.
ALTER TABLE coupons ADD COLUMN granted bigserial;
CREATE INDEX coupons_by_wallet ON coupons (wallet, granted);

-- What the stored facts and counters mean (JSON, as in the SQLite state's `meta` table):
-- a ruleset that would read them otherwise is refused at start.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Where each `eval` run on this state stands, keyed by its output: the record a resume
-- starts from (JSON, as the SQLite state's `runs` table keeps it).
CREATE TABLE runs (
    output text PRIMARY KEY,
    record text NOT NULL
);

-- The keys transactions of decisions lock, one row each (customers, wallets, coupons named,
-- total counters: src/store/pg/state.rs); row locks, as advisory locks fill the server's
-- shared lock table.
CREATE TABLE locks (
    key bigint PRIMARY KEY
);
