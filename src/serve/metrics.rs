//! The service's Prometheus metrics (`GET /metrics`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::{Upkeep, UpkeepTask};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleDecision {
    rule: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: &'static str,
}

/// The failures of the state's upkeep, read from the store at each scrape (none shown
/// without a state directory).
#[derive(Debug, Default)]
struct UpkeepFailures(Arc<OnceLock<Arc<Upkeep>>>);

impl Collector for UpkeepFailures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(upkeep) = self.0.get() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "promo_state_upkeep_failures",
            "Failures of the state's upkeep beside the commits, by task (fold: the change \
             log into the tables; checkpoint: SQLite's log into the database); the state \
             stays whole, its logs grow until a later try succeeds",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for task in UpkeepTask::ALL {
            let failures = ConstCounter::new(upkeep.failures(task));
            failures.encode(family.encode_family(&TaskLabel { task: task.name() })?)?;
        }
        Ok(())
    }
}

/// Every metric the service keeps, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<Route, Histogram>,
    decisions: Family<RuleDecision, Counter>,
    reloads: Family<Outcome, Counter>,
    ruleset: Family<Version, Gauge>,
    commits: Histogram,
    upkeep: Arc<OnceLock<Arc<Upkeep>>>,
}

fn seconds() -> Histogram {
    // 50 µs to about 13 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(seconds),
            decisions: Family::default(),
            reloads: Family::default(),
            ruleset: Family::default(),
            commits: seconds(),
            upkeep: Arc::default(),
        };
        let r = &mut m.registry;
        r.register(
            "promo_http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "promo_http_request_duration_seconds",
            "HTTP request latency by route",
            m.latency.clone(),
        );
        r.register(
            "promo_decisions",
            "Decisions made, by rule and kind (dry runs and replays not counted)",
            m.decisions.clone(),
        );
        r.register(
            "promo_reloads",
            "Rules reloads by outcome (ok: swapped in; rejected: the last good rules kept serving)",
            m.reloads.clone(),
        );
        r.register(
            "promo_ruleset_info",
            "The live ruleset's version (1 for the live one)",
            m.ruleset.clone(),
        );
        r.register(
            "promo_state_commit_duration_seconds",
            "Time to commit one group of decisions to the state",
            m.commits.clone(),
        );
        let upkeep = UpkeepFailures(Arc::clone(&m.upkeep));
        m.registry.register_collector(Box::new(upkeep));
        m
    }

    /// Shows the failures of this upkeep (the state directory's) from now on.
    pub fn watch_upkeep(&self, upkeep: Arc<Upkeep>) {
        let _ = self.upkeep.set(upkeep);
    }

    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let route = route.to_string();
        self.requests
            .get_or_create(&RouteStatus {
                route: route.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&Route { route })
            .observe(took.as_secs_f64());
    }

    /// The counter of decisions of one kind by one rule (to keep: finding it allocates).
    pub fn decisions(&self, rule: &str, decision: &'static str) -> Counter {
        self.decisions
            .get_or_create(&RuleDecision {
                rule: rule.to_string(),
                decision,
            })
            .clone()
    }

    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "rejected" };
        self.reloads.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn live_version(&self, version: &str) {
        self.ruleset.clear();
        self.ruleset
            .get_or_create(&Version {
                version: version.to_string(),
            })
            .set(1);
    }

    pub fn commit(&self, took: Duration) {
        self.commits.observe(took.as_secs_f64());
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
