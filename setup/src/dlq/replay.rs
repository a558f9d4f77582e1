//! `dlq replay`: re-produces selected dead letters to the delivery topic.
//!
//! Each replayed record is the original one: the same key (the customer id, so the record lands
//! in the customer's partition and keeps its order with the customer's other events), the same
//! value (so the same event id) and the original headers without the consumer's `hookline-dlq-*`
//! and `hookline-original-*` ones, plus [`REPLAYED_AT`](deadletter::headers::REPLAYED_AT)
//! and [`REPLAYED_FROM`](deadletter::headers::REPLAYED_FROM) ([`deadletter::replayed_headers`]). The consumer counts
//! attempts per read, so the replayed copy gets a full set of attempts.
//!
//! **Idempotent re-runs.** Once the broker acknowledged a replayed record, a marker keyed by the
//! dead letter's `partition/offset` is written to a compacted state topic (by default the DLQ's
//! name followed by `.replayed`). A replay reads the markers first and skips every dead letter
//! already replayed, so an interrupted run can simply be started again. One window remains: the
//! replayed record was acknowledged and the process died before its marker was. The re-run then
//! produces it again, and the consumer's delivery ledger closes that window: both copies carry
//! the same (event id, customer), so whichever is delivered first is recorded and the other is
//! skipped. `dlq list` reads the same markers to show when a dead letter was replayed.
//!
//! Dead letters without a customer key (poison records) cannot be delivered and are not replayed;
//! nor are dead letters written without their body (too large for the DLQ), which hold nothing
//! to replay.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::deadletter;
use hookline_core::kafka;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{DeadLetter, Selection, read_dead_letters, read_topic, write_table};
use crate::broker::{bounded, check_reachable, for_writes};
use crate::{Error, ReplayDeadLetters, Result};

/// Records awaiting their broker acknowledgement at once: enough to keep the producer's batches
/// full, few enough that an interrupted run leaves little without a marker.
const IN_FLIGHT: usize = 256;

/// Runs `dlq replay`.
pub async fn run<W: Write + Send>(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    timeout: Duration,
    replay: ReplayDeadLetters,
    out: &mut W,
) -> Result<()> {
    let selection = Selection::from(&replay.filter);
    match (replay.all, selection.is_narrowed()) {
        (false, false) => {
            return Err(Error::Usage(
                "dlq replay needs a selector: --customer, --event-id, --reason, --since or --until, or --all to \
                 replay every dead letter"
                    .into(),
            ));
        }
        (true, true) => {
            return Err(Error::Usage("--all replays every dead letter: drop either --all or the filters".into()));
        }
        _ => {}
    }
    let state_topic = state_topic(replay.state_topic.as_deref(), topics)?;

    // Ctrl-C stops producing new records, but the ones sent still get their markers, so that the
    // re-run does not produce them again. Watched from the start (not in a dry run, which Ctrl-C
    // simply ends), so that the handler is in place well before the first record is produced.
    let interrupted = CancellationToken::new();
    let _watcher = (!replay.dry_run).then(|| {
        let interrupted = interrupted.clone();
        AbortOnDrop(tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.cancel();
            }
        }))
    });
    check_reachable(kafka, timeout).await?;
    let markers = read_markers(kafka, &state_topic, timeout).await?;
    let mut letters = read_dead_letters(kafka, &topics.dlq, timeout).await?;
    apply_markers(&markers, &mut letters);
    let plan = Plan::new(&selection, letters);
    let skipped = plan.skipped();

    if replay.dry_run {
        if plan.todo.is_empty() {
            writeln!(out, "dry run: nothing to replay ({skipped})")?;
        } else {
            write_table(&plan.todo, out)?;
            writeln!(
                out,
                "dry run: would replay {} dead letter(s) to {} ({skipped}); nothing produced",
                plan.todo.len(),
                topics.deliveries
            )?;
        }
        out.flush()?;
        return Ok(());
    }
    if interrupted.is_cancelled() {
        return Err(Error::Replay { replayed: 0, reason: "interrupted".into() });
    }
    if plan.todo.is_empty() {
        writeln!(out, "nothing to replay ({skipped})")?;
        out.flush()?;
        return Ok(());
    }

    // A broker that creates topics on first use would otherwise make a one-partition delivery
    // topic, where customers no longer map to their partitions.
    bounded(
        timeout,
        "the delivery topic's metadata",
        hookline_core::topics::describe_partitions(kafka, &topics.deliveries),
    )
    .await?;
    ensure_state_topic(kafka, &topics.dlq, &state_topic, timeout).await?;
    let producer: FutureProducer = kafka::producer_config(&for_writes(kafka, timeout), "hookline-setup")
        .create()
        .map_err(hookline_core::Error::from)?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(plan.todo.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} replayed ({eta} left)") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut replayer = Replayer {
        interrupted: &interrupted,
        producer: &producer,
        deliveries: &topics.deliveries,
        dlq: &topics.dlq,
        state_topic: &state_topic,
        replayed_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        in_flight: VecDeque::new(),
        markers: VecDeque::new(),
        replayed: 0,
        failure: None,
        progress: &progress,
    };
    replayer.replay_all(&plan.todo).await;
    progress.finish_and_clear();
    let (replayed, failure) = (replayer.replayed, replayer.failure.take());
    drop(replayer);
    // Destroying a producer blocks while it flushes; nothing is left in flight by now.
    tokio::task::spawn_blocking(move || drop(producer)).await.ok();

    if let Some(reason) = failure {
        return Err(Error::Replay { replayed, reason });
    }
    writeln!(
        out,
        "replayed {replayed} dead letter(s) to {} ({skipped}); progress recorded in {state_topic}",
        topics.deliveries
    )?;
    out.flush()?;
    Ok(())
}

