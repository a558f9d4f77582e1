//! `hookline-receiver`: a demo webhook endpoint; see the library documentation.

use anyhow::Context;
use clap::Parser;
use hookline_receiver::{ReceiverConfig, serve};

/// Demo webhook receiver: logs deliveries, de-duplicates by webhook-id, can simulate failures.
#[derive(Debug, Parser)]
#[command(name = "hookline-receiver", version, about)]
struct Cli {
    #[command(flatten)]
    receiver: ReceiverConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    hookline_core::telemetry::init_logging();
    let listen = cli.receiver.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    serve(cli.receiver, listener, hookline_core::shutdown::on_signal()).await?;
    Ok(())
}
