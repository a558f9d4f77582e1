//! Following a topic into an in-memory view: the machinery behind every view of a state topic.
//!
//! A dedicated thread reads every partition of the topic from a start position ([`StartAt`]: the
//! beginning, for a compacted topic whose every key matters; or only the recent records, for a
//! view of a time window), hands each record to the view's [`Apply`] implementation, and keeps
//! following. [`Follower::start`] returns once the view has caught up with what the topic held at
//! start-up; [`Follower::sync`] waits until it has caught up with what the topic holds *now*, so a
//! caller can read its own writes (and those of other processes made before the call).
//!
//! A writer that knows where its record landed (the producer's acknowledgement gives the offset)
//! reads its own write with [`Follower::sync_to`] instead: no watermark round trip, only a
//! fetch.
//!
//! # Latency of a catch-up
//!
//! The reader keeps a fetch waiting at the broker for records (up to `fetch.wait.max.ms`,
//! librdkafka's default 500 ms). Apache Kafka answers a waiting fetch as soon as a record arrives;
//! tansu and librdkafka's mock cluster answer it only at its deadline, so on them every read-back
//! of a write made while a fetch waited cost up to 500 ms, and an operation made of several writes
//! several times over. librdkafka cannot cut a waiting fetch short nor send another beside it (one
//! fetch in flight per connection), so the follower has a second client, the *side* client,
//! assigned nothing while nobody waits. When a caller waits for records and the reader has given
//! none for [`DIRECT_READ_AFTER`], the follower thread assigns the side client at the view's
//! position: its fetch, sent now, finds the records there and is answered at once on every broker;
//! the records are applied in order (the reader's copies of them are skipped when they come). A
//! caller reading its own write ([`Follower::sync_to`]) does not wait for [`DIRECT_READ_AFTER`]:
//! its record is on the broker already, so the follower thread is woken and assigns the side
//! client at once, and the read-back costs a fetch round trip on every broker (librdkafka wakes
//! the thread too when the reader has records, so it never sleeps through either). The side client stays assigned while callers wait for records of the partitions it
//! reads, and [`SIDE_LINGER`] after the last was answered, so that writers in a row, or many at
//! once, are each answered by the side client's next fetch (a new assignment would first wait for
//! the fetch still under way to end); then it is unassigned again, and a read lasts at most 1 s
//! before the reader is polled again. The side client asks for [`SIDE_FETCH_WAIT_MS`]: tansu holds
//! a fetch that finds nothing that long whatever arrives meanwhile, so a record written during it
//! waits for its end; while the side client is assigned with nothing to read, it fetches that
//! often. On Kafka, where the reader's fetch is answered as soon as the record is written, callers
//! catching up rarely need the side client, and the reader's idle fetches stay at librdkafka's
//! default (2 a second); a short `fetch.wait.max.ms` for the reader instead would have cost idle
//! fetches on every broker all the time. Read-backs of writes use the side client on every broker:
//! a fetch each (shared by the writers waiting at once) while writers wait, nothing while none do.
//!
//! The side client also asks for the watermarks: a broker answers the requests of one
//! connection in order, so on the reader's connection the question would wait behind the
//! reader's waiting fetch, up to its deadline, on every broker.
//!
//! A catch-up costs a broker round trip (the partitions' high watermarks), so catch-ups are
//! coalesced: at most one such fetch is in flight per follower, and a caller joins the first
//! fetch that *starts after its call* (so it still sees every write made before it called);
//! callers arriving while a fetch is in flight share the next one, so N concurrent callers cost
//! at most two round trips. [`Follower::sync_paced`], for catch-ups anyone can trigger without
//! credentials (an unknown API key, an unknown inbound source), also lets [`PACED_INTERVAL`]
//! pass after the previous fetch started, so a flood of them costs at most one round trip per
//! interval instead of a continuous stream; a [`Follower::sync`] caller never waits for the pace.
//! Callers that give up (a timeout drops their future) are removed from every list at the next
//! insertion or wake-up, so the lists are bounded by the callers still waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaArgs;
use crate::kafka::FirstSince;
use crate::{Error, Result, kafka};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the follower thread waits for the reader's records or a caller before it looks again
/// (it is woken at once by either), and how long one poll of the side client waits.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long the reader may give no record while a caller waits for some before the follower
/// reads them through the side client (see the module documentation). A caller waiting for
/// its own write does not wait for this.
pub const DIRECT_READ_AFTER: Duration = Duration::from_millis(20);
/// The most one read through the side client takes before the reader is polled again.
const DIRECT_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the side client stays assigned after the last caller it read for was answered: a
/// caller coming meanwhile is answered by its next fetch, where a new assignment would first
/// wait for the fetch still under way to end.
pub const SIDE_LINGER: Duration = Duration::from_millis(20);
/// `fetch.wait.max.ms` of the side client: how long a fetch of its waits at the broker when
/// there is nothing to read (tansu holds it that long whatever arrives), so how late it may
/// bring a record written meanwhile, and how long a fetch of its may still wait after it was
/// unassigned.
pub const SIDE_FETCH_WAIT_MS: &str = "2";

