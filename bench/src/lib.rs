//! `hookline-bench`: Hookline's benchmark harness (`make bench`).
//!
//! Every figure is measured against a real broker (a tansu process per run, memory storage),
//! Hookline's release binaries as child processes, and a fast receiver on loopback, on this
//! machine. Each is the median of several runs with min and max; the run writes a Markdown
//! table into `BENCHMARKS.md` (between markers, keeping the analysis around it) and the same
//! figures as JSON.
//!
//! The scenarios ([`config::Scenario`]):
//! 1. the ceiling: the receiver alone under an HTTP load, the broker's produce and raw consume
//!    rates, so that the figures below read as a share of what the machine can do;
//! 2. the publisher: events accepted per second from concurrent keep-alive clients, latency;
//! 3. drains of a prefilled topic by one and by several consumer processes, signing only and
//!    signing + JWE to per-customer RSA keys;
//! 4. head-of-line: the same drain with one customer always answering 503;
//! 5. endpoints that behave like real ones (every answer after a latency, 50 ms by default):
//!    a drain of healthy customers, one with a dead customer and one with a slow one, in each
//!    ordering mode, each as a share of its ideal (*min(customers, concurrency) ÷ latency*);
//! 6. end to end: publish-to-delivery latency at fixed offered rates (open loop);
//! 7. the delivery ledger: restore time and memory of a partition's delivered set, for ledgers of
//!    millions of entries and several `--dedup-capacity` values (in this process, with the
//!    consumer's own code).
//!
//! Nothing here asserts a timing: `--smoke` shrinks everything to seconds, which the test suite
//! runs so that the harness keeps working.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`scenarios`]: the benchmarks.
//! - [`ledger`]: the ledger scenario.
//! - [`stack`]: broker, topics, customers, prefill, Hookline processes, CPU time.
//! - [`receiver`]: the fast receiver, and its endpoints' behaviour (latency, a dead or slow
//!   customer).
//! - [`load`]: closed- and open-loop HTTP load generators.
//! - [`keys`]: the customers' RSA keys, generated once and cached.
//! - [`stats`]: figures (median, min, max) and latency histograms.
//! - [`report`]: JSON and the Markdown table.
//! - [`error`]: this crate's error type.

pub mod config;
pub mod error;
pub mod keys;
pub mod ledger;
pub mod load;
pub mod receiver;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod stats;

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

pub use config::{Config, Scenario};
pub use error::{Error, Result};
pub use report::Report;

use scenarios::Bench;

/// Runs the benchmarks `config` selects, or until `shutdown`, and returns the report (written
/// to disk unless `--no-write`).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Report> {
    let config = config.effective();
    // The ledger scenario runs in this process; the others need Hookline's binaries.
    let bin_dir =
        if config.scenarios.iter().any(|s| s.needs_binaries()) { binaries_dir(&config)? } else { PathBuf::new() };
    let needs_keys =
        config.runs(Scenario::Drain) || config.runs(Scenario::HeadOfLine) || config.runs(Scenario::EndToEnd);
    let keys = if needs_keys {
        let cache = config.key_cache.clone().unwrap_or_else(keys::default_cache);
        let count = usize::try_from(config.customers).unwrap_or(1);
        let bits = config.rsa_bits;
        tokio::task::spawn_blocking(move || keys::public_keys(&cache, bits, count))
            .await
            .map_err(|e| Error::Invalid(format!("key generation task: {e}")))??
    } else {
        vec![]
    };
    let bench = Bench { config: &config, bin_dir: &bin_dir, keys: &keys, shutdown: &shutdown };
    let mut figures = vec![];
    for scenario in &config.scenarios {
        figures.extend(bench.run(*scenario).await?);
    }
    let mut report = Report { machine: report::Machine::read(broker_version()), workload: (&config).into(), figures };
    report.carry_over(&config.json, &config.scenarios);
    report.relate_to_ceilings();
    if !config.no_write {
        report.write(&config.markdown, &config.json)?;
    }
    Ok(report)
}

/// Where `hookline-consumer` and `hookline-publisher` are: `--bin-dir`, else beside this
/// executable (a test executable lives one level deeper, in `deps/`).
fn binaries_dir(config: &Config) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match &config.bin_dir {
        Some(dir) => vec![dir.clone()],
        None => {
            let exe = std::env::current_exe()?;
            exe.ancestors().skip(1).take(2).map(PathBuf::from).collect()
        }
    };
    candidates
        .iter()
        .find(|dir| dir.join("hookline-consumer").is_file() && dir.join("hookline-publisher").is_file())
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "hookline-consumer and hookline-publisher not found in {candidates:?}; build them \
                 (`cargo build --release -p hookline-consumer -p hookline-publisher`) or pass --bin-dir"
            ))
        })
}

/// `tansu <version>`, as the broker binary reports it.
fn broker_version() -> String {
    std::process::Command::new(hookline_testkit::tansu_binary()).arg("--version").output().ok().map_or_else(
        || "tansu (version unknown)".to_owned(),
        |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}
