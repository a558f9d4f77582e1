//! Following a topic into an in-memory view: the machinery behind every view of a state topic.
//!
//! A dedicated thread reads every partition of the topic from a start position ([`StartAt`]: the
//! beginning, for a compacted topic whose every key matters; or only the recent records, for a
//! view of a time window), hands each record to the view's [`Apply`] implementation, and keeps
//! following. [`Follower::start`] returns once the view has caught up with what the topic held at
//! start-up; [`Follower::sync`] waits until it has caught up with what the topic holds *now*, so a
//! caller can read its own writes (and those of other processes made before the call).
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
use std::sync::{Arc, Mutex, PoisonError, RwLock};
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
const POLL_INTERVAL: Duration = Duration::from_millis(100);

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
    /// `None` once the follower stopped: the client is closed by the follower thread itself, so
    /// that [`Follower::close`] returns with no Kafka connection left open.
    reader: RwLock<Option<BaseConsumer>>,
    progress: Mutex<Progress>,
    catchups: Arc<Catchups>,
    /// Records read (and applied) since the start.
    records: AtomicU64,
    stop: CancellationToken,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
}

impl Progress {
    fn reached(&self, targets: &Targets) -> bool {
        targets.iter().all(|(p, target)| self.next_offset.get(p).copied().unwrap_or(0) >= *target)
    }

    /// Adds a waiter for `targets`, unless they are reached already (then it is told at once).
    /// Waiters whose caller gave up are dropped first, so the list holds live callers only.
    fn wait_for(&mut self, targets: Arc<Targets>, done: oneshot::Sender<()>) {
        if self.reached(&targets) {
            let _ = done.send(());
            return;
        }
        self.waiters.retain(|waiter| !waiter.done.is_closed());
        self.waiters.push(Waiter { targets, done });
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
        let (done, reached) = oneshot::channel();
        {
            let mut progress = self.inner.progress.lock().unwrap_or_else(PoisonError::into_inner);
            if progress.stopped {
                return Err(Error::DirectoryStopped);
            }
            progress.wait_for(targets, done);
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

impl<A: Apply> Inner<A> {
    fn open(kafka: &KafkaArgs, topic: String, start_at: StartAt, view: A, stop: CancellationToken) -> Result<Self> {
        // A start offset that retention removed meanwhile must not make the reader skip to the end.
        let reader: BaseConsumer =
            kafka::reader_config_with(kafka, "hookline-follower", &[("auto.offset.reset", "earliest")]).create()?;
        let partitions = kafka::topic_partitions(&reader, &topic, METADATA_TIMEOUT)?;
        let mut watermarks = HashMap::new();
        for &partition in &partitions {
            watermarks.insert(partition, reader.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)?);
        }
        let by_time = match start_at {
            StartAt::Beginning => HashMap::new(),
            StartAt::Recent { since, .. } => {
                kafka::first_offsets_since(&reader, &topic, &partitions, since, METADATA_TIMEOUT)
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
            reader: RwLock::new(Some(reader)),
            progress: Mutex::new(Progress { next_offset, ..Progress::default() }),
            catchups: Arc::new(Catchups::new(PACED_INTERVAL)),
            records: AtomicU64::new(0),
            stop,
            thread: Mutex::new(None),
        })
    }

    fn high_watermarks(&self) -> std::result::Result<Targets, FetchError> {
        let reader = self.reader.read().unwrap_or_else(PoisonError::into_inner);
        let reader = reader.as_ref().ok_or(FetchError::Stopped)?;
        let mut targets = HashMap::new();
        for &partition in &self.partitions {
            let (_low, high) =
                reader.fetch_watermarks(&self.topic, partition, METADATA_TIMEOUT).map_err(FetchError::Kafka)?;
            targets.insert(partition, high);
        }
        Ok(targets)
    }

    /// The follower thread: applies records until `stop` fires.
    fn follow(&self) {
        while !self.stop.is_cancelled() {
            let reader = self.reader.read().unwrap_or_else(PoisonError::into_inner);
            let Some(reader) = reader.as_ref() else { break };
            match reader.poll(POLL_INTERVAL) {
                Some(Ok(message)) => {
                    self.view.apply(&message);
                    self.records.fetch_add(1, Ordering::Relaxed);
                    let mut progress = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
                    progress.next_offset.insert(message.partition(), message.offset() + 1);
                    progress.wake_reached();
                }
                Some(Err(error)) => tracing::warn!(topic = %self.topic, %error, "reading a followed topic failed"),
                None => {}
            }
        }
        drop(self.reader.write().unwrap_or_else(PoisonError::into_inner).take());
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
            progress.wait_for(Arc::clone(&far), done);
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
        progress.wait_for(Arc::new(HashMap::from([(0, 5)])), done);
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
