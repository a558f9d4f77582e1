//! The README's quick start, run exactly as written: the shell blocks between its
//! `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` markers, in one `bash` process, with
//! the built binaries on `PATH` and `KAFKA_BROKERS` pointing at a tansu broker (the README's
//! readers have their own Kafka on the default `127.0.0.1:9092`).
//!
//! The quick start uses fixed loopback ports (4242, 9620, 9464, 9000), as a reader's laptop
//! would: this test is alone in its test binary, and `cargo test` runs test binaries one at a
//! time, so nothing else of ours listens there meanwhile.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookline_testkit::Broker;

/// The whole walk-through normally takes well under a minute on a debug build; this only bounds
/// a hang (every wait in the quick start is an unbounded `until` loop, as a reader's would be).
const DEADLINE: Duration = Duration::from_secs(240);

const PORTS: [u16; 4] = [4242, 9620, 9464, 9000];

/// The shell commands of the quick start: every fenced `sh` block between the markers.
fn quickstart_script(readme: &str) -> String {
    let begin = readme.find("<!-- quickstart:begin -->").expect("README has the quick start begin marker");
    let end = readme.find("<!-- quickstart:end -->").expect("README has the quick start end marker");
    assert!(begin < end, "the quick start markers are in order");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[begin..end].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (false, fence) if fence.starts_with("```") => panic!("a quick start block that is not `sh`: {fence}"),
            (true, "```") => {
                in_block = false;
                script.push('\n');
            }
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            (false, _) => {}
        }
    }
    assert!(!in_block, "an unclosed block in the quick start");
    script
}

/// Where `cargo test --workspace` put the other packages' binaries: next to this test's `deps/`.
fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf();
    for binary in ["hookline-setup", "hookline-publisher", "hookline-consumer", "hookline-receiver"] {
        assert!(
            dir.join(binary).is_file(),
            "{binary} is not built in {}: run `cargo build --workspace --bins` (make test builds it)",
            dir.display()
        );
    }
    dir
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// Kills the script and everything it started (they share its process group).
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0)]).status();
    }
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("read README.md");
    let script = quickstart_script(&readme);
    // The parts the issue asks for, so that an edit cannot quietly drop them.
    for needed in ["HOOKLINE_ALLOW_NETWORKS=127.0.0.0/8", "--print", "--max-attempts 2", "dlq replay", "127.0.0.1:9620"]
    {
        assert!(script.contains(needed), "the quick start lost `{needed}`:\n{script}");
    }
    for port in PORTS {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port}, used by the quick start, is taken on this machine"
        );
    }

    let broker = Broker::start();
    let work = std::env::temp_dir().join(format!("hookline-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("create the working directory");
    std::fs::write(work.join("quickstart.sh"), &script).expect("write the script");
    let stdout_path = work.join("stdout.txt");
    let stderr_path = work.join("stderr.txt");

    let path = format!("{}:{}", binaries_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command
        .args(["-e", "-u", "-o", "pipefail", "quickstart.sh"])
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &work)
        .env("KAFKA_BROKERS", broker.bootstrap())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("start bash");
    let group = ProcessGroup(child.id());

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(group);
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let report = format!("--- stdout\n{stdout}\n--- stderr (last 8000 bytes)\n{}", tail(&stderr, 8000));
    let status = status.unwrap_or_else(|| panic!("the quick start did not finish within {DEADLINE:?}\n{report}"));
    assert!(status.success(), "the quick start failed ({status})\n{report}");

    // What the README says the reader sees: the publishes answered with an event id, the
    // receiver's printed events, decrypted, the dead letter, and the replayed event.
    let printed: Vec<serde_json::Value> =
        stdout.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()).collect();
    let deliveries: Vec<&serde_json::Value> = printed.iter().filter(|value| value.get("event").is_some()).collect();
    assert_eq!(deliveries.len(), 2, "the receiver printed both events, once each\n{report}");
    for delivery in &deliveries {
        assert!(delivery["verified"] == true && delivery["encrypted"] == true, "verified, decrypted\n{report}");
        assert_eq!(delivery["event"]["type"], "order.created", "{report}");
    }
    let orders: Vec<&serde_json::Value> =
        deliveries.iter().map(|delivery| &delivery["event"]["data"]["order"]).collect();
    assert_eq!(orders, [42, 43], "decrypted payloads, in publish order\n{report}");
    assert!(stdout.contains("max_attempts"), "`dlq list` showed the dead letter\n{report}");
    let published = printed.iter().filter(|value| value.get("event_id").is_some()).count();
    assert_eq!(published, 2, "both publishes answered with an event id\n{report}");
    assert!(!stderr.contains("panicked"), "{report}");
    let _ = std::fs::remove_dir_all(&work);
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[test]
fn the_script_is_every_sh_block_between_the_markers() {
    let readme = "intro\n```sh\nnot this\n```\n<!-- quickstart:begin -->\n```sh\na\nb\n```\ntext\n```sh\nc\n```\n\
                  <!-- quickstart:end -->\n```sh\nnor this\n```\n";
    assert_eq!(quickstart_script(readme), "a\nb\n\nc\n\n");
}
