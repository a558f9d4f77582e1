//! What a benchmark runs against: a fresh tansu broker, the topics and customers of one run,
//! prefilled delivery records, and Hookline's own binaries as child processes.
//!
//! Every run gets its own broker process (memory storage), so no run inherits another's
//! records, groups or ledger. Consumers and the publisher run as the real release binaries, as
//! in production, so that their CPU time can be read per process and a profiler attached.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hookline_core::codec::Codec;
use hookline_core::config::{KafkaArgs, SchemaRegistryArgs, TopicArgs};
use hookline_core::customer::{Customer, StoredPublicKey};
use hookline_core::envelope::EventRecord;
use hookline_core::{directory, kafka, topics};
use hookline_testkit::{Broker, tenants, unique_name};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::value::RawValue;
use tokio::process::{Child, Command};

use crate::{Config, Error, Result};

/// The event type of every benchmark event.
pub const EVENT_TYPE: &str = "order.created";
/// The producer token the publisher is started with.
pub const PRODUCER_TOKEN: &str = "bench-producer-token";
/// The admin token the publisher is started with.
pub const ADMIN_TOKEN: &str = "bench-admin-token";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A payload of a typical size (about 300 bytes of JSON).
pub fn payload(n: usize) -> String {
    format!(
        r#"{{"order_id":"ord_{n:012}","customer_ref":"cus_5f2c9a","amount":{{"value":{},"currency":"EUR"}},"items":[{{"sku":"SKU-1042","quantity":2,"unit_price":1250}},{{"sku":"SKU-2210","quantity":1,"unit_price":4999}}],"shipping":{{"method":"express","country":"DE"}},"created_at":"2026-11-29T10:00:00.000Z"}}"#,
        7499 + n % 1000
    )
}

/// Customer `n`'s id.
pub fn customer_id(n: u32) -> String {
    format!("c-{n:04}")
}

/// One run's broker, topics and customers.
#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub kafka: KafkaArgs,
    pub topics: TopicArgs,
    pub partitions: i32,
    /// Where the child processes write their logs (kept for a failed run).
    pub log_dir: PathBuf,
    /// `--worker-threads` of the Hookline processes (0: their default).
    pub worker_threads: usize,
}

impl Stack {
    /// [`Stack::start`], with Hookline's processes running `worker_threads` Tokio threads (0:
    /// their default) instead of `--worker-threads`.
    pub async fn start_with_threads(config: &Config, worker_threads: usize) -> Result<Self> {
        let mut stack = Self::start(config).await?;
        stack.worker_threads = worker_threads;
        Ok(stack)
    }

