//! A real tansu broker process for tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookline_core::config::KafkaArgs;

/// A tansu broker listening on a free loopback port; killed when dropped.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    port: u16,
    storage: String,
    /// Tokio worker threads of the broker process (its default, one per core, when `None`).
    worker_threads: Option<usize>,
}

/// Where the tansu binary is: `$TANSU_BIN`, else `tansu` in `$HOOKLINE_TOOLS_DIR/bin` (default
/// `~/.cache/hookline/tools/bin`, where `scripts/ensure-tansu.sh` installs it), else `tansu` on
/// `PATH`.
pub fn tansu_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(bin);
    }
    let tools = std::env::var_os("HOOKLINE_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/hookline/tools")));
    if let Some(candidate) = tools.map(|dir| dir.join("bin/tansu"))
        && candidate.is_file()
    {
        return candidate;
    }
    PathBuf::from("tansu")
}

/// tansu's in-memory storage engine.
const MEMORY_STORAGE: &str = "memory://tansu/";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Broker {
    /// A broker keeping everything in memory.
    pub fn start() -> Self {
        Self::start_with(MEMORY_STORAGE.to_owned(), None)
    }

    /// A broker storing its data in the SQLite file `path`, so a restarted broker (see
    /// [`Broker::restart`]) keeps topics, records and committed offsets.
    pub fn start_persistent(path: &Path) -> Self {
        Self::start_with(format!("sqlite://{}", path.display()), None)
    }

    /// A broker keeping everything in memory, running `threads` Tokio worker threads (the
    /// benchmarks: on a small machine the broker shares the cores with what is measured).
    pub fn start_with_worker_threads(threads: usize) -> Self {
        Self::start_with(MEMORY_STORAGE.to_owned(), Some(threads))
    }

    /// A broker on a free port.
    fn start_with(storage: String, worker_threads: Option<usize>) -> Self {
        let mut broker = Self { child: None, port: free_port(), storage, worker_threads };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let binary = tansu_binary();
        let mut command = Command::new(&binary);
        if let Some(threads) = self.worker_threads {
            command.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        let child = command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TANSU_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run `scripts/ensure-tansu.sh` or `make test`", binary.display())
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let address: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("tansu exited during start-up with {status}");
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "tansu did not listen on {address} within 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings for this broker. Short session timeouts so that a killed consumer's
    /// partitions move quickly.
    pub fn kafka_args(&self) -> KafkaArgs {
        KafkaArgs::new(self.bootstrap())
    }

    /// The broker process's id while it runs (the benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the broker (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and restarts the broker on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
