//! The deliveries index: the delivery log (the attempts topic) folded into an embedded SQLite
//! database that answers the deliveries API's questions (a customer's deliveries, newest first,
//! filtered by time, state and type; one delivery's attempts).
//!
//! Why SQLite (through `rusqlite`, compiled in): the questions are range scans over an index with
//! filters and a cursor, which SQL answers directly; it persists to one file with transactions, so
//! a batch of log records and the log position it reached are written together and a restart
//! resumes exactly where it stopped; and it runs in memory for the demo. An embedded key-value
//! store (`redb`) would need the secondary indexes and the filtering written by hand.
//!
//! The topic is the source of truth: each publisher replica keeps its own index, and an index
//! deleted (or of another topic) is rebuilt by reading the topic from its start. Rows older than
//! the retention are deleted as the log's records expire, so the index holds at most the topic's
//! retention of history.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use hookline_core::attempts::{AttemptOutcome, AttemptRecord};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::{Error, Result};

/// The index's file in `--delivery-log-dir`.
pub(crate) const FILE_NAME: &str = "deliveries.sqlite3";

/// Bumped when the tables change: an index of another version is rebuilt from the topic.
const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    first_at_ms INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (customer_id, event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_newest ON deliveries (customer_id, first_at_ms DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS deliveries_expiry ON deliveries (last_at_ms);
CREATE TABLE IF NOT EXISTS attempts (
    log_partition INTEGER NOT NULL,
    log_offset INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (log_partition, log_offset)
);
CREATE INDEX IF NOT EXISTS attempts_of_delivery ON attempts (customer_id, event_id, at_ms);
CREATE INDEX IF NOT EXISTS attempts_expiry ON attempts (at_ms);
";

/// Where a delivery stands, after the latest record of the log about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeliveryStatus)]
pub(crate) enum State {
    /// The endpoint acknowledged it.
    Delivered,
    /// An attempt failed and another is coming (a retry in place, or the parking decision).
    Failing,
    /// Its customer is parked: it waits on the retry topic for the next try.
    Parked,
    /// Given up and written to the dead-letter topic.
    DeadLettered,
}

impl State {
    pub(crate) const ALL: [Self; 4] = [Self::Delivered, Self::Failing, Self::Parked, Self::DeadLettered];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failing => "failing",
            Self::Parked => "parked",
            Self::DeadLettered => "dead_lettered",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// The state after a log record of `outcome`; a skip (the ledger had it delivered) leaves a
    /// known delivery as it is.
    pub(crate) fn after(previous: Option<Self>, outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Delivered => Self::Delivered,
            AttemptOutcome::Failed => Self::Failing,
            AttemptOutcome::Parked => Self::Parked,
            AttemptOutcome::DeadLettered => Self::DeadLettered,
            AttemptOutcome::Skipped => previous.unwrap_or(Self::Delivered),
        }
    }
}

/// One delivery (an event for a customer), as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Delivery {
    pub event_id: String,
    pub customer_id: String,
    pub event_type: String,
    pub state: State,
    /// Attempts made, over every processing of the record.
    pub attempts: u32,
    pub first_at_ms: u64,
    pub last_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Where the delivery record lives (for its payload).
    #[serde(skip)]
    pub location: (String, i32, i64),
}

/// What a listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    pub customer_id: String,
    /// Deliveries first seen at or after this time (Unix milliseconds).
    pub since_ms: Option<u64>,
    /// Deliveries first seen before this time.
    pub until_ms: Option<u64>,
    pub state: Option<State>,
    pub event_type: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Deliveries older than this one (from the previous page's last).
    pub before: Option<Cursor>,
}

/// Where a page ends: the last delivery's first time and event id (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub first_at_ms: u64,
    pub event_id: String,
}

impl Cursor {
    /// The opaque text a client passes back (`<ms>.<event id>`).
    pub(crate) fn encode(&self) -> String {
        format!("{}.{}", self.first_at_ms, self.event_id)
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let (ms, event_id) = text.split_once('.')?;
        let valid = !event_id.is_empty() && event_id.len() <= 255 && event_id.bytes().all(|b| b.is_ascii_graphic());
        let first_at_ms = ms.parse().ok()?;
        valid.then(|| Self { first_at_ms, event_id: event_id.to_owned() })
    }
}

