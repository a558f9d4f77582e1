//! `hookline-consumer`: see the crate documentation.

use clap::Parser;
use hookline_consumer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_core::telemetry::init_logging();
    let config = Config::parse();
    let shutdown = hookline_core::shutdown::on_signal();
    hookline_consumer::run(config, shutdown).await?;
    Ok(())
}
