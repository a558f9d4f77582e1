//! `hookline-setup`: see the library documentation for the commands and exit codes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hookline_setup::{Cli, EXIT_FAILURE, run};

/// How long to wait, on exit, for librdkafka calls still blocking a thread after a timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    // clap prints its own message and exits 2 on a bad command line (0 for --help/--version).
    let cli = Cli::parse();
    hookline_core::telemetry::init_logging();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli, &mut std::io::stdout()));
    // A timed-out metadata request may still hold a blocking thread for up to 30 s; dropping
    // the runtime would wait for it, so the timeout the operator asked for would not hold.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
