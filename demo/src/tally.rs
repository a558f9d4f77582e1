//! Counting where every delivery ended, and the per-customer summary.
//!
//! A delivery is *delivered* when its customer's receiver accepted its event id (the receiver's
//! `unique` counter) and *dead-lettered* when a record with its event id and customer key is on
//! the DLQ topic, which a [`DlqFollower`] reads from the beginning and keeps following. Both count
//! distinct event ids, so a redelivery after a rebalance is not counted twice; the receiver's
//! `duplicates` counter shows how many there were.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hookline_core::config::KafkaArgs;
use hookline_core::deadletter;
use hookline_core::envelope::EventRecord;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cast::{Behaviour, Member};
use crate::{Error, Result};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the DLQ holds for one customer.
#[derive(Debug, Default, Clone)]
struct DeadLetters {
    event_ids: HashSet<String>,
    /// Records, repeated writes of the same event included.
    records: u64,
    reasons: BTreeMap<String, u64>,
}

/// Follows the DLQ topic from its beginning, counting dead letters per customer (record key).
#[derive(Debug)]
pub struct DlqFollower {
    counts: Arc<Mutex<HashMap<String, DeadLetters>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl DlqFollower {
    /// Starts reading every partition of `topic` from the beginning.
    pub async fn start(kafka: &KafkaArgs, topic: &str) -> Result<Self> {
        let kafka = kafka.clone();
        let topic = topic.to_owned();
        let reader = tokio::task::spawn_blocking(move || -> Result<BaseConsumer> {
            let reader = kafka::reader(&kafka, "hookline-demo-dlq")?;
            let mut assignment = TopicPartitionList::new();
            for partition in kafka::topic_partitions(&reader, &topic, METADATA_TIMEOUT)? {
                assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            reader.assign(&assignment)?;
            Ok(reader)
        })
        .await
        .map_err(|e| Error::Component { component: "the DLQ reader".into(), reason: e.to_string() })??;

        let counts: Arc<Mutex<HashMap<String, DeadLetters>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::task::spawn_blocking({
            let counts = Arc::clone(&counts);
            let stop = stop.clone();
            move || follow(&reader, &counts, &stop)
        });
        Ok(Self { counts, stop, task })
    }

    fn snapshot(&self, customer: &str) -> DeadLetters {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(customer).cloned().unwrap_or_default()
    }

    /// Stops reading and closes the reader.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the DLQ reader ended abnormally");
        }
    }
}

fn follow(reader: &BaseConsumer, counts: &Mutex<HashMap<String, DeadLetters>>, stop: &CancellationToken) {
    while !stop.is_cancelled() {
        let message = match reader.poll(POLL_INTERVAL) {
            None => continue,
            Some(Err(error)) => {
                tracing::warn!(%error, "reading the DLQ failed");
                continue;
            }
            Some(Ok(message)) => message,
        };
        let parsed = deadletter::parse_message(&message);
        let customer = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let event_id = parsed
            .event_id
            .or_else(|| message.payload().and_then(|v| EventRecord::from_bytes(v).ok()).map(|e| e.event_id))
            .unwrap_or_else(|| format!("{}/{}", message.partition(), message.offset()));
        let reason = parsed.reason.unwrap_or_else(|| "unknown".to_owned());
        let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let letters = counts.entry(customer).or_default();
        letters.event_ids.insert(event_id);
        letters.records += 1;
        *letters.reasons.entry(reason).or_default() += 1;
    }
}

/// Where one customer's deliveries stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSummary {
    pub id: String,
    pub behaviour: Behaviour,
    /// Deliveries published for this customer (one per event it received).
    pub published: u64,
    /// Events its endpoint accepted.
    pub delivered: u64,
    /// Events on the DLQ.
    pub dead_lettered: u64,
    /// HTTP requests its endpoint received.
    pub attempts: u64,
    /// Attempts after a failed one.
    pub retries: u64,
    /// Deliveries of an event already accepted (redeliveries after a rebalance or crash).
    pub duplicates: u64,
    /// DLQ records by `hookline-dlq-reason`.
    pub dlq_reasons: BTreeMap<String, u64>,
    /// When (from the first publish) every delivery of this customer was seen to have ended, to
    /// the progress lines' second.
    pub done_after: Option<Duration>,
}

impl CustomerSummary {
    /// Whether every delivery of this customer ended exactly once, delivered or dead-lettered.
    pub fn is_accounted_for(&self) -> bool {
        self.delivered + self.dead_lettered == self.published
    }

    /// Deliveries not yet delivered nor dead-lettered.
    pub fn outstanding(&self) -> u64 {
        self.published.saturating_sub(self.delivered + self.dead_lettered)
    }
}

/// The customers' counters now.
pub fn customers(members: &[Member], expected: &BTreeMap<&str, u64>, dlq: &DlqFollower) -> Vec<CustomerSummary> {
    members
        .iter()
        .map(|member| {
            let stats = member.stats();
            let letters = dlq.snapshot(member.profile.id);
            let dead_lettered = u64::try_from(letters.event_ids.len()).unwrap_or(u64::MAX);
            CustomerSummary {
                id: member.profile.id.to_owned(),
                behaviour: member.profile.behaviour,
                published: expected.get(member.profile.id).copied().unwrap_or_default(),
                delivered: stats.unique,
                dead_lettered,
                attempts: stats.received,
                // Every refused attempt was followed by another one, except the last attempt of
                // each event given up on.
                retries: stats.failed.saturating_sub(dead_lettered),
                duplicates: stats.duplicates,
                dlq_reasons: letters.reasons,
                done_after: None,
            }
        })
        .collect()
}

