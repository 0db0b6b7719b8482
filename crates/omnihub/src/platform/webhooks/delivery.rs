//! Webhook delivery.
//!
//! A supervisor on every node claims the lease of each active subscription it
//! can and runs one worker per claimed subscription. A worker repeatedly:
//! reads the events after the subscription's feed position (and the retries
//! that are due), posts them concurrently (at most `concurrency` at a time,
//! each with a timeout), then records the outcomes, the new feed position and
//! the renewed lease in one write. Only the lease holder's write succeeds, so
//! two nodes never both deliver for one subscription; a node that dies loses
//! its lease once it expires (`webhook_lease_secs`) and another continues
//! from the recorded position (at-least-once: the batch in flight may be sent
//! again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::events::{WebhookDisabled, WebhookEvent};
use super::store::{self, Delivery};
use super::{DeliveryStatus, Webhook, WebhookStatus, signature};
use crate::platform::config::WebhookSettings;
use crate::platform::events::http::EventBody;
use crate::platform::events::tail::Tail;
use crate::platform::events::{self, Event, NewEvent};
use crate::platform::ids::{DeliveryId, WebhookId};
use crate::platform::metrics::{Metrics, ResultLabels};
use crate::platform::storage::{Store, StoreError};
use crate::platform::telemetry;
use crate::platform::time::{self, Timestamp};
use tracing::Instrument;

/// New events handled per worker step.
const EVENT_BATCH: i64 = 512;
/// Retries handled per worker step.
const RETRY_BATCH: i64 = 128;
/// How often the supervisor looks for subscriptions to claim.
const CLAIM_INTERVAL: Duration = Duration::from_secs(1);
/// Longest idle wait of a worker before it looks again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Characters of an error kept in the delivery log.
const MAX_ERROR_CHARS: usize = 200;