/// What a read through the side client does next, given the partitions it reads and, per
/// partition some caller waits for, (partition, view's next offset, furthest target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideRead {
    /// Callers wait for records of the partitions read: keep reading.
    Continue,
    /// Nobody waits: keep reading for [`SIDE_LINGER`], in case more callers come.
    Linger,
    /// A caller waits for a partition this read does not cover: end it, so that the next read
    /// covers that one too.
    Stop,
}

fn side_read_next(read: &[(i32, i64, i64)], waiting: &[(i32, i64, i64)]) -> SideRead {
    if waiting.iter().any(|&(partition, ..)| !read.iter().any(|&(covered, ..)| covered == partition)) {
        SideRead::Stop
    } else if waiting.is_empty() {
        SideRead::Linger
    } else {
        SideRead::Continue
    }
}

/// Least time between the starts of two catch-ups that only [`Follower::sync_paced`] callers
/// wait for.
pub const PACED_INTERVAL: Duration = Duration::from_millis(250);

/// A view built from a topic's records, applied in partition order by the follower thread.
pub trait Apply: Send + Sync + 'static {
    /// Applies one record.
    fn apply(&self, record: &BorrowedMessage<'_>);
}

/// Where the follower starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every record the topic holds (a compacted topic: its records are the state).
    Beginning,
    /// The records written within `since` before now (by record timestamp, when the broker can
    /// look offsets up by time; else from the beginning), and never more than the last
    /// `max_records` of a partition, so that the time to load is bounded whatever the traffic.
    Recent { since: Duration, max_records: u64 },
}

/// The offset to start a partition at for [`StartAt::Recent`]: the latest of the partition's
/// first offset, the first offset written since the window's start (`by_time`, when the broker
/// could say), and `max_records` before the end.
fn recent_start(low: i64, high: i64, by_time: FirstSince, max_records: u64) -> i64 {
    let tail = high.saturating_sub(i64::try_from(max_records).unwrap_or(i64::MAX));
    let by_time = match by_time {
        FirstSince::At(offset) => offset,
        FirstSince::Nothing => high,
        FirstSince::Unknown => low,
    };
    low.max(tail).max(by_time).min(high.max(low))
}

/// Shared, cheaply cloneable handle on a followed view.
pub struct Follower<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for Follower<A> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<A> std::fmt::Debug for Follower<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("topic", &self.inner.topic)
            .field("partitions", &self.inner.partitions)
            .finish_non_exhaustive()
    }
}

struct Inner<A> {
    topic: String,
    partitions: Vec<i32>,
    view: A,
    /// `None` once the follower stopped: the clients are closed by the follower thread itself,
    /// so that [`Follower::close`] returns with no Kafka connection left open.
    clients: RwLock<Option<Clients>>,
    progress: Mutex<Progress>,
    /// Wakes the follower thread when the reader has records or a caller waits for its own write.
    wake: Arc<Wake>,
    catchups: Arc<Catchups>,
    /// Records read (and applied) since the start.
    records: AtomicU64,
    stop: CancellationToken,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How the follower thread, waiting for something to do, is woken at once: by librdkafka when
/// the reader's queue gets records, and by a caller waiting for its own write. Without a wake-up
/// the thread still looks every [`POLL_INTERVAL`].
#[derive(Debug, Default)]
struct Wake {
    pending: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.signal.notify_one();
    }

    /// Waits for a wake-up (one that came since the last wait counts), at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !*pending {
            pending = match self.signal.wait_timeout(pending, timeout) {
                Ok((pending, _)) => pending,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *pending = false;
    }
}

/// A follower's Kafka clients.
struct Clients {
    /// Reads the records, with a fetch waiting at the broker most of the time.
    reader: BaseConsumer,
    /// Asks for the watermarks, and reads the records callers wait for when the reader's fetch
    /// is late; assigned nothing otherwise, so it has no fetch waiting at the broker.
    side: BaseConsumer,
}

/// The high watermark to reach, per partition.
type Targets = HashMap<i32, i64>;

/// How far the reader got, and who waits for it to get further.
#[derive(Debug, Default)]
struct Progress {
    /// Next offset to read, per partition.
    next_offset: HashMap<i32, i64>,
    waiters: Vec<Waiter>,
    stopped: bool,
}

#[derive(Debug)]
struct Waiter {
    targets: Arc<Targets>,
    done: oneshot::Sender<()>,
    /// Whether the caller waits for a record it knows is written (its own, by the offset the
    /// broker acknowledged): read it directly at once rather than give the reader time.
    prompt: bool,
}

impl Progress {
    fn reached(&self, targets: &Targets) -> bool {
        targets.iter().all(|(p, target)| self.next_offset.get(p).copied().unwrap_or(0) >= *target)
    }