/// Stops a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which selected dead letters to replay.
#[derive(Debug)]
struct Plan {
    /// In DLQ partition and offset order, so each customer's events keep their order.
    todo: Vec<DeadLetter>,
    already_replayed: usize,
    keyless: usize,
    /// Written without the original value (see `deadletter::headers::DLQ_BODY_DROPPED`): nothing to replay.
    bodiless: usize,
}

impl Plan {
    fn new(selection: &Selection, letters: Vec<DeadLetter>) -> Self {
        let (mut already_replayed, mut keyless, mut bodiless) = (0, 0, 0);
        let mut todo = Vec::new();
        for letter in selection.filter(letters) {
            if letter.replayed_at.is_some() {
                already_replayed += 1;
            } else if letter.customer().is_none() {
                keyless += 1;
            } else if letter.value.is_none() {
                bodiless += 1;
            } else {
                todo.push(letter);
            }
        }
        // The limit caps what this run produces, so that `--limit` works as a batch size.
        if let Some(limit) = selection.limit {
            todo.truncate(limit);
        }
        todo.sort_by_key(|l| (l.partition, l.offset));
        Self { todo, already_replayed, keyless, bodiless }
    }

    /// What the run leaves out, for its summary line.
    fn skipped(&self) -> String {
        let (replayed, keyless) = (self.already_replayed, self.keyless);
        // Body-less letters are named only when there are some, so the usual summary stays as it was.
        match self.bodiless {
            0 => format!("{replayed} already replayed, {keyless} without a customer key; both skipped"),
            bodiless => format!(
                "{replayed} already replayed, {keyless} without a customer key, {bodiless} without a body (too \
                 large for the DLQ; the original is at its hookline-original-* coordinates); all skipped"
            ),
        }
    }
}

/// The state topic: `--state-topic`, else the DLQ's name followed by `.replayed`.
pub fn state_topic(flag: Option<&str>, topics: &TopicArgs) -> Result<String> {
    let name = flag.map_or_else(|| format!("{}.replayed", topics.dlq), str::to_owned);
    if [&topics.dlq, &topics.deliveries, &topics.customers, &topics.delivered, &topics.idempotency].contains(&&name) {
        return Err(Error::Usage(format!("--state-topic {name} is one of Hookline's own topics")));
    }
    Ok(name)
}

/// A marker: the event id of the dead letter replayed (empty if it had none) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    event_id: String,
    replayed_at: String,
}

/// Replayed dead letters by `(partition, offset)`.
pub type Markers = HashMap<(i32, i64), Marker>;

/// Sets [`DeadLetter::replayed_at`] from the markers. A marker counts only if its event id is the
/// dead letter's, so a DLQ topic recreated since (its offsets starting over) is not mistaken for
/// replayed.
pub fn apply_markers(markers: &Markers, letters: &mut [DeadLetter]) {
    for letter in letters {
        letter.replayed_at = markers
            .get(&(letter.partition, letter.offset))
            .filter(|m| m.event_id == letter.event_id.as_deref().unwrap_or_default())
            .map(|m| m.replayed_at.clone());
    }
}

fn marker_key(letter: &DeadLetter) -> String {
    format!("{}/{}", letter.partition, letter.offset)
}

/// Every marker in `topic` (none if the topic does not exist yet).
pub async fn read_markers(kafka: &KafkaArgs, topic: &str, timeout: Duration) -> Result<Markers> {
    let read = read_topic(kafka, topic, timeout, Markers::new(), |markers, message| {
        let Some((partition, offset)) = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.split_once('/'))
            .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)))
        else {
            return;
        };
        match message.payload() {
            Some(value) => {
                let value = serde_json::from_slice::<serde_json::Value>(value).unwrap_or_default();
                let text = |field: &str| value[field].as_str().unwrap_or_default().to_owned();
                markers.insert(
                    (partition, offset),
                    Marker { event_id: text("event_id"), replayed_at: text("replayed_at") },
                );
            }
            None => {
                markers.remove(&(partition, offset));
            }
        }
    })
    .await;
    match read {
        Err(Error::Core(hookline_core::Error::MissingTopic { .. })) => Ok(Markers::new()),
        other => other,
    }
}

