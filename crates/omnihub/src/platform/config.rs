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
    /// TOML configuration file.
    #[arg(long, env = "OMNIHUB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OMNIHUB_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Directory for the embedded SQLite database [default: ./omnihub-data].
    #[arg(long, env = "OMNIHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` [default: SQLite in the data directory].
    #[arg(long, env = "OMNIHUB_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL schema to use (created when missing) [default: the URL's search_path].
    #[arg(long, env = "OMNIHUB_DATABASE_SCHEMA", global = true)]
    pub database_schema: Option<String>,
    /// `text` or `json` [default: text].
    #[arg(long, env = "OMNIHUB_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `omnihub=debug` [default: info].
    #[arg(long, env = "OMNIHUB_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
    /// Largest accepted request body in bytes [default: 1048576].
    #[arg(long, env = "OMNIHUB_MAX_BODY_BYTES", global = true)]
    pub max_body_bytes: Option<usize>,
    /// SQLite `synchronous`: FULL (durable on power loss) or NORMAL [default: FULL].
    #[arg(long, env = "OMNIHUB_SQLITE_SYNCHRONOUS", global = true)]
    pub sqlite_synchronous: Option<String>,
    /// Timeout of one webhook delivery attempt in ms [default: 10000].
    #[arg(long, env = "OMNIHUB_WEBHOOK_TIMEOUT_MS", global = true)]
    pub webhook_timeout_ms: Option<u64>,
    /// First webhook retry delay in ms, doubled per attempt [default: 5000].
    #[arg(long, env = "OMNIHUB_WEBHOOK_RETRY_BASE_MS", global = true)]
    pub webhook_retry_base_ms: Option<u64>,
    /// Attempts before a webhook delivery is given up [default: 12].
    #[arg(long, env = "OMNIHUB_WEBHOOK_MAX_ATTEMPTS", global = true)]
    pub webhook_max_attempts: Option<u32>,
    /// Seconds an endpoint may fail without a success before it is disabled [default: 432000].
    #[arg(long, env = "OMNIHUB_WEBHOOK_DISABLE_AFTER_SECS", global = true)]
    pub webhook_disable_after_secs: Option<u64>,
    /// Concurrent requests to one webhook endpoint [default: 32].
    #[arg(long, env = "OMNIHUB_WEBHOOK_CONCURRENCY", global = true)]
    pub webhook_concurrency: Option<usize>,
    /// Seconds to drain requests and deliveries on shutdown [default: 20].
    #[arg(long, env = "OMNIHUB_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// Origins allowed to call the tracking routes and the live stream from a
    /// browser: `*` or comma-separated `https://shop.example.com` [default: *].
    #[arg(long, env = "OMNIHUB_CORS_ALLOWED_ORIGINS", global = true)]
    pub cors_allowed_origins: Option<String>,
    /// Address to serve `/metrics` on, apart from the API [default: not served].
    #[arg(long, env = "OMNIHUB_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// Open connections at most [default: 512].
    #[arg(long, env = "OMNIHUB_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Time to send a request's headers, in ms [default: 10000].
    #[arg(long, env = "OMNIHUB_HEADER_READ_TIMEOUT_MS", global = true)]
    pub header_read_timeout_ms: Option<u64>,
    /// A connection silent both ways this long is closed, in s [default: 120].
    #[arg(long, env = "OMNIHUB_IDLE_TIMEOUT_SECS", global = true)]
    pub idle_timeout_secs: Option<u64>,
    /// Time to send a request's body, in ms [default: 30000].
    #[arg(long, env = "OMNIHUB_REQUEST_BODY_TIMEOUT_MS", global = true)]
    pub request_body_timeout_ms: Option<u64>,
    /// Open live streams per node [default: 256].
    #[arg(long, env = "OMNIHUB_MAX_STREAMS", global = true)]
    pub max_streams: Option<usize>,
    /// Open live streams per key and node [default: 16].
    #[arg(long, env = "OMNIHUB_MAX_STREAMS_PER_KEY", global = true)]
    pub max_streams_per_key: Option<usize>,
    /// Failed authentications per client address and minute before 429 (0: off) [default: 60].
    #[arg(long, env = "OMNIHUB_AUTH_FAILURES_PER_MINUTE", global = true)]
    pub auth_failures_per_minute: Option<u32>,
    /// Comma-separated networks (CIDR) webhooks may reach although private or loopback [default: none].
    #[arg(
        long,
        env = "OMNIHUB_WEBHOOK_ALLOWED_NETWORKS",
        global = true,
        value_delimiter = ','
    )]
    pub webhook_allowed_networks: Option<Vec<String>>,
    /// Seconds a node holds a webhook subscription's lease without renewing it [default: 30].
    #[arg(long, env = "OMNIHUB_WEBHOOK_LEASE_SECS", global = true)]
    pub webhook_lease_secs: Option<u64>,
    /// Directory for scheduled backups of the SQLite database, which must
    /// exist [default: no scheduled backups].
    #[arg(long, env = "OMNIHUB_BACKUP_DIR", global = true)]
    pub backup_dir: Option<PathBuf>,
    /// Interval between scheduled backups: 90s, 30m, 1h, 2d [default: 1h].
    #[arg(long, env = "OMNIHUB_BACKUP_EVERY", global = true)]
    pub backup_every: Option<String>,
    /// Scheduled snapshots kept; older ones are removed [default: 48].
    #[arg(long, env = "OMNIHUB_BACKUP_KEEP", global = true)]
    pub backup_keep: Option<usize>,
}