    /// Adds a waiter for `targets`, unless they are reached already (then it is told at once).
    /// Waiters whose caller gave up are dropped first, so the list holds live callers only.
    fn wait_for(&mut self, targets: Arc<Targets>, prompt: bool, done: oneshot::Sender<()>) {
        if self.reached(&targets) {
            let _ = done.send(());
            return;
        }
        self.waiters.retain(|waiter| !waiter.done.is_closed());
        self.waiters.push(Waiter { targets, done, prompt });
    }

    /// Whether a live caller waits for a record it knows is written (see [`Waiter::prompt`]).
    fn prompt_waiting(&self) -> bool {
        self.waiters.iter().any(|waiter| waiter.prompt && !waiter.done.is_closed() && !self.reached(&waiter.targets))
    }

    /// Per partition some caller waits for, where the view is and the furthest target: what a
    /// direct read has to read. Empty when nobody waits.
    fn behind(&self) -> Vec<(i32, i64, i64)> {
        let mut furthest: HashMap<i32, i64> = HashMap::new();
        for waiter in self.waiters.iter().filter(|waiter| !waiter.done.is_closed()) {
            for (&partition, &target) in waiter.targets.iter() {
                let next = self.next_offset.get(&partition).copied().unwrap_or(0);
                if next < target {
                    let entry = furthest.entry(partition).or_insert(target);
                    *entry = (*entry).max(target);
                }
            }
        }
        let mut behind: Vec<(i32, i64, i64)> = furthest
            .into_iter()
            .map(|(partition, target)| (partition, self.next_offset.get(&partition).copied().unwrap_or(0), target))
            .collect();
        behind.sort_unstable();
        behind
    }

    /// Whether the record at `offset` of `partition` is one the view does not hold yet.
    fn is_new(&self, partition: i32, offset: i64) -> bool {
        offset >= self.next_offset.get(&partition).copied().unwrap_or(0)
    }

    fn wake_reached(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if waiter.done.is_closed() {
                continue;
            }
            if self.reached(&waiter.targets) {
                let _ = waiter.done.send(());
            } else {
                self.waiters.push(waiter);
            }
        }
    }
}

/// Why a watermark fetch gave no targets.
#[derive(Debug, Clone)]
enum FetchError {
    Stopped,
    Kafka(KafkaError),
}

impl From<FetchError> for Error {
    fn from(error: FetchError) -> Self {
        match error {
            FetchError::Stopped => Error::DirectoryStopped,
            FetchError::Kafka(error) => Error::Kafka(error),
        }
    }
}

type Fetched = std::result::Result<Arc<Targets>, FetchError>;

/// Coalesced watermark fetches (see the module documentation). No I/O of its own: the fetch is
/// passed in, so the rules are tested without a broker.
#[derive(Debug)]
struct Catchups {
    state: Mutex<CatchupState>,
    /// Wakes a driver waiting for the pace when a caller that must not wait arrives.
    prompt_arrived: Notify,
    /// Fetches started.
    fetches: AtomicU64,
    pace: Duration,
}

#[derive(Debug, Default)]
struct CatchupState {
    /// Whether a driver task is running (fetching, or waiting for the pace).
    driving: bool,
    /// Callers waiting for a fetch that starts after their call.
    next: Vec<oneshot::Sender<Fetched>>,
    /// Whether one of `next` must not wait for the pace.
    prompt: bool,
    /// When the last fetch started.
    last_start: Option<Instant>,
}

impl Catchups {
    fn new(pace: Duration) -> Self {
        Self { state: Mutex::default(), prompt_arrived: Notify::new(), fetches: AtomicU64::new(0), pace }
    }

    /// The targets of a fetch that started after this call: joins the next fetch, starting the
    /// driver task if none runs. `paced`: the caller accepts to wait for the pace.
    async fn targets<F, Fut>(self: &Arc<Self>, paced: bool, fetch: F) -> Fetched
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Targets, FetchError>> + Send + 'static,
    {
        let (done, fetched) = oneshot::channel();
        let start_driver = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.next.retain(|waiter| !waiter.is_closed());
            state.next.push(done);
            state.prompt |= !paced;
            !std::mem::replace(&mut state.driving, true)
        };
        if start_driver {
            tokio::spawn(Arc::clone(self).drive(fetch));
        } else if !paced {
            self.prompt_arrived.notify_one();
        }
        fetched.await.unwrap_or(Err(FetchError::Stopped))
    }

    /// Runs fetches while callers wait for one; each fetch answers the callers that arrived
    /// before it started. Ends when nobody waits.
    async fn drive<F, Fut>(self: Arc<Self>, fetch: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Targets, FetchError>> + Send + 'static,
    {
        let mut guard = DriverGuard { catchups: Arc::clone(&self), armed: true };
        loop {
            // Decided under the lock, which is not held across an await.
            let batch = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.next.retain(|waiter| !waiter.is_closed());
                if state.next.is_empty() {
                    state.driving = false;
                    state.prompt = false;
                    guard.armed = false;
                    return;
                }
                let now = Instant::now();
                match state.last_start {
                    Some(last) if !state.prompt && last + self.pace > now => Err(last + self.pace),
                    _ => {
                        state.prompt = false;
                        state.last_start = Some(now);
                        Ok(std::mem::take(&mut state.next))
                    }
                }
            };
            match batch {
                Err(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = self.prompt_arrived.notified() => {}
                    }
                }
                Ok(batch) => {
                    self.fetches.fetch_add(1, Ordering::Relaxed);
                    let fetched = fetch().await.map(Arc::new);
                    for waiter in batch {
                        let _ = waiter.send(fetched.clone());
                    }
                }
            }
        }
    }
}

