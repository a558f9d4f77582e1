//! `hookline-receiver`: a demo webhook endpoint; see the library documentation.
//!
//! Logging is set up here rather than borrowed from `hookline-core`, so that this customer-side
//! binary does not link librdkafka; signal handling is `hookline-shutdown`'s, which is free of
//! Kafka for that reason.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hookline_receiver::{AcceptUnverified, Error, ReceiverConfig, Verifier, VerifyConfig, serve_with_verifier};
use tracing_subscriber::EnvFilter;

/// Demo webhook receiver: verifies and decrypts deliveries, logs them, de-duplicates by
/// webhook-id, can simulate failures.
#[derive(Debug, Parser)]
#[command(name = "hookline-receiver", version, about)]
struct Cli {
    #[command(flatten)]
    receiver: ReceiverConfig,

    #[command(flatten)]
    verification: VerifyConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    // clap prints its own message and exits 2 on a bad command line (0 for --help/--version).
    let cli = Cli::parse();
    init_logging();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let name = cli.receiver.name.clone();
    let verifier: Arc<dyn Verifier> = match cli.verification.verifier()? {
        Some(verifier) => {
            tracing::info!(
                receiver = %name,
                secrets = cli.verification.signing_secrets.len(),
                decrypts = cli.verification.private_key.is_some(),
                tolerance = ?cli.verification.timestamp_tolerance,
                "deliveries must carry a valid Standard Webhooks signature"
            );
            Arc::new(verifier)
        }
        None => {
            tracing::warn!(
                receiver = %name,
                "NO SIGNING SECRET: every delivery is accepted WITHOUT verifying its signature, so anyone \
                 can forge one. Fine for a demo, never for a real endpoint: set HOOKLINE_RECEIVER_SIGNING_SECRET \
                 (or --signing-secret)"
            );
            Arc::new(AcceptUnverified)
        }
    };
    let listen = cli.receiver.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| Error::Bind { address: listen, source })?;
    serve_with_verifier(cli.receiver, listener, verifier, hookline_shutdown::on_signal()).await
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal and
/// unless `NO_COLOR` is set (as `hookline_core::telemetry::colour_logs` decides for the others).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    let colours = std::io::stderr().is_terminal() && !no_color;
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours).try_init();
}
