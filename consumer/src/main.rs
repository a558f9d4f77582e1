//! `hookline-consumer`: see the crate documentation.

use clap::{CommandFactory, Parser};
use hookline_consumer::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Settings that cannot work together are a usage error (exit code 2).
    if let Err(error) = config.validate() {
        Config::command().error(clap::error::ErrorKind::ValueValidation, error).exit();
    }
    config.runtime.build()?.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Kept until exit: dropping it flushes the spans not exported yet.
    let telemetry = hookline_core::telemetry::init(config.log.format, "hookline-consumer");
    let shutdown = hookline_shutdown::on_signal();
    let result = hookline_consumer::run(config, shutdown).await;
    telemetry.shutdown();
    result?;
    Ok(())
}