/// A log record read from the topic: where, and what (`None`: not an attempt record, skipped).
pub(crate) struct LogEntry {
    pub partition: i32,
    pub offset: i64,
    pub record: Option<AttemptRecord>,
}

/// The index: one SQLite connection, shared by the follower (writes, in batches) and the API
/// (reads). Every call is short (indexed), so one lock is enough; callers on the async runtime
/// go through `spawn_blocking`.
#[derive(Clone)]
pub(crate) struct Index {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

fn sql(error: rusqlite::Error) -> Error {
    Error::DeliveryLog(error.to_string())
}

impl Index {
    /// Opens (or creates) the index in `dir`, or in memory without one. An index kept for another
    /// topic, or by another version, starts over: the topic rebuilds it.
    pub(crate) fn open(dir: Option<&Path>, topic: &str) -> Result<Self> {
        let connection = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::DeliveryLog(format!("cannot create {}: {e}", dir.display())))?;
                let connection = Connection::open(dir.join(FILE_NAME)).map_err(sql)?;
                // WAL: a crash loses at most the last batch, which the topic gives again.
                connection.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
                connection.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
                connection
            }
            None => Connection::open_in_memory().map_err(sql)?,
        };
        connection.execute_batch(SCHEMA).map_err(sql)?;
        let index = Self { connection: Arc::new(Mutex::new(connection)) };
        let identity = format!("{SCHEMA_VERSION}:{topic}");
        if index.meta("identity")?.as_deref() != Some(identity.as_str()) {
            index.reset(&identity)?;
        }
        Ok(index)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.lock().query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional().map_err(sql)
    }

    fn reset(&self, identity: &str) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql)?;
        transaction
            .execute_batch("DELETE FROM positions; DELETE FROM deliveries; DELETE FROM attempts; DELETE FROM meta;")
            .map_err(sql)?;
        transaction.execute("INSERT INTO meta (key, value) VALUES ('identity', ?1)", [identity]).map_err(sql)?;
        transaction.commit().map_err(sql)
    }

    /// The next offset to read of each partition of the log, as far as the index got.
    pub(crate) fn positions(&self) -> Result<Vec<(i32, i64)>> {
        let connection = self.lock();
        let mut statement = connection.prepare("SELECT partition, next_offset FROM positions").map_err(sql)?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    /// Applies a batch of log records and the positions they reach, in one transaction.
    /// Idempotent: a record applied twice (a crash between a batch and its commit is impossible,
    /// but a reset topic is not) changes nothing the second time.
    pub(crate) fn apply(&self, entries: &[LogEntry]) -> Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(sql)?;
        for entry in entries {
            transaction
                .execute(
                    "INSERT INTO positions (partition, next_offset) VALUES (?1, ?2)
                     ON CONFLICT (partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                    params![entry.partition, entry.offset + 1],
                )
                .map_err(sql)?;
            let Some(record) = &entry.record else { continue };
            let body = serde_json::to_string(record).map_err(|e| Error::DeliveryLog(e.to_string()))?;
            let inserted = transaction
                .execute(
                    "INSERT OR IGNORE INTO attempts (log_partition, log_offset, customer_id, event_id, body, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        entry.partition,
                        entry.offset,
                        record.customer_id,
                        record.event_id,
                        body,
                        sql_ms(record.at_ms)
                    ],
                )
                .map_err(sql)?;
            if inserted == 0 {
                continue;
            }
            let previous: Option<(String, u32)> = transaction
                .query_row(
                    "SELECT state, attempts FROM deliveries WHERE customer_id = ?1 AND event_id = ?2",
                    params![record.customer_id, record.event_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let state = State::after(previous.as_ref().and_then(|(state, _)| State::parse(state)), record.outcome);
            let made = u32::from(matches!(record.outcome, AttemptOutcome::Delivered | AttemptOutcome::Failed));
            let attempts = previous.map_or(0, |(_, attempts)| attempts) + made;
            let failed = record.outcome != AttemptOutcome::Delivered && record.outcome != AttemptOutcome::Skipped;
            transaction
                .execute(
                    "INSERT INTO deliveries (customer_id, event_id, event_type, state, attempts, first_at_ms, last_at_ms,
                                             last_status, last_error, topic, partition, offset)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (customer_id, event_id) DO UPDATE SET
                         state = excluded.state, attempts = excluded.attempts,
                         last_at_ms = max(last_at_ms, excluded.last_at_ms),
                         last_status = coalesce(excluded.last_status, last_status),
                         last_error = CASE WHEN ?12 THEN excluded.last_error ELSE last_error END,
                         topic = excluded.topic, partition = excluded.partition, offset = excluded.offset",
                    params![
                        record.customer_id,
                        record.event_id,
                        record.event_type,
                        state.as_str(),
                        attempts,
                        sql_ms(record.at_ms),
                        record.status,
                        record.error,
                        record.topic,
                        record.partition,
                        record.offset,
                        failed,
                    ],
                )
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)
    }

    /// Deletes what is older than `cutoff_ms` (the log's retention): the index holds no more
    /// history than the topic.
    pub(crate) fn expire(&self, cutoff_ms: u64) -> Result<usize> {
        let connection = self.lock();
        let cutoff = sql_ms(cutoff_ms);
        let attempts = connection.execute("DELETE FROM attempts WHERE at_ms < ?1", [cutoff]).map_err(sql)?;
        connection.execute("DELETE FROM deliveries WHERE last_at_ms < ?1", [cutoff]).map_err(sql)?;
        Ok(attempts)
    }

    /// A page of `query.customer_id`'s deliveries, newest first.
    pub(crate) fn list(&self, query: &Query) -> Result<Vec<Delivery>> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT event_id, customer_id, event_type, state, attempts, first_at_ms, last_at_ms, last_status,
                        last_error, topic, partition, offset
                 FROM deliveries
                 WHERE customer_id = ?1
                   AND (?2 IS NULL OR first_at_ms >= ?2)
                   AND (?3 IS NULL OR first_at_ms < ?3)
                   AND (?4 IS NULL OR state = ?4)
                   AND (?5 IS NULL OR event_type = ?5)
                   AND (?6 IS NULL OR first_at_ms < ?6 OR (first_at_ms = ?6 AND event_id < ?7))
                 ORDER BY first_at_ms DESC, event_id DESC
                 LIMIT ?8",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(
                params![
                    query.customer_id,
                    query.since_ms.map(sql_ms),
                    query.until_ms.map(sql_ms),
                    query.state.map(State::as_str),
                    query.event_type,
                    query.before.as_ref().map(|c| sql_ms(c.first_at_ms)),
                    query.before.as_ref().map(|c| c.event_id.as_str()),
                    query.limit,
                ],
                delivery_row,
            )
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)
    }

    /// `customer_id`'s attempts per hour from `from_ms` for `hours` hours: (delivered, failed) in
    /// each (failed: attempts that failed, whatever came after).
    pub(crate) fn hourly(&self, customer_id: &str, from_ms: u64, hours: usize) -> Result<Vec<(u64, u64)>> {
        const HOUR_MS: i64 = 3_600_000;
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT (at_ms - ?2) / ?3 AS hour, json_extract(body, '$.outcome') AS outcome, count(*)
                 FROM attempts
                 WHERE customer_id = ?1 AND at_ms >= ?2
                 GROUP BY hour, outcome",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map(params![customer_id, sql_ms(from_ms), HOUR_MS], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, i64>(2)?))
            })
            .map_err(sql)?;
        let mut buckets = vec![(0, 0); hours];
        for row in rows {
            let (hour, outcome, count) = row.map_err(sql)?;
            let (Ok(hour), Ok(count)) = (usize::try_from(hour), u64::try_from(count)) else { continue };
            let Some(bucket) = buckets.get_mut(hour) else { continue };
            match outcome.as_deref() {
                Some("delivered") => bucket.0 += count,
                Some("failed") => bucket.1 += count,
                _ => {}
            }
        }
        Ok(buckets)
    }

    /// One delivery and its log records, oldest first; `None` when the index has none.
    pub(crate) fn get(&self, customer_id: &str, event_id: &str) -> Result<Option<(Delivery, Vec<AttemptRecord>)>> {
        let connection = self.lock();
        let delivery = connection
            .query_row(
                "SELECT event_id, customer_id, event_type, state, attempts, first_at_ms, last_at_ms, last_status,
                        last_error, topic, partition, offset
                 FROM deliveries WHERE customer_id = ?1 AND event_id = ?2",
                params![customer_id, event_id],
                delivery_row,
            )
            .optional()
            .map_err(sql)?;
        let Some(delivery) = delivery else { return Ok(None) };
        let mut statement = connection
            .prepare_cached(
                "SELECT body FROM attempts WHERE customer_id = ?1 AND event_id = ?2
                 ORDER BY at_ms, log_partition, log_offset",
            )
            .map_err(sql)?;
        let bodies = statement
            .query_map(params![customer_id, event_id], |row| row.get::<_, String>(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        let records = bodies.iter().filter_map(|body| serde_json::from_str(body).ok()).collect();
        Ok(Some((delivery, records)))
    }
}

/// A time in SQLite's integers (milliseconds fit until the year 292 million).
fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(3)?;
    Ok(Delivery {
        event_id: row.get(0)?,
        customer_id: row.get(1)?,
        event_type: row.get(2)?,
        state: State::parse(&state).unwrap_or(State::Failing),
        attempts: row.get(4)?,
        first_at_ms: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        last_at_ms: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
        last_status: row.get(7)?,
        last_error: row.get(8)?,
        location: (row.get(9)?, row.get(10)?, row.get(11)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(customer: &str, event: &str, outcome: AttemptOutcome, at_ms: u64) -> AttemptRecord {
        AttemptRecord {
            event_id: event.into(),
            customer_id: customer.into(),
            event_type: "order.created".into(),
            attempt: 1,
            at_ms,
            duration_ms: Some(5),
            status: match outcome {
                AttemptOutcome::Delivered => Some(200),
                AttemptOutcome::Failed => Some(503),
                _ => None,
            },
            error_class: None,
            error: (outcome == AttemptOutcome::Failed).then(|| "HTTP 503".to_owned()),
            response: None,
            outcome,
            reason: None,
            topic: "webhooks".into(),
            partition: 0,
            offset: 7,
        }
    }

    fn apply(index: &Index, start: i64, records: Vec<AttemptRecord>) {
        let entries: Vec<LogEntry> = records
            .into_iter()
            .zip(start..)
            .map(|(record, offset)| LogEntry { partition: 0, offset, record: Some(record) })
            .collect();
        index.apply(&entries).unwrap();
    }

    fn query(customer: &str) -> Query {
        Query { customer_id: customer.into(), limit: 100, ..Query::default() }
    }

    #[test]
    fn the_state_follows_the_latest_record() {
        use AttemptOutcome::*;
        assert_eq!(State::after(None, Failed), State::Failing);
        assert_eq!(State::after(Some(State::Failing), Parked), State::Parked);
        assert_eq!(State::after(Some(State::Parked), Delivered), State::Delivered);
        assert_eq!(State::after(Some(State::DeadLettered), Skipped), State::DeadLettered);
        assert_eq!(State::after(None, Skipped), State::Delivered);
        assert_eq!(State::after(Some(State::Delivered), DeadLettered), State::DeadLettered);
    }

    #[test]
    fn deliveries_fold_their_attempts_and_list_newest_first() {
        let index = Index::open(None, "webhooks.attempts").unwrap();
        apply(
            &index,
            0,
            vec![
                record("acme", "evt_1", AttemptOutcome::Failed, 1_000),
                record("acme", "evt_2", AttemptOutcome::Delivered, 2_000),
                record("acme", "evt_1", AttemptOutcome::Failed, 3_000),
                record("other", "evt_3", AttemptOutcome::Delivered, 4_000),
                record("acme", "evt_1", AttemptOutcome::Delivered, 5_000),
            ],
        );
        let listed = index.list(&query("acme")).unwrap();
        let summary: Vec<(&str, State, u32)> =
            listed.iter().map(|d| (d.event_id.as_str(), d.state, d.attempts)).collect();
        assert_eq!(summary, [("evt_2", State::Delivered, 1), ("evt_1", State::Delivered, 3)]);
        assert_eq!((listed[1].first_at_ms, listed[1].last_at_ms), (1_000, 5_000));
        assert_eq!(listed[1].last_error.as_deref(), Some("HTTP 503"), "the last failure is kept");
        let (delivery, attempts) = index.get("acme", "evt_1").unwrap().unwrap();
        assert_eq!(delivery.event_id, "evt_1");
        assert_eq!(attempts.iter().map(|a| a.at_ms).collect::<Vec<_>>(), [1_000, 3_000, 5_000]);
        assert!(index.get("acme", "evt_3").unwrap().is_none(), "another customer's delivery is not found");
        assert_eq!(index.positions().unwrap(), [(0, 5)]);
    }

    #[test]
    fn attempts_are_counted_per_hour() {
        let index = Index::open(None, "t").unwrap();
        let hour = 3_600_000;
        apply(
            &index,
            0,
            vec![
                record("acme", "evt_1", AttemptOutcome::Failed, 10),
                record("acme", "evt_1", AttemptOutcome::Delivered, hour + 10),
                record("acme", "evt_2", AttemptOutcome::Delivered, hour + 20),
                record("acme", "evt_3", AttemptOutcome::DeadLettered, hour + 30),
                record("other", "evt_4", AttemptOutcome::Failed, 20),
            ],
        );
        assert_eq!(index.hourly("acme", 0, 3).unwrap(), [(0, 1), (2, 0), (0, 0)]);
        assert_eq!(index.hourly("acme", hour, 1).unwrap(), [(2, 0)]);
    }

    #[test]
    fn filters_and_cursor_pages() {
        let index = Index::open(None, "t").unwrap();
        let records = (0..10)
            .map(|n| {
                let outcome = if n % 2 == 0 { AttemptOutcome::Delivered } else { AttemptOutcome::DeadLettered };
                record("acme", &format!("evt_{n}"), outcome, 1_000 * n)
            })
            .collect();
        apply(&index, 0, records);
        let failed = Query { state: Some(State::DeadLettered), ..query("acme") };
        assert_eq!(index.list(&failed).unwrap().len(), 5);
        let window = Query { since_ms: Some(2_000), until_ms: Some(5_000), ..query("acme") };
        let ids: Vec<String> = index.list(&window).unwrap().into_iter().map(|d| d.event_id).collect();
        assert_eq!(ids, ["evt_4", "evt_3", "evt_2"]);
        let typed = Query { event_type: Some("nope".into()), ..query("acme") };
        assert!(index.list(&typed).unwrap().is_empty());

        let mut pages = vec![];
        let mut page_query = Query { limit: 4, ..query("acme") };
        loop {
            let page = index.list(&page_query).unwrap();
            let Some(last) = page.last() else { break };
            let cursor = Cursor { first_at_ms: last.first_at_ms, event_id: last.event_id.clone() };
            page_query.before = Cursor::decode(&cursor.encode());
            pages.push(page.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>());
        }
        assert_eq!(pages.concat().len(), 10, "{pages:?}");
        assert_eq!(pages[0][0], "evt_9");
        assert_eq!(pages.len(), 3);
    }

    #[test]
    fn applying_twice_changes_nothing_and_expiry_forgets() {
        let index = Index::open(None, "t").unwrap();
        let batch = vec![record("acme", "evt_1", AttemptOutcome::Failed, 1_000)];
        apply(&index, 0, batch.clone());
        apply(&index, 0, batch);
        assert_eq!(index.list(&query("acme")).unwrap()[0].attempts, 1);
        // A record that is not an attempt record moves the position only.
        index.apply(&[LogEntry { partition: 0, offset: 1, record: None }]).unwrap();
        assert_eq!(index.positions().unwrap(), [(0, 2)]);
        assert_eq!(index.expire(2_000).unwrap(), 1);
        assert!(index.list(&query("acme")).unwrap().is_empty());
    }

    #[test]
    fn a_persisted_index_resumes_and_another_topic_starts_over() {
        let dir = std::env::temp_dir().join(format!("hookline-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let index = Index::open(Some(&dir), "t").unwrap();
            apply(&index, 0, vec![record("acme", "evt_1", AttemptOutcome::Delivered, 1_000)]);
        }
        let reopened = Index::open(Some(&dir), "t").unwrap();
        assert_eq!(reopened.positions().unwrap(), [(0, 1)]);
        assert_eq!(reopened.list(&query("acme")).unwrap().len(), 1);
        drop(reopened);
        let other = Index::open(Some(&dir), "u").unwrap();
        assert!(other.positions().unwrap().is_empty() && other.list(&query("acme")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cursors_are_checked() {
        let cursor = Cursor { first_at_ms: 12, event_id: "evt_a.b".into() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "12", "x.evt", "12.", "12.has space"] {
            assert_eq!(Cursor::decode(bad), None, "{bad:?}");
        }
    }
}
