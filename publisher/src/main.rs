//! `hookline-publisher`: parses the command line and runs the publisher until SIGINT/SIGTERM.

use clap::Parser;
use hookline_publisher::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    hookline_core::telemetry::init_logging_as(config.log.format);
    let shutdown = hookline_core::shutdown::on_signal();
    hookline_publisher::run(config, shutdown).await?;
    Ok(())
}