/// Creates the compacted state topic if it is missing: one partition, replicated like the DLQ.
async fn ensure_state_topic(kafka: &KafkaArgs, dlq: &str, topic: &str, timeout: Duration) -> Result<()> {
    let (args, dlq_name) = (kafka.clone(), dlq.to_owned());
    let replicas = tokio::task::spawn_blocking(move || -> Result<i32> {
        let reader: BaseConsumer = kafka::reader(&args, "hookline-setup")?;
        let metadata = reader.fetch_metadata(Some(&dlq_name), timeout).map_err(hookline_core::Error::from)?;
        let replicas = metadata
            .topics()
            .iter()
            .find(|t| t.name() == dlq_name)
            .and_then(|t| t.partitions().first())
            .map_or(1, |p| p.replicas().len());
        Ok(i32::try_from(replicas).unwrap_or(1).max(1))
    })
    .await
    .map_err(|_| Error::Timeout(timeout, "the DLQ topic's metadata"))??;
    let admin: AdminClient<DefaultClientContext> =
        kafka::admin_config(kafka, "hookline-setup").create().map_err(hookline_core::Error::from)?;
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)).set("cleanup.policy", "compact");
    let created = bounded(timeout, "the replay state topic to be created", async {
        admin.create_topics([&new_topic], &options).await.map_err(hookline_core::Error::from)
    })
    .await?;
    match created.into_iter().next() {
        Some(Ok(_)) => tracing::info!(topic, "created the replay state topic"),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
        Some(Err((_, code))) => {
            return Err(Error::Replay {
                replayed: 0,
                reason: format!("cannot create the state topic {topic}: {code}"),
            });
        }
    }
    Ok(())
}

/// Produces replayed records with a bounded number in flight, writing each one's marker once it
/// is acknowledged.
struct Replayer<'a> {
    interrupted: &'a CancellationToken,
    producer: &'a FutureProducer,
    deliveries: &'a str,
    dlq: &'a str,
    state_topic: &'a str,
    replayed_at: String,
    /// Replayed records awaiting acknowledgement, in the order produced (index into the plan).
    in_flight: VecDeque<(usize, DeliveryFuture)>,
    markers: VecDeque<DeliveryFuture>,
    replayed: usize,
    /// The first failure; nothing new is produced after it.
    failure: Option<String>,
    progress: &'a ProgressBar,
}

impl Replayer<'_> {
    async fn replay_all(&mut self, letters: &[DeadLetter]) {
        for (index, letter) in letters.iter().enumerate() {
            if self.interrupted.is_cancelled() {
                self.failure.get_or_insert_with(|| "interrupted".to_owned());
            }
            if self.failure.is_some() {
                break;
            }
            if self.in_flight.len() >= IN_FLIGHT {
                self.settle_oldest(letters).await;
            }
            let headers = replay_headers(letter, self.dlq, &self.replayed_at);
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(self.deliveries).headers(headers);
            if let Some(key) = letter.key.as_deref() {
                record = record.key(key);
            }
            if let Some(value) = letter.value.as_deref() {
                record = record.payload(value);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        self.in_flight.push_back((index, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                        if !self.in_flight.is_empty() =>
                    {
                        record = returned;
                        self.settle_oldest(letters).await;
                    }
                    Err((error, _)) => {
                        self.failure.get_or_insert_with(|| format!("cannot produce to {}: {error}", self.deliveries));
                        break;
                    }
                }
            }
        }
        // Records already sent may still be acknowledged: they need their markers too.
        while !self.in_flight.is_empty() {
            self.settle_oldest(letters).await;
        }
        while let Some(marker) = self.markers.pop_front() {
            self.settle_marker(marker).await;
        }
    }

    async fn settle_oldest(&mut self, letters: &[DeadLetter]) {
        let Some((index, delivery)) = self.in_flight.pop_front() else { return };
        match delivery.await {
            Ok(Ok(delivered)) => {
                self.replayed += 1;
                self.progress.inc(1);
                let letter = &letters[index];
                tracing::debug!(
                    dlq_partition = letter.partition,
                    dlq_offset = letter.offset,
                    partition = delivered.partition,
                    offset = delivered.offset,
                    "dead letter replayed"
                );
                let value = json!({
                    "event_id": letter.event_id,
                    "customer": letter.customer(),
                    "replayed_at": self.replayed_at,
                    "topic": self.deliveries,
                    "partition": delivered.partition,
                    "offset": delivered.offset,
                })
                .to_string();
                let key = marker_key(letter);
                if self.markers.len() >= IN_FLIGHT
                    && let Some(oldest) = self.markers.pop_front()
                {
                    self.settle_marker(oldest).await;
                }
                match self.producer.send_result(FutureRecord::to(self.state_topic).key(&key).payload(&value)) {
                    Ok(marker) => self.markers.push_back(marker),
                    Err((error, _)) => {
                        self.failure.get_or_insert_with(|| format!("cannot record the replay of {key}: {error}"));
                    }
                }
            }
            Ok(Err((error, _))) => {
                self.failure.get_or_insert_with(|| format!("the broker refused a replayed record: {error}"));
            }
            Err(_canceled) => {
                self.failure.get_or_insert_with(|| "the producer stopped".to_owned());
            }
        }
    }

    async fn settle_marker(&mut self, marker: DeliveryFuture) {
        if !matches!(marker.await, Ok(Ok(_))) {
            // The record itself was replayed; a re-run produces it again and the consumer's
            // ledger skips the copy delivered second.
            self.failure.get_or_insert_with(|| format!("cannot record a replay in {}", self.state_topic));
        }
    }
}

