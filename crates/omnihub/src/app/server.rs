//! Starting and stopping a hub: connect, migrate, start the background tasks
//! (event tail, webhook delivery, housekeeping) and serve HTTP until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{AppParts, AppState};
use crate::commerce::inventory::Inventory;
use crate::commerce::orders::checkout::CheckoutBatcher;
use crate::commerce::state::{CommerceParts, CommerceState};
use crate::customers::state::{CustomersParts, CustomersState};
use crate::customers::tracking::batcher::Batcher;
use crate::engagement::consent::view::ConsentView;
use crate::engagement::state::{EngagementParts, EngagementState};
use crate::platform::channels::cache::ChannelCache;
use crate::platform::config::Settings;
use crate::platform::events::tail::Tail;
use crate::platform::http;
use crate::platform::http::limits::Guards;
use crate::platform::state::{BrowserRoutes, Platform, PlatformParts};

/// Commerce's follow-ups of identity changes: a merge moves the guest's
/// carts into the customer's (`carts::merge::follow_merge`), an unmerge or
/// a split gives orders and cart lines back to the profiles they were made
/// for (`orders::attribution::follow_separation`). Identity calls them without
/// importing commerce.
pub fn follow_ups() -> crate::customers::identity::FollowUps {
    crate::customers::identity::FollowUps {
        merged: crate::commerce::carts::merge::follow_merge,
        separated: crate::commerce::orders::attribution::follow_separation,
    }
}
use crate::engagement::privacy::PrivacyState;
/// Every follow-up of tracking calls: identity's (above) and engagement's
/// consent signals (`consent::signals`: Segment's consent object, GPC).
pub fn tracking_hooks() -> crate::customers::tracking::hooks::Hooks {
    crate::customers::tracking::hooks::Hooks {
        identity: follow_ups(),
        call: crate::engagement::consent::signals::follow_call,
    }
}
use crate::platform::keys::cache::KeyCache;
use crate::platform::metrics::Metrics;
use crate::platform::storage::{Store, migrate};

/// How often housekeeping prunes expired idempotency keys (retention of
/// data is the privacy runner's, `engagement::privacy::runner`).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);

/// A running hub.
pub struct Hub {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`metrics_listen`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    /// On SQLite: another hub was already serving the same database file
    /// when this one started (supported; `serve` says so).
    pub shares_sqlite_database: bool,
    /// On SQLite: a shared lock on `<database>.lock` while the hub runs.
    _data_lock: Option<std::fs::File>,
}

/// The metrics listener, when one is configured.
async fn bind_metrics(settings: &Settings) -> anyhow::Result<Option<TcpListener>> {
    match settings.metrics_listen {
        Some(address) => Ok(Some(TcpListener::bind(address).await.map_err(|e| {
            anyhow::anyhow!("cannot listen for metrics on {address}: {e}")
        })?)),
        None => Ok(None),
    }
}

/// Serves `/metrics` on its own listener until shutdown.
fn serve_metrics(
    listener: TcpListener,
    platform: Platform,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let app = http::metrics_router(platform);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics listener stopped");
        }
    })
}

impl Hub {
    /// Connects, migrates and starts serving on `settings.listen`.
    pub async fn start(settings: Settings) -> anyhow::Result<Hub> {
        let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; choose another address with --listen or OMNIHUB_LISTEN",
                settings.listen
            )
        })?;
        Self::start_on(settings, listener).await
    }

    pub async fn start_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Hub> {
        // Bound first, so a taken port fails the start before anything runs.
        let metrics_listener = bind_metrics(&settings).await?;
        let backup_database = backup_database(&settings)?;
        let (data_lock, shares_sqlite_database) = lock_sqlite_database(&settings.database_url)?;
        if shares_sqlite_database {
            tracing::warn!(
                database = %crate::platform::storage::describe_location(&settings.database_url),
                "another omnihub is already serving this SQLite database; both will serve it"
            );
        }
        let store = Store::connect(&settings.store_options()).await?;
        migrate::run(&store).await?;
        let shutdown = CancellationToken::new();
        let tail = Tail::start(store.clone(), shutdown.clone()).await?;
        let metrics = Arc::new(Metrics::new());
        let state = application_state(&settings, &store, &tail, &metrics, &shutdown);
        let dispatcher = crate::platform::webhooks::delivery::spawn(
            store.clone(),
            tail,
            settings.webhooks.clone(),
            metrics,
            shutdown.clone(),
        )?;
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let expiry = crate::commerce::inventory::expiry::spawn(store.clone(), shutdown.clone());
        let addr = listener.local_addr()?;
        let privacy =
            crate::engagement::privacy::runner::spawn(state.privacy.clone(), shutdown.clone());
        let mut background = vec![dispatcher, housekeeping, expiry, privacy];
        if let (Some(database), Some(backup)) = (backup_database, settings.backup.clone()) {
            background.push(tokio::spawn(crate::platform::backup::schedule::run(
                database,
                backup,
                state.metrics.clone(),
                shutdown.clone(),
            )));
        }
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let metrics_addr = listener.local_addr()?;
                background.push(serve_metrics(listener, state.platform.clone(), &shutdown));
                Some(metrics_addr)
            }
            None => None,
        };
        let app = super::router::router(state.clone());
        let server = tokio::spawn(http::serve::serve(
            listener,
            app,
            settings.limits.clone(),
            shutdown.clone(),
        ));
        Ok(Hub {
            addr,
            metrics_addr,
            state,
            server,
            background,
            shares_sqlite_database,
            _data_lock: data_lock,
        })
    }

    /// Stops accepting requests, drains those in flight and the webhook
    /// deliveries in flight (up to the grace period), then closes the database.
    pub async fn shutdown(self) {
        let grace = self.state.settings.shutdown_grace;
        self.state.shutdown.cancel();
        let drain = async {
            let _ = self.server.await;
            for task in self.background {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown grace period over; stopping with work in flight");
        }
        self.state.store.close().await;
    }

    /// Waits until the server stops (after [`Hub::shutdown`] is triggered elsewhere).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }
}

