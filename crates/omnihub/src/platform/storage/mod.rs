//! Storage: one [`Store`] over SQLite (embedded default) or PostgreSQL.
//!
//! * Reads go straight to a connection pool ([`Store::reader`]).
//! * Every write goes through the group-commit [`writer`]: concurrent callers'
//!   operations are coalesced into one database transaction, each inside its own
//!   savepoint, so one commit (and one fsync) serves many requests.
//! * Domain events are written by the same transaction as the change that
//!   caused them ([`Tx::emit`]); see `events::store` for the outbox.
//!
//! SQL lives in the `store.rs` of each domain module. Statements are shared
//! where both dialects agree and chosen by [`Dialect`] where they don't.

pub mod coalescer;
mod error;
pub mod migrate;
pub mod outbox;
pub mod secrets;
pub mod sql;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::watch;

pub use error::{StoreError, is_disk_full, is_write_error};
pub use writer::{OpError, Tx, WriteError};

/// Implements [`OpError`] for domain error enums that hold storage errors in
/// a `Store(StoreError)` variant.
macro_rules! impl_op_error {
    ($($error:ty),+ $(,)?) => {$(
        impl $crate::platform::storage::OpError for $error {
            fn is_lock_conflict(&self) -> bool {
                match self {
                    Self::Store(error) => error.is_transient_conflict(),
                    #[allow(unreachable_patterns)]
                    _ => false,
                }
            }
        }
    )+};
}
pub(crate) use impl_op_error;

/// Which SQL dialect a [`Store`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Connection settings for [`Store::connect`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` or `postgres://…`.
    pub url: String,
    /// PostgreSQL only: the schema to use (created when missing).
    pub schema: Option<String>,
    /// Maximum connections in the read pool.
    pub max_read_connections: u32,
    /// SQLite `synchronous` setting: `FULL` (default, durable on power loss)
    /// or `NORMAL` (durable on process crash only).
    pub sqlite_synchronous: String,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_read_connections: 8,
            sqlite_synchronous: "FULL".into(),
        }
    }
}

/// The handle every part of the hub uses to reach the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    dialect: Dialect,
    url: String,
    reader: AnyPool,
    writer: writer::WriterHandle,
    /// Bumped after every commit that wrote events, so local tails wake at once.
    events_committed: watch::Sender<u64>,
    /// The highest feed position committed through this node.
    committed_position: watch::Sender<i64>,
    /// Events committed through this node, for its tail (SQLite only).
    handoff: Arc<writer::Handoff>,
}

/// The read pool, the write pool and the writer lanes of a database.
type Pools = (AnyPool, AnyPool, usize);

/// SQLite: one writer connection in WAL mode (SQLite allows one writer at a
/// time and the group-commit writer makes the most of it) and query-only
/// readers.
async fn open_sqlite(options: &StoreOptions) -> Result<Pools, StoreError> {
    ensure_sqlite_parent_dir(&options.url);
    let url = with_sqlite_create_mode(&options.url);
    let connect = AnyConnectOptions::from_str(&url)?;
    let sync = options.sqlite_synchronous.clone();
    let sync_w = sync.clone();
    let write_pool = AnyPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .after_connect(move |conn, _| {
            let sync = sync_w.clone();
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute(format!("PRAGMA synchronous = {sync}").as_str())
                    .await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                // Deleted rows are overwritten, not left in free pages: an
                // erased person's data must not survive in the file.
                conn.execute("PRAGMA secure_delete = ON").await?;
                Ok(())
            })
        })
        .connect_with(connect.clone())
        .await?;
    let reader = AnyPoolOptions::new()
        .max_connections(options.max_read_connections.max(1))
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                conn.execute("PRAGMA query_only = ON").await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await?;
    Ok((reader, write_pool, 1))
}

