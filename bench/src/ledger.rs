//! The ledger scenario: how long a newly assigned partition takes to restore its delivery ledger,
//! and how much memory the restored set holds, for ledger partitions of millions of entries.
//!
//! Each run fills one ledger partition of a fresh broker with `--ledger-entries` entries, written
//! straight to the topic in large batches as consumers would have written them (the consumer's
//! own entry format, 100 customers, event ids of the real length, the last 1,000 entries making
//! the re-readable tail), then restores it in this process with the consumer's own code
//! (`hookline_consumer::ledger`), once per `--ledger-capacities` up to the ledger's size: the
//! capacity equal to the ledger is what a set without a bound would read and hold. Memory is the
//! set's own count of its bytes and the process's resident-set growth across the restore.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hookline_consumer::Metrics;
use hookline_consumer::config::DEFAULT_DEDUP_WINDOW;
use hookline_consumer::ledger::{Ledger, LedgerSettings, entry_value};
use hookline_core::config::KafkaArgs;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::stack::{self, Stack};
use crate::stats::Figure;
use crate::{Error, Result};

/// Entries at the end of the ledger that describe records after the group's committed offset.
const TAIL: usize = 1_000;
/// Customers the entries are spread over.
const CUSTOMERS: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;

/// What one restore measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    read: f64,
    held: f64,
    set_mib: f64,
    rss_mib: f64,
}

/// Runs the scenario: `--runs` times, every ledger size on a fresh broker, every capacity.
pub async fn run(config: &Config, shutdown: &CancellationToken) -> Result<Vec<Figure>> {
    let mut measured: BTreeMap<(usize, usize), Vec<Measured>> = BTreeMap::new();
    for run in 0..config.runs {
        for &entries in config.ledger_entries.iter().filter(|entries| **entries > 0) {
            if shutdown.is_cancelled() {
                return Err(Error::Invalid("interrupted".into()));
            }
            eprintln!("[ledger] {} entries: run {}/{}", count(entries), run + 1, config.runs);
            let stack = Stack::start(config).await?;
            let started = Instant::now();
            fill(&stack, entries).await?;
            eprintln!("    wrote {entries} ledger entries in {:.1} s", started.elapsed().as_secs_f64());
            for capacity in capacities(config, entries) {
                let restore = restore(&stack, entries, capacity).await?;
                eprintln!(
                    "    capacity {capacity}: restored in {:.2} s, {} read, {} held, set {:.1} MiB, RSS +{:.1} MiB",
                    restore.seconds, restore.read, restore.held, restore.set_mib, restore.rss_mib
                );
                measured.entry((entries, capacity)).or_default().push(restore);
            }
        }
    }
    let mut figures = vec![];
    for ((entries, capacity), runs) in measured {
        let id = format!("ledger.{entries}.{capacity}");
        let label = format!("Ledger restore, {} entries, --dedup-capacity {}", count(entries), count(capacity));
        let values = |f: fn(&Measured) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        figures.push(Figure::new(&format!("{id}.seconds"), &format!("{label}: time"), "s", values(|m| m.seconds)));
        figures.push(
            Figure::new(&format!("{id}.read"), &format!("{label}: ledger records read"), "records", values(|m| m.read))
                .with_note(
                    "at most the capacity plus the broker's last batch (tansu reports a high watermark inside it)",
                ),
        );
        figures.push(Figure::new(
            &format!("{id}.held"),
            &format!("{label}: deliveries held"),
            "entries",
            values(|m| m.held),
        ));
        figures.push(Figure::new(
            &format!("{id}.set_mib"),
            &format!("{label}: memory of the set"),
            "MiB",
            values(|m| m.set_mib),
        ));
        figures.push(
            Figure::new(&format!("{id}.rss_mib"), &format!("{label}: RSS growth"), "MiB", values(|m| m.rss_mib))
                .with_note("the process's resident set after the restore minus before it, the set held: the set plus what the allocator kept of the read's buffers"),
        );
    }
    Ok(figures)
}

/// The capacities restored for a ledger of `entries`: those up to its size.
fn capacities(config: &Config, entries: usize) -> Vec<usize> {
    let mut capacities: Vec<usize> = config.ledger_capacities.iter().copied().filter(|c| *c <= entries).collect();
    capacities.sort_unstable();
    capacities.dedup();
    capacities
}