/// The dead letter's headers minus the consumer's DLQ headers and an earlier replay's markers,
/// plus this replay's.
fn replay_headers(letter: &DeadLetter, dlq: &str, replayed_at: &str) -> OwnedHeaders {
    let kept = letter.headers.iter().map(|(key, value)| (key.as_str(), value.as_deref()));
    deadletter::replayed_headers(kept, (dlq, letter.partition, letter.offset), replayed_at)
}

#[cfg(test)]
mod tests {
    use hookline_core::deadletter::headers::{self as dlq_headers, REPLAYED_AT, REPLAYED_FROM};
    use hookline_core::envelope::headers;
    use rdkafka::message::Headers;

    use super::*;

    fn letter(partition: i32, offset: i64, key: Option<&str>, event_id: &str) -> DeadLetter {
        DeadLetter {
            partition,
            offset,
            at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(offset).unwrap() + 10)),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(b"opaque".to_vec()),
            headers: vec![
                (headers::EVENT_ID.into(), Some(event_id.as_bytes().to_vec())),
                ("traceparent".into(), Some(b"00-abc-def-01".to_vec())),
                (dlq_headers::DLQ_REASON.into(), Some(b"max_attempts".to_vec())),
                (dlq_headers::ORIGINAL_OFFSET.into(), Some(b"7".to_vec())),
                (REPLAYED_FROM.into(), Some(b"old".to_vec())),
            ],
            event_id: Some(event_id.into()),
            event_type: None,
            replayed_at: None,
        }
    }

    #[test]
    fn replayed_headers_keep_the_originals_only() {
        let headers = replay_headers(&letter(2, 5, Some("acme"), "evt_1"), "webhooks.dlq", "2026-11-23T18:00:00.000Z");
        let found: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect();
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [headers::EVENT_ID, "traceparent", REPLAYED_AT, REPLAYED_FROM]);
        assert_eq!(found[3].1, "webhooks.dlq/2/5");
    }

    #[test]
    fn plan_skips_replayed_and_keyless_and_limits_this_run() {
        let mut bodiless = letter(0, 4, Some("a"), "evt_4");
        bodiless.value = None;
        let letters = vec![
            letter(0, 1, Some("a"), "evt_1"),
            letter(0, 2, None, "evt_2"),
            letter(0, 3, Some("a"), "evt_3"),
            bodiless,
        ];
        let marker = |event_id: &str| Marker { event_id: event_id.into(), replayed_at: "2026-11-23T18:00:00Z".into() };
        let mut markers = Markers::new();
        markers.insert((0, 1), marker("evt_1"));
        // A marker naming another event is for a DLQ topic that was recreated since.
        markers.insert((0, 3), marker("evt_other"));
        let mut marked = letters.clone();
        apply_markers(&markers, &mut marked);
        assert_eq!(marked[0].replayed_at.as_deref(), Some("2026-11-23T18:00:00Z"));
        assert_eq!(marked[2].replayed_at, None);
        let plan = Plan::new(&Selection::default(), marked);
        assert_eq!((plan.already_replayed, plan.keyless, plan.bodiless), (1, 1, 1));
        assert_eq!(plan.todo.iter().map(|l| l.offset).collect::<Vec<_>>(), [3]);
        assert!(plan.skipped().contains("1 without a body"), "{}", plan.skipped());

        let limited = Selection { limit: Some(1), ..Selection::default() };
        let plan = Plan::new(&limited, letters);
        assert_eq!(plan.todo.iter().map(|l| l.offset).collect::<Vec<_>>(), [1], "the limit counts what is produced");
    }
}
