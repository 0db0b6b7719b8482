//! Prometheus metrics, one registry per running hub (no globals, so tests can
//! run many hubs in one process). Served at `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub webhook_attempts: Family<ResultLabels, Counter>,
    pub webhook_failures: Counter,
    pub webhooks_disabled: Counter,
    pub outbox_lag: Gauge,
    pub events_head: Gauge,
    pub db_pool_connections: Family<PoolLabels, Gauge>,
    pub sse_subscribers: Gauge,
    /// Events live streams read from the database while catching up (those
    /// of the stream's types only).
    pub sse_catch_up_events: Counter,
    /// Scheduled backups (see `backup::schedule`): the last success as a
    /// Unix time (0: none yet), its duration and size, and failures.
    pub backup_last_success: Gauge,
    pub backup_duration_seconds: Gauge<f64, AtomicU64>,
    pub backup_size_bytes: Gauge,
    pub backup_failures: Counter,
    /// Tracking calls dropped because they carried an erased person's
    /// identifier (privacy suppression).
    pub tracking_suppressed: Counter,
    /// Rows deleted (or, for `erasure_notices`, purged) by retention rules,
    /// by kind (`tracking_events`, `carts`, `erasure_notices`,
    /// `webhook_deliveries`).
    pub retention_deleted: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Mutex::new(Registry::with_prefix("omnihub")),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            webhook_attempts: Family::default(),
            webhook_failures: Counter::default(),
            webhooks_disabled: Counter::default(),
            outbox_lag: Gauge::default(),
            events_head: Gauge::default(),
            db_pool_connections: Family::default(),
            sse_subscribers: Gauge::default(),
            sse_catch_up_events: Counter::default(),
            backup_last_success: Gauge::default(),
            backup_duration_seconds: Gauge::default(),
            backup_size_bytes: Gauge::default(),
            backup_failures: Counter::default(),
            tracking_suppressed: Counter::default(),
            retention_deleted: Family::default(),
        };
        if let Ok(mut r) = metrics.registry.lock() {
            metrics.register_traffic(&mut r);
            metrics.register_resources(&mut r);
            metrics.register_privacy(&mut r);
        }
        metrics
    }

    /// Requests, webhook deliveries and the event log's progress.
    fn register_traffic(&self, r: &mut Registry) {
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            self.http_duration.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook delivery attempts by result",
            self.webhook_attempts.clone(),
        );
        r.register(
            "webhook_failures",
            "Failed webhook delivery attempts",
            self.webhook_failures.clone(),
        );
        r.register(
            "webhooks_disabled",
            "Webhook endpoints disabled for failing",
            self.webhooks_disabled.clone(),
        );
        r.register(
            "outbox_lag_events",
            "Events written but not yet delivered to every active webhook",
            self.outbox_lag.clone(),
        );
        r.register(
            "events_head_position",
            "Position of the newest event",
            self.events_head.clone(),
        );
    }

    /// Connections, streams and backups.
    fn register_resources(&self, r: &mut Registry) {
        r.register(
            "db_pool_connections",
            "Read pool connections by state",
            self.db_pool_connections.clone(),
        );
        r.register(
            "sse_subscribers",
            "Open live-stream connections",
            self.sse_subscribers.clone(),
        );
        r.register(
            "sse_catch_up_events",
            "Events live streams read from the database while catching up",
            self.sse_catch_up_events.clone(),
        );
        r.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last successful scheduled backup (0: none yet)",
            self.backup_last_success.clone(),
        );
        r.register(
            "backup_duration_seconds",
            "Duration of the last successful scheduled backup",
            self.backup_duration_seconds.clone(),
        );
        r.register(
            "backup_size_bytes",
            "Size of the last successful scheduled backup",
            self.backup_size_bytes.clone(),
        );
        r.register(
            "backup_failures",
            "Scheduled backups that failed",
            self.backup_failures.clone(),
        );
    }

    fn register_privacy(&self, r: &mut Registry) {
        r.register(
            "tracking_suppressed_calls",
            "Tracking calls dropped because they named an erased person",
            self.tracking_suppressed.clone(),
        );
        r.register(
            "retention_deleted",
            "Rows deleted by retention rules, by kind",
            self.retention_deleted.clone(),
        );
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
