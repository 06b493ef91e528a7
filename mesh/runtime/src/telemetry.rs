//! Structured JSON logs (on stderr, so stdout stays for command output), and OpenTelemetry traces when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! W3C trace context crosses process boundaries through the `traceparent`
//! header: [`inject`] writes it on outgoing calls and [`extract`] reads it
//! on incoming ones.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static PROVIDER: OnceLock<Option<SdkTracerProvider>> = OnceLock::new();

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    /// Human-readable, for `cloudsec up` in a terminal.
    Pretty,
    /// Nothing, unless `TEST_LOG` is set (tests).
    Test,
}

/// Flushes buffered spans when dropped.
#[derive(Debug)]
pub struct TelemetryGuard(());

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// Sends every buffered span to the collector now.
pub fn flush() {
    if let Some(Some(provider)) = PROVIDER.get()
        && let Err(error) = provider.force_flush()
    {
        eprintln!("trace flush failed: {error}");
    }
}

/// Installs the global subscriber once per process; later calls are no-ops.
///
/// Spans go to `otlp_endpoint` when it is given (else to
/// `OTEL_EXPORTER_OTLP_ENDPOINT` when that is set).
pub fn init(service: &str, format: LogFormat, otlp_endpoint: Option<String>) -> TelemetryGuard {
    let service = service.to_owned();
    PROVIDER.get_or_init(move || {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = EnvFilter::try_from_env("RUST_LOG")
            .or_else(|_| EnvFilter::try_from_env("TEST_LOG"))
            .unwrap_or_else(|_| {
                EnvFilter::new(
                    "info,sqlx=warn,sea_orm_migration=warn,h2=warn,hyper=warn,tower=warn",
                )
            });

        let endpoint = otlp_endpoint
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.is_empty());
        let provider = endpoint.and_then(|endpoint| match build_provider(&service, &endpoint) {
            Ok(p) => Some(p),
            Err(error) => {
                eprintln!("trace export disabled: {error}");
                None
            }
        });
        let otel = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("cloudsec")));

        type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
        let fmt: Option<Boxed> = match format {
            LogFormat::Json => Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr)
                    .boxed(),
            ),
            LogFormat::Pretty => Some(
                tracing_subscriber::fmt::layer()
                    .compact()
                    // Colour codes only for a terminal: in a log file or a
                    // pipe they are noise that breaks grep.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr)
                    .boxed(),
            ),
            LogFormat::Test if std::env::var_os("TEST_LOG").is_some() => Some(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_test_writer()
                    .boxed(),
            ),
            LogFormat::Test => None,
        };
        let result = tracing_subscriber::registry()
            .with(fmt)
            .with(otel)
            .with(filter)
            .try_init();
        if let Err(error) = result {
            eprintln!("log subscriber already installed: {error}");
        }
        provider
    });
    TelemetryGuard(())
}

fn build_provider(service: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the context of `span` into `headers` as W3C `traceparent`.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the trace context carried by `headers`, if any.
pub fn extract(headers: &http::HeaderMap, span: &tracing::Span) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}
