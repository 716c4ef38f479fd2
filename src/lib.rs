//! promo: a rules-engine driven promotion evaluator.
//!
//! Promotions are YAML rule files (and optional Rhai scripts) in a ruleset directory. They
//! are loaded and compiled once ([`rules::load_ruleset`]), then events are evaluated one by
//! one ([`engine::evaluate`]) against a [`engine::State`] of facts, counters and coupons.
//! Nothing about any promotion lives in this crate: the ruleset says which.

pub mod batch;
pub mod cli;
pub mod engine;
pub mod golden;
pub mod io;
pub mod model;
pub mod rules;
pub mod serve;
pub mod simulate;
pub mod store;
