//! Signed and encrypted deliveries over real HTTP on `127.0.0.1:0`: what is accepted, what is
//! refused with 401, the binary's handling of bad settings, and what it prints with `--print`.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookline_receiver::{DeliveryVerifier, Receiver, ReceiverConfig, ReceiverHandle, Stats};
use hookline_wire::{CONTENT_TYPE, Encryptor, PrivateKey, SignatureVerifier, SigningSecret, signature_header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One RSA key for the whole test binary (generation is slow in debug builds).
fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).expect("generate a key"))
}

async fn start(verifier: DeliveryVerifier) -> ReceiverHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Receiver::start_with_verifier(ReceiverConfig::named("verifying"), listener, Arc::new(verifier)).expect("start")
}

fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit")
}

fn envelope(order: u32) -> String {
    json!({ "type": "order.created", "timestamp": "2025-01-01T00:00:00.000Z", "data": { "order": order } }).to_string()
}

/// A delivery as the sender makes it: body (encrypted or not), headers, and a way to spoil it.
#[derive(Clone)]
struct Delivery {
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    content_type: &'static str,
    body: String,
}

impl Delivery {
    fn signed(secrets: &[SigningSecret], id: &str, timestamp: i64, content_type: &'static str, body: String) -> Self {
        let signature = signature_header(secrets, id, timestamp, body.as_bytes());
        Self {
            id: Some(id.to_owned()),
            timestamp: Some(timestamp.to_string()),
            signature: Some(signature),
            content_type,
            body,
        }
    }

    fn plain(secret: &SigningSecret, id: &str, order: u32) -> Self {
        Self::signed(std::slice::from_ref(secret), id, now(), "application/json", envelope(order))
    }

    fn encrypted(secret: &SigningSecret, encryptor: &Encryptor, id: &str, order: u32) -> Self {
        let body = encryptor.encrypt(&key().public_key(), envelope(order).as_bytes()).expect("encrypt");
        Self::signed(std::slice::from_ref(secret), id, now(), CONTENT_TYPE, body)
    }

    async fn send(&self, client: &reqwest::Client, receiver: &ReceiverHandle) -> (StatusCode, Value) {
        self.send_to(client, &receiver.url()).await
    }

    async fn send_to(&self, client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
        let mut request = client.post(url).header("content-type", self.content_type).body(self.body.clone());
        for (name, value) in
            [("webhook-id", &self.id), ("webhook-timestamp", &self.timestamp), ("webhook-signature", &self.signature)]
        {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }
}

/// Asserts a 401 whose `error` mentions `hint`.
fn assert_refused((status, answer): (StatusCode, Value), hint: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let error = answer["error"].as_str().unwrap_or_else(|| panic!("no error message in {answer}"));
    assert!(error.contains(hint), "`{error}` should mention `{hint}`");
}

#[tokio::test]
async fn signed_and_encrypted_deliveries_are_accepted_and_decrypted() {
    let secret = SigningSecret::generate();
    let verifier = DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()])).with_private_key(key().clone());
    let receiver = start(verifier).await;
    let client = reqwest::Client::new();
    let encryptor = Encryptor::default();

    let first = Delivery::encrypted(&secret, &encryptor, "evt_1", 1);
    assert!(first.body.starts_with("ey") && first.body.split('.').count() == 5, "a compact JWE: {}", first.body);
    assert_eq!(first.send(&client, &receiver).await, (StatusCode::OK, json!({ "received": true })));
    // A second delivery under the same cached content key, then a redelivery of the first.
    let second = Delivery::encrypted(&secret, &encryptor, "evt_2", 2);
    assert_eq!(second.body.split('.').nth(1), first.body.split('.').nth(1), "shared content key");
    assert_eq!(second.send(&client, &receiver).await.0, StatusCode::OK);
    let (status, answer) = first.send(&client, &receiver).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({ "received": true, "duplicate": true })));
    // A 256 KiB event decrypts as well.
    let large = json!({ "type": "blob.stored", "timestamp": "t", "data": "x".repeat(256 * 1024) }).to_string();
    let body = encryptor.encrypt(&key().public_key(), large.as_bytes()).expect("encrypt");
    let large = Delivery::signed(std::slice::from_ref(&secret), "evt_large", now(), CONTENT_TYPE, body);
    assert_eq!(large.send(&client, &receiver).await.0, StatusCode::OK);
    // Plain JSON stays accepted while the key is optional (see `verify`'s documentation).
    assert_eq!(Delivery::plain(&secret, "evt_plain", 3).send(&client, &receiver).await.0, StatusCode::OK);

    // Four deliveries arrived encrypted, the redelivery included.
    assert_eq!(receiver.stats(), Stats { received: 5, unique: 4, duplicates: 1, encrypted: 4, ..Stats::default() });
}

