//! Helpers shared by the setup integration tests: run a command in-process or as the real binary.

#![allow(dead_code)] // Each test file uses a different subset.

use std::process::Output;

use clap::Parser;
use hookline_setup::{Cli, Result, run};

/// Environment variables the CLI reads; cleared for the binary so the developer's shell cannot
/// change what a test runs.
const CLI_ENV: &[&str] = &[
    "KAFKA_BROKERS",
    "KAFKA_PROPERTIES",
    "HOOKLINE_TOPIC",
    "HOOKLINE_DLQ_TOPIC",
    "HOOKLINE_CUSTOMERS_TOPIC",
    "HOOKLINE_TIMEOUT",
    "HOOKLINE_PARTITIONS",
    "HOOKLINE_REPLICATION_FACTOR",
    "HOOKLINE_CUSTOMER_ID",
    "HOOKLINE_CUSTOMER_WEBHOOK_URL",
    "HOOKLINE_CUSTOMER_EVENTS",
    "HOOKLINE_CUSTOMER_NAME",
    "HOOKLINE_CUSTOMER_PUBLIC_KEY_FILE",
    "HOOKLINE_SOURCE_ID",
    "HOOKLINE_SOURCE_SCHEME",
    "HOOKLINE_SOURCE_ENDPOINT",
    "HOOKLINE_SOURCE_SECRET",
    "HOOKLINE_OUTPUT_JSON",
    "HOOKLINE_SIGNING_SECRET_GRACE",
    "HOOKLINE_KEY_BITS",
    "HOOKLINE_KEY_OUT",
    "HOOKLINE_MASTER_KEY",
    "HOOKLINE_MASTER_KEY_FILE",
    "HOOKLINE_ALLOW_NETWORKS",
    "SCHEMA_REGISTRY_URL",
    "SCHEMA_REGISTRY_BASIC_AUTH",
    "HOOKLINE_DLQ_CUSTOMER",
    "HOOKLINE_DLQ_EVENT_ID",
    "HOOKLINE_DLQ_REASON",
    "HOOKLINE_DLQ_SINCE",
    "HOOKLINE_DLQ_UNTIL",
    "HOOKLINE_DLQ_LIMIT",
    "HOOKLINE_DLQ_REPLAY_ALL",
    "HOOKLINE_DLQ_REPLAY_STATE_TOPIC",
    "HOOKLINE_DLQ_PURGE_BEFORE",
    "HOOKLINE_DRY_RUN",
    "HOOKLINE_GROUP",
    "HOOKLINE_MAX_LAG",
    "HOOKLINE_DELIVERED_TOPIC",
    "HOOKLINE_IDEMPOTENCY_TOPIC",
    "HOOKLINE_IMPORT_OUT",
    "HOOKLINE_API_URL",
    "HOOKLINE_ADMIN_TOKEN",
    "HOOKLINE_CUSTOMER",
    "HOOKLINE_EVENT_ID",
    "HOOKLINE_DELIVERY_STATUS",
    "HOOKLINE_DELIVERY_SINCE",
    "HOOKLINE_DELIVERY_TYPE",
    "HOOKLINE_DELIVERY_LIMIT",
    "HOOKLINE_DELIVERY_LOG",
    "HOOKLINE_ATTEMPTS_TOPIC",
];

/// The shared flags pointing at `brokers` and the topics `prefix`, `prefix.dlq`,
/// `prefix.customers`, with the tests' master key and loopback allowed, followed by `args`.
pub fn args(brokers: &str, prefix: &str, args: &[&str]) -> Vec<String> {
    let mut all = args_without_master_key(brokers, prefix, args);
    all.extend(["--master-key", hookline_testkit::tenants::TEST_MASTER_KEY].map(str::to_owned));
    all
}

/// Like [`args`] without a master key.
pub fn args_without_master_key(brokers: &str, prefix: &str, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(["--allow-networks", "127.0.0.0/8"].map(str::to_owned));
    all.extend(
        [
            "--brokers",
            brokers,
            "--topic",
            prefix,
            "--dlq-topic",
            &format!("{prefix}.dlq"),
            "--customers-topic",
            &format!("{prefix}.customers"),
            "--delivered-topic",
            &format!("{prefix}.delivered"),
            "--idempotency-topic",
            &format!("{prefix}.idempotency"),
            "--retry-topic",
            &format!("{prefix}.retry"),
            "--parking-topic",
            &format!("{prefix}.parking"),
            "--attempts-topic",
            &format!("{prefix}.attempts"),
            "--timeout",
            "10s",
        ]
        .map(str::to_owned),
    );
    all
}

/// Runs a command through the library; returns its result and what it printed.
pub async fn in_process(args: &[String]) -> (Result<()>, String) {
    let cli = Cli::try_parse_from(std::iter::once("hookline-setup".to_owned()).chain(args.iter().cloned()))
        .expect("test command line parses");
    let mut out = Vec::new();
    let result = run(cli, &mut out).await;
    (result, String::from_utf8(out).expect("utf-8 output"))
}

/// Creates the topics `prefix`, `prefix.dlq`, `prefix.customers`, ... with two partitions each
/// (one for the customers topic).
pub async fn create_topics(brokers: &str, prefix: &str) {
    let (result, out) = in_process(&args(brokers, prefix, &["topics", "create", "--partitions", "2"])).await;
    result.unwrap_or_else(|e| panic!("topics create failed: {e}\n{out}"));
}

/// Runs the real binary.
pub async fn binary(args: &[String]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookline-setup"));
    command.args(args).env("RUST_LOG", "warn");
    for name in CLI_ENV {
        command.env_remove(name);
    }
    command.output().await.expect("run hookline-setup")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with both streams unless the binary exited with `code`.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The value after `label` on its line of `text`.
pub fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` line in {text}"))
}