    /// A fresh broker with the delivery, DLQ, customers and ledger topics.
    pub async fn start(config: &Config) -> Result<Self> {
        let partitions = config.partitions;
        let broker = match config.broker_worker_threads {
            0 => Broker::start(),
            threads => Broker::start_with_worker_threads(threads),
        };
        let kafka = config
            .kafka_properties
            .iter()
            .fold(broker.kafka_args(), |kafka, (key, value)| kafka.with_property(key, value));
        let topics = TopicArgs::with_prefix(&unique_name("bench"));
        topics::ensure_topics(&kafka, &topics::specs(&topics, partitions, 1)).await?;
        let log_dir = std::env::temp_dir().join("hookline-bench").join(&topics.deliveries);
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self { broker, kafka, topics, partitions, log_dir, worker_threads: config.worker_threads })
    }

    /// Drops the `--kafka-property` `key` from what Hookline's processes of this stack get (a
    /// scenario that measures what the property changes, with the processes' own default).
    pub fn without_property(&mut self, key: &str) {
        self.kafka.kafka_properties.retain(|(k, _)| k != key);
    }

    /// Writes `count` customers subscribed to everything, customer `n` at `url(n)`, each with a
    /// signing secret, and with `keys[n % len]` as its public key when `keys` is not empty.
    pub async fn put_customers(&self, count: u32, url: impl Fn(u32) -> String, keys: &[StoredPublicKey]) -> Result<()> {
        let customers: Vec<Customer> = (0..count)
            .map(|n| {
                let (mut customer, _secret) = tenants::signed_customer(&customer_id(n), &url(n), &["*"]);
                if !keys.is_empty() {
                    customer.set_public_key(keys[n as usize % keys.len()].clone());
                }
                customer
            })
            .collect();
        directory::put_customers_with(&self.kafka, &Codec::single_object(), &self.topics.customers, &customers).await?;
        Ok(())
    }

    /// Produces `events` delivery records spread round-robin over `customers` customers, as the
    /// publisher writes them (Avro single-object encoding, event id and type headers). Returns
    /// how many landed in each partition.
    pub async fn prefill(&self, events: usize, customers: u32) -> Result<BTreeMap<i32, usize>> {
        let producer: FutureProducer = kafka::producer_config(&self.kafka, "hookline-bench-prefill").create()?;
        let codec = Codec::new(&SchemaRegistryArgs::default())?;
        let mut per_partition = BTreeMap::new();
        let mut pending = FuturesUnordered::new();
        for n in 0..events {
            let raw = RawValue::from_string(payload(n)).map_err(|e| Error::Invalid(format!("payload: {e}")))?;
            let record = EventRecord::new(EVENT_TYPE, raw);
            let value = codec.encode_delivery(&self.topics.deliveries, &record).await?;
            let key = customer_id(u32::try_from(n % customers as usize).unwrap_or(0));
            let record_headers = record.record_headers();
            let topic = self.topics.deliveries.clone();
            let producer = producer.clone();
            pending.push(async move {
                let record = FutureRecord::to(&topic).key(&key).payload(&value).headers(record_headers);
                producer.send(record, Duration::from_secs(60)).await.map_err(|(error, _)| error)
            });
            // Bounded in flight, so that memory stays flat for any --events.
            while pending.len() >= 20_000 {
                if let Some(delivered) = pending.next().await {
                    *per_partition.entry(delivered?.partition).or_insert(0) += 1;
                }
            }
        }
        while let Some(delivered) = pending.next().await {
            *per_partition.entry(delivered?.partition).or_insert(0) += 1;
        }
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .map_err(|e| Error::Invalid(format!("flush task: {e}")))??;
        Ok(per_partition)
    }

    /// Starts a `hookline-consumer` process of `group` (production defaults but for the
    /// loopback allow-list and the tests' master key, and `args`).
    pub fn spawn_consumer(&self, bin_dir: &Path, group: &str, name: &str, args: &[&str]) -> Result<HooklineProcess> {
        let metrics = free_address()?;
        let mut command = Command::new(bin_dir.join("hookline-consumer"));
        command
            .args(["--delivered-topic", &self.topics.delivered])
            .args(["--retry-topic", &self.topics.retry])
            .args(["--parking-topic", &self.topics.parking])
            .args(["--attempts-topic", &self.topics.attempts])
            .args(["--group", group])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(args);
        HooklineProcess::spawn(command, self, name, metrics)
    }

    /// Starts a `hookline-publisher` process; its HTTP API and `/metrics` are at the returned
    /// address.
    pub async fn spawn_publisher(&self, bin_dir: &Path) -> Result<HooklineProcess> {
        let listen = free_address()?;
        let mut command = Command::new(bin_dir.join("hookline-publisher"));
        command
            .args(["--idempotency-topic", &self.topics.idempotency])
            .args(["--listen", &listen.to_string(), "--grpc-listen", "off"])
            .env("HOOKLINE_PRODUCER_TOKENS", PRODUCER_TOKEN)
            .env("HOOKLINE_ADMIN_TOKENS", ADMIN_TOKEN);
        let mut process = HooklineProcess::spawn(command, self, "publisher", listen)?;
        process.wait_http_ok("/healthz").await?;
        Ok(process)
    }
}