/// PostgreSQL: the schema created when missing, then readers and one
/// connection per writer lane, each set up for the schema.
async fn open_postgres(options: &StoreOptions) -> Result<Pools, StoreError> {
    let connect = AnyConnectOptions::from_str(&options.url)?;
    if let Some(schema) = &options.schema {
        validate_schema_name(schema)?;
        let bootstrap = AnyPoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await?;
        bootstrap
            .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
            .await?;
        bootstrap.close().await;
    }
    let after_connect = postgres_session_setup(options.schema.clone());
    let reader = AnyPoolOptions::new()
        .max_connections(options.max_read_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(after_connect.clone())
        .connect_with(connect.clone())
        .await?;
    let lanes = writer::POSTGRES_WRITER_LANES;
    let write_pool = AnyPoolOptions::new()
        .max_connections(lanes as u32)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(after_connect)
        .connect_with(connect)
        .await?;
    Ok((reader, write_pool, lanes))
}

impl Store {
    /// Opens the database, creating the SQLite file or PostgreSQL schema when
    /// missing. Does not migrate; see [`migrate::run`].
    pub async fn connect(options: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if options.url.starts_with("postgres") {
            Dialect::Postgres
        } else if options.url.starts_with("sqlite") {
            Dialect::Sqlite
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database url (expected sqlite:// or postgres://): {}",
                redact_url(&options.url)
            )));
        };
        let (reader, write_pool, lanes) = match dialect {
            Dialect::Sqlite => open_sqlite(options).await?,
            Dialect::Postgres => open_postgres(options).await?,
        };
        let (events_committed, _) = watch::channel(0u64);
        let (committed_position, _) = watch::channel(0i64);
        let handoff = Arc::new(writer::Handoff::default());
        let signals = writer::Signals {
            events_committed: events_committed.clone(),
            committed_position: committed_position.clone(),
            handoff: handoff.clone(),
        };
        let writer = writer::spawn(dialect, write_pool, lanes, signals);
        Ok(Store {
            inner: Arc::new(StoreInner {
                dialect,
                url: options.url.clone(),
                reader,
                writer,
                events_committed,
                committed_position,
                handoff,
            }),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The pool for reads. Never use it for writes: they go through [`Store::write`].
    pub fn reader(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// Runs `op` inside a group-committed transaction and returns its result
    /// once the transaction is durable. When `op` fails, everything it did
    /// (including the events it emitted) is rolled back and other operations in
    /// the same batch are unaffected.
    ///
    /// Inside a request with an `Idempotency-Key`, the write is *held*: the
    /// request's stored answer is written by the same transaction (see
    /// `idempotency`).
    ///
    /// `op` may run more than once: when the database aborts it to resolve a
    /// lock conflict with another transaction, it is rolled back and runs
    /// again in a later transaction (see [`writer`]). Only its last run's
    /// writes and events are committed.
    pub async fn write<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: OpError + Send + 'static,
        F: for<'t> FnMut(&'t mut Tx) -> futures::future::BoxFuture<'t, Result<T, E>>
            + Send
            + 'static,
    {
        if let Some(scope) = crate::platform::idempotency::scope_for_write() {
            return crate::platform::idempotency::held_write(scope, op).await;
        }
        self.inner.writer.submit(op).await
    }

    /// [`Store::write`] that is never held by an idempotent request (the
    /// idempotency bookkeeping itself).
    pub(crate) async fn write_plain<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: OpError + Send + 'static,
        F: for<'t> FnMut(&'t mut Tx) -> futures::future::BoxFuture<'t, Result<T, E>>
            + Send
            + 'static,
    {
        self.inner.writer.submit(op).await
    }

    /// Runs `op` exactly once in a group-committed transaction, never held:
    /// for operations that cannot run twice (they own something they hand
    /// on) or whose input is not worth cloning for a rerun (bulk loaders). A
    /// lock conflict is returned to the caller.
    pub async fn write_once<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> futures::future::BoxFuture<'t, Result<T, E>>
            + Send
            + 'static,
    {
        self.inner.writer.submit_once(op).await
    }

    /// SQLite: checkpoints the WAL into the database file and truncates it,
    /// so the earlier images of rewritten or deleted pages leave the disk
    /// (after an erasure). Retries while another connection is mid-transaction.
    /// PostgreSQL: nothing (deleted rows are gone from what the database
    /// serves; vacuum reclaims their space).
    pub async fn truncate_wal(&self) -> Result<(), StoreError> {
        use sqlx::Connection;
        if self.dialect() != Dialect::Sqlite {
            return Ok(());
        }
        let mut conn = sqlx::AnyConnection::connect(&self.inner.url).await?;
        conn.execute("PRAGMA busy_timeout = 10000").await?;
        for _ in 0..50 {
            let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await?;
            let busy: i64 = sqlx::Row::try_get(&row, 0)?;
            if busy == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        conn.close().await?;
        Ok(())
    }

    /// The connection URL (for PostgreSQL LISTEN connections).
    pub fn postgres_url(&self) -> String {
        self.inner.url.clone()
    }

    /// A receiver that changes whenever a local commit wrote events.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.inner.events_committed.subscribe()
    }

    /// The highest feed position committed through this node: a read that
    /// must see this node's acknowledged writes waits for views to reach it.
    pub fn committed_position(&self) -> i64 {
        *self.inner.committed_position.borrow()
    }

    /// Events committed through this node since the last call, oldest first
    /// (SQLite only; see [`writer::Handoff`]). For the node's event tail.
    pub fn take_committed_events(&self) -> Vec<crate::platform::events::Event> {
        self.inner.handoff.take()
    }

    /// Wakes local event consumers, e.g. after a NOTIFY from another node.
    pub fn signal_events(&self) {
        self.inner.events_committed.send_modify(|n| *n += 1);
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    /// Open and idle connections of the read pool, for metrics.
    pub fn pool_size(&self) -> (u32, usize) {
        (self.inner.reader.size(), self.inner.reader.num_idle())
    }

    /// Stops the writer after it drained queued operations, then closes pools.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
    }
}

/// Per-connection setup on PostgreSQL: the schema and UTC.
fn postgres_session_setup(
    schema: Option<String>,
) -> impl for<'c> Fn(
    &'c mut sqlx::AnyConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<(), sqlx::Error>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |conn, _meta| {
        let schema = schema.clone();
        Box::pin(async move {
            if let Some(schema) = schema {
                conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                    .await?;
            }
            conn.execute("SET TIME ZONE 'UTC'").await?;
            Ok(())
        })
    }
}