pub struct Dispatcher {
    store: Store,
    tail: Tail,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    /// This process's lease-owner name.
    node: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    workers: TaskTracker,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("lease lost to another node")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(StepError);

/// Starts the supervisor. The returned handle finishes after shutdown once
/// every worker has finished its batch in flight.
pub fn spawn(
    store: Store,
    tail: Tail,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        // A redirect is a failed delivery: following it would turn the POST
        // into a body-less GET (302/303) or send the event to another host.
        .redirect(reqwest::redirect::Policy::none())
        // Names resolve only to addresses deliveries may go to, at every
        // connection (see `destination`).
        .dns_resolver(Arc::new(super::destination::CheckedResolver {
            allowed: Arc::new(settings.allowed_networks.clone()),
        }))
        .pool_max_idle_per_host(settings.concurrency)
        .user_agent(concat!("omnihub-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let dispatcher = Arc::new(Dispatcher {
        store,
        tail,
        settings,
        metrics,
        node: uuid::Uuid::now_v7().to_string(),
        client,
        shutdown,
        workers: TaskTracker::new(),
    });
    Ok(tokio::spawn(supervise(dispatcher)))
}

async fn supervise(d: Arc<Dispatcher>) {
    let mut running: HashMap<WebhookId, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, handle| !handle.is_finished());
        match store::claimable(d.store.reader(), &d.node, time::now()).await {
            Ok(ids) => {
                let new: Vec<WebhookId> = ids
                    .into_iter()
                    .filter(|id| !running.contains_key(id))
                    .collect();
                for id in new {
                    match claim(&d, id).await {
                        Ok(true) => {
                            let worker = d.clone();
                            running.insert(id, d.workers.spawn(run_worker(worker, id)));
                        }
                        Ok(false) => {}
                        Err(error) => tracing::warn!(%error, "could not claim a webhook"),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not list webhooks"),
        }
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = tokio::time::sleep(CLAIM_INTERVAL) => {}
        }
    }
    d.workers.close();
    d.workers.wait().await;
}

async fn claim(d: &Dispatcher, id: WebhookId) -> Result<bool, StoreError> {
    let node = d.node.clone();
    let lease = d.settings.lease;
    d.store
        .write(move |tx| {
            let node = node.clone();
            Box::pin(async move {
                let now = tx.now();
                store::claim_lease(tx.conn(), id, &node, now, now + lease).await
            })
        })
        .await
}

async fn run_worker(d: Arc<Dispatcher>, id: WebhookId) {
    tracing::debug!(webhook = %id, "webhook worker started");
    let mut head = d.tail.subscribe();
    let mut renewed = Instant::now();
    while !d.shutdown.is_cancelled() {
        let hook = match store::get(d.store.reader(), id).await {
            Ok(Some(hook)) if hook.status == WebhookStatus::Active => hook,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, webhook = %id, "webhook worker could not load its subscription");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
        };
        head.borrow_and_update();
        match step(&d, &hook).await {
            Ok(true) => {
                renewed = Instant::now();
                continue;
            }
            Ok(false) => {}
            Err(StepError::LeaseLost) => break,
            Err(StepError::Store(error)) => {
                tracing::warn!(%error, webhook = %id, "webhook step failed");
            }
        }
        if renewed.elapsed() > d.settings.lease / 3 {
            match claim(&d, id).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => break,
                Err(error) => tracing::warn!(%error, "could not renew a webhook lease"),
            }
        }
        let wait = match store::next_retry_at(d.store.reader(), id).await {
            Ok(Some(at)) => (at - time::now())
                .to_std()
                .unwrap_or_default()
                .min(IDLE_POLL),
            _ => IDLE_POLL,
        };
        tokio::select! {
            _ = d.shutdown.cancelled() => break,
            _ = head.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let node = d.node.clone();
    let _ = d
        .store
        .write(move |tx| {
            let node = node.clone();
            Box::pin(async move { store::release_lease(tx.conn(), id, &node).await })
        })
        .await;
    tracing::debug!(webhook = %id, "webhook worker stopped");
}

/// One batch. Returns whether there was anything to send.
async fn step(d: &Dispatcher, hook: &Webhook) -> Result<bool, StepError> {
    let head = d.tail.head();
    let now = time::now();
    let retries = store::due_retries(d.store.reader(), hook.id, now, RETRY_BATCH).await?;
    let fresh = events::list_after(
        d.store.reader(),
        hook.cursor,
        &hook.event_types,
        EVENT_BATCH,
    )
    .await?;
    // Everything up to the local head is committed; when the page was not
    // full, no matching event lies between the last one and the head.
    let mut cursor = fresh.last().map_or(hook.cursor, |e| e.position);
    if (fresh.len() as i64) < EVENT_BATCH {
        cursor = cursor.max(head);
    }
    if retries.is_empty() && fresh.is_empty() {
        if cursor > hook.cursor {
            let id = hook.id;
            d.store
                .write(move |tx| {
                    Box::pin(async move { store::set_cursor(tx.conn(), id, cursor).await })
                })
                .await?;
        }
        return Ok(false);
    }
    let positions: Vec<i64> = retries.iter().map(|r| r.event_position).collect();
    let retry_events: HashMap<i64, Event> = events::by_positions(d.store.reader(), &positions)
        .await?
        .into_iter()
        .map(|e| (e.position, e))
        .collect();

    let mut jobs: Vec<(Option<Delivery>, Event)> = Vec::with_capacity(fresh.len() + retries.len());
    let mut gone = Vec::new();
    for retry in retries {
        match retry_events.get(&retry.event_position) {
            Some(event) => jobs.push((Some(retry), event.clone())),
            None => {
                tracing::warn!(delivery = %retry.id, "event of a retry is gone; giving it up");
                gone.push(Delivery {
                    status: DeliveryStatus::Failed,
                    next_attempt_at: None,
                    last_error: Some("the event no longer exists".into()),
                    ..retry
                });
            }
        }
    }
    give_up(d, gone).await?;
    jobs.extend(fresh.into_iter().map(|e| (None, e)));

    let sending = futures::stream::iter(jobs)
        .map(|(previous, event)| async move {
            let attempt = send(d, hook, &event).await;
            (previous, event, attempt)
        })
        .buffer_unordered(d.settings.concurrency)
        .collect::<Vec<(Option<Delivery>, Event, Attempt)>>();
    let attempts = holding_lease(d, hook.id, sending).await?;
    record(d, hook, cursor, attempts).await?;
    Ok(true)
}

/// Records retries whose event is gone as failed: they can never be sent,
/// and left due the worker would spin on them.
async fn give_up(d: &Dispatcher, gone: Vec<Delivery>) -> Result<(), StoreError> {
    if gone.is_empty() {
        return Ok(());
    }
    d.store
        .write(move |tx| {
            let gone = gone.clone();
            Box::pin(async move {
                for delivery in &gone {
                    store::update_delivery(tx.conn(), delivery).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .await
}

/// Runs `work` while renewing the subscription's lease every third of it.
/// A batch to a slow endpoint can take longer than the lease (up to
/// `batch / concurrency × timeout`); with the lease expired, another node
/// would send the same batch again and the two would keep taking the lease
/// from each other without either recording its batch.
async fn holding_lease<T>(
    d: &Dispatcher,
    id: WebhookId,
    work: impl std::future::Future<Output = T>,
) -> Result<T, StepError> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return Ok(output),
            _ = tokio::time::sleep(d.settings.lease / 3) => {
                if !claim(d, id).await? {
                    return Err(StepError::LeaseLost);
                }
            }
        }
    }
}

struct Attempt {
    at: Timestamp,
    status_code: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

async fn send(d: &Dispatcher, hook: &Webhook, event: &Event) -> Attempt {
    let at = time::now();
    let started = Instant::now();
    // Names are checked when the client resolves them; a literal address
    // never reaches the resolver, so it is checked here.
    if let Err(reason) = super::destination::check_literal(&hook.url, &d.settings.allowed_networks)
    {
        return failed_attempt(d, at, format!("destination refused: {reason}"));
    }
    let body = serde_json::to_vec(&EventBody::from(event)).unwrap_or_default();
    let message_id = event.id.to_string();
    let timestamp = at.timestamp();
    let signature = signature::sign(&hook.secret, &message_id, timestamp, &body);
    let (span, traceparent) = telemetry::outgoing(event.traceparent.as_deref(), "webhook delivery");
    let mut request = d
        .client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    if let Some(traceparent) = traceparent {
        // The receiver can continue the trace of the request that caused the event.
        request = request.header("traceparent", traceparent);
    }
    let result = request.body(body).send().instrument(span).await;
    // The log keeps the status and a reason of our own words: never the
    // receiver's answer (an internal service's body is not ours to show) nor
    // the URL (it may carry credentials).
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => {
            (Some(i64::from(response.status().as_u16())), None)
        }
        Ok(response) => {
            let status = response.status();
            (
                Some(i64::from(status.as_u16())),
                Some(format!("HTTP {status}")),
            )
        }
        Err(error) => (None, Some(failure_reason(&error))),
    };
    let result = if error.is_none() {
        "success"
    } else {
        "failure"
    };
    d.metrics
        .webhook_attempts
        .get_or_create(&ResultLabels {
            result: result.into(),
        })
        .inc();
    if error.is_some() {
        d.metrics.webhook_failures.inc();
    }
    Attempt {
        at,
        status_code,
        error,
        duration_ms: started.elapsed().as_millis() as i64,
    }
}

fn failed_attempt(d: &Dispatcher, at: Timestamp, reason: String) -> Attempt {
    d.metrics
        .webhook_attempts
        .get_or_create(&ResultLabels {
            result: "failure".into(),
        })
        .inc();
    d.metrics.webhook_failures.inc();
    Attempt {
        at,
        status_code: None,
        error: Some(reason.chars().take(MAX_ERROR_CHARS).collect()),
        duration_ms: 0,
    }
}

/// A short reason for a request that got no answer.
fn failure_reason(error: &reqwest::Error) -> String {
    let mut refused = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(r) = cause.downcast_ref::<super::destination::RefusedDestination>() {
            refused = Some(r.to_string());
        }
        source = cause.source();
    }
    let reason = match refused {
        Some(refused) => refused,
        None if error.is_timeout() => "timeout".into(),
        None if error.is_connect() => "connection failed".into(),
        None => "connection failed: the request could not be sent".into(),
    };
    reason.chars().take(MAX_ERROR_CHARS).collect()
}

/// The delay before retry number `attempts` (1 = after the first failure):
/// exponential from `base`, capped, with jitter in [50 %, 100 %].
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let delay = base.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

async fn record(
    d: &Dispatcher,
    hook: &Webhook,
    cursor: i64,
    attempts: Vec<(Option<Delivery>, Event, Attempt)>,
) -> Result<(), StepError> {
    let settings = d.settings.clone();
    let any_success = attempts.iter().any(|(_, _, a)| a.succeeded());
    let any_failure = attempts.iter().any(|(_, _, a)| !a.succeeded());
    let mut fresh = Vec::new();
    let mut retried = Vec::new();
    for (previous, event, attempt) in attempts {
        let delivery = delivery_after(&settings, hook, previous.as_ref(), &event, attempt);
        if previous.is_some() {
            retried.push(delivery);
        } else {
            fresh.push(delivery);
        }
    }
    let (id, node) = (hook.id, d.node.clone());
    let lease = d.settings.lease;
    let disabled = d
        .store
        .write(move |tx| {
            let (fresh, node, retried) = (fresh.clone(), node.clone(), retried.clone());
            Box::pin(async move {
                let now = tx.now();
                if !store::claim_lease(tx.conn(), id, &node, now, now + lease).await? {
                    return Err(StepError::LeaseLost);
                }
                store::insert_deliveries(tx.conn(), &fresh).await?;
                for delivery in &retried {
                    store::update_delivery(tx.conn(), delivery).await?;
                }
                store::set_cursor(tx.conn(), id, cursor).await?;
                let dialect = tx.dialect();
                let Some(mut hook) = store::get_for_update(tx.conn(), dialect, id).await? else {
                    return Ok(false);
                };
                if any_success {
                    hook.failing_since = None;
                } else if any_failure {
                    let since = *hook.failing_since.get_or_insert(now);
                    let failing_for = (now - since).to_std().unwrap_or_default();
                    if failing_for >= settings.disable_after {
                        disable(tx, &mut hook, failing_for, settings.disable_after).await?;
                        return Ok(true);
                    }
                }
                store::update(tx.conn(), &hook).await?;
                Ok(false)
            })
        })
        .await?;
    if disabled {
        d.metrics.webhooks_disabled.inc();
        tracing::warn!(webhook = %hook.id, url = %hook.url, "webhook disabled after failing");
    }
    Ok(())
}

/// The delivery record after an attempt: succeeded, failed for good after
/// the last attempt allowed, else retrying after a backoff.
fn delivery_after(
    settings: &WebhookSettings,
    hook: &Webhook,
    previous: Option<&Delivery>,
    event: &Event,
    attempt: Attempt,
) -> Delivery {
    let attempts_made = previous.map_or(0, |p| p.attempts) + 1;
    let (status, next_attempt_at) = if attempt.succeeded() {
        (DeliveryStatus::Succeeded, None)
    } else if attempts_made >= i64::from(settings.max_attempts) {
        (DeliveryStatus::Failed, None)
    } else {
        let delay = backoff(settings.retry_base, attempts_made as u32);
        (DeliveryStatus::Retrying, Some(attempt.at + delay))
    };
    Delivery {
        id: previous.map_or_else(DeliveryId::new, |p| p.id),
        webhook_id: hook.id,
        event_id: event.id.to_string(),
        event_position: event.position,
        event_type: event.event_type.clone(),
        status,
        attempts: attempts_made,
        next_attempt_at,
        last_attempt_at: attempt.at,
        last_status_code: attempt.status_code,
        last_error: attempt.error,
        last_duration_ms: attempt.duration_ms,
        created_at: previous.map_or(attempt.at, |p| p.created_at),
    }
}

async fn disable(
    tx: &mut crate::platform::storage::Tx,
    hook: &mut Webhook,
    failing_for: Duration,
    limit: Duration,
) -> Result<(), StepError> {
    let now = tx.now();
    let reason = format!(
        "every delivery failed for {} s (limit {} s); fix the endpoint and set status to active",
        failing_for.as_secs(),
        limit.as_secs()
    );
    hook.status = WebhookStatus::Disabled;
    hook.disabled_reason = Some(reason.clone());
    hook.updated_at = now;
    store::update(tx.conn(), hook).await?;
    store::fail_pending(tx.conn(), hook.id).await?;
    tx.emit(
        NewEvent::of(
            &WebhookEvent::Disabled(WebhookDisabled {
                id: hook.id,
                url: hook.url.clone(),
                reason,
            }),
            now,
        )
        .subject("webhook_id", hook.id),
    );
    Ok(())
}