/// One consumer's share of the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSummary {
    /// Partitions assigned at the end of the run.
    pub partitions: i64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub rebalances: u64,
    /// Records this consumer parked on the retry topic, and times it parked a customer.
    pub parked_records: u64,
    pub parkings: u64,
}

/// The outcome of a demo run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Where the run's Kafka was (`an in-process mock cluster at …` or `Kafka at …`).
    pub kafka: String,
    pub events: u32,
    pub customers: Vec<CustomerSummary>,
    pub consumers: Vec<ConsumerSummary>,
    /// Operational events (`hookline.endpoint.*`) the operator's endpoint received, by type.
    pub operator_notices: BTreeMap<String, u64>,
    /// From the first publish request to the end of the wait.
    pub elapsed: Duration,
}

impl Summary {
    /// Whether every delivery of every customer ended exactly once, delivered or dead-lettered.
    pub fn is_complete(&self) -> bool {
        self.customers.iter().all(CustomerSummary::is_accounted_for)
    }

    /// The summary line of one customer.
    pub fn customer(&self, id: &str) -> Option<&CustomerSummary> {
        self.customers.iter().find(|c| c.id == id)
    }

    /// Total over every customer of one counter.
    pub fn total(&self, counter: fn(&CustomerSummary) -> u64) -> u64 {
        self.customers.iter().map(counter).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} events published to {}:", self.events, self.kafka)?;
        writeln!(f)?;
        let behaviour_width = self.customers.iter().map(|c| c.behaviour.to_string().len()).max().unwrap_or(0).max(8);
        let id_width = self.customers.iter().map(|c| c.id.len()).max().unwrap_or(0).max(8);
        writeln!(
            f,
            "{:<id_width$}  {:<behaviour_width$}  {:>9}  {:>9}  {:>5}  {:>8}  {:>7}  {:>10}  {:>7}",
            "customer", "endpoint", "published", "delivered", "DLQ'd", "attempts", "retries", "duplicates", "done by"
        )?;
        let rule = id_width + behaviour_width + 2 + 9 + 9 + 5 + 8 + 7 + 10 + 7 + 2 * 7 + 2;
        writeln!(f, "{}", "-".repeat(rule))?;
        for c in &self.customers {
            let mark = if c.is_accounted_for() { "" } else { "  <- unaccounted for" };
            let done = c.done_after.map_or_else(|| "-".to_owned(), |after| format!("{:.0}s", after.as_secs_f64()));
            writeln!(
                f,
                "{:<id_width$}  {:<behaviour_width$}  {:>9}  {:>9}  {:>5}  {:>8}  {:>7}  {:>10}  {done:>7}{mark}",
                c.id,
                c.behaviour.to_string(),
                c.published,
                c.delivered,
                c.dead_lettered,
                c.attempts,
                c.retries,
                c.duplicates
            )?;
        }
        writeln!(f, "{}", "-".repeat(rule))?;
        writeln!(
            f,
            "{:<id_width$}  {:<behaviour_width$}  {:>9}  {:>9}  {:>5}  {:>8}  {:>7}  {:>10}",
            "total",
            "",
            self.total(|c| c.published),
            self.total(|c| c.delivered),
            self.total(|c| c.dead_lettered),
            self.total(|c| c.attempts),
            self.total(|c| c.retries),
            self.total(|c| c.duplicates)
        )?;
        writeln!(f)?;
        for (n, consumer) in self.consumers.iter().enumerate() {
            writeln!(
                f,
                "consumer {}: {} partitions, {} delivered, {} dead-lettered, {} parked on the retry topic (customers \
                 parked: {}; rebalance callbacks: {})",
                n + 1,
                consumer.partitions,
                consumer.delivered,
                consumer.dead_lettered,
                consumer.parked_records,
                consumer.parkings,
                consumer.rebalances
            )?;
        }
        let notices: Vec<String> = self.operator_notices.iter().map(|(kind, n)| format!("{kind} x{n}")).collect();
        writeln!(
            f,
            "operator endpoint: {}",
            if notices.is_empty() { "no operational event".to_owned() } else { notices.join(", ") }
        )?;
        for c in self.customers.iter().filter(|c| !c.dlq_reasons.is_empty()) {
            let reasons: Vec<String> = c.dlq_reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
            writeln!(f, "DLQ records for {}: {}", c.id, reasons.join(", "))?;
        }
        writeln!(f)?;
        let seconds = self.elapsed.as_secs_f64();
        if self.is_complete() {
            write!(
                f,
                "OK: all {} deliveries of {} events accounted for in {seconds:.1}s ({} delivered, {} dead-lettered, {} retries).",
                self.total(|c| c.published),
                self.events,
                self.total(|c| c.delivered),
                self.total(|c| c.dead_lettered),
                self.total(|c| c.retries),
            )
        } else {
            let missing: Vec<String> = self
                .customers
                .iter()
                .filter(|c| !c.is_accounted_for())
                .map(|c| {
                    format!(
                        "{}: {} published, {} delivered + {} dead-lettered",
                        c.id, c.published, c.delivered, c.dead_lettered
                    )
                })
                .collect();
            write!(f, "INCOMPLETE after {seconds:.1}s: {}.", missing.join("; "))
        }
    }
}
