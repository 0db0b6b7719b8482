//! Starting and stopping a hub: connect, migrate, start the background tasks
//! (event tail, webhook delivery, housekeeping) and serve HTTP until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channels::cache::ChannelCache;
use crate::config::Settings;
use crate::events::tail::Tail;
use crate::http::{self, AppState, AppStateInner};
use crate::keys::cache::KeyCache;
use crate::metrics::Metrics;
use crate::storage::{Store, migrate};

/// How often housekeeping prunes idempotency keys and old delivery logs.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(600);
/// Succeeded and failed deliveries are kept this long in the log.
const DELIVERY_LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A running hub.
pub struct Hub {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (`metrics_listen`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    pub state: AppState,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Hub {
    /// Connects, migrates and starts serving on `settings.listen`.
    pub async fn start(settings: Settings) -> anyhow::Result<Hub> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        Self::start_on(settings, listener).await
    }

    pub async fn start_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Hub> {
        // Bound first, so a taken port fails the start before anything runs.
        let metrics_listener = match settings.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {address}: {e}"))?,
            ),
            None => None,
        };
        let store = Store::connect(&settings.store_options()).await?;
        migrate::run(&store).await?;
        let shutdown = CancellationToken::new();
        let tail = Tail::start(store.clone(), shutdown.clone()).await?;
        let metrics = Arc::new(Metrics::new());
        let state = AppState::new(AppStateInner {
            store: store.clone(),
            tail: tail.clone(),
            keys: Arc::new(KeyCache::default()),
            inventory: Arc::new(crate::inventory::Inventory::start(
                store.clone(),
                tail.clone(),
                shutdown.clone(),
            )),
            checkouts: Arc::new(crate::orders::checkout::CheckoutBatcher::start(
                store.clone(),
            )),
            channels: Arc::new(ChannelCache::default()),
            tracking: crate::tracking::batcher::Batcher::start(store.clone()),
            metrics: metrics.clone(),
            guards: http::limits::Guards::new(&settings.limits),
            settings: Arc::new(settings.clone()),
            shutdown: shutdown.clone(),
        });
        let dispatcher = crate::webhooks::delivery::spawn(
            store.clone(),
            tail,
            settings.webhooks.clone(),
            metrics,
            shutdown.clone(),
        )?;
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let expiry = crate::inventory::expiry::spawn(store.clone(), shutdown.clone());
        let addr = listener.local_addr()?;
        let mut background = vec![dispatcher, housekeeping, expiry];
        let metrics_addr = match metrics_listener {
            Some(listener) => {
                let metrics_addr = listener.local_addr()?;
                let app = http::metrics_router(state.clone());
                let stop = shutdown.clone();
                background.push(tokio::spawn(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "the metrics listener stopped");
                    }
                }));
                Some(metrics_addr)
            }
            None => None,
        };
        let app = http::router(state.clone());
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

async fn housekeeping(state: AppState) {
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
        }
        match crate::idempotency::prune(&state).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned expired idempotency keys"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not prune idempotency keys"),
        }
        let before = crate::time::now() - DELIVERY_LOG_RETENTION;
        let pruned = state
            .store
            .write(move |tx| {
                Box::pin(async move {
                    crate::webhooks::store::prune_deliveries(tx.conn(), before).await
                })
            })
            .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "could not prune the webhook delivery log");
        }
    }
}