/// Ends the driver's turn if its task is dropped before it ends (its runtime shut down): the
/// callers waiting for it are told, and a later caller starts a new driver.
struct DriverGuard {
    catchups: Arc<Catchups>,
    armed: bool,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.catchups.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.driving = false;
            state.prompt = false;
            state.next.clear();
        }
    }
}

impl<A: Apply> Follower<A> {
    /// Starts following `topic` into `view`, each partition from `start_at`, and returns once
    /// the view holds everything the topic held at start-up (or `load_timeout` passed:
    /// [`Error::Timeout`] naming `what`). The follower stops when `stop` is cancelled.
    pub async fn start(
        kafka: &KafkaArgs,
        topic: &str,
        start_at: StartAt,
        view: A,
        load_timeout: Duration,
        what: &'static str,
        stop: CancellationToken,
    ) -> Result<Self> {
        let kafka = kafka.clone();
        let topic_owned = topic.to_owned();
        let inner = tokio::task::spawn_blocking(move || Inner::open(&kafka, topic_owned, start_at, view, stop))
            .await
            .map_err(|_| Error::DirectoryStopped)??;
        let inner = Arc::new(inner);
        let following = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name(format!("hookline-follow-{}", inner.topic.chars().take(16).collect::<String>()))
            .spawn(move || following.follow())
            .map_err(|_| Error::DirectoryStopped)?;
        *inner.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        let follower = Self { inner };
        tokio::time::timeout(load_timeout, follower.sync()).await.map_err(|_| Error::Timeout(load_timeout, what))??;
        Ok(follower)
    }

    /// The view.
    pub fn view(&self) -> &A {
        &self.inner.view
    }

    /// The topic followed.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Records read (and applied to the view) since the start.
    pub fn records_read(&self) -> u64 {
        self.inner.records.load(Ordering::Relaxed)
    }

    /// Catch-ups done (broker round trips for the high watermarks), the load included.
    pub fn catchups(&self) -> u64 {
        self.inner.catchups.fetches.load(Ordering::Relaxed)
    }

    /// Waits until the view holds every record the topic held when this was called.
    pub async fn sync(&self) -> Result<()> {
        self.catch_up(false).await
    }

    /// Like [`Follower::sync`], for catch-ups that callers without credentials can trigger: the
    /// catch-up may wait up to [`PACED_INTERVAL`] after the previous one started.
    pub async fn sync_paced(&self) -> Result<()> {
        self.catch_up(true).await
    }

