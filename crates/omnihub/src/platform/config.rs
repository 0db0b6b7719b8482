//! Configuration: flags, `OMNIHUB_*` environment variables and an optional
//! TOML file.
//!
//! Precedence, highest first: command-line flag, environment variable, config
//! file (`--config` / `OMNIHUB_CONFIG`), built-in default. Every setting has
//! all four; `docs/configuration.md` lists them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod reference;
mod resolve;

/// Settings as read from a TOML file; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_schema: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub sqlite_synchronous: Option<String>,
    pub webhook_timeout_ms: Option<u64>,
    pub webhook_retry_base_ms: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub webhook_disable_after_secs: Option<u64>,
    pub webhook_concurrency: Option<usize>,
    pub shutdown_grace_secs: Option<u64>,
    pub cors_allowed_origins: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_connections: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub request_body_timeout_ms: Option<u64>,
    pub max_streams: Option<usize>,
    pub max_streams_per_key: Option<usize>,
    pub auth_failures_per_minute: Option<u32>,
    pub webhook_allowed_networks: Option<Vec<String>>,
    pub webhook_lease_secs: Option<u64>,
    pub backup_dir: Option<PathBuf>,
    pub backup_every: Option<String>,
    pub backup_keep: Option<usize>,
    pub otlp_endpoint: Option<String>,
    pub erasure_chunk_rows: Option<usize>,
    pub privacy_notice_retention: Option<String>,
    pub tracking_retention: Option<String>,
    pub cart_retention: Option<String>,
    pub webhook_log_retention: Option<String>,
}

impl FileSettings {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}

/// Effective settings after precedence was applied.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_schema: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    pub sqlite_synchronous: String,
    pub webhooks: WebhookSettings,
    /// How long shutdown waits for requests and deliveries in flight.
    pub shutdown_grace: Duration,
    /// Origins whose pages may call the tracking routes and the live stream.
    pub cors_allowed_origins: crate::platform::http::browser::CorsOrigins,
    /// Where `/metrics` is served; `None`: not served at all (never on the API port).
    pub metrics_listen: Option<SocketAddr>,
    pub limits: Limits,
    /// Scheduled backups of the SQLite database (`None`: not scheduled).
    pub backup: Option<BackupSettings>,
    pub privacy: PrivacySettings,
    /// Where traces are exported over OTLP/HTTP (`None`: not traced).
    pub otlp_endpoint: Option<String>,
}

/// Scheduled backups (docs/operations.md): a snapshot into `dir` every
/// `every`, the newest `keep` kept.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

pub const DEFAULT_BACKUP_EVERY: &str = "1h";
pub const DEFAULT_BACKUP_KEEP: usize = 48;

/// What one client, or all of them, may hold of the hub (docs/security.md).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also closes a
    /// keep-alive connection on which no new request starts).
    pub header_read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Time a client has to send a request's whole body.
    pub request_body_timeout: Duration,
    /// Open live streams (`GET /v1/stream`) on this node, all keys together.
    pub max_streams: usize,
    /// Open live streams of one key on this node.
    pub max_streams_per_key: usize,
    /// Failed authentications one client address may make per minute
    /// before it is answered 429 (0: no throttle).
    pub auth_failures_per_minute: u32,
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// First retry delay; each retry doubles it (with jitter), capped at an hour.
    pub retry_base: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Concurrent requests to one endpoint.
    pub concurrency: usize,
    /// Networks webhook URLs may point into although they are private,
    /// loopback or link-local (default none: such URLs are refused).
    pub allowed_networks: Vec<crate::platform::webhooks::destination::Network>,
    /// How long a node holds a subscription without renewing its lease.
    pub lease: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./omnihub-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_STREAMS: usize = 256;
pub const DEFAULT_MAX_STREAMS_PER_KEY: usize = 16;
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 60;
pub const DEFAULT_WEBHOOK_LEASE_SECS: u64 = 30;