#[tokio::test]
async fn forged_tampered_stale_and_incomplete_deliveries_get_401() {
    let secret = SigningSecret::generate();
    let receiver = start(DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()]))).await;
    let client = reqwest::Client::new();
    let genuine = Delivery::plain(&secret, "evt_1", 1);

    let mut tampered_body = genuine.clone();
    tampered_body.body = envelope(2);
    assert_refused(tampered_body.send(&client, &receiver).await, "no signature");

    // A well-formed signature by the right secret, but over something else.
    let mut tampered_signature = genuine.clone();
    tampered_signature.signature = Some(secret.sign("evt_1", now(), envelope(2).as_bytes()));
    assert_refused(tampered_signature.send(&client, &receiver).await, "no signature");

    let wrong_secret = Delivery::plain(&SigningSecret::generate(), "evt_1", 1);
    assert_refused(wrong_secret.send(&client, &receiver).await, "no signature");

    let ten_minutes_ago = now() - 600;
    let stale =
        Delivery::signed(std::slice::from_ref(&secret), "evt_1", ten_minutes_ago, "application/json", envelope(1));
    assert_refused(stale.send(&client, &receiver).await, "tolerance");
    let from_the_future =
        Delivery::signed(std::slice::from_ref(&secret), "evt_1", now() + 600, "application/json", envelope(1));
    assert_refused(from_the_future.send(&client, &receiver).await, "tolerance");

    let mut no_id = genuine.clone();
    no_id.id = None;
    assert_refused(no_id.send(&client, &receiver).await, "missing webhook-id header");
    let mut no_timestamp = genuine.clone();
    no_timestamp.timestamp = None;
    assert_refused(no_timestamp.send(&client, &receiver).await, "missing webhook-timestamp header");
    let mut no_signature = genuine.clone();
    no_signature.signature = None;
    assert_refused(no_signature.send(&client, &receiver).await, "missing webhook-signature header");
    let mut bad_timestamp = genuine.clone();
    bad_timestamp.timestamp = Some("yesterday".into());
    assert_refused(bad_timestamp.send(&client, &receiver).await, "not a Unix time");

    // Nothing was processed; the genuine delivery still goes through.
    assert_eq!(receiver.stats(), Stats { received: 9, rejected: 9, ..Stats::default() });
    assert_eq!(genuine.send(&client, &receiver).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_rotation_pair_is_accepted_by_receivers_knowing_either_secret() {
    let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
    let client = reqwest::Client::new();
    let both = Delivery::signed(&[old.clone(), new.clone()], "evt_rotated", now(), "application/json", envelope(1));
    assert_eq!(both.signature.as_deref().map(|s| s.split(' ').count()), Some(2));

    for known in [vec![old.clone()], vec![new.clone()], vec![new.clone(), old.clone()]] {
        let receiver = start(DeliveryVerifier::new(SignatureVerifier::new(known))).await;
        assert_eq!(both.send(&client, &receiver).await.0, StatusCode::OK);
    }
    // A receiver that knows neither refuses it.
    let stranger = start(DeliveryVerifier::new(SignatureVerifier::new(vec![SigningSecret::generate()]))).await;
    assert_refused(both.send(&client, &stranger).await, "no signature");
}

#[tokio::test]
async fn encrypted_bodies_need_the_right_private_key() {
    let secret = SigningSecret::generate();
    let client = reqwest::Client::new();
    let encryptor = Encryptor::default();

    // No key configured.
    let keyless = start(DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()]))).await;
    assert_refused(
        Delivery::encrypted(&secret, &encryptor, "evt_1", 1).send(&client, &keyless).await,
        "no private key",
    );

    // Another key configured: the JWE names a different kid.
    let other_key = PrivateKey::generate(2048).expect("second key");
    let verifier = DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()])).with_private_key(other_key);
    let wrong_key = start(verifier).await;
    assert_refused(
        Delivery::encrypted(&secret, &encryptor, "evt_1", 1).send(&client, &wrong_key).await,
        "encrypted for key",
    );

    // Right key, but the JWE was altered before signing (a sender bug, or a secret holder
    // without the key): the signature passes, decryption does not.
    let verifier = DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()])).with_private_key(key().clone());
    let receiver = start(verifier).await;
    let jwe = encryptor.encrypt(&key().public_key(), envelope(1).as_bytes()).expect("encrypt");
    let mut segments: Vec<&str> = jwe.split('.').collect();
    let first_char = if segments[3].starts_with('A') { "B" } else { "A" };
    let altered_ciphertext = format!("{first_char}{}", &segments[3][1..]);
    segments[3] = &altered_ciphertext;
    let altered = Delivery::signed(std::slice::from_ref(&secret), "evt_2", now(), CONTENT_TYPE, segments.join("."));
    assert_refused(altered.send(&client, &receiver).await, "cannot decrypt");
    let not_a_jwe = Delivery::signed(std::slice::from_ref(&secret), "evt_3", now(), CONTENT_TYPE, envelope(3));
    assert_refused(not_a_jwe.send(&client, &receiver).await, "malformed JWE");
}

