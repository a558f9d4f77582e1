//! `hookline-consumer`: see the crate documentation.

use clap::Parser;
use hookline_consumer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    hookline_core::telemetry::init_logging_as(config.log.format);
    let shutdown = hookline_core::shutdown::on_signal();
    hookline_consumer::run(config, shutdown).await?;
    Ok(())
}
