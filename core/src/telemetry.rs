//! Logging and tracing set-up shared by the binaries, and the W3C trace-context propagation
//! helpers shared by the publisher and the consumer.
//!
//! [`init`] installs the `tracing` subscriber: the `RUST_LOG` filter, the stderr log lines (text
//! or JSON) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, an OpenTelemetry layer exporting spans over OTLP http/protobuf. The trace context travels
//! in the `traceparent` / `tracestate` headers of the Kafka records ([`crate::envelope::headers`]),
//! so that one trace runs from the publish request through every delivery attempt to the DLQ.

use std::env;
use std::ffi::OsStr;
use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

pub use opentelemetry::Context as TraceContext;

/// Installs a `tracing` subscriber writing human-readable lines to stderr, filtered by `RUST_LOG`
/// (default `info`, with librdkafka's own chatter at `warn`). Safe to call more than once.
/// Exports no spans: the binaries use [`init`].
pub fn init_logging() {
    init_logging_as(LogFormat::Text);
}

/// Like [`init_logging`], in `format`: `json` writes one JSON object per event (with its span
/// fields: topic, partition, offset, event id, customer), for log shippers.
pub fn init_logging_as(format: LogFormat) {
    let _ = Registry::default().with(env_filter()).with(fmt_layer(format)).try_init();
}

/// What [`init`] installed. Keep it until the process exits: dropping it (or calling
/// [`Telemetry::shutdown`]) flushes the spans not exported yet and stops the exporter.
#[derive(Debug)]
#[must_use = "dropping the guard stops the span exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the pending spans and stops the exporter (what dropping the guard does).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("hookline: could not flush the trace exporter: {error}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the process's `tracing` subscriber: the `RUST_LOG` filter (default `info`, librdkafka
/// at `warn`), log lines on stderr in `format`, and, when an OTLP endpoint is configured
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, unless
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`), an OpenTelemetry layer exporting the
/// spans in batches over OTLP http/protobuf. The other standard `OTEL_*` variables apply
/// (headers, timeout, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`);
/// the service name is `service` unless `OTEL_SERVICE_NAME` says otherwise. Also sets the global
/// text-map propagator to W3C trace context.
///
/// If the exporter cannot be built, says so on stderr and carries on with logs only.
pub fn init(format: LogFormat, service: &'static str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if otlp_configured() {
        match tracer_provider(service, None) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("hookline: OpenTelemetry export disabled: {error}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service)));
    let installed = Registry::default().with(env_filter()).with(fmt_layer(format)).with(otel).try_init();
    if installed.is_err() {
        // Someone installed a subscriber first: the spans would go nowhere.
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry { provider: None };
    }
    if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Whether log lines on stderr get ANSI colours: only when stderr is a terminal (a file or a pipe
/// gets plain text), and never when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
pub fn colour_logs() -> bool {
    colours(std::io::stderr().is_terminal(), env::var_os("NO_COLOR").as_deref())
}

fn colours(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"))
}

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

fn fmt_layer<S>(format: LogFormat) -> BoxedLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour_logs());
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().with_current_span(true).with_span_list(false).boxed(),
    }
}

fn otlp_configured() -> bool {
    let set = |name: &str| env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
    let no_exporter = env::var("OTEL_TRACES_EXPORTER").is_ok_and(|value| value.trim().eq_ignore_ascii_case("none"));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && !disabled && !no_exporter
}

/// The provider exporting to `endpoint` (a full URL, for tests), or where the `OTEL_*` variables say.
fn tracer_provider(
    service: &'static str,
    endpoint: Option<String>,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        builder = opentelemetry_otlp::WithExportConfig::with_endpoint(builder, endpoint);
    }
    let exporter = builder.build()?;
    // The resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the binary's own name
    // only fills in when neither names the service.
    let named = env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.trim().is_empty())
        || env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attributes| attributes.contains("service.name="));
    let resource =
        if named { Resource::builder().build() } else { Resource::builder().with_service_name(service).build() };
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// The W3C trace-context headers (`traceparent`, and `tracestate` when not empty) of `context`;
/// empty when it holds no valid span.
pub fn trace_headers(context: &TraceContext) -> Vec<(String, String)> {
    let mut carrier = HeaderPairs(Vec::new());
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.0
}

/// [`trace_headers`] of the current `tracing` span (empty without the OpenTelemetry layer).
pub fn current_trace_headers() -> Vec<(String, String)> {
    trace_headers(&tracing::Span::current().context())
}

/// `headers` with `trace` (from [`trace_headers`]) added, except a value longer than
/// [`limits::TRACE_HEADER_MAX`](crate::limits::TRACE_HEADER_MAX) (a caller's oversized
/// `tracestate`): records must stay within the size the record limit assumes.
pub fn with_trace_headers(headers: OwnedHeaders, trace: &[(String, String)]) -> OwnedHeaders {
    trace
        .iter()
        .filter(|(_, value)| value.len() <= crate::limits::TRACE_HEADER_MAX)
        .fold(headers, |headers, (key, value)| {
            headers.insert(Header { key: key.as_str(), value: Some(value.as_str()) })
        })
}

