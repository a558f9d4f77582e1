//! Following a topic into an in-memory view: the machinery behind every view of a state topic.
//!
//! A dedicated thread reads every partition of the topic from the beginning, hands each record to
//! the view's [`Apply`] implementation, and keeps following. [`Follower::start`] returns once the
//! view has caught up with what the topic held at start-up; [`Follower::sync`] waits until it has
//! caught up with what the topic holds *now*, so a caller can read its own writes (and those of
//! other processes made before the call).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaArgs;
use crate::{Error, Result, kafka};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A view built from a topic's records, applied in partition order by the follower thread.
pub trait Apply: Send + Sync + 'static {
    /// Applies one record.
    fn apply(&self, record: &BorrowedMessage<'_>);
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
    stop: CancellationToken,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

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
    targets: HashMap<i32, i64>,
    done: oneshot::Sender<()>,
}

impl Progress {
    fn reached(&self, targets: &HashMap<i32, i64>) -> bool {
        targets.iter().all(|(p, target)| self.next_offset.get(p).copied().unwrap_or(0) >= *target)
    }

    fn wake_reached(&mut self) {
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if self.reached(&waiter.targets) {
                let _ = waiter.done.send(());
            } else {
                self.waiters.push(waiter);
            }
        }
    }
}

impl<A: Apply> Follower<A> {
    /// Starts following `topic` into `view` and returns once the view holds everything the topic
    /// held at start-up (or `load_timeout` passed: [`Error::Timeout`] naming `what`). The
    /// follower stops when `stop` is cancelled.
    pub async fn start(
        kafka: &KafkaArgs,
        topic: &str,
        view: A,
        load_timeout: Duration,
        what: &'static str,
        stop: CancellationToken,
    ) -> Result<Self> {
        let kafka = kafka.clone();
        let topic_owned = topic.to_owned();
        let inner = tokio::task::spawn_blocking(move || Inner::open(&kafka, topic_owned, view, stop))
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

    /// Waits until the view holds every record the topic holds now.
    pub async fn sync(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let targets = tokio::task::spawn_blocking(move || inner.high_watermarks())
            .await
            .map_err(|_| Error::DirectoryStopped)??;
        let (done, reached) = oneshot::channel();
        {
            let mut progress = self.inner.progress.lock().unwrap_or_else(PoisonError::into_inner);
            if progress.stopped {
                return Err(Error::DirectoryStopped);
            }
            progress.waiters.push(Waiter { targets, done });
            progress.wake_reached();
        }
        reached.await.map_err(|_| Error::DirectoryStopped)
    }

    /// [`Follower::sync`] within `timeout` ([`Error::Timeout`] naming `what`).
    pub async fn sync_within(&self, timeout: Duration, what: &'static str) -> Result<()> {
        tokio::time::timeout(timeout, self.sync()).await.map_err(|_| Error::Timeout(timeout, what))?
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
    fn open(kafka: &KafkaArgs, topic: String, view: A, stop: CancellationToken) -> Result<Self> {
        let reader = kafka::reader(kafka, "hookline-follower")?;
        let partitions = kafka::topic_partitions(&reader, &topic, METADATA_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        let mut next_offset = HashMap::new();
        for &partition in &partitions {
            let (low, _high) = reader.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)?;
            next_offset.insert(partition, low);
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        reader.assign(&assignment)?;
        Ok(Self {
            topic,
            partitions,
            view,
            reader: RwLock::new(Some(reader)),
            progress: Mutex::new(Progress { next_offset, ..Progress::default() }),
            stop,
            thread: Mutex::new(None),
        })
    }

    fn high_watermarks(&self) -> Result<HashMap<i32, i64>> {
        let reader = self.reader.read().unwrap_or_else(PoisonError::into_inner);
        let reader = reader.as_ref().ok_or(Error::DirectoryStopped)?;
        let mut targets = HashMap::new();
        for &partition in &self.partitions {
            let (_low, high) = reader.fetch_watermarks(&self.topic, partition, METADATA_TIMEOUT)?;
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