impl StoreInner {
    fn writer_pool(&self) -> &AnyPool {
        self.writer.pool()
    }
}

fn validate_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "invalid PostgreSQL schema name {schema:?}: use letters, digits and _"
        )))
    }
}

/// The absolute path of the database file of a `sqlite:` URL (`None` for
/// another database or SQLite in memory).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite") {
        return None;
    }
    let path = sqlite_path(url);
    if path.is_empty() || path.starts_with(':') {
        return None;
    }
    std::path::absolute(path).ok()
}

/// Where the data is, for people: the absolute file of SQLite, the URL
/// (password hidden) of PostgreSQL.
pub fn describe_location(url: &str) -> String {
    match sqlite_file(url) {
        Some(path) => path.display().to_string(),
        None => redact_url(url),
    }
}

fn sqlite_path(url: &str) -> &str {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split('?').next().unwrap_or(rest)
}

fn ensure_sqlite_parent_dir(url: &str) {
    let path = sqlite_path(url);
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
}

fn with_sqlite_create_mode(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Hides passwords in a database URL for logs and errors: the password of
/// the user info (`user:***@host`) and the value of every query parameter
/// whose name contains `password` (`?password=***`, `sslpassword=***`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &base[..scheme_end + 3],
                    &userinfo[..colon],
                    &base[at..]
                ),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    format!("{name}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_wherever_they_are() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/hub"),
            "postgres://app:***@db:5432/hub"
        );
        assert_eq!(
            redact_url("postgres://db/hub?user=app&password=s3cr@t&sslmode=require"),
            "postgres://db/hub?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app:x@db/hub?sslpassword=y"),
            "postgres://app:***@db/hub?sslpassword=***"
        );
        assert_eq!(
            redact_url("sqlite://./data/omnihub.db"),
            "sqlite://./data/omnihub.db"
        );
    }
}