    async fn catch_up(&self, paced: bool) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let fetch = move || {
            let inner = Arc::clone(&inner);
            async move {
                tokio::task::spawn_blocking(move || inner.high_watermarks()).await.unwrap_or(Err(FetchError::Stopped))
            }
        };
        let targets = self.inner.catchups.targets(paced, fetch).await?;
        self.reach(targets, false).await
    }

    /// Waits until the view holds the record at `offset` of `partition`, and so every record
    /// before it: how a writer reads its own write, with the offset the broker acknowledged it
    /// at. Costs no broker round trip of its own (see the module documentation).
    pub async fn sync_to(&self, partition: i32, offset: i64) -> Result<()> {
        if offset < 0 {
            // No offset acknowledged (librdkafka says -1 when it does not know): ask the broker.
            return self.sync().await;
        }
        self.reach(Arc::new(HashMap::from([(partition, offset.saturating_add(1))])), true).await
    }

    /// [`Follower::sync_to`] within `timeout` ([`Error::Timeout`] naming `what`).
    pub async fn sync_to_within(
        &self,
        partition: i32,
        offset: i64,
        timeout: Duration,
        what: &'static str,
    ) -> Result<()> {
        tokio::time::timeout(timeout, self.sync_to(partition, offset))
            .await
            .map_err(|_| Error::Timeout(timeout, what))?
    }

    /// Waits until the view reaches `targets`; `prompt`: see [`Waiter::prompt`].
    async fn reach(&self, targets: Arc<Targets>, prompt: bool) -> Result<()> {
        let (done, reached) = oneshot::channel();
        {
            let mut progress = self.inner.progress.lock().unwrap_or_else(PoisonError::into_inner);
            if progress.stopped {
                return Err(Error::DirectoryStopped);
            }
            progress.wait_for(targets, prompt, done);
        }
        if prompt {
            self.inner.wake.notify();
        }
        reached.await.map_err(|_| Error::DirectoryStopped)
    }

    /// [`Follower::sync`] within `timeout` ([`Error::Timeout`] naming `what`).
    pub async fn sync_within(&self, timeout: Duration, what: &'static str) -> Result<()> {
        tokio::time::timeout(timeout, self.sync()).await.map_err(|_| Error::Timeout(timeout, what))?
    }

    /// [`Follower::sync_paced`] within `timeout` ([`Error::Timeout`] naming `what`).
    pub async fn sync_paced_within(&self, timeout: Duration, what: &'static str) -> Result<()> {
        tokio::time::timeout(timeout, self.sync_paced()).await.map_err(|_| Error::Timeout(timeout, what))?
    }

    /// Stops following and waits for the reader thread to end, so that its Kafka client is
    /// closed when this returns (the stop token given to [`Follower::start`] does the same
    /// without waiting).
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let handle = self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// The configuration of the reader (`side`: of the side client): the readers' defaults, then
/// the follower's own, which `--kafka-property` still overrides.
fn reader_config(kafka: &KafkaArgs, side: bool) -> rdkafka::ClientConfig {
    // A start offset that retention removed meanwhile must not make the reader skip to the end.
    let earliest = ("auto.offset.reset", "earliest");
    if side {
        kafka::reader_config_with(kafka, "hookline-follower", &[earliest, ("fetch.wait.max.ms", SIDE_FETCH_WAIT_MS)])
    } else {
        kafka::reader_config_with(kafka, "hookline-follower", &[earliest])
    }
}

