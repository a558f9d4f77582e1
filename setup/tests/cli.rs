//! Exit codes that need no broker: usage errors, and a broker that is not there.

mod common;

use std::net::TcpListener;

use common::{args, assert_exit, binary, in_process, stderr, stdout};
use hookline_setup::{EXIT_FAILURE, Error};

/// A loopback address nothing listens on.
fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address.to_string()
}

fn with_short_timeout(args: Vec<String>) -> Vec<String> {
    with_timeout(args, "3s")
}

fn with_timeout(mut args: Vec<String>, timeout: &str) -> Vec<String> {
    // clap refuses a flag given twice, so replace the `--timeout 10s` that `args` adds.
    let at = args.iter().position(|a| a == "--timeout").expect("--timeout present");
    args[at + 1] = timeout.into();
    args
}

/// A broker that accepts connections and never answers; stops accepting when the test ends.
fn silent_broker() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        // Holds every connection open, unanswered.
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    address
}

/// A refused connection is an answer: the command fails at once, not after `--timeout` (the
/// bound is generous, a third of the timeout: a failure within it is a failure that did not
/// wait for the timeout).
#[tokio::test]
async fn a_refused_connection_fails_at_once_not_after_the_timeout() {
    let brokers = dead_address();
    for command in [vec!["topics", "describe"], vec!["customers", "list"], vec!["check"]] {
        let started = std::time::Instant::now();
        let output = binary(&with_timeout(args(&brokers, "refused", &command), "15s")).await;
        let took = started.elapsed();
        assert_exit(&output, 1);
        let said = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            said.contains(&format!("cannot reach Kafka at {brokers}: every broker refused")),
            "{command:?}: {said}"
        );
        assert!(said.contains("Connection refused"), "librdkafka's words: {said}");
        assert!(took < std::time::Duration::from_secs(5), "{command:?} waited {took:?} for a refused connection");
    }
}

/// A broker that accepts the connection and stays silent is given the whole `--timeout`.
#[tokio::test]
async fn a_silent_broker_is_given_the_whole_timeout() {
    let brokers = silent_broker();
    let output = binary(&with_short_timeout(args(&brokers, "silent", &["topics", "describe"]))).await;
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(err.contains(&format!("cannot reach Kafka at {brokers}: no answer within 3s")), "{err}");
}

#[tokio::test]
async fn unreachable_broker_fails_with_exit_1_and_says_so() {
    let brokers = dead_address();
    for command in [
        vec!["topics", "create"],
        vec!["topics", "describe"],
        vec!["customers", "list"],
        vec!["customers", "remove", "c1"],
        vec!["customers", "add", "--id", "c1", "--webhook-url", "http://127.0.0.1:9000/webhook", "--events", "a"],
        vec!["dlq", "list"],
        vec!["dlq", "replay", "--all"],
        vec!["dlq", "purge", "--before", "7d", "--dry-run"],
    ] {
        let output = binary(&with_short_timeout(args(&brokers, "unreachable", &command))).await;
        assert_exit(&output, 1);
        let err = stderr(&output);
        assert!(err.contains(&format!("cannot reach Kafka at {brokers}")), "{command:?}: {err}");
    }

    let (result, _) = in_process(&with_short_timeout(args(&brokers, "unreachable", &["topics", "describe"]))).await;
    match result {
        Err(error @ Error::Unreachable { .. }) => assert_eq!(error.exit_code(), EXIT_FAILURE),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_command_lines_exit_2() {
    for bad in [
        vec!["topics", "create", "--partitions", "0"],
        vec!["topics", "create", "--replication-factor", "x"],
        vec!["topics", "explode"],
        vec!["customers", "add", "--id", "c1"],
        vec!["topics", "describe", "--timeout", "soon"],
        vec!["dlq", "list", "--since", "last tuesday"],
        vec!["dlq", "list", "--limit", "0"],
        vec!["dlq", "purge"],
        vec!["check", "--max-lag", "lots"],
        vec!["check", "--max-lag", "-1"],
        // Refused before any broker is contacted (none runs here).
        vec!["dlq", "replay"],
        vec!["dlq", "replay", "--dry-run", "--limit", "5"],
        vec!["dlq", "replay", "--all", "--reason", "max_attempts"],
    ] {
        let output = binary(&bad.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()).await;
        assert_exit(&output, 2);
        assert!(!stderr(&output).is_empty(), "{bad:?} explains itself");
    }
    assert_exit(&binary(&["--help".to_owned()]).await, 0);
    assert_exit(&binary(&["topics".to_owned(), "create".to_owned(), "--help".to_owned()]).await, 0);
}

/// `--help` shows where a flag's value may come from, never the value of a variable that may hold
/// a credential. The flags are core's `KafkaArgs` and `SchemaRegistryArgs`, which the publisher and
/// the consumer flatten too.
#[tokio::test]
async fn help_does_not_print_credentials_from_the_environment() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookline-setup"))
        .arg("--help")
        .env("KAFKA_PROPERTIES", "security.protocol=SASL_SSL;sasl.password=hunter2-kafka")
        .env("SCHEMA_REGISTRY_URL", "https://registry-user:hunter2-registry@registry.example.com")
        .env("SCHEMA_REGISTRY_BASIC_AUTH", "key:hunter2-basic")
        .output()
        .await
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && help.contains("KAFKA_PROPERTIES"), "{help}");
    for secret in ["hunter2-kafka", "hunter2-registry", "hunter2-basic"] {
        assert!(!help.contains(secret), "--help prints `{secret}`:\n{help}");
    }
}
