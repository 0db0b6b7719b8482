//! Applying the precedence of the settings: flag or environment, then the
//! file, then the default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

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

    /// Privacy requests and retention (docs/privacy.md).
    fn privacy(&self, file: &FileSettings) -> anyhow::Result<super::PrivacySettings> {
        let duration = |name: &str, value: Option<String>| -> anyhow::Result<Option<Duration>> {
            value
                .map(|v| {
                    v.parse::<crate::platform::backup::Interval>()
                        .map(|i| i.0)
                        .map_err(|e| anyhow::anyhow!("invalid {name}: {e}"))
                })
                .transpose()
        };
        let defaults = super::PrivacySettings::default();
        Ok(super::PrivacySettings {
            erasure_chunk_rows: pick(&self.erasure_chunk_rows, &file.erasure_chunk_rows)
                .unwrap_or(defaults.erasure_chunk_rows)
                .max(1),
            notice_retention: duration(
                "privacy_notice_retention",
                pick(
                    &self.privacy_notice_retention,
                    &file.privacy_notice_retention,
                ),
            )?
            .unwrap_or(defaults.notice_retention),
            tracking_retention: duration(
                "tracking_retention",
                pick(&self.tracking_retention, &file.tracking_retention),
            )?,
            cart_retention: duration(
                "cart_retention",
                pick(&self.cart_retention, &file.cart_retention),
            )?,
            webhook_log_retention: duration(
                "webhook_log_retention",
                pick(&self.webhook_log_retention, &file.webhook_log_retention),
            )?
            .unwrap_or(defaults.webhook_log_retention),
            ..defaults
        })
    }

    /// Applies the precedence: these values, then the file, then defaults.
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => FileSettings::load(path)?,
            None => FileSettings::default(),
        };
        let data_dir =
            pick(&self.data_dir, &file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = pick(&self.database_url, &file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("omnihub.db").display()));
        Ok(Settings {
            listen: self.listen(&file)?,
            cors_allowed_origins: self.cors_allowed_origins(&file)?,
            data_dir,
            database_url,
            database_schema: pick(&self.database_schema, &file.database_schema),
            log_format: self.log_format(&file)?,
            log_level: pick(&self.log_level, &file.log_level).unwrap_or_else(|| "info".into()),
            max_body_bytes: pick(&self.max_body_bytes, &file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            sqlite_synchronous: self.sqlite_synchronous(&file)?,
            webhooks: self.webhooks(&file)?,
            shutdown_grace: Duration::from_secs(
                pick(&self.shutdown_grace_secs, &file.shutdown_grace_secs).unwrap_or(20),
            ),
            metrics_listen: self.metrics_listen(&file)?,
            limits: self.limits(&file),
            backup: self.backup(&file)?,
            privacy: self.privacy(&file)?,
            otlp_endpoint: pick(&self.otlp_endpoint, &file.otlp_endpoint)
                .filter(|endpoint| !endpoint.is_empty()),
        })
    }

    fn listen(&self, file: &FileSettings) -> anyhow::Result<SocketAddr> {
        let listen = pick(&self.listen, &file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        listen
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid listen address {listen:?}: {e}"))
    }

    fn metrics_listen(&self, file: &FileSettings) -> anyhow::Result<Option<SocketAddr>> {
        pick(&self.metrics_listen, &file.metrics_listen)
            .map(|raw| {
                raw.parse()
                    .map_err(|e| anyhow::anyhow!("invalid metrics_listen address {raw:?}: {e}"))
            })
            .transpose()
    }

    fn log_format(&self, file: &FileSettings) -> anyhow::Result<LogFormat> {
        match pick(&self.log_format, &file.log_format).as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => anyhow::bail!("invalid log format {other:?}: use text or json"),
        }
    }

    fn sqlite_synchronous(&self, file: &FileSettings) -> anyhow::Result<String> {
        let mode = pick(&self.sqlite_synchronous, &file.sqlite_synchronous)
            .unwrap_or_else(|| "FULL".into())
            .to_ascii_uppercase();
        if !matches!(mode.as_str(), "FULL" | "NORMAL" | "EXTRA") {
            anyhow::bail!("invalid sqlite_synchronous {mode:?}: use FULL, NORMAL or EXTRA");
        }
        Ok(mode)
    }

    fn cors_allowed_origins(
        &self,
        file: &FileSettings,
    ) -> anyhow::Result<crate::platform::http::browser::CorsOrigins> {
        let raw = pick(&self.cors_allowed_origins, &file.cors_allowed_origins);
        crate::platform::http::browser::CorsOrigins::parse(raw.as_deref().unwrap_or("*"))
            .map_err(|e| anyhow::anyhow!("invalid cors_allowed_origins: {e}"))
    }

    fn webhooks(&self, file: &FileSettings) -> anyhow::Result<WebhookSettings> {
        let allowed_networks = pick(
            &self.webhook_allowed_networks,
            &file.webhook_allowed_networks,
        )
        .unwrap_or_default()
        .iter()
        .map(|raw| {
            crate::platform::webhooks::destination::Network::parse(raw).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid webhook_allowed_networks entry {raw:?}: use a CIDR such as 10.0.0.0/8"
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
        Ok(WebhookSettings {
            timeout: Duration::from_millis(
                pick(&self.webhook_timeout_ms, &file.webhook_timeout_ms).unwrap_or(10_000),
            ),
            retry_base: Duration::from_millis(
                pick(&self.webhook_retry_base_ms, &file.webhook_retry_base_ms).unwrap_or(5_000),
            ),
            max_attempts: pick(&self.webhook_max_attempts, &file.webhook_max_attempts)
                .unwrap_or(12)
                .max(1),
            disable_after: Duration::from_secs(
                pick(
                    &self.webhook_disable_after_secs,
                    &file.webhook_disable_after_secs,
                )
                .unwrap_or(5 * 24 * 3600),
            ),
            concurrency: pick(&self.webhook_concurrency, &file.webhook_concurrency)
                .unwrap_or(32)
                .clamp(1, 1024),
            allowed_networks,
            lease: Duration::from_secs(
                pick(&self.webhook_lease_secs, &file.webhook_lease_secs)
                    .unwrap_or(DEFAULT_WEBHOOK_LEASE_SECS)
                    .max(1),
            ),
        })
    }

    fn limits(&self, file: &FileSettings) -> Limits {
        let millis = |flag: &Option<u64>, in_file: &Option<u64>, default: u64| {
            Duration::from_millis(pick(flag, in_file).unwrap_or(default).max(1))
        };
        Limits {
            max_connections: pick(&self.max_connections, &file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            header_read_timeout: millis(
                &self.header_read_timeout_ms,
                &file.header_read_timeout_ms,
                DEFAULT_HEADER_READ_TIMEOUT_MS,
            ),
            idle_timeout: Duration::from_secs(
                pick(&self.idle_timeout_secs, &file.idle_timeout_secs)
                    .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS)
                    .max(1),
            ),
            request_body_timeout: millis(
                &self.request_body_timeout_ms,
                &file.request_body_timeout_ms,
                DEFAULT_REQUEST_BODY_TIMEOUT_MS,
            ),
            max_streams: pick(&self.max_streams, &file.max_streams).unwrap_or(DEFAULT_MAX_STREAMS),
            max_streams_per_key: pick(&self.max_streams_per_key, &file.max_streams_per_key)
                .unwrap_or(DEFAULT_MAX_STREAMS_PER_KEY),
            auth_failures_per_minute: pick(
                &self.auth_failures_per_minute,
                &file.auth_failures_per_minute,
            )
            .unwrap_or(DEFAULT_AUTH_FAILURES_PER_MINUTE),
        }
    }
}

/// The precedence of one setting: the flag or environment, then the file.
fn pick<T: Clone>(given: &Option<T>, in_file: &Option<T>) -> Option<T> {
    given.clone().or_else(|| in_file.clone())
}