/// Event id number `n`: as long as a real one (`evt_` + 32 hex digits), spread like one.
fn event_id(n: usize) -> String {
    format!("evt_{:032x}", (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

fn customer(n: usize) -> String {
    stack::customer_id(u32::try_from(n % CUSTOMERS).unwrap_or(0))
}

/// Writes `entries` ledger entries to ledger partition 0, entry `n` for delivery offset `n`.
async fn fill(stack: &Stack, entries: usize) -> Result<()> {
    let producer: FutureProducer = kafka::producer_config(&stack.kafka, "hookline-bench-ledger")
        .set("linger.ms", "20")
        .set("batch.num.messages", "100000")
        .set("batch.size", "8000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut pending = FuturesUnordered::new();
    for n in 0..entries {
        let (key, value) = (customer(n), entry_value(&event_id(n), i64::try_from(n).unwrap_or(i64::MAX)));
        let (topic, producer) = (stack.topics.delivered.clone(), producer.clone());
        pending.push(async move {
            let record = FutureRecord::to(&topic).partition(0).key(&key).payload(&value);
            producer.send(record, Duration::from_secs(120)).await.map_err(|(error, _)| error)
        });
        // Bounded in flight, so that memory stays flat for any size.
        while pending.len() >= 200_000 {
            if let Some(written) = pending.next().await {
                written?;
            }
        }
    }
    while let Some(written) = pending.next().await {
        written?;
    }
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await
        .map_err(|e| Error::Invalid(format!("flush task: {e}")))??;
    Ok(())
}

/// Restores ledger partition 0 with `capacity`, and checks that it holds what it should.
async fn restore(stack: &Stack, entries: usize, capacity: usize) -> Result<Measured> {
    let metrics = Metrics::new()?;
    let producer: FutureProducer = kafka::producer_config(&stack.kafka, "hookline-bench-ledger-writer").create()?;
    let settings = LedgerSettings {
        topic: stack.topics.delivered.clone(),
        window: DEFAULT_DEDUP_WINDOW,
        capacity,
        kept_partitions: 0,
        max_in_flight: 1_000,
    };
    let ledger = Ledger::new(stack.kafka.clone(), producer, settings, metrics);
    let committed = i64::try_from(entries.saturating_sub(TAIL)).unwrap_or(i64::MAX);
    let rss_before = rss_bytes();
    let started = Instant::now();
    let restored = ledger.restore(0, Some(committed)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let (held, read) = (restored.set.len(), restored.read);
    // Never more than the capacity. Fewer only if the range read holds some entries twice (the
    // set holds each once; tansu under load has answered a read of 6,044 records with 3,022
    // distinct): then the range is read again, here, and the set must hold exactly its distinct
    // entries, up to the capacity.
    let expected = capacity.min(entries);
    let invalid = |distinct: String| {
        Error::Invalid(format!(
            "a restore with capacity {capacity} of {entries} entries read {read} and held {held}{distinct}"
        ))
    };
    if held > expected {
        return Err(invalid(String::new()));
    }
    if held < expected * 9 / 10 {
        let (kafka, topic) = (stack.kafka.clone(), stack.topics.delivered.clone());
        let distinct = tokio::task::spawn_blocking(move || distinct_entries(&kafka, &topic, capacity))
            .await
            .map_err(|e| Error::Invalid(format!("ledger read task: {e}")))??;
        if held != distinct.min(capacity) {
            return Err(invalid(format!(", but the range it read holds {distinct} distinct entries")));
        }
        eprintln!("    capacity {capacity}: the range read holds some entries twice: {distinct} distinct, all held");
    }
    let newest = entries - 1;
    let tail_known = (entries.saturating_sub(TAIL.min(capacity))..entries)
        .all(|n| restored.set.contains(&customer(n), &event_id(n)));
    if !restored.set.contains(&customer(newest), &event_id(newest)) || !tail_known {
        return Err(Error::Invalid(format!("a restore with capacity {capacity} lost the re-readable tail")));
    }
    let set_mib = restored.set.bytes() as f64 / MIB;
    drop(restored);
    Ok(Measured {
        seconds,
        read: read as f64,
        held: held as f64,
        set_mib,
        rss_mib: rss_after.saturating_sub(rss_before) as f64 / MIB,
    })
}

/// The distinct entries (by the delivery offset each names) read from ledger partition 0 from
/// `capacity` offsets before its end, as a restore with `capacity` reads them (every record the
/// broker answers, as the restore counts them). Blocking.
fn distinct_entries(kafka: &KafkaArgs, topic: &str, capacity: usize) -> Result<usize> {
    let reader: BaseConsumer = kafka::reader_config(kafka, "hookline-bench-ledger-check").create()?;
    let (_, high) = reader.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let start = high.saturating_sub(i64::try_from(capacity).unwrap_or(i64::MAX)).max(0);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(start))?;
    reader.assign(&assignment)?;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = start;
    loop {
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!("the ledger check read up to offset {next} of {high} in 120 s")));
        }
        // As the restore reads: at the high watermark (which tansu reports inside its last
        // batch), only what a fetch already brought.
        let timeout = Duration::from_millis(if next < high { 500 } else { 200 });
        match reader.poll(timeout) {
            Some(Ok(message)) => {
                next = next.max(message.offset() + 1);
                let entry = message.payload().and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok());
                if let Some(offset) = entry.as_ref().and_then(|e| e["offset"].as_i64()) {
                    seen.insert(offset);
                }
            }
            Some(Err(error)) => return Err(error.into()),
            None if next >= high => break,
            None => {}
        }
    }
    Ok(seen.len())
}

/// This process's resident set size, in bytes (0 where `/proc` cannot say).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `4M`, `100k`, `20k`, `512`: a count for a label.
fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_the_capacities_each_ledger_size_is_restored_with() {
        assert_eq!((count(4_000_000), count(100_000), count(1_500)), ("4M".into(), "100k".into(), "1500".into()));
        let config = Config::from_args(["--ledger-capacities", "4000000,100000,1000000,100000"]);
        assert_eq!(capacities(&config, 1_000_000), [100_000, 1_000_000]);
        assert_eq!(capacities(&config, 4_000_000), [100_000, 1_000_000, 4_000_000]);
        assert_eq!(event_id(7).len(), "evt_".len() + 32);
        assert_ne!(event_id(7), event_id(8));
    }
}