/// Every context's state, wired together: the platform's parts, the
/// tracking coalescer and identity follow-ups, the inventory view and the
/// checkout batcher, the consent view (each starts its task here).
fn application_state(
    settings: &Settings,
    store: &Store,
    tail: &Tail,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> AppState {
    let platform = Platform::new(PlatformParts {
        store: store.clone(),
        tail: tail.clone(),
        keys: Arc::new(KeyCache::default()),
        channels: Arc::new(ChannelCache::default()),
        metrics: metrics.clone(),
        guards: Guards::new(&settings.limits),
        settings: Arc::new(settings.clone()),
        shutdown: shutdown.clone(),
        browser_routes: BrowserRoutes {
            accepts_write_key: crate::customers::tracking::http::is_tracking_path,
            write_key_body_limit: crate::customers::tracking::MAX_BATCH_BYTES,
        },
    });
    let customers = CustomersState::new(CustomersParts {
        platform: platform.clone(),
        tracking: Batcher::start(store.clone(), tracking_hooks()),
        follow_ups: follow_ups(),
    });
    let commerce = CommerceState::new(CommerceParts {
        platform: platform.clone(),
        inventory: Arc::new(Inventory::start(
            store.clone(),
            tail.clone(),
            shutdown.clone(),
        )),
        checkouts: Arc::new(CheckoutBatcher::start(store.clone())),
    });
    let privacy = PrivacyState {
        platform: platform.clone(),
        participants: Arc::new(super::privacy::participants(&settings.privacy)),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    let engagement = EngagementState::new(EngagementParts {
        platform: platform.clone(),
        consent: ConsentView::start(store.clone(), tail.clone(), shutdown.clone()),
    });
    AppState::new(AppParts {
        platform,
        customers,
        commerce,
        privacy,
        engagement,
    })
}

/// The SQLite file scheduled backups copy, when `--backup-dir` is set.
/// Checked before anything starts: a backup directory that is missing, or
/// set on PostgreSQL (which has its own tools), fails the start rather than
/// leaving the operator believing backups run.
fn backup_database(settings: &Settings) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(backup) = &settings.backup else {
        return Ok(None);
    };
    let Some(database) = crate::platform::storage::sqlite_file(&settings.database_url) else {
        anyhow::bail!(
            "--backup-dir / OMNIHUB_BACKUP_DIR schedules backups of the embedded SQLite database; \
             this hub uses {}: back PostgreSQL up with its own tools (pg_basebackup and WAL \
             archiving, see docs/operations.md) and unset the backup directory",
            crate::platform::storage::describe_location(&settings.database_url)
        );
    };
    if !backup.dir.is_dir() {
        anyhow::bail!(
            "the backup directory {} does not exist or is not a directory; create it (mkdir -p) \
             or mount it first",
            backup.dir.display()
        );
    }
    Ok(Some(database))
}

/// Hubs on one SQLite file: supported (they take turns at SQLite's write
/// lock, and each one's live stream and inventory view follow the others'
/// commits within the tail's 200 ms poll), but rarely what a newcomer meant,
/// so the second one says so. Every hub holds a shared `flock` on
/// `<database>.lock`; a hub that cannot take it exclusively first knows
/// another one is running. Returns the lock (held while the hub runs) and
/// whether the database is shared.
fn lock_sqlite_database(url: &str) -> anyhow::Result<(Option<std::fs::File>, bool)> {
    let Some(database) = crate::platform::storage::sqlite_file(url) else {
        return Ok((None, false));
    };
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    let mut path = database.into_os_string();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
    let alone = try_flock(&file, FlockMode::Exclusive)
        .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", path.display()))?;
    // Downgrade (or join the others): shared, so the next hub can tell.
    let held = try_flock(&file, FlockMode::Shared).unwrap_or(false);
    Ok((held.then_some(file), !alone))
}

#[derive(Clone, Copy)]
enum FlockMode {
    Exclusive,
    Shared,
}

/// `flock(… | LOCK_NB)`: false when another open file holds a conflicting
/// lock. (`File::try_lock` needs Rust 1.89; the MSRV is 1.85.)
#[cfg(unix)]
fn try_flock(file: &std::fs::File, mode: FlockMode) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let operation = match mode {
        FlockMode::Exclusive => libc::LOCK_EX,
        FlockMode::Shared => libc::LOCK_SH,
    };
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let result = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if result == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(not(unix))]
fn try_flock(_file: &std::fs::File, _mode: FlockMode) -> std::io::Result<bool> {
    Ok(true)
}

async fn housekeeping(state: AppState) {
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
        }
        match crate::platform::idempotency::prune(&state.platform).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned expired idempotency keys"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not prune idempotency keys"),
        }
    }
}
