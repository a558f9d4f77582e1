//! `hookline-demo`: see the library documentation. Exits 0 when every delivery is accounted for,
//! 1 otherwise.

use std::process::ExitCode;

use clap::Parser;
use hookline_demo::Args;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // Quiet by default so that the progress lines stay readable; `RUST_LOG` shows more.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(hookline_core::telemetry::colour_logs())
        .init();

    let summary = hookline_demo::run_until(args, hookline_shutdown::on_signal()).await?;
    println!();
    println!("{summary}");
    Ok(if summary.is_complete() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