impl SettingsArgs {
    /// The backup schedule, when a backup directory is set.
    fn backup(&self, file: &FileSettings) -> anyhow::Result<Option<BackupSettings>> {
        let Some(dir) = self.backup_dir.clone().or(file.backup_dir.clone()) else {
            return Ok(None);
        };
        let every = self
            .backup_every
            .clone()
            .or(file.backup_every.clone())
            .unwrap_or_else(|| DEFAULT_BACKUP_EVERY.into());
        let every: crate::platform::backup::Interval = every
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid backup_every: {e}"))?;
        Ok(Some(BackupSettings {
            dir,
            every: every.0,
            keep: self
                .backup_keep
                .or(file.backup_keep)
                .unwrap_or(DEFAULT_BACKUP_KEEP)
                .max(1),
        }))
    }

    /// Applies the precedence: these values, then the file, then defaults.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => FileSettings::load(path)?,
            None => FileSettings::default(),
        };
        let backup = self.backup(&file)?;
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = self
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("omnihub.db").display()));
        let listen = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid listen address {listen:?}: {e}"))?;
        let log_format = match self.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => anyhow::bail!("invalid log format {other:?}: use text or json"),
        };
        let sqlite_synchronous = self
            .sqlite_synchronous
            .clone()
            .or(file.sqlite_synchronous)
            .unwrap_or_else(|| "FULL".into())
            .to_ascii_uppercase();
        if !matches!(sqlite_synchronous.as_str(), "FULL" | "NORMAL" | "EXTRA") {
            anyhow::bail!(
                "invalid sqlite_synchronous {sqlite_synchronous:?}: use FULL, NORMAL or EXTRA"
            );
        }
        let max_body_bytes = self
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let webhooks = WebhookSettings {
            timeout: Duration::from_millis(
                self.webhook_timeout_ms
                    .or(file.webhook_timeout_ms)
                    .unwrap_or(10_000),
            ),
            retry_base: Duration::from_millis(
                self.webhook_retry_base_ms
                    .or(file.webhook_retry_base_ms)
                    .unwrap_or(5_000),
            ),
            max_attempts: self
                .webhook_max_attempts
                .or(file.webhook_max_attempts)
                .unwrap_or(12)
                .max(1),
            disable_after: Duration::from_secs(
                self.webhook_disable_after_secs
                    .or(file.webhook_disable_after_secs)
                    .unwrap_or(5 * 24 * 3600),
            ),
            concurrency: self
                .webhook_concurrency
                .or(file.webhook_concurrency)
                .unwrap_or(32)
                .clamp(1, 1024),
            allowed_networks: self
                .webhook_allowed_networks
                .clone()
                .or(file.webhook_allowed_networks)
                .unwrap_or_default()
                .iter()
                .map(|raw| {
                    crate::platform::webhooks::destination::Network::parse(raw).ok_or_else(|| {
                        anyhow::anyhow!("invalid webhook_allowed_networks entry {raw:?}: use a CIDR such as 10.0.0.0/8")
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            lease: Duration::from_secs(
                self.webhook_lease_secs
                    .or(file.webhook_lease_secs)
                    .unwrap_or(DEFAULT_WEBHOOK_LEASE_SECS)
                    .max(1),
            ),
        };
        let metrics_listen = match self.metrics_listen.clone().or(file.metrics_listen) {
            None => None,
            Some(raw) => Some(
                raw.parse()
                    .map_err(|e| anyhow::anyhow!("invalid metrics_listen address {raw:?}: {e}"))?,
            ),
        };
        let limits = Limits {
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            header_read_timeout: Duration::from_millis(
                self.header_read_timeout_ms
                    .or(file.header_read_timeout_ms)
                    .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_MS)
                    .max(1),
            ),
            idle_timeout: Duration::from_secs(
                self.idle_timeout_secs
                    .or(file.idle_timeout_secs)
                    .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS)
                    .max(1),
            ),
            request_body_timeout: Duration::from_millis(
                self.request_body_timeout_ms
                    .or(file.request_body_timeout_ms)
                    .unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT_MS)
                    .max(1),
            ),
            max_streams: self
                .max_streams
                .or(file.max_streams)
                .unwrap_or(DEFAULT_MAX_STREAMS),
            max_streams_per_key: self
                .max_streams_per_key
                .or(file.max_streams_per_key)
                .unwrap_or(DEFAULT_MAX_STREAMS_PER_KEY),
            auth_failures_per_minute: self
                .auth_failures_per_minute
                .or(file.auth_failures_per_minute)
                .unwrap_or(DEFAULT_AUTH_FAILURES_PER_MINUTE),
        };
        let cors_allowed_origins = crate::platform::http::browser::CorsOrigins::parse(
            self.cors_allowed_origins
                .as_deref()
                .or(file.cors_allowed_origins.as_deref())
                .unwrap_or("*"),
        )
        .map_err(|e| anyhow::anyhow!("invalid cors_allowed_origins: {e}"))?;
        Ok(Settings {
            listen,
            cors_allowed_origins,
            data_dir,
            database_url,
            database_schema: self.database_schema.clone().or(file.database_schema),
            log_format,
            log_level: self
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            max_body_bytes,
            sqlite_synchronous,
            webhooks,
            shutdown_grace: Duration::from_secs(
                self.shutdown_grace_secs
                    .or(file.shutdown_grace_secs)
                    .unwrap_or(20),
            ),
            metrics_listen,
            limits,
            backup,
            privacy: PrivacySettings::default(),
        })
    }
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
