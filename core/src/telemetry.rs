//! Logging set-up shared by the binaries.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs a `tracing` subscriber writing human-readable lines to stderr, filtered by `RUST_LOG`
/// (default `info`, with librdkafka's own chatter at `warn`). Safe to call more than once.
pub fn init_logging() {
    init_logging_as(LogFormat::Text);
}

/// Like [`init_logging`], in `format`: `json` writes one JSON object per event (with its span
/// fields: topic, partition, offset, event id, customer), for log shippers.
pub fn init_logging_as(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
}