impl<A: Apply> Inner<A> {
    fn open(kafka: &KafkaArgs, topic: String, start_at: StartAt, view: A, stop: CancellationToken) -> Result<Self> {
        let mut reader: BaseConsumer = reader_config(kafka, false).create()?;
        let wake = Arc::new(Wake::default());
        let on_records = Arc::clone(&wake);
        reader.set_nonempty_callback(move || on_records.notify());
        let side: BaseConsumer = reader_config(kafka, true).create()?;
        let partitions = kafka::topic_partitions(&side, &topic, METADATA_TIMEOUT)?;
        let mut watermarks = HashMap::new();
        for &partition in &partitions {
            watermarks.insert(partition, side.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)?);
        }
        let by_time = match start_at {
            StartAt::Beginning => HashMap::new(),
            StartAt::Recent { since, .. } => {
                kafka::first_offsets_since(&side, &topic, &partitions, since, METADATA_TIMEOUT)
            }
        };
        let mut assignment = TopicPartitionList::new();
        let mut next_offset = HashMap::new();
        for (&partition, &(low, high)) in &watermarks {
            let since = by_time.get(&partition).copied().unwrap_or(FirstSince::Unknown);
            let start = match start_at {
                StartAt::Beginning => low,
                StartAt::Recent { max_records, .. } => recent_start(low, high, since, max_records),
            };
            tracing::debug!(%topic, partition, low, high, ?since, start, "following a topic");
            next_offset.insert(partition, start);
            let offset = if start == low { Offset::Beginning } else { Offset::Offset(start) };
            assignment.add_partition_offset(&topic, partition, offset)?;
        }
        reader.assign(&assignment)?;
        Ok(Self {
            topic,
            partitions,
            view,
            clients: RwLock::new(Some(Clients { reader, side })),
            progress: Mutex::new(Progress { next_offset, ..Progress::default() }),
            wake,
            catchups: Arc::new(Catchups::new(PACED_INTERVAL)),
            records: AtomicU64::new(0),
            stop,
            thread: Mutex::new(None),
        })
    }

    /// Applies a record unless the view holds it already (read through both clients).
    fn take(&self, message: &BorrowedMessage<'_>) {
        if !self.progress.lock().unwrap_or_else(PoisonError::into_inner).is_new(message.partition(), message.offset()) {
            return;
        }
        self.view.apply(message);
        self.records.fetch_add(1, Ordering::Relaxed);
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        progress.next_offset.insert(message.partition(), message.offset() + 1);
        progress.wake_reached();
    }

    /// Reads `behind` (partition, from, target) through the side client, whose fetch starts now
    /// and so finds the records there, and keeps reading while callers wait for records of those
    /// partitions and for [`SIDE_LINGER`] after the last was answered; then unassigns it. Within
    /// [`DIRECT_READ_TIMEOUT`].
    fn read_directly(&self, side: &BaseConsumer, behind: &[(i32, i64, i64)]) {
        let mut assignment = TopicPartitionList::new();
        for &(partition, from, _) in behind {
            if assignment.add_partition_offset(&self.topic, partition, Offset::Offset(from)).is_err() {
                return;
            }
        }
        if let Err(error) = side.assign(&assignment) {
            tracing::warn!(topic = %self.topic, %error, "cannot read a followed topic directly");
            return;
        }
        let deadline = std::time::Instant::now() + DIRECT_READ_TIMEOUT;
        // Since when nobody has waited for a record of the partitions read.
        let mut idle_since: Option<std::time::Instant> = None;
        while !self.stop.is_cancelled() && std::time::Instant::now() < deadline {
            let waiting = self.progress.lock().unwrap_or_else(PoisonError::into_inner).behind();
            match side_read_next(behind, &waiting) {
                SideRead::Continue => idle_since = None,
                SideRead::Linger => {
                    if idle_since.get_or_insert_with(std::time::Instant::now).elapsed() >= SIDE_LINGER {
                        break;
                    }
                }
                SideRead::Stop => break,
            }
            match side.poll(POLL_INTERVAL) {
                Some(Ok(message)) => self.take(&message),
                Some(Err(error)) => tracing::warn!(topic = %self.topic, %error, "reading a followed topic failed"),
                None => {}
            }
        }
        if let Err(error) = side.unassign() {
            tracing::warn!(topic = %self.topic, %error, "cannot unassign the follower's side client");
        }
    }

    fn high_watermarks(&self) -> std::result::Result<Targets, FetchError> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        let side = &clients.as_ref().ok_or(FetchError::Stopped)?.side;
        let mut targets = HashMap::new();
        for &partition in &self.partitions {
            let (_low, high) =
                side.fetch_watermarks(&self.topic, partition, METADATA_TIMEOUT).map_err(FetchError::Kafka)?;
            targets.insert(partition, high);
        }
        Ok(targets)
    }

    /// The follower thread: applies records until `stop` fires, reading them through the side
    /// client when the reader is late with records a caller waits for.
    fn follow(&self) {
        // Since when callers have waited with no record from the reader.
        let mut quiet_since: Option<std::time::Instant> = None;
        while !self.stop.is_cancelled() {
            let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
            let Some(Clients { reader, side }) = clients.as_ref() else { break };
            match reader.poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    self.take(&message);
                    quiet_since = None;
                    continue;
                }
                Some(Err(error)) => tracing::warn!(topic = %self.topic, %error, "reading a followed topic failed"),
                None => {}
            }
            let (behind, prompt) = {
                let progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
                (progress.behind(), progress.prompt_waiting())
            };
            if behind.is_empty() {
                quiet_since = None;
            } else if prompt || quiet_since.get_or_insert_with(std::time::Instant::now).elapsed() >= DIRECT_READ_AFTER {
                self.read_directly(side, &behind);
                quiet_since = None;
                continue;
            }
            self.wake.wait(POLL_INTERVAL);
        }
        drop(self.clients.write().unwrap_or_else(PoisonError::into_inner).take());
        let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        progress.stopped = true;
        progress.waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn only_the_side_client_asks_for_short_fetches() {
        let kafka = KafkaArgs::new("b:9092");
        let (reader, side) = (reader_config(&kafka, false), reader_config(&kafka, true));
        assert_eq!(reader.get("fetch.wait.max.ms"), None, "the reader keeps librdkafka's default: no idle cost");
        assert_eq!(side.get("fetch.wait.max.ms"), Some(SIDE_FETCH_WAIT_MS));
        for config in [&reader, &side] {
            assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
            assert_eq!(config.get("enable.auto.commit"), Some("false"));
        }
        let tuned = KafkaArgs::new("b:9092").with_property("fetch.wait.max.ms", "50");
        assert_eq!(reader_config(&tuned, true).get("fetch.wait.max.ms"), Some("50"), "--kafka-property wins");
    }

    #[test]
    fn a_direct_read_covers_the_furthest_target_of_live_callers() {
        let mut progress = Progress::default();
        progress.next_offset.extend([(0, 10), (1, 5)]);
        assert!(progress.behind().is_empty(), "nobody waits");
        let mut callers = Vec::new();
        for targets in [vec![(0, 12)], vec![(0, 15), (1, 5)], vec![(1, 7)], vec![(0, 10)]] {
            let (done, reached) = oneshot::channel();
            progress.wait_for(Arc::new(targets.into_iter().collect()), false, done);
            callers.push(reached);
        }
        // (1, 5) and (0, 10) are reached: nothing to read for them.
        assert_eq!(progress.behind(), [(0, 10, 15), (1, 5, 7)]);
        // A caller that gave up is not read for.
        drop(callers.remove(2));
        assert_eq!(progress.behind(), [(0, 10, 15)]);
        // Records the view holds are not applied twice.
        assert!(!progress.is_new(0, 9) && progress.is_new(0, 10));
    }

    #[test]
    fn only_callers_waiting_for_their_own_write_are_read_for_at_once() {
        let mut progress = Progress::default();
        progress.next_offset.insert(0, 10);
        let (done, _catching_up) = oneshot::channel();
        progress.wait_for(Arc::new(HashMap::from([(0, 12)])), false, done);
        assert!(!progress.prompt_waiting(), "a catch-up gives the reader time first");
        let (done, own_write) = oneshot::channel();
        progress.wait_for(Arc::new(HashMap::from([(0, 11)])), true, done);
        assert!(progress.prompt_waiting());
        // Once its write is read, or once it gave up, it waits no more.
        progress.next_offset.insert(0, 11);
        progress.wake_reached();
        assert!(!progress.prompt_waiting());
        let (done, gave_up) = oneshot::channel();
        progress.wait_for(Arc::new(HashMap::from([(0, 20)])), true, done);
        assert!(progress.prompt_waiting());
        drop(gave_up);
        assert!(!progress.prompt_waiting());
        drop(own_write);
    }

    #[test]
    fn a_wake_up_before_the_wait_is_not_lost() {
        let wake = Wake::default();
        // librdkafka (or a caller) wakes the thread while it is busy: its next wait ends at once.
        wake.notify();
        wake.wait(Duration::from_secs(3600));
        assert!(!*wake.pending.lock().unwrap(), "a wake-up is used once");
        std::thread::scope(|scope| {
            scope.spawn(|| wake.notify());
            wake.wait(Duration::from_secs(3600));
        });
    }

    #[test]
    fn a_side_read_goes_on_while_callers_wait_for_its_partitions() {
        let read = [(0, 10, 12), (2, 5, 6)];
        assert_eq!(side_read_next(&read, &[(0, 11, 15)]), SideRead::Continue, "a caller came meanwhile");
        assert_eq!(side_read_next(&read, &[(0, 11, 15), (2, 5, 6)]), SideRead::Continue);
        assert_eq!(side_read_next(&read, &[]), SideRead::Linger, "nobody waits: more may come");
        assert_eq!(side_read_next(&read, &[(0, 11, 15), (1, 0, 3)]), SideRead::Stop, "partition 1 is not read");
    }

    #[test]
    fn recent_start_takes_the_latest_bound() {
        // By time: 40 is the first record within the window.
        assert_eq!(recent_start(0, 100, FirstSince::At(40), 1_000), 40);
        // By count: never more than the last 30 records.
        assert_eq!(recent_start(0, 100, FirstSince::At(40), 30), 70);
        // The broker cannot say: by count alone, not before the first record.
        assert_eq!(recent_start(10, 100, FirstSince::Unknown, 1_000), 10);
        assert_eq!(recent_start(10, 100, FirstSince::Unknown, 5), 95);
        // Nothing written within the window: start at the end.
        assert_eq!(recent_start(0, 100, FirstSince::Nothing, 1_000), 100);
        // Huge bounds do not overflow.
        assert_eq!(recent_start(0, 100, FirstSince::Unknown, u64::MAX), 0);
    }

    #[test]
    fn waiters_of_callers_that_gave_up_are_dropped() {
        let mut progress = Progress::default();
        progress.next_offset.insert(0, 5);
        let far = Arc::new(HashMap::from([(0, 100)]));
        let mut live = Vec::new();
        for i in 0..100 {
            let (done, reached) = oneshot::channel();
            progress.wait_for(Arc::clone(&far), false, done);
            // Every other caller times out (drops its receiver).
            if i % 2 == 0 {
                live.push(reached);
            }
        }
        assert!(progress.waiters.len() <= 51, "only live callers are kept: {}", progress.waiters.len());
        progress.wake_reached();
        assert_eq!(progress.waiters.len(), 50);
        // A target reached already is answered at once, without a waiter.
        let (done, mut reached) = oneshot::channel();
        progress.wait_for(Arc::new(HashMap::from([(0, 5)])), false, done);
        assert!(reached.try_recv().is_ok());
        assert_eq!(progress.waiters.len(), 50);
        progress.next_offset.insert(0, 100);
        progress.wake_reached();
        assert!(progress.waiters.is_empty());
        assert!(live.iter_mut().all(|reached| reached.try_recv().is_ok()));
    }

    type FakeFuture = std::pin::Pin<Box<dyn Future<Output = std::result::Result<Targets, FetchError>> + Send>>;

    /// A fake watermark fetch: counts its calls and answers, once released, the number of the
    /// fetch as the target of partition 0.
    #[derive(Clone, Default)]
    struct FakeFetch {
        started: Arc<AtomicUsize>,
        release: Arc<Notify>,
    }

    impl FakeFetch {
        fn fetch(&self) -> impl Fn() -> FakeFuture + Send + 'static {
            let this = self.clone();
            move || {
                let this = this.clone();
                Box::pin(async move {
                    let number = this.started.fetch_add(1, Ordering::SeqCst) + 1;
                    this.release.notified().await;
                    Ok(HashMap::from([(0, i64::try_from(number).unwrap_or_default())]))
                })
            }
        }

        fn started(&self) -> usize {
            self.started.load(Ordering::SeqCst)
        }

        async fn wait_started(&self, count: usize) {
            while self.started() < count {
                tokio::task::yield_now().await;
            }
        }
    }

    fn spawn_caller(catchups: &Arc<Catchups>, fake: &FakeFetch, paced: bool) -> Caller {
        let catchups = Arc::clone(catchups);
        let fetch = fake.fetch();
        tokio::spawn(async move { catchups.targets(paced, fetch).await.map(|t| t[&0]).map_err(|_| ()) })
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    type Caller = tokio::task::JoinHandle<std::result::Result<i64, ()>>;

    /// Unpaced catch-ups, a first caller's fetch in flight.
    async fn one_fetch_in_flight() -> (Arc<Catchups>, FakeFetch, Caller) {
        let catchups = Arc::new(Catchups::new(Duration::ZERO));
        let fake = FakeFetch::default();
        let first = spawn_caller(&catchups, &fake, false);
        fake.wait_started(1).await;
        (catchups, fake, first)
    }

    #[tokio::test]
    async fn concurrent_callers_share_fetches_that_started_after_their_call() {
        let (catchups, fake, first) = one_fetch_in_flight().await;
        // Fetch 1 is in flight: these callers need one that starts after them, so they share fetch 2.
        let later: Vec<_> = (0..100).map(|_| spawn_caller(&catchups, &fake, false)).collect();
        settle().await;
        assert_eq!(fake.started(), 1, "no second fetch while one is in flight");
        fake.release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(1));
        fake.wait_started(2).await;
        fake.release.notify_one();
        for caller in later {
            assert_eq!(caller.await.unwrap(), Ok(2), "read-your-writes: a fetch that started after the call");
        }
        settle().await;
        assert_eq!(fake.started(), 2);
        assert_eq!(catchups.fetches.load(Ordering::Relaxed), 2);
        assert!(!catchups.state.lock().unwrap().driving, "the driver ends when nobody waits");
    }

    #[tokio::test]
    async fn callers_that_gave_up_cost_no_fetch_and_are_not_kept() {
        let (catchups, fake, first) = one_fetch_in_flight().await;
        let abandoned: Vec<_> = (0..100).map(|_| spawn_caller(&catchups, &fake, false)).collect();
        settle().await;
        for caller in &abandoned {
            caller.abort();
        }
        settle().await;
        // One more caller prunes the list of those that gave up.
        let last = spawn_caller(&catchups, &fake, false);
        settle().await;
        assert_eq!(catchups.state.lock().unwrap().next.len(), 1, "only the live caller waits");
        last.abort();
        settle().await;
        fake.release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(1));
        settle().await;
        assert_eq!(fake.started(), 1, "nobody is left waiting for a second fetch");
        assert!(!catchups.state.lock().unwrap().driving);
    }

    #[test]
    fn a_driver_dropped_with_its_runtime_is_replaced() {
        let catchups = Arc::new(Catchups::new(Duration::ZERO));
        let fake = FakeFetch::default();
        let runtime = || tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let first = runtime();
        let abandoned = {
            let _inside = first.enter();
            spawn_caller(&catchups, &fake, false)
        };
        first.block_on(fake.wait_started(1));
        // The runtime goes away with the driver waiting for its fetch.
        drop(first);
        drop(abandoned);
        assert!(!catchups.state.lock().unwrap().driving, "the dropped driver gave up its turn");
        runtime().block_on(async {
            let caller = spawn_caller(&catchups, &fake, false);
            fake.wait_started(2).await;
            fake.release.notify_one();
            assert_eq!(caller.await.unwrap(), Ok(2));
        });
    }

    #[tokio::test]
    async fn paced_callers_wait_for_the_pace_unless_a_prompt_caller_arrives() {
        // A pace no test run reaches: paced callers are answered only by a prompt caller's fetch.
        let catchups = Arc::new(Catchups::new(Duration::from_secs(3600)));
        let fake = FakeFetch::default();
        // The first paced caller does not wait: no fetch started within the pace.
        let first = spawn_caller(&catchups, &fake, true);
        fake.wait_started(1).await;
        fake.release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(1));
        // A flood of paced callers waits for the pace: no fetch.
        let flood: Vec<_> = (0..100).map(|_| spawn_caller(&catchups, &fake, true)).collect();
        settle().await;
        assert_eq!(fake.started(), 1, "paced callers wait for the pace");
        // A prompt caller is not held back by them, and they share its fetch.
        let prompt = spawn_caller(&catchups, &fake, false);
        fake.wait_started(2).await;
        fake.release.notify_one();
        assert_eq!(prompt.await.unwrap(), Ok(2));
        for caller in flood {
            assert_eq!(caller.await.unwrap(), Ok(2));
        }
        assert_eq!(fake.started(), 2);
    }
}
