//! `hookline-publisher`: parses the command line and runs the publisher until SIGINT/SIGTERM.

use clap::{CommandFactory, Parser};
use hookline_publisher::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Size settings that cannot work are a usage error (exit code 2), like a malformed flag.
    if let Err(error) = config.limits() {
        Config::command().error(clap::error::ErrorKind::ValueValidation, error).exit();
    }
    config.runtime.build()?.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Kept until exit: dropping it flushes the spans not exported yet.
    let telemetry = hookline_core::telemetry::init(config.log.format, "hookline-publisher");
    let shutdown = hookline_shutdown::on_signal();
    let result = hookline_publisher::run(config, shutdown).await;
    telemetry.shutdown();
    result?;
    Ok(())
}
