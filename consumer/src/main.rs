//! `hookline-consumer`: see the crate documentation.

use clap::Parser;
use hookline_consumer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Kept until exit: dropping it flushes the spans not exported yet.
    let telemetry = hookline_core::telemetry::init(config.log.format, "hookline-consumer");
    let shutdown = hookline_core::shutdown::on_signal();
    let result = hookline_consumer::run(config, shutdown).await;
    telemetry.shutdown();
    result?;
    Ok(())
}
