//! The `hookline-publisher` binary as an operator runs it: what it says on stderr when it cannot
//! start. No broker: the point is the one that is not there.

use std::process::Command;

/// `host:port` on loopback where nothing listens (bound, then released).
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

#[test]
fn an_unreachable_broker_is_named_with_the_setting_that_points_at_it() {
    let brokers = closed_port();
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-publisher"))
        // Nothing from the environment running the tests (KAFKA_*, HOOKLINE_*, NO_COLOR) applies.
        .env_clear()
        .env("HOOKLINE_MASTER_KEY", hookline_testkit::tenants::TEST_MASTER_KEY)
        .env("RUST_LOG", "info")
        .args(["--brokers", &brokers, "--listen", "127.0.0.1:0", "--grpc-listen", "off"])
        .output()
        .expect("run hookline-publisher");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot load the customer directory"), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach Kafka at {brokers} (")), "names the address: {stderr}");
    assert!(stderr.contains("--brokers / KAFKA_BROKERS"), "names the setting: {stderr}");
    // stderr is a pipe here, as when it is redirected to a file: no colour codes.
    assert!(stderr.contains("WARN"), "the warnings are logged: {stderr}");
    assert!(!stderr.contains("\x1b["), "ANSI escapes in logs written to a pipe: {stderr:?}");
}
