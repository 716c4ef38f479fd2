-- 0001_initial: the first tables a state shared by several promo instances needs.
-- They mirror the SQLite state (src/store/mod.rs) in PostgreSQL's own types, without its
-- per-row checksums: PostgreSQL's WAL and page checksums guard the rows. Nothing reads or
-- writes them yet (docs/postgres.md).

-- The service's answers: one per event id, so that a retried request gets the answer it got
-- first. `body_hash` tells a retry (same body) from a different event reusing the id.
CREATE TABLE answers (
    event_id        text PRIMARY KEY,
    body_hash       bytea NOT NULL,
    decisions       jsonb NOT NULL,
    ruleset_version text NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);

-- Customer and wallet facts, one row per fact. `scope` is `customer` or `wallet`; `value`
-- is the fact's text form, typed by the ruleset's manifest (as in the SQLite state).
CREATE TABLE facts (
    scope text,
    owner text,
    name  text,
    value text,
    PRIMARY KEY (scope, owner, name)
);

-- The counters of rules' limits: per counter, owner and day (days since 1970-01-01 in the
-- ruleset's zone), how many grants and coupons, and the value granted.
CREATE TABLE counters (
    counter text,
    scope   text,
    owner   text,
    day     int,
    grants  bigint NOT NULL DEFAULT 0,
    coupons bigint NOT NULL DEFAULT 0,
    value   numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (counter, scope, owner, day)
);

-- The coupon ledger: every coupon issued, to which wallet, on what terms, and whether it
-- has been used. `usable_for` is the engine's bit mask of uses (its u64 bits as a bigint).
CREATE TABLE coupons (
    coupon_id   text PRIMARY KEY,
    wallet      text NOT NULL,
    face_value  numeric NOT NULL,
    min_spend   numeric NOT NULL,
    usable_for  bigint NOT NULL,
    credit_by   date NOT NULL,
    valid_until date,
    used        boolean NOT NULL DEFAULT false
);