/// Values given by flag or environment (clap merges those two).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SettingsArgs {
    /// TOML configuration file [default: none].
    ///
    /// Unknown keys in it are an error.
    #[arg(long, value_name = "FILE", env = "OMNIHUB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address the HTTP API listens on [default: 127.0.0.1:8080].
    ///
    /// `IP:PORT`; port `0` picks a free one.
    #[arg(long, value_name = "ADDR", env = "OMNIHUB_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Directory of the embedded SQLite database [default: ./omnihub-data].
    ///
    /// The database is `<data_dir>/omnihub.db`, created when missing. Only used when `database_url`
    /// is not set.
    #[arg(long, value_name = "DIR", env = "OMNIHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The database: `sqlite://…` or `postgres://…` [default: sqlite://<data_dir>/omnihub.db].
    ///
    /// E.g. `sqlite://path/to/file.db` or `postgres://user:password@host:port/database`. Migrations
    /// are applied on start. (A plain `DATABASE_URL` is **not** read.)
    #[arg(long, value_name = "URL", env = "OMNIHUB_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL schema to use, created when missing [default: none (the URL's search_path)].
    ///
    /// Letters, digits and `_`, at most 63. Lets several hubs share one database.
    #[arg(
        long,
        value_name = "NAME",
        env = "OMNIHUB_DATABASE_SCHEMA",
        global = true
    )]
    pub database_schema: Option<String>,
    /// `text` or `json` [default: text].
    ///
    /// `json`: one JSON object per line; a line logged while a request is served carries its
    /// `trace_id` and `span_id` (in `span` and `spans`). Logs go to standard error.
    #[arg(long, value_name = "FORMAT", env = "OMNIHUB_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `omnihub=debug` [default: info].
    ///
    /// A `tracing` filter: `warn`, `info`, `omnihub=debug,sqlx=warn`, … (an invalid filter falls
    /// back to `info`).
    #[arg(long, value_name = "FILTER", env = "OMNIHUB_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Largest accepted request body in bytes [default: 1048576].
    ///
    /// Larger bodies get `413 payload_too_large`.
    #[arg(long, value_name = "N", env = "OMNIHUB_MAX_BODY_BYTES", global = true)]
    pub max_body_bytes: Option<usize>,
    /// SQLite `synchronous`: FULL, NORMAL or EXTRA [default: FULL].
    ///
    /// `FULL`: an acknowledged write survives power loss; `NORMAL`: it survives a process crash
    /// (faster commits). Case-insensitive.
    #[arg(
        long,
        value_name = "MODE",
        env = "OMNIHUB_SQLITE_SYNCHRONOUS",
        global = true
    )]
    pub sqlite_synchronous: Option<String>,
    /// Timeout of one webhook delivery attempt in ms [default: 10000].
    #[arg(
        long,
        value_name = "MS",
        env = "OMNIHUB_WEBHOOK_TIMEOUT_MS",
        global = true
    )]
    pub webhook_timeout_ms: Option<u64>,
    /// First webhook retry delay in ms [default: 5000].
    ///
    /// Each further retry doubles it, with jitter (50–100 % of the delay), capped at one hour.
    #[arg(
        long,
        value_name = "MS",
        env = "OMNIHUB_WEBHOOK_RETRY_BASE_MS",
        global = true
    )]
    pub webhook_retry_base_ms: Option<u64>,
    /// Attempts before a webhook delivery is given up [default: 12].
    ///
    /// The delivery is then `failed`; at least 1.
    #[arg(
        long,
        value_name = "N",
        env = "OMNIHUB_WEBHOOK_MAX_ATTEMPTS",
        global = true
    )]
    pub webhook_max_attempts: Option<u32>,
    /// Seconds an endpoint may fail without a success before it is disabled [default: 432000].
    ///
    /// 432000 s is 5 days. A disabled endpoint has `status: disabled`, a `disabled_reason` and a
    /// `webhook.disabled` event; `PATCH` it back to `active`.
    #[arg(
        long,
        value_name = "S",
        env = "OMNIHUB_WEBHOOK_DISABLE_AFTER_SECS",
        global = true
    )]
    pub webhook_disable_after_secs: Option<u64>,
    /// Concurrent requests to one webhook endpoint [default: 32].
    ///
    /// Clamped to 1–1024.
    #[arg(
        long,
        value_name = "N",
        env = "OMNIHUB_WEBHOOK_CONCURRENCY",
        global = true
    )]
    pub webhook_concurrency: Option<usize>,
    /// Seconds to drain requests and deliveries on shutdown [default: 20].
    ///
    /// On SIGTERM or Ctrl-C: how long to wait for requests and webhook deliveries in flight before
    /// stopping.
    #[arg(
        long,
        value_name = "S",
        env = "OMNIHUB_SHUTDOWN_GRACE_SECS",
        global = true
    )]
    pub shutdown_grace_secs: Option<u64>,
    /// Origins allowed to call the tracking routes and the live stream from a browser [default: *].
    ///
    /// `*` (any; credentials are never allowed) or comma-separated `scheme://host[:port]`, e.g.
    /// `https://shop.example.com,https://m.shop.example.com` (an empty list allows none). See
    /// docs/customers-identity.md.
    #[arg(
        long,
        value_name = "LIST",
        env = "OMNIHUB_CORS_ALLOWED_ORIGINS",
        global = true
    )]
    pub cors_allowed_origins: Option<String>,
    /// Address to serve `/metrics` on, apart from the API [default: none (not served)].
    ///
    /// E.g. `127.0.0.1:9464`. `/metrics` is never served on the API port.
    #[arg(
        long,
        value_name = "ADDR",
        env = "OMNIHUB_METRICS_LISTEN",
        global = true
    )]
    pub metrics_listen: Option<String>,
    /// Open HTTP connections at most [default: 512].
    ///
    /// One more is answered `503` (with `Retry-After: 1`) and closed. Keep it below the process's
    /// open-file limit minus the database and webhook connections.
    #[arg(long, value_name = "N", env = "OMNIHUB_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, in ms [default: 10000].
    ///
    /// Counted from when the connection is ready for a request, so a keep-alive connection on which
    /// no request starts is closed after it too.
    #[arg(
        long,
        value_name = "MS",
        env = "OMNIHUB_HEADER_READ_TIMEOUT_MS",
        global = true
    )]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection silent both ways this long is closed, in s [default: 120].
    ///
    /// Also while a request is being handled (e.g. a client that stops reading): keep it above the
    /// slowest request. Live streams send a keep-alive comment every 15 s, so keep it above 15 s.
    #[arg(
        long,
        value_name = "S",
        env = "OMNIHUB_IDLE_TIMEOUT_SECS",
        global = true
    )]
    pub idle_timeout_secs: Option<u64>,
    /// Time a client has to send a request's body, in ms [default: 30000].
    ///
    /// Then `408 request_timeout`.
    #[arg(
        long,
        value_name = "MS",
        env = "OMNIHUB_REQUEST_BODY_TIMEOUT_MS",
        global = true
    )]
    pub request_body_timeout_ms: Option<u64>,
    /// Open live streams per node [default: 256].
    ///
    /// `GET /v1/stream`, all keys together; one more is `429 too_many_streams`.
    #[arg(long, value_name = "N", env = "OMNIHUB_MAX_STREAMS", global = true)]
    pub max_streams: Option<usize>,
    /// Open live streams of one key per node [default: 16].
    ///
    /// One more is `429 too_many_streams`.
    #[arg(
        long,
        value_name = "N",
        env = "OMNIHUB_MAX_STREAMS_PER_KEY",
        global = true
    )]
    pub max_streams_per_key: Option<usize>,
    /// Failed authentications per client address and minute before 429 [default: 60].
    ///
    /// No key, or a malformed, unknown or revoked key; an IPv6 client counts by its /64. Then `429
    /// too_many_requests` with `Retry-After` until the minute is over, except for keys the node
    /// already knows. `0` turns the throttle off.
    #[arg(
        long,
        value_name = "N",
        env = "OMNIHUB_AUTH_FAILURES_PER_MINUTE",
        global = true
    )]
    pub auth_failures_per_minute: Option<u32>,
    /// Networks (CIDR, comma-separated) webhooks may reach although internal [default: none].
    ///
    /// Loopback, private, link-local or otherwise internal networks webhook URLs may point into,
    /// e.g. `10.20.0.0/16,127.0.0.0/8` (a list in the TOML file). Without it such URLs are refused
    /// at creation (`422`) and at every delivery (see docs/security.md).
    #[arg(
        long,
        value_name = "CIDRS",
        env = "OMNIHUB_WEBHOOK_ALLOWED_NETWORKS",
        global = true,
        value_delimiter = ','
    )]
    pub webhook_allowed_networks: Option<Vec<String>>,
    /// Seconds a node holds a webhook subscription's lease without renewing it [default: 30].
    ///
    /// Renewed every third of it; after a node dies, another takes its subscriptions over within
    /// this time.
    #[arg(
        long,
        value_name = "S",
        env = "OMNIHUB_WEBHOOK_LEASE_SECS",
        global = true
    )]
    pub webhook_lease_secs: Option<u64>,
    /// Directory for scheduled backups of the SQLite database, which must exist [default: none (no
    /// scheduled backups)].
    ///
    /// `serve` takes a snapshot into it every `backup_every` (the first at start when the newest
    /// snapshot there is older), keeping the newest `backup_keep`; refused on PostgreSQL. See
    /// docs/operations.md.
    #[arg(long, value_name = "DIR", env = "OMNIHUB_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,
    /// Interval between scheduled backups: 90s, 30m, 1h, 2d [default: 1h].
    ///
    /// `/readyz` warns (`backup_stale`) after two intervals without a success.
    #[arg(
        long,
        value_name = "DURATION",
        env = "OMNIHUB_BACKUP_EVERY",
        global = true
    )]
    pub backup_every: Option<String>,
    /// Scheduled snapshots kept [default: 48].
    ///
    /// At least 1; older ones are removed after each success.
    #[arg(long, value_name = "N", env = "OMNIHUB_BACKUP_KEEP", global = true)]
    pub backup_keep: Option<usize>,
    /// OpenTelemetry collector to export traces to, over OTLP/HTTP [default: none (no tracing)].
    ///
    /// The base URL, e.g. `http://127.0.0.1:4318` (spans go to `<endpoint>/v1/traces` as protobuf).
    /// Without it no span is exported. See docs/operations.md.
    #[arg(long, value_name = "URL", env = "OMNIHUB_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// Rows one erasure transaction deletes or rewrites at most [default: 500].
    ///
    /// Other writers wait at most one chunk behind an erasure. See docs/privacy.md.
    #[arg(
        long,
        value_name = "N",
        env = "OMNIHUB_ERASURE_CHUNK_ROWS",
        global = true
    )]
    pub erasure_chunk_rows: Option<usize>,
    /// How long a `privacy.erasure_requested` event keeps the identifiers it names: 90s, 30m, 1h,
    /// 2d [default: 3d].
    ///
    /// Connected systems read whom to erase from it; then its payload is purged.
    #[arg(
        long,
        value_name = "DURATION",
        env = "OMNIHUB_PRIVACY_NOTICE_RETENTION",
        global = true
    )]
    pub privacy_notice_retention: Option<String>,
    /// Retention of raw tracking calls (the timeline) and the traits they set [default: none (kept
    /// until the person is erased)].
    ///
    /// Deleted by the privacy runner in chunks; counted in `omnihub_retention_deleted_total`.
    #[arg(
        long,
        value_name = "DURATION",
        env = "OMNIHUB_TRACKING_RETENTION",
        global = true
    )]
    pub tracking_retention: Option<String>,
    /// Retention of carts no order was made from, by their last change [default: none (kept)].
    #[arg(
        long,
        value_name = "DURATION",
        env = "OMNIHUB_CART_RETENTION",
        global = true
    )]
    pub cart_retention: Option<String>,
    /// Retention of settled webhook deliveries in the delivery log [default: 7d].
    #[arg(
        long,
        value_name = "DURATION",
        env = "OMNIHUB_WEBHOOK_LOG_RETENTION",
        global = true
    )]
    pub webhook_log_retention: Option<String>,
}