/// The trace context carried by a Kafka record's headers (an empty context when there is none).
pub fn extract_kafka<H: Headers>(headers: Option<&H>) -> TraceContext {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&KafkaHeaders(headers)),
        None => TraceContext::new(),
    }
}

/// The trace context carried by HTTP request headers (`traceparent`, `tracestate`).
pub fn extract_http(headers: &http::HeaderMap) -> TraceContext {
    TraceContextPropagator::new().extract(&HttpHeaders(headers))
}

/// Makes `context` (from [`extract_kafka`] or [`extract_http`]) the parent of `span`, which
/// must not have been entered yet. Without the OpenTelemetry layer, does nothing.
pub fn set_parent(span: &tracing::Span, context: TraceContext) {
    let _ = span.set_parent(context);
}

/// An [`Injector`] collecting header pairs.
#[derive(Debug)]
struct HeaderPairs(Vec<(String, String)>);

impl Injector for HeaderPairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// An [`Extractor`] over Kafka record headers (the first header of a name wins; values must be
/// UTF-8).
struct KafkaHeaders<'a, H>(&'a H);

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

/// An [`Extractor`] over HTTP headers.
struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

    use super::*;
    use crate::envelope::headers;

    fn remote_context() -> TraceContext {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            "vendor=value".parse::<TraceState>().unwrap(),
        );
        TraceContext::new().with_remote_span_context(span)
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None), "a file or a pipe gets plain text");
    }

    #[test]
    fn trace_context_round_trips_through_kafka_headers() {
        let trace = trace_headers(&remote_context());
        assert_eq!(
            trace,
            vec![
                (headers::TRACEPARENT.to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
                (headers::TRACESTATE.to_owned(), "vendor=value".to_owned()),
            ]
        );
        let record = with_trace_headers(
            OwnedHeaders::new().insert(Header { key: headers::EVENT_ID, value: Some("evt_1") }),
            &trace,
        );
        assert_eq!(record.count(), 3);
        let oversized =
            [trace[0].clone(), (headers::TRACESTATE.to_owned(), "v=x".repeat(crate::limits::TRACE_HEADER_MAX / 3 + 1))];
        let bounded = with_trace_headers(OwnedHeaders::new(), &oversized);
        assert_eq!(bounded.count(), 1, "an oversized tracestate is left out");
        assert_eq!(bounded.get(0).key, headers::TRACEPARENT);

        let extracted = extract_kafka(Some(&record));
        let span = extracted.span();
        let span = span.span_context();
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
        assert_eq!(span.trace_id(), TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(span.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert_eq!(span.trace_state().header(), "vendor=value");
    }

    #[test]
    fn no_context_writes_no_headers_and_no_headers_give_no_context() {
        assert!(trace_headers(&TraceContext::new()).is_empty());
        assert!(current_trace_headers().is_empty());
        assert!(!extract_kafka::<OwnedHeaders>(None).span().span_context().is_valid());
        let garbage = OwnedHeaders::new().insert(Header { key: headers::TRACEPARENT, value: Some(&b"\xff\xfe"[..]) });
        assert!(!extract_kafka(Some(&garbage)).span().span_context().is_valid());
    }

    /// The OTLP exporter builds inside a runtime (as in the binaries' `main`), and shutting the
    /// provider down there flushes the batch: a protobuf POST reaches the collector.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_otlp_exporter_posts_the_batch_on_shutdown_inside_a_runtime() {
        use std::io::{Read, Write};

        let collector = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}/v1/traces", collector.local_addr().expect("address"));
        let received = std::thread::spawn(move || {
            let (mut stream, _) = collector.accept().expect("accept");
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
            let mut request = Vec::new();
            let mut buffer = [0_u8; 4096];
            while !String::from_utf8_lossy(&request).contains("\r\n\r\n") {
                let read = stream.read(&mut buffer).expect("read");
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            String::from_utf8_lossy(&request).into_owned()
        });

        let provider = tracer_provider("hookline-test", Some(endpoint)).expect("exporter");
        let tracer = provider.tracer("hookline-test");
        opentelemetry::trace::Tracer::in_span(&tracer, "probe", |_| {});
        provider.shutdown().expect("shutdown");
        let request = received.join().expect("collector");
        assert!(request.starts_with("POST /v1/traces "), "{request}");
        assert!(request.to_ascii_lowercase().contains("content-type: application/x-protobuf"), "{request}");
    }

    #[test]
    fn trace_context_is_read_from_http_headers() {
        let mut map = http::HeaderMap::new();
        map.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        let extracted = extract_http(&map);
        assert_eq!(
            extracted.span().span_context().trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(!extract_http(&http::HeaderMap::new()).span().span_context().is_valid());
    }
}
