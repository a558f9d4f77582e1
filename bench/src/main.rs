//! `hookline-bench`: see the library documentation. `make bench` runs it.

use clap::Parser;
use hookline_bench::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // librdkafka warns that a consumer-only `--kafka-property` is ignored by the harness's
    // producers; that is expected here.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,librdkafka=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(hookline_core::telemetry::colour_logs())
        .init();
    let report = hookline_bench::run(config, hookline_shutdown::on_signal()).await?;
    println!("{}", report.markdown());
    Ok(())
}
