//! Runs the interop scripts of `interop/` (off-the-shelf implementations: Standard Webhooks,
//! JOSE, Avro, gRPC in Node.js; gRPC reflection in Python) from the tests of any crate.
//!
//! The packages are installed by `scripts/ensure-interop.sh` (pinned by
//! `interop/package-lock.json`); `make test` passes the install directory as
//! `HOOKLINE_INTEROP_DIR`, and without it the first call runs the script. When Node.js or the
//! packages cannot be had the calling test fails, saying why: interoperability is a requirement,
//! so it is never skipped silently.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository's root directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit lives in the workspace")
}

/// The installed interop directory (`node_modules` plus the scripts), found once per test binary.
pub fn interop_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HOOKLINE_INTEROP_DIR").filter(|dir| !dir.is_empty()) {
            return PathBuf::from(dir);
        }
        let script = repo_root().join("scripts/ensure-interop.sh");
        let output = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}); the interop tests need Node.js >= 20 with npm and access to the npm registry \
             (see its messages above)",
            script.display(),
            output.status
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a UTF-8 path").trim())
    })
}

/// Runs `node <interop dir>/<script>` with `input` on stdin and returns its JSON output.
pub fn node(script: &str, input: &Value) -> Value {
    run_json(Command::new("node"), "node", "Node.js >= 20", script, input)
}

/// Runs `<interop dir>/python/bin/python <interop dir>/<script>` (the virtual environment with
/// `interop/requirements.txt`) with `input` on stdin and returns its JSON output.
pub fn python(script: &str, input: &Value) -> Value {
    let interpreter = interop_dir().join("python/bin/python");
    run_json(Command::new(interpreter), "python", "Python >= 3.9 with venv", script, input)
}

/// Runs `interpreter <interop dir>/<script>`, writing `input` to its stdin, and parses its stdout.
fn run_json(mut interpreter: Command, name: &str, needs: &str, script: &str, input: &Value) -> Value {
    let path = interop_dir().join(script);
    let mut child = interpreter
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start `{name}` ({error}); the interop tests need {needs}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let payload = serde_json::to_vec(input).expect("JSON input");
    // Written from a thread: a large input could otherwise fill the pipe while the script's
    // output does.
    let writer = std::thread::spawn(move || stdin.write_all(&payload));
    let output = child.wait_with_output().expect("the script runs");
    writer.join().expect("writer thread").expect("write the script's stdin");
    assert!(
        output.status.success(),
        "{name} {} failed ({}):\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{name} {} printed no JSON ({error}): {}", path.display(), String::from_utf8_lossy(&output.stdout))
    })
}