impl Settings {
    /// Defaults for a database URL; used by tests and tools.
    pub fn for_database(url: &str) -> Settings {
        let args = SettingsArgs {
            database_url: Some(url.to_string()),
            ..SettingsArgs::default()
        };
        // Defaults with a valid URL cannot fail to resolve.
        args.resolve()
            .unwrap_or_else(|_| unreachable!("default settings are valid"))
    }

    pub fn store_options(&self) -> crate::platform::storage::StoreOptions {
        let mut options = crate::platform::storage::StoreOptions::new(self.database_url.clone());
        options.schema = self.database_schema.clone();
        options.sqlite_synchronous = self.sqlite_synchronous.clone();
        options
    }
}

/// Privacy requests (docs/privacy.md).
#[derive(Clone, Debug)]
pub struct PrivacySettings {
    /// Rows one erasure transaction deletes or rewrites at most: small
    /// enough that other writers never wait long behind an erasure.
    pub erasure_chunk_rows: usize,
    /// How long a `privacy.erasure_requested` event keeps the identifiers it
    /// names (for connected systems); then its payload is purged.
    pub notice_retention: Duration,
    /// Days a request has before it is due, by regulation.
    pub gdpr_due_days: u32,
    pub ccpa_due_days: u32,
    /// Retention of raw tracking calls (the timeline) and of carts no order
    /// was made from; `None`: kept until erased.
    pub tracking_retention: Option<Duration>,
    pub cart_retention: Option<Duration>,
    /// Retention of settled webhook deliveries in the delivery log.
    pub webhook_log_retention: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        PrivacySettings {
            erasure_chunk_rows: 500,
            notice_retention: Duration::from_secs(72 * 3600),
            gdpr_due_days: 30,
            ccpa_due_days: 45,
            tracking_retention: None,
            cart_retention: None,
            webhook_log_retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(600),
        }
    }
}
