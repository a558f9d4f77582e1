//! `dlq list`, `dlq replay` and `dlq purge`: the operator's tools for the dead-letter topic.
//!
//! A dead letter is the original delivery record, unchanged (key = customer id, value, headers),
//! plus the consumer's `hookline-dlq-*` and `hookline-original-*` headers ([`deadletter`], which
//! [`DeadLetter::parsed`] reads). The value is treated as
//! opaque bytes (it may be JSON or Avro): what is shown comes from the key and the headers, and
//! only when the event id or type header is missing is the value decoded, tolerating failure.
//!
//! The DLQ is read whole with a group-less reader (nothing is committed, no group is joined), up
//! to each partition's high watermark and then on until the topic is quiet, because tansu reports
//! a high watermark inside the last batch. Records are selected by [`Selection`], ordered by the
//! time they were dead-lettered.
//!
//! # Layout
//! - this module: reading the DLQ, selecting, `list`, time parsing.
//! - `replay`: re-producing dead letters, with its compacted marker topic.
//! - `purge`: DeleteRecords up to the first offset at or after a time.

mod purge;
mod replay;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::deadletter;
use hookline_core::envelope::EventRecord;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::broker::check_reachable;
use crate::{DlqCommand, DlqFilter, Error, Result};

/// After every partition's high watermark is reached, how long a poll may stay empty before the
/// read is over (records past tansu's watermark arrive with the batch already fetched).
const QUIET: Duration = Duration::from_millis(500);

/// Runs one `dlq` subcommand.
pub async fn run<W: Write + Send>(
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    timeout: Duration,
    command: DlqCommand,
    out: &mut W,
) -> Result<()> {
    match command {
        DlqCommand::List(list) => {
            let state_topic = replay::state_topic(list.state_topic.as_deref(), topics)?;
            check_reachable(kafka, timeout).await?;
            let markers = replay::read_markers(kafka, &state_topic, timeout).await?;
            let mut all = read_dead_letters(kafka, &topics.dlq, timeout).await?;
            replay::apply_markers(&markers, &mut all);
            let total = all.len();
            let selected = Selection::from(&list.filter).apply(all);
            if list.json {
                for letter in &selected {
                    serde_json::to_writer(&mut *out, &letter.to_json())?;
                    writeln!(out)?;
                }
            } else if selected.is_empty() {
                writeln!(out, "no dead letters match ({total} in {})", topics.dlq)?;
            } else {
                write_table(&selected, out)?;
                writeln!(out, "{} of {total} dead letters in {}", selected.len(), topics.dlq)?;
            }
            out.flush()?;
            Ok(())
        }
        DlqCommand::Replay(replay) => replay::run(kafka, topics, timeout, replay, out).await,
        DlqCommand::Purge(purge) => purge::run(kafka, &topics.dlq, timeout, purge, out).await,
    }
}

/// One record of the DLQ topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// When it was dead-lettered: the `hookline-dlq-at` header, else the record's timestamp.
    pub at: Option<SystemTime>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Every header, in order (a header may repeat).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Event id and type from the headers, else from the value when it decodes.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// When `dlq replay` replayed it (RFC 3339), from the replay state topic.
    pub replayed_at: Option<String>,
}

impl DeadLetter {
    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers()
            .map(|found| found.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        let mut letter = Self {
            partition: message.partition(),
            offset: message.offset(),
            at: None,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            event_id: None,
            event_type: None,
            replayed_at: None,
        };
        let parsed = letter.parsed();
        letter.at = parsed.at.or_else(|| {
            let millis = u64::try_from(message.timestamp().to_millis()?).ok()?;
            Some(UNIX_EPOCH + Duration::from_millis(millis))
        });
        letter.event_id = parsed.event_id;
        letter.event_type = parsed.event_type;
        if (letter.event_id.is_none() || letter.event_type.is_none())
            && let Some(event) = letter.value.as_deref().and_then(|v| EventRecord::from_bytes(v).ok())
        {
            letter.event_id.get_or_insert(event.event_id);
            letter.event_type.get_or_insert(event.event_type);
        }
        letter
    }

    /// What its headers say under the dead-letter contract.
    pub fn parsed(&self) -> deadletter::Parsed {
        deadletter::parse(self.headers.iter().map(|(key, value)| (key.as_str(), value.as_deref())))
    }

    /// The customer id: the record key, if it is UTF-8.
    pub fn customer(&self) -> Option<&str> {
        std::str::from_utf8(self.key.as_deref()?).ok()
    }

