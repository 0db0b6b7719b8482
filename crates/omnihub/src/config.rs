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
    pub cors_allowed_origins: crate::http::browser::CorsOrigins,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./omnihub-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

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
}

impl SettingsArgs {
    /// Applies the precedence: these values, then the file, then defaults.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => FileSettings::load(path)?,
            None => FileSettings::default(),
        };
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
        };
        let cors_allowed_origins = crate::http::browser::CorsOrigins::parse(
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

    pub fn store_options(&self) -> crate::storage::StoreOptions {
        let mut options = crate::storage::StoreOptions::new(self.database_url.clone());
        options.schema = self.database_schema.clone();
        options.sqlite_synchronous = self.sqlite_synchronous.clone();
        options
    }
}
