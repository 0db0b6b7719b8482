//! Logs and traces.
//!
//! * Every request has a W3C trace context ([`TraceContext`]): the one its
//!   `traceparent` header names (a child of it), or a new root. It is the
//!   current one while the request is served ([`current`]); the writer stores
//!   it with the events the request's writes emit (`events.traceparent`), and
//!   webhook deliveries of those events send it on as their `traceparent`
//!   header, so a POS sale can be followed to the deliveries it caused.
//! * With `otlp_endpoint` set, spans are exported over OTLP/HTTP (protobuf):
//!   one per request (`http::trace`), the write operations it submitted as
//!   its children, the writer's batch (linked to the requests it carries) and
//!   each webhook delivery (a child of the event's trace context). Without it
//!   no OpenTelemetry layer is installed and spans are only made for JSON
//!   logs, whose lines then carry `trace_id` and `span_id`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{self, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::platform::config::{LogFormat, Settings};

/// Spans are exported (an OTLP endpoint is configured).
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// Spans are made at all: exported, or logged as JSON.
static SPANS: AtomicBool = AtomicBool::new(false);

/// How long an export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A W3C trace context: the ids of a trace and of one span in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`);
    /// `None` when it is not one (it is then ignored, as the W3C
    /// recommendation says: the request starts a new trace).
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; later versions may add some.
        let known = version == "00";
        if (known && parts.next().is_some()) || version.len() != 2 || version == "ff" {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex::decode_to_slice(version, &mut [0u8; 1]).ok()?;
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        hex::decode_to_slice(flags, &mut flag).ok()?;
        let lowercase = |s: &str| !s.bytes().any(|b| b.is_ascii_uppercase());
        if trace_id == [0; 16] || span_id == [0; 8] || !lowercase(trace) || !lowercase(span) {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// A new trace (sampled).
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: nonzero(rand::random()),
            span_id: nonzero(rand::random()),
            sampled: true,
        }
    }

    /// A new span in the trace of `parent`, or a new trace.
    pub fn child_of(parent: Option<&TraceContext>) -> TraceContext {
        match parent {
            Some(parent) => TraceContext {
                span_id: nonzero(rand::random()),
                ..*parent
            },
            None => TraceContext::new_root(),
        }
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    fn to_otel(self) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            flags,
            true,
            TraceState::default(),
        )
    }

    fn from_otel(context: &SpanContext) -> Option<TraceContext> {
        context.is_valid().then(|| TraceContext {
            trace_id: context.trace_id().to_bytes(),
            span_id: context.span_id().to_bytes(),
            sampled: context.is_sampled(),
        })
    }
}

/// All-zero ids are invalid; one in 2^64 random draws would be one.
fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|b| *b == 0) {
        id[N - 1] = 1;
    }
    id
}

tokio::task_local! {
    /// The trace context of the request the current task serves.
    static CURRENT: TraceContext;
}

/// The trace context of the request being served, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|context| *context).ok()
}

/// Runs `future` with `context` as the current trace context.
pub async fn within<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// `future` with the current trace context and span, for a task spawned
/// on behalf of the current request (task-locals are not inherited).
pub fn carry<F: Future>(future: F) -> impl Future<Output = F::Output> {
    use tracing::Instrument;
    let context = current();
    let span = tracing::Span::current();
    async move {
        match context {
            Some(context) => within(context, future).instrument(span).await,
            None => future.instrument(span).await,
        }
    }
}

/// True when spans are exported to an OTLP collector.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// True when spans are made (exported, or written into JSON logs); when
/// false the hub makes none and pays nothing for them.
pub fn spans() -> bool {
    SPANS.load(Ordering::Relaxed)
}

/// Gives `span` its place in a trace: a child of `parent` (or a new root)
/// when spans are exported, and returns the span's trace context. Without
/// export, the context is made here (same trace as `parent`, new span id).
/// Either way the span records it as `trace_id` / `span_id` for the logs.
pub fn adopt(span: &tracing::Span, parent: Option<&TraceContext>) -> TraceContext {
    let exported = if exporting() {
        if let Some(parent) = parent {
            let remote = opentelemetry::Context::new().with_remote_span_context(parent.to_otel());
            let _ = span.set_parent(remote);
        }
        TraceContext::from_otel(span.context().span().span_context())
    } else {
        None
    };
    let context = exported.unwrap_or_else(|| TraceContext::child_of(parent));
    span.record("trace_id", context.trace_id_hex());
    span.record("span_id", context.span_id_hex());
    context
}

/// For a request the hub sends on behalf of an event whose trace context
/// is `traceparent` (a webhook delivery): its span, a child of that
/// context when spans are exported, and the `traceparent` to send (the
/// span's own when exported, else the event's unchanged).
pub fn outgoing(traceparent: Option<&str>, name: &'static str) -> (tracing::Span, Option<String>) {
    let parent = traceparent.and_then(TraceContext::parse);
    if !exporting() {
        return (tracing::Span::none(), parent.map(|p| p.traceparent()));
    }
    let span = tracing::info_span!(
        parent: None,
        "outgoing",
        otel.name = name,
        otel.kind = "client",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let context = adopt(&span, parent.as_ref());
    (span, Some(context.traceparent()))
}

/// Links `span` to the span of `context` (the writer's batch to the
/// requests whose operations it carries).
pub fn link(span: &tracing::Span, context: &TraceContext) {
    if exporting() {
        span.add_link(context.to_otel());
    }
}

/// Installs the log subscriber and, with `otlp_endpoint`, the span export;
/// the returned guard flushes the spans not yet exported when it shuts down.
pub fn init(settings: &Settings) -> anyhow::Result<Telemetry> {
    let log_filter =
        EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // The hub's spans reach the log whatever its level, so that the lines
    // logged inside a request (a warning, say) carry its ids.
    let hub_spans = filter::filter_fn(|meta| {
        meta.is_span() && meta.target().starts_with("omnihub") && *meta.level() <= Level::INFO
    });
    // Colours only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match settings.log_format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![fmt.with_filter(log_filter.or(hub_spans)).boxed()];
    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(endpoint)?;
            let tracer = provider.tracer("omnihub");
            // The hub's own spans, whatever the log level.
            let exported = filter::Targets::new().with_target("omnihub", Level::INFO);
            let otel = tracing_opentelemetry::layer().with_tracer(tracer);
            layers.push(otel.with_filter(exported).boxed());
            Some(provider)
        }
        None => None,
    };
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
    {
        EXPORTING.store(provider.is_some(), Ordering::Relaxed);
        SPANS.store(
            provider.is_some() || settings.log_format == LogFormat::Json,
            Ordering::Relaxed,
        );
    }
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let client = ExportClient {
        client: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP client: {e}"))?,
        runtime: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_http_client(client)
        .build()
        .map_err(|e| anyhow::anyhow!("invalid otlp_endpoint {endpoint:?} ({url}): {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("omnihub")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The span export, while the hub runs.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still waiting and stops the export.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocks until the exporter thread is done; the export itself
            // runs on the runtime, so not on one of its threads.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// The exporter's HTTP client: the hub's reqwest, on the hub's runtime. The
/// SDK's batch processor exports from a thread of its own, outside the
/// runtime, so each request is spawned onto the runtime and awaited.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: axum::http::Request<bytes::Bytes>,
    ) -> Result<axum::http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut answer = axum::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_ignored() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).expect("valid");
        assert!(context.sampled);
        assert_eq!(context.traceparent(), header);
        let child = TraceContext::child_of(Some(&context));
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may carry more fields.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
    }
}