#[tokio::test]
async fn required_encryption_refuses_plain_bodies() {
    let secret = SigningSecret::generate();
    let verifier = DeliveryVerifier::new(SignatureVerifier::new(vec![secret.clone()]))
        .with_private_key(key().clone())
        .require_encryption(true);
    let receiver = start(verifier).await;
    let client = reqwest::Client::new();
    assert_refused(Delivery::plain(&secret, "evt_1", 1).send(&client, &receiver).await, "not encrypted");
    let encrypted = Delivery::encrypted(&secret, &Encryptor::default(), "evt_2", 2);
    assert_eq!(encrypted.send(&client, &receiver).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_tolerance_is_configurable() {
    let secret = SigningSecret::generate();
    let strict = SignatureVerifier::new(vec![secret.clone()]).with_tolerance(Duration::from_secs(30));
    let receiver = start(DeliveryVerifier::new(strict)).await;
    let client = reqwest::Client::new();
    let a_minute_ago =
        Delivery::signed(std::slice::from_ref(&secret), "evt_1", now() - 60, "application/json", envelope(1));
    assert_refused(a_minute_ago.send(&client, &receiver).await, "tolerance");
    assert_eq!(Delivery::plain(&secret, "evt_2", 2).send(&client, &receiver).await.0, StatusCode::OK);
}

/// Runs the binary with `args` and `env`, expecting it to stop at once; returns (code, stderr).
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline-receiver"));
    command.args(args).args(["--listen", "127.0.0.1:0"]).env("RUST_LOG", "off");
    for name in ["HOOKLINE_RECEIVER_SIGNING_SECRET", "HOOKLINE_RECEIVER_PRIVATE_KEY"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("run hookline-receiver");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_binary_exits_2_on_bad_settings_without_echoing_secrets() {
    let too_short = "whsec_c2hvcnQtc2VjcmV0LW9ubHktMjA=";
    let (code, stderr) = run_binary(&[], &[("HOOKLINE_RECEIVER_SIGNING_SECRET", too_short)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--signing-secret value #1") && stderr.contains("at least 24"), "{stderr}");
    assert!(!stderr.contains("c2hvcnQtc2VjcmV0"), "the secret must not be echoed: {stderr}");

    let good = SigningSecret::generate().expose();
    let (code, stderr) = run_binary(&["--signing-secret", &format!("{good},whsec_%%%")], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("value #2") && stderr.contains("not standard base64"), "{stderr}");
    assert!(!stderr.contains(&good), "{stderr}");

    let (code, stderr) = run_binary(&["--signing-secret", &good, "--private-key", "/nonexistent/private.pem"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read the private key file /nonexistent/private.pem"), "{stderr}");

    let public_key_file = std::env::temp_dir().join(format!("hookline-receiver-test-{}.pem", std::process::id()));
    std::fs::write(&public_key_file, key().public_key().to_spki_pem()).expect("write");
    let path = public_key_file.to_str().expect("UTF-8 path");
    let (code, stderr) = run_binary(&["--private-key", path], &[("HOOKLINE_RECEIVER_SIGNING_SECRET", &good)]);
    std::fs::remove_file(&public_key_file).expect("clean up");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("this is a public key"), "{stderr}");

    let (code, stderr) = run_binary(&["--private-key", "/some/key.pem"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--private-key needs --signing-secret"), "{stderr}");
    assert!(stderr.contains("shown when the customer was created"), "says where the secret is: {stderr}");
}

/// The signing secret is shown when the customer is created (or its secret rotated), not when
/// a webhook URL is registered: the help says where to find it.
#[test]
fn the_help_says_where_the_signing_secret_is_shown() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-receiver")).arg("--help").output().expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{help}");
    assert!(help.contains("shown once when the customer was created") && help.contains("customers create"), "{help}");
    assert!(!help.contains("endpoint was registered"), "{help}");
    assert!(help.contains("--print") && help.contains("HOOKLINE_RECEIVER_PRINT"), "{help}");
}

/// A running `hookline-receiver` binary: its address, its stdout, and its stderr gathered by a
/// thread (so that the pipe never fills up).
struct Running {
    child: std::process::Child,
    url: String,
    stats_url: String,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    /// Starts the binary with `args` on `127.0.0.1:0`, stdout and stderr piped (as to a file or
    /// `| head`), and waits for it to say where it listens.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookline-receiver"));
        command.args(args).args(["--listen", "127.0.0.1:0"]).env("RUST_LOG", "info");
        for name in
            ["HOOKLINE_RECEIVER_SIGNING_SECRET", "HOOKLINE_RECEIVER_PRIVATE_KEY", "HOOKLINE_RECEIVER_PRINT", "NO_COLOR"]
        {
            command.env_remove(name);
        }
        command.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start hookline-receiver");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let address = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                let _ = child.wait();
                panic!("the receiver stopped before listening:\n{seen}");
            }
            seen.push_str(&line);
            // Read past any colour codes: `127.0.0.1:PORT` is the only such text in the line.
            if line.contains("receiver listening")
                && let Some(at) = line.find("127.0.0.1:")
            {
                let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
                break format!("127.0.0.1:{port}");
            }
        };
        let stderr = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            seen + &rest
        });
        let stdout = Some(BufReader::new(child.stdout.take().expect("stdout")));
        Self {
            child,
            url: format!("http://{address}/webhook"),
            stats_url: format!("http://{address}/stats"),
            stdout,
            stderr,
        }
    }

    /// The next line on stdout, as JSON. Printed lines are flushed before the delivery is
    /// answered, so after a 200 it is there to read.
    fn printed(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.as_mut().expect("stdout open").read_line(&mut line).expect("read stdout");
        assert!(line.ends_with('\n'), "one whole line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    async fn stats(&self, client: &reqwest::Client) -> Value {
        client.get(&self.stats_url).send().await.expect("stats").json().await.expect("stats JSON")
    }

    /// Kills the process; returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.join().expect("stderr reader")
    }
}

#[tokio::test]
async fn the_binary_prints_each_verified_delivery_decrypted_on_stdout_and_counts_encryption() {
    let secret = SigningSecret::generate();
    let key_file = std::env::temp_dir().join(format!("hookline-receiver-print-{}.pem", std::process::id()));
    std::fs::write(&key_file, key().to_pkcs8_pem().as_bytes()).expect("write the private key");
    let mut receiver = Running::start(
        &["--print", "--private-key", key_file.to_str().expect("UTF-8 path")],
        &[("HOOKLINE_RECEIVER_SIGNING_SECRET", &secret.expose())],
    );
    let client = reqwest::Client::new();
    let encryptor = Encryptor::default();

    let encrypted = Delivery::encrypted(&secret, &encryptor, "evt_secret", 7);
    assert_eq!(encrypted.send_to(&client, &receiver.url).await.0, StatusCode::OK);
    let line = receiver.printed();
    assert_eq!(
        (&line["webhook_id"], &line["verified"], &line["encrypted"], &line["key_id"]),
        (&json!("evt_secret"), &json!(true), &json!(true), &json!(key().kid()))
    );
    assert_eq!(line["webhook_timestamp"], json!(encrypted.timestamp.as_deref().map(|t| t.parse::<i64>().unwrap())));
    // The envelope as the customer's code gets it: decrypted, not the JWE.
    let expected: Value = serde_json::from_str(&envelope(7)).expect("JSON");
    assert_eq!(line["event"], expected);

    let plain = Delivery::plain(&secret, "evt_plain", 8);
    assert_eq!(plain.send_to(&client, &receiver.url).await.0, StatusCode::OK);
    let line = receiver.printed();
    assert_eq!(
        (&line["webhook_id"], &line["encrypted"], &line["key_id"]),
        (&json!("evt_plain"), &json!(false), &Value::Null)
    );
    assert_eq!(line["event"]["data"], json!({ "order": 8 }));

    // A redelivery is acknowledged, counted, and not printed again; a forgery is not printed.
    assert_eq!(encrypted.send_to(&client, &receiver.url).await.0, StatusCode::OK);
    let forged = Delivery::plain(&SigningSecret::generate(), "evt_forged", 9);
    assert_eq!(forged.send_to(&client, &receiver.url).await.0, StatusCode::UNAUTHORIZED);
    let stats = receiver.stats(&client).await;
    assert_eq!(
        (&stats["received"], &stats["unique"], &stats["duplicates"], &stats["rejected"], &stats["encrypted"]),
        (&json!(4), &json!(2), &json!(1), &json!(1), &json!(2)),
        "{stats}"
    );

    // The reader goes away (`| head -2`): deliveries are still accepted, printing stops.
    drop(receiver.stdout.take());
    let after = Delivery::encrypted(&secret, &encryptor, "evt_after", 10);
    assert_eq!(after.send_to(&client, &receiver.url).await.0, StatusCode::OK);
    assert_eq!(receiver.stats(&client).await["unique"], json!(3));

    let stderr = receiver.stop();
    std::fs::remove_file(&key_file).expect("clean up");
    assert!(stderr.contains("no longer printing deliveries"), "{stderr}");
    assert!(!stderr.contains("\"order\""), "the envelope is not logged: {stderr}");
    // Logs to a pipe or a file carry no colour codes.
    assert!(!stderr.contains("\x1b["), "ANSI escapes in logs written to a pipe: {stderr:?}");
}

#[test]
fn the_binary_logs_without_colour_codes_to_a_pipe() {
    let receiver = Running::start(&[], &[]);
    let stderr = receiver.stop();
    assert!(stderr.contains("NO SIGNING SECRET") && stderr.contains("receiver listening"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "ANSI escapes in logs written to a pipe: {stderr:?}");
}