    fn to_json(&self) -> serde_json::Value {
        let parsed = self.parsed();
        json!({
            "dead_lettered_at": self.at.map(|at| humantime::format_rfc3339_millis(at).to_string()),
            "customer": self.customer(),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "reason": parsed.reason,
            "attempts": parsed.attempts,
            "last_status": parsed.last_status,
            "error": parsed.error,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "original_topic": parsed.original_topic,
            "original_partition": parsed.original_partition,
            "original_offset": parsed.original_offset,
            "replayed_at": self.replayed_at,
        })
    }
}

/// The dead letters a command works on (see [`DlqFilter`]).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    customers: Vec<String>,
    event_ids: Vec<String>,
    reasons: Vec<String>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    limit: Option<usize>,
}

impl From<&DlqFilter> for Selection {
    fn from(filter: &DlqFilter) -> Self {
        Self {
            customers: filter.customer.clone(),
            event_ids: filter.event_id.clone(),
            reasons: filter.reason.clone(),
            since: filter.since,
            until: filter.until,
            limit: filter.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
        }
    }
}

impl Selection {
    /// Whether any filter narrows the selection (`--limit` does not count: it only caps it).
    pub fn is_narrowed(&self) -> bool {
        !self.customers.is_empty()
            || !self.event_ids.is_empty()
            || !self.reasons.is_empty()
            || self.since.is_some()
            || self.until.is_some()
    }

    fn matches(&self, letter: &DeadLetter) -> bool {
        let any = |wanted: &[String], found: Option<&str>| {
            wanted.is_empty() || found.is_some_and(|found| wanted.iter().any(|w| w == found))
        };
        // A dead letter of unknown time matches no time filter.
        let after_since = self.since.is_none_or(|since| letter.at.is_some_and(|at| at >= since));
        let before_until = self.until.is_none_or(|until| letter.at.is_some_and(|at| at < until));
        any(&self.customers, letter.customer())
            && any(&self.event_ids, letter.event_id.as_deref())
            && any(&self.reasons, letter.parsed().reason.as_deref())
            && after_since
            && before_until
    }

    /// The matching dead letters, oldest first, without the limit.
    fn filter(&self, letters: Vec<DeadLetter>) -> Vec<DeadLetter> {
        let mut selected: Vec<DeadLetter> = letters.into_iter().filter(|l| self.matches(l)).collect();
        selected.sort_by_key(|l| (l.at, l.partition, l.offset));
        selected
    }

    /// The matching dead letters, oldest first, at most `--limit` of them.
    pub fn apply(&self, letters: Vec<DeadLetter>) -> Vec<DeadLetter> {
        let mut selected = self.filter(letters);
        if let Some(limit) = self.limit {
            selected.truncate(limit);
        }
        selected
    }
}

/// Every dead letter in `topic`.
pub async fn read_dead_letters(kafka: &KafkaArgs, topic: &str, timeout: Duration) -> Result<Vec<DeadLetter>> {
    read_topic(kafka, topic, timeout, Vec::new(), |letters, message| letters.push(DeadLetter::from_message(message)))
        .await
}

/// Folds every record of `topic` into `state` with `each`, read with a group-less reader. Fails
/// if a partition makes no progress for `timeout` below its high watermark.
pub async fn read_topic<T, F>(kafka: &KafkaArgs, topic: &str, timeout: Duration, mut state: T, mut each: F) -> Result<T>
where
    T: Send + 'static,
    F: FnMut(&mut T, &BorrowedMessage<'_>) + Send + 'static,
{
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        read_blocking(&kafka, &topic, timeout, &mut |message| each(&mut state, message))?;
        Ok(state)
    })
    .await
    .map_err(|_| Error::Timeout(timeout, "the topic to be read"))?
}