/// A free loopback address (bound and released; the child binds it next).
fn free_address() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A Hookline binary running as a child process; killed when dropped.
#[derive(Debug)]
pub struct HooklineProcess {
    pub name: String,
    child: Child,
    /// Its HTTP address (`/metrics`, and the API for the publisher).
    pub address: SocketAddr,
    http: reqwest::Client,
    log: PathBuf,
}

impl HooklineProcess {
    /// Starts `command` with what every Hookline binary of the stack takes: the broker, the
    /// shared topics, the Kafka properties, worker threads, credentials and loopback access.
    fn spawn(mut command: Command, stack: &Stack, name: &str, address: SocketAddr) -> Result<Self> {
        let (kafka, topics, worker_threads) = (&stack.kafka, &stack.topics, stack.worker_threads);
        let log = stack.log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let binary = PathBuf::from(command.as_std().get_program());
        command
            .args(["--brokers", &kafka.brokers])
            .args(["--topic", &topics.deliveries])
            .args(["--dlq-topic", &topics.dlq])
            .args(["--customers-topic", &topics.customers]);
        for (key, value) in &kafka.kafka_properties {
            command.args(["--kafka-property", &format!("{key}={value}")]);
        }
        if worker_threads > 0 {
            command.args(["--worker-threads", &worker_threads.to_string()]);
        }
        command
            .env("HOOKLINE_MASTER_KEY", tenants::TEST_MASTER_KEY)
            .env("HOOKLINE_ALLOW_NETWORKS", tenants::LOOPBACK_NETWORKS)
            .env("RUST_LOG", std::env::var("BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| Error::Spawn { binary, source })?;
        Ok(Self { name: name.to_owned(), child, address, http: reqwest::Client::new(), log })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                process: format!("{} (log: {})", self.name, self.log.display()),
                status: status.to_string(),
            }),
        }
    }

    /// Waits until `GET path` answers 2xx.
    pub async fn wait_http_ok(&mut self, path: &str) -> Result<()> {
        let url = format!("http://{}{path}", self.address);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            if self.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout { what: format!("{} answering {path}", self.name), seconds: 60 });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sum of every sample of metric `name` on its `/metrics` (0 when absent or unreachable).
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.address);
        let Ok(response) = self.http.get(&url).send().await else { return 0.0 };
        let Ok(text) = response.text().await else { return 0.0 };
        sum_samples(&text, name)
    }

    /// Stops it with SIGTERM (drain and commit), waiting up to 15 s before killing it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

/// The sum of the samples of `name` (any labels) in a Prometheus text exposition.
pub fn sum_samples(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') { rest.split_once('}')?.1 } else { rest };
            if !value.starts_with(' ') {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat` (Linux; `None`
/// elsewhere). Ticks are USER_HZ, 100 per second on every Linux architecture's user ABI.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // fixed: utime and stime are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples_across_labels_and_ignores_longer_names() {
        let text = "# HELP hookline_assigned_partitions x\nhookline_assigned_partitions 4\n\
                    hookline_assigned_partitions_total 9\nhookline_consumer_lag{partition=\"0\"} 3\n\
                    hookline_consumer_lag{partition=\"1\"} 5\n";
        assert_eq!(sum_samples(text, "hookline_assigned_partitions"), 4.0);
        assert_eq!(sum_samples(text, "hookline_consumer_lag"), 8.0);
        assert_eq!(sum_samples(text, "hookline_missing"), 0.0);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let busy_until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < busy_until {}
        assert!(cpu_time(std::process::id()).is_some_and(|cpu| cpu >= Duration::from_millis(10)));
    }

    #[test]
    fn payloads_are_json_of_a_typical_size() {
        let payload = payload(7);
        assert!(serde_json::from_str::<serde_json::Value>(&payload).is_ok());
        assert!((250..400).contains(&payload.len()), "{}", payload.len());
    }
}