fn read_blocking(
    kafka: &KafkaArgs,
    topic: &str,
    timeout: Duration,
    each: &mut dyn FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let reader: BaseConsumer = kafka::reader(kafka, "hookline-setup")?;
    let mut pending: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in kafka::topic_partitions(&reader, topic, timeout)? {
        let (low, high) = reader.fetch_watermarks(topic, partition, timeout).map_err(hookline_core::Error::from)?;
        if high > low {
            pending.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(hookline_core::Error::from)?;
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    reader.assign(&assignment).map_err(hookline_core::Error::from)?;
    let mut progress = Instant::now();
    loop {
        let wait = if pending.is_empty() { QUIET } else { Duration::from_millis(100) };
        match reader.poll(wait) {
            Some(Ok(message)) => {
                if pending.get(&message.partition()).is_some_and(|high| message.offset() + 1 >= *high) {
                    pending.remove(&message.partition());
                }
                each(&message);
                progress = Instant::now();
            }
            Some(Err(error)) => return Err(hookline_core::Error::from(error).into()),
            None if pending.is_empty() => return Ok(()),
            None => {
                // The fetch position passes offsets that hold no record to read (transaction
                // markers, compacted-away records), which a high watermark may count.
                if let Ok(positions) = reader.position() {
                    for element in positions.elements() {
                        if let Offset::Offset(next) = element.offset()
                            && pending.get(&element.partition()).is_some_and(|high| next >= *high)
                        {
                            pending.remove(&element.partition());
                        }
                    }
                }
                if !pending.is_empty() && progress.elapsed() > timeout {
                    return Err(Error::Timeout(timeout, "the topic to be read"));
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn format_time(at: Option<SystemTime>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| humantime::format_rfc3339_seconds(at).to_string())
}

/// The `dlq list` (and `replay --dry-run`) table.
fn write_table<W: Write>(letters: &[DeadLetter], out: &mut W) -> std::io::Result<()> {
    const HEADERS: [&str; 9] = [
        "DEAD_LETTERED_AT",
        "CUSTOMER",
        "EVENT_ID",
        "EVENT_TYPE",
        "REASON",
        "ATTEMPTS",
        "LAST_STATUS",
        "DLQ",
        "REPLAYED",
    ];
    let dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let rows: Vec<[String; 9]> = letters
        .iter()
        .map(|l| {
            let parsed = l.parsed();
            [
                format_time(l.at),
                dash(l.customer()),
                dash(l.event_id.as_deref()),
                dash(l.event_type.as_deref()),
                dash(parsed.reason.as_deref()),
                parsed.attempts.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                parsed.last_status.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                format!("{}/{}", l.partition, l.offset),
                l.replayed_at.as_deref().map_or_else(
                    || "-".to_owned(),
                    |at| humantime::parse_rfc3339_weak(at).map_or_else(|_| at.to_owned(), |t| format_time(Some(t))),
                ),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(HEADERS.map(str::to_owned)).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Parses a point in time: RFC 3339 (`2026-11-23T18:00:00Z`, `2026-11-23T19:00:00+01:00`, with
/// or without fractional seconds), a date (`2026-11-23`, midnight UTC), `now`, or an age before
/// now such as `2h`, `30m`, `7d` or `1h 30m`.
pub fn parse_time(raw: &str) -> Result<SystemTime, String> {
    let raw = raw.trim();
    let refuse = || format!("`{raw}` is not a time: use RFC 3339 (2026-11-23T18:00:00Z) or an age such as 2h or 7d");
    if raw.eq_ignore_ascii_case("now") {
        return Ok(SystemTime::now());
    }
    if let Ok(age) = humantime::parse_duration(raw) {
        return SystemTime::now().checked_sub(age).ok_or_else(refuse);
    }
    if raw.len() == 10 {
        return humantime::parse_rfc3339(&format!("{raw}T00:00:00Z")).map_err(|_| refuse());
    }
    // humantime reads UTC only; an explicit offset is applied here.
    let bytes = raw.as_bytes();
    if raw.len() > 19 && raw.is_char_boundary(raw.len() - 6) && matches!(bytes[raw.len() - 6], b'+' | b'-') {
        let (local, offset) = raw.split_at(raw.len() - 6);
        let (hours, minutes) = offset[1..].split_once(':').ok_or_else(refuse)?;
        let (hours, minutes) =
            (hours.parse::<u64>().map_err(|_| refuse())?, minutes.parse::<u64>().map_err(|_| refuse())?);
        if hours > 23 || minutes > 59 {
            return Err(refuse());
        }
        let shift = Duration::from_secs(hours * 3600 + minutes * 60);
        let local = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|_| refuse())?;
        // 19:00+01:00 is 18:00Z.
        let utc = if offset.starts_with('+') { local.checked_sub(shift) } else { local.checked_add(shift) };
        return utc.ok_or_else(refuse);
    }
    humantime::parse_rfc3339(raw).map_err(|_| refuse())
}

#[cfg(test)]
mod tests {
    use hookline_core::deadletter::headers as dlq_headers;
    use hookline_core::envelope::headers;

    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn times_parse_as_rfc3339_dates_and_ages() {
        assert_eq!(parse_time("2026-11-23T18:00:00Z").unwrap(), at("2026-11-23T18:00:00Z"));
        assert_eq!(parse_time("2026-11-23T19:30:00+01:30").unwrap(), at("2026-11-23T18:00:00Z"));
        assert_eq!(parse_time("2026-11-23T16:00:00.500-02:00").unwrap(), at("2026-11-23T18:00:00.500Z"));
        assert_eq!(parse_time("2026-11-23").unwrap(), at("2026-11-23T00:00:00Z"));
        let two_hours_ago = parse_time("2h").unwrap();
        let expected = SystemTime::now() - Duration::from_secs(7200);
        let skew = expected.duration_since(two_hours_ago).unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(60), "{skew:?}");
        for bad in ["yesterday", "2026-13-01", "2026-11-23T18:00:00+25:00", "", "2026-11-23T18:00:00+0100x"] {
            assert!(parse_time(bad).unwrap_err().contains("is not a time"), "{bad}");
        }
    }

    fn letter(partition: i32, offset: i64, customer: &str, reason: &str, when: &str) -> DeadLetter {
        DeadLetter {
            partition,
            offset,
            at: Some(at(when)),
            key: Some(customer.as_bytes().to_vec()),
            value: Some(b"opaque".to_vec()),
            headers: vec![
                (headers::EVENT_ID.into(), Some(format!("evt_{partition}_{offset}").into_bytes())),
                (headers::EVENT_TYPE.into(), Some(b"order.created".to_vec())),
                (dlq_headers::DLQ_REASON.into(), Some(reason.as_bytes().to_vec())),
                (dlq_headers::DLQ_ATTEMPTS.into(), Some(b"8".to_vec())),
            ],
            event_id: Some(format!("evt_{partition}_{offset}")),
            event_type: Some("order.created".into()),
            replayed_at: (offset == 1).then(|| "2026-11-23T13:00:00.250Z".to_owned()),
        }
    }

    fn sample() -> Vec<DeadLetter> {
        vec![
            letter(1, 0, "acme", "max_attempts", "2026-11-23T12:00:00Z"),
            letter(0, 0, "globex", "unknown_customer", "2026-11-23T10:00:00Z"),
            letter(0, 1, "acme", "max_attempts", "2026-11-23T11:00:00Z"),
        ]
    }

    #[test]
    fn selection_combines_filters_and_orders_by_time() {
        let ids = |s: &Selection| s.apply(sample()).iter().map(|l| (l.partition, l.offset)).collect::<Vec<_>>();
        assert_eq!(ids(&Selection::default()), [(0, 0), (0, 1), (1, 0)]);
        let acme = Selection { customers: vec!["acme".into()], ..Selection::default() };
        assert_eq!(ids(&acme), [(0, 1), (1, 0)]);
        let window = Selection {
            since: Some(at("2026-11-23T11:00:00Z")),
            until: Some(at("2026-11-23T12:00:00Z")),
            ..Selection::default()
        };
        assert_eq!(ids(&window), [(0, 1)], "since is inclusive, until exclusive");
        let reason = Selection { reasons: vec!["unknown_customer".into()], ..Selection::default() };
        assert_eq!(ids(&reason), [(0, 0)]);
        let event = Selection { event_ids: vec!["evt_1_0".into(), "evt_9".into()], ..Selection::default() };
        assert_eq!(ids(&event), [(1, 0)]);
        let limited = Selection { limit: Some(2), ..Selection::default() };
        assert_eq!(ids(&limited), [(0, 0), (0, 1)], "the oldest first");
        assert!(!limited.is_narrowed() && acme.is_narrowed());
    }

    #[test]
    fn table_and_json_show_headers_not_the_value() {
        let letters = Selection::default().apply(sample());
        let mut out = Vec::new();
        write_table(&letters, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DEAD_LETTERED_AT      CUSTOMER  EVENT_ID  "), "{text}");
        assert!(lines[1].starts_with("2026-11-23T10:00:00Z  globex    evt_0_0   order.created  unknown_customer"));
        assert!(lines[1].ends_with("8         -            0/0  -"), "{text}");
        assert!(lines[2].ends_with("0/1  2026-11-23T13:00:00Z"), "{text}");
        let shown = letters[2].to_json();
        assert_eq!(shown["customer"], "acme");
        assert_eq!(shown["attempts"], 8);
        assert_eq!(shown["last_status"], serde_json::Value::Null);
        assert_eq!(shown["dead_lettered_at"], "2026-11-23T12:00:00.000Z");
        assert_eq!((shown["dlq_partition"].as_i64(), shown["dlq_offset"].as_i64()), (Some(1), Some(0)));
        assert_eq!(shown["replayed_at"], serde_json::Value::Null);
        assert_eq!(letters[1].to_json()["replayed_at"], "2026-11-23T13:00:00.250Z");
    }
}
