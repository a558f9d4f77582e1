//! `hookline-demo`: Hookline end to end in one process.
//!
//! By default everything runs in-process: a librdkafka mock cluster (three brokers), the real
//! publisher on a loopback port, a consumer group of several real delivery workers and one demo
//! receiver per customer. The demo publishes a sample workload over HTTP, shows progress once a
//! second and ends with a per-customer summary once every delivery is accounted for, delivered
//! or dead-lettered. One customer's endpoint refuses the first attempts of every event (its
//! retries show in the summary) and one refuses everything (its deliveries end in the DLQ).
//! With `--brokers` the same runs against a real Kafka, under unique topic names.
//!
//! The mock cluster does not implement `CreateTopics`, so on it the topics are created through
//! the mock API (same names, partition counts; the customers topic is not compacted there).
//!
//! # Layout
//! - [`args`]: flags and environment variables ([`Args`]).
//! - [`cast`]: the customers, their subscriptions and their receivers' behaviour.
//! - [`workload`]: the events published and what each customer should receive.
//! - [`tally`]: counting deliveries and dead letters; the [`Summary`] and its table.
//! - [`error`]: this crate's error type.
//! - [`run`] / [`run_until`]: starting everything, waiting, shutting down (here).

pub mod args;
pub mod cast;
pub mod error;
pub mod tally;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookline_consumer::Metrics;
use hookline_core::config::{KafkaArgs, SecretString, TopicArgs};
use hookline_core::netguard::NetworkArgs;
use hookline_core::secrets::{MasterKey, MasterKeyArgs};
use hookline_core::topics::{self, TopicOutcome};
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use args::Args;
pub use error::{Error, Result};
pub use tally::{ConsumerSummary, CustomerSummary, Summary};

use cast::Member;
use tally::DlqFollower;

/// Brokers in the mock cluster.
const MOCK_BROKERS: i32 = 3;
/// How long the consumer group may take to share out the partitions before publishing.
const GROUP_READY_TIMEOUT: Duration = Duration::from_secs(60);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Time left to background client threads to close before the mock cluster is destroyed.
const CLIENTS_CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Runs the demo to its end (see the crate documentation).
pub async fn run(args: Args) -> Result<Summary> {
    run_until(args, CancellationToken::new()).await
}

/// [`run`], cut short (with an incomplete summary) when `interrupt` is cancelled.
///
/// The returned future is not `Send`: it owns the mock cluster, which must outlive every client
/// and is shut down last. Run it with `block_on` (as `#[tokio::main]` and `#[tokio::test]` do).
pub async fn run_until(args: Args, interrupt: CancellationToken) -> Result<Summary> {
    let (mock, kafka, topics, group, location) = match &args.brokers {
        None => {
            let mock = MockCluster::new(MOCK_BROKERS).map_err(Error::MockCluster)?;
            let bootstrap = mock.bootstrap_servers();
            let location = format!("an in-process mock cluster ({MOCK_BROKERS} brokers) at {bootstrap}");
            (Some(mock), args.kafka(&bootstrap), TopicArgs::default(), "hookline-demo".to_owned(), location)
        }
        Some(brokers) => {
            let name = format!("hookline-demo-{}", unique_suffix());
            (None, args.kafka(brokers), TopicArgs::with_prefix(&name), name, format!("Kafka at {brokers}"))
        }
    };

    println!("Hookline demo on {location}");
    let specs = topics::specs(&topics, args.partitions, 1);
    match &mock {
        Some(mock) => {
            for spec in &specs {
                mock.create_topic(&spec.name, spec.partitions, 1)
                    .map_err(|source| Error::MockTopic { topic: spec.name.clone(), source })?;
            }
        }
        None => {
            for (spec, outcome) in topics::ensure_topics(&kafka, &specs).await? {
                if let TopicOutcome::Differs(differences) = outcome {
                    tracing::warn!(topic = %spec.name, ?differences, "topic exists but differs");
                }
            }
        }
    }
    println!(
        "  topics: {} ({} partitions), {}, {}, {} (delivery ledger), {}, {} (retry), {} (parking state), {} (delivery log)",
        topics.deliveries,
        args.partitions,
        topics.dlq,
        topics.customers,
        topics.delivered,
        topics.idempotency,
        topics.retry,
        topics.parking,
        topics.attempts
    );

    let mut stack = Stack::default();
    let outcome = drive(&args, &kafka, &topics, &group, &location, &mut stack, &interrupt).await;
    stack.shutdown().await;
    if mock.is_some() {
        // librdkafka clients finish closing on their own threads; one still connected when the
        // mock cluster goes away logs connection errors.
        tokio::time::sleep(CLIENTS_CLOSE_GRACE).await;
    }
    // The mock cluster goes last.
    drop(mock);
    outcome
}

/// Everything started, so that it can be stopped whatever happened.
#[derive(Debug, Default)]
struct Stack {
    members: Vec<Member>,
    operator: Option<cast::Operator>,
    dlq: Option<DlqFollower>,
    publisher: Option<(CancellationToken, JoinHandle<hookline_publisher::Result<()>>)>,
    consumers_stop: CancellationToken,
    consumers: Vec<Consumer>,
}

#[derive(Debug)]
struct Consumer {
    metrics: Metrics,
    task: Option<JoinHandle<hookline_consumer::Result<()>>>,
}

impl Stack {
    /// The first consumer that stopped on its own, as an error.
    async fn failed_consumer(&mut self) -> Option<Error> {
        for (n, consumer) in self.consumers.iter_mut().enumerate() {
            if consumer.task.as_ref().is_some_and(JoinHandle::is_finished)
                && let Some(task) = consumer.task.take()
            {
                let reason = match task.await {
                    Ok(Ok(())) => "it returned early".to_owned(),
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                return Some(Error::Component { component: format!("consumer {}", n + 1), reason });
            }
        }
        None
    }

    fn assigned(&self) -> Vec<i64> {
        self.consumers.iter().map(|c| c.metrics.assigned_partitions.get()).collect()
    }

    fn retries(&self) -> u64 {
        self.consumers.iter().map(|c| c.metrics.retries.get()).sum()
    }

    fn in_backoff(&self) -> i64 {
        self.consumers.iter().map(|c| c.metrics.keys_in_backoff.get()).sum()
    }

    /// Customers parked on the retry topic, over the consumers.
    fn parked(&self) -> i64 {
        self.consumers.iter().map(|c| c.metrics.parked_customers.get()).sum()
    }

    /// Stops the consumers (finishing deliveries in flight), the publisher, the receivers and the
    /// DLQ reader, in that order.
    async fn shutdown(self) {
        self.consumers_stop.cancel();
        for (n, consumer) in self.consumers.into_iter().enumerate() {
            if let Some(task) = consumer.task {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(consumer = n + 1, %error, "consumer stopped with an error"),
                    Err(error) => tracing::warn!(consumer = n + 1, %error, "consumer task failed"),
                }
            }
        }
        if let Some((stop, task)) = self.publisher {
            stop.cancel();
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "publisher stopped with an error"),
                Err(error) => tracing::warn!(%error, "publisher task failed"),
            }
        }
        cast::stop_receivers(self.members).await;
        if let Some(operator) = self.operator {
            operator.stop().await;
        }
        if let Some(dlq) = self.dlq {
            dlq.stop().await;
        }
    }
}

async fn drive(
    args: &Args,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    group: &str,
    location: &str,
    stack: &mut Stack,
    interrupt: &CancellationToken,
) -> Result<Summary> {
    let began = Instant::now();
    // Fresh credentials for this run; the loopback receivers need the SSRF guard's allow-list.
    let credentials = Credentials::generate();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.map_err(Error::PublisherListen)?;
    let publisher_address = listener.local_addr().map_err(Error::PublisherListen)?;
    let publisher_stop = CancellationToken::new();
    let mut publisher_config = hookline_publisher::Config::new(kafka.clone(), topics.clone());
    publisher_config.admin_tokens = vec![SecretString::new(&credentials.admin_token)];
    publisher_config.producer_tokens = vec![SecretString::new(&credentials.producer_token)];
    publisher_config.master_key = MasterKeyArgs::with_key(&credentials.master_key);
    publisher_config.network = loopback_only();
    let publisher = tokio::spawn(hookline_publisher::serve(publisher_config, listener, publisher_stop.clone()));
    stack.publisher = Some((publisher_stop, publisher));
    println!("  publisher: http://{publisher_address} (/publish and the onboarding API /v1)");

    // Customers before events: a delivery for a customer the consumer cannot find is
    // dead-lettered. Each is onboarded through the API, as seed 003 describes.
    let api = cast::Api {
        base: format!("http://{publisher_address}"),
        admin_token: credentials.admin_token.clone(),
        client: reqwest::Client::new(),
    };
    wait_for_publisher(&api, interrupt).await?;
    let onboarding = Instant::now();
    stack.members = cast::onboard(&api).await?;
    println!(
        "  customers (onboarded over HTTP in {:.1}s, each with its own verifying receiver):",
        onboarding.elapsed().as_secs_f64()
    );
    for member in &stack.members {
        let profile = &member.profile;
        let behaviour = profile.behaviour.to_string();
        let body = if profile.encrypted { "signed+JWE" } else { "signed" };
        println!("    {:<9} {:<30} {behaviour:<29} {body:<10} {}", profile.id, profile.events.join(", "), member.url());
    }
    stack.operator = Some(cast::onboard_operator(&api).await?);
    println!(
        "  operator endpoint `{}`: subscribed by the admin to hookline.endpoint.* (operational events)",
        cast::OPERATOR
    );
    stack.dlq = Some(DlqFollower::start(kafka, &topics.dlq).await?);

    let mut config = consumer_config(kafka, topics, group, args.brokers.is_none());
    config.master_key = MasterKeyArgs::with_key(&credentials.master_key);
    config.network = loopback_only();
    for _ in 0..args.consumers {
        let metrics =
            Metrics::new().map_err(|e| Error::Component { component: "metrics".into(), reason: e.to_string() })?;
        let task = tokio::spawn(hookline_consumer::run_with_metrics(
            config.clone(),
            stack.consumers_stop.clone(),
            metrics.clone(),
        ));
        stack.consumers.push(Consumer { metrics, task: Some(task) });
    }
    println!(
        "  consumers: {} in group `{group}`, up to {} attempts per delivery, backoff {:?} doubling up to {:?}",
        args.consumers, config.delivery.max_attempts, config.delivery.initial_backoff, config.delivery.max_backoff
    );

    wait_for_group(args, stack, interrupt).await?;

    let expected = workload::expected(args.events, cast::CAST);
    let total: u64 = expected.values().sum();
    let started = Instant::now();
    println!();
    println!(
        "Publishing {} events over HTTP, while the consumers deliver them (set-up took {:.1}s)...",
        args.events,
        began.elapsed().as_secs_f64()
    );
    // Published while the progress lines run, so that deliveries show from the first second.
    let sent = AtomicU32::new(0);
    let run = unique_suffix();
    let publishing =
        workload::publish(publisher_address, &credentials.producer_token, &run, args.events, cast::CAST, &sent);
    let mut publishing = std::pin::pin!(publishing);
    let mut published = false;
    let deadline = started + args.timeout;
    // When each customer's deliveries were all seen ended: in key mode the healthy customers are
    // done long before the always-failing one gives up, whatever partition they share with it.
    let mut done_after: BTreeMap<String, Duration> = BTreeMap::new();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let customers = loop {
        tokio::select! {
            outcome = &mut publishing, if !published => {
                let outcome = outcome?;
                published = true;
                println!(
                    "Published {} events in {:.1}s: {} deliveries for {} customers; {} requests sent twice (client \
                     retries with the same Idempotency-Key) were answered from the first and delivered nothing more.",
                    args.events,
                    started.elapsed().as_secs_f64(),
                    outcome.deliveries,
                    expected.values().filter(|n| **n > 0).count(),
                    outcome.replayed,
                );
                continue;
            }
            _ = ticker.tick() => {}
            () = interrupt.cancelled() => {}
        }
        let Some(dlq) = stack.dlq.as_ref() else {
            return Err(Error::Component { component: "the DLQ reader".into(), reason: "not started".into() });
        };
        let mut customers = tally::customers(&stack.members, &expected, dlq);
        for customer in &mut customers {
            if customer.outstanding() == 0 {
                customer.done_after = Some(*done_after.entry(customer.id.clone()).or_insert_with(|| started.elapsed()));
            }
        }
        let delivered: u64 = customers.iter().map(|c| c.delivered).sum();
        let dead_lettered: u64 = customers.iter().map(|c| c.dead_lettered).sum();
        // The consumers' own count: the receivers' can only be split into retries and final
        // failures once the DLQ write is seen.
        let retries = stack.retries();
        println!(
            "[{:>5.1}s] published {:>e$}/{}  accounted for {:>w$}/{total}  delivered {delivered:>w$}  \
             dead-lettered {dead_lettered:>3}  retries {retries:>4}  customers in backoff {}  parked {}",
            started.elapsed().as_secs_f64(),
            sent.load(Ordering::Relaxed),
            args.events,
            delivered + dead_lettered,
            stack.in_backoff(),
            stack.parked(),
            e = args.events.to_string().len(),
            w = total.to_string().len(),
        );
        if published && customers.iter().all(|c| c.outstanding() == 0) {
            break customers;
        }
        if interrupt.is_cancelled() {
            println!("Interrupted.");
            break customers;
        }
        if Instant::now() >= deadline {
            println!("Timed out after {:?}.", args.timeout);
            break customers;
        }
        if let Some(error) = stack.failed_consumer().await {
            return Err(error);
        }
    };
    let elapsed = started.elapsed();
    let operator_notices = operator_notices(stack).await;
    if args.serve && !interrupt.is_cancelled() {
        serve_portal(&api, &customers, interrupt).await?;
    }
    let consumers = stack
        .consumers
        .iter()
        .map(|c| ConsumerSummary {
            partitions: c.metrics.assigned_partitions.get(),
            delivered: c.metrics.deliveries.with_label_values(&["delivered"]).get(),
            dead_lettered: c.metrics.deliveries.with_label_values(&["dead_lettered"]).get(),
            rebalances: ["assign", "revoke"]
                .iter()
                .map(|kind| c.metrics.rebalances.with_label_values(&[kind]).get())
                .sum(),
            parked_records: c.metrics.parked_records.get(),
            parkings: c.metrics.parking_transitions.with_label_values(&["parked"]).get(),
        })
        .collect();
    Ok(Summary { kafka: location.to_owned(), events: args.events, customers, consumers, operator_notices, elapsed })
}

/// Longest wait for the deliveries API to list the dead letters of the customer whose portal
/// link the demo prints.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// Prints a portal link for the first customer with dead letters (else the first customer) and
/// waits for Ctrl-C, everything still running.
async fn serve_portal(api: &cast::Api, customers: &[CustomerSummary], interrupt: &CancellationToken) -> Result<()> {
    let chosen = customers.iter().find(|c| c.dead_lettered > 0).or(customers.first());
    let Some(customer) = chosen else { return Ok(()) };
    if customer.dead_lettered > 0 {
        // The deliveries API reads the delivery log, which trails the consumers: a link printed
        // before the log's records reach the index would open a portal without the failures.
        let listing = format!("/v1/customers/{}/deliveries?status=dead_lettered&limit=1", customer.id);
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            let page = api.call(reqwest::Method::GET, &listing, &api.admin_token, serde_json::Value::Null).await?;
            if page["deliveries"].as_array().is_some_and(|d| !d.is_empty()) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let path = format!("/v1/customers/{}/portal", customer.id);
    let link =
        api.call(reqwest::Method::POST, &path, &api.admin_token, serde_json::json!({ "ttl_seconds": 3600 })).await?;
    println!();
    println!("Customer portal of `{}` (the link works for an hour):", customer.id);
    println!("  {}", link["url"].as_str().unwrap_or_default());
    println!("Serving until Ctrl-C.");
    interrupt.cancelled().await;
    Ok(())
}

/// Longest wait for the operator's endpoint to receive a notice of each parking the consumers
/// counted: a notice is written after the parking it reports, and delivered like any event.
const NOTICES_WAIT: Duration = Duration::from_secs(10);

/// The operational events the operator's endpoint received, once it has one per parking counted
/// (or after [`NOTICES_WAIT`]).
async fn operator_notices(stack: &Stack) -> BTreeMap<String, u64> {
    let Some(operator) = &stack.operator else { return BTreeMap::new() };
    let parkings: u64 =
        stack.consumers.iter().map(|c| c.metrics.parking_transitions.with_label_values(&["parked"]).get()).sum();
    let parked_type = hookline_core::notices::EndpointEvent::Parked.event_type();
    let deadline = Instant::now() + NOTICES_WAIT;
    loop {
        let notices = operator.notices();
        if notices.get(parked_type).copied().unwrap_or_default() >= parkings || Instant::now() >= deadline {
            return notices;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This run's secrets: random, never printed, gone when the demo ends.
struct Credentials {
    master_key: MasterKey,
    admin_token: String,
    producer_token: String,
}

impl Credentials {
    fn generate() -> Self {
        // An API key's random part makes a fine random token.
        let token = || hookline_core::secrets::ApiKey::generate().0.expose().to_owned();
        Self { master_key: MasterKey::generate(), admin_token: token(), producer_token: token() }
    }
}

/// The SSRF guard's exemption for the demo's receivers, which listen on loopback.
fn loopback_only() -> NetworkArgs {
    NetworkArgs { allow_networks: vec![ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))] }
}

/// Waits until the publisher has loaded its directory and answers.
async fn wait_for_publisher(api: &cast::Api, interrupt: &CancellationToken) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = api.client.get(format!("{}/healthz", api.base)).send().await;
        if healthy.is_ok_and(|response| response.status().is_success()) {
            return Ok(());
        }
        if interrupt.is_cancelled() {
            return Err(Error::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(Error::Component { component: "the publisher".into(), reason: "not ready within 60s".into() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Group-member settings of the demo's consumers on the mock cluster.
///
/// When a member joins a group that has already formed, the mock cluster keeps the rebalance open
/// for the members' `session.timeout.ms` less one second, where Kafka closes it as soon as every
/// member has rejoined; no partition is consumed meanwhile. With librdkafka's default of 45 s, one
/// consumer starting a moment after the others (outside the mock's 3 s initial rebalance delay)
/// stalled the whole group for 44 s. 6 s, the lowest Kafka accepts by default
/// (`group.min.session.timeout.ms`), bounds that at 5 s; heartbeats every 500 ms make the members
/// rejoin well within it. The consumer tests use the same values.
pub const MOCK_GROUP_PROPERTIES: &[(&str, &str)] = &[("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")];

/// The delivery workers' settings: fast retries so that the demo's failures play out quickly, and
/// on the mock cluster ([`MOCK_GROUP_PROPERTIES`]) group settings under the `--kafka-property`
/// pass-through, which still wins.
pub fn consumer_config(kafka: &KafkaArgs, topics: &TopicArgs, group: &str, mock: bool) -> hookline_consumer::Config {
    let mut kafka = kafka.clone();
    if mock {
        let ours = MOCK_GROUP_PROPERTIES.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned()));
        kafka.kafka_properties.splice(0..0, ours);
    }
    let mut config = hookline_consumer::Config::new(kafka, topics.clone(), group);
    // Key mode: the always-failing customer delays nobody sharing its partition (the summary's
    // `done by` column shows it); the progress line's `customers in backoff` reads the consumers'
    // keys in backoff.
    config.ordering.ordering = hookline_consumer::config::Ordering::Key;
    config.delivery.max_attempts = 4;
    // The always-failing customer's deliveries wait out every backoff, one after another in its
    // lane: about 0.5 s each with these, so the demo ends a few seconds after publishing.
    config.delivery.initial_backoff = Duration::from_millis(50);
    config.delivery.max_backoff = Duration::from_millis(400);
    // Below the revocation's drain timeout (3 s with these group settings), so that a rebalance
    // never cuts an attempt short.
    config.delivery.request_timeout = Duration::from_secs(2);
    config.shutdown_grace = Duration::from_secs(5);
    // Key mode parks the always-failing customer after 3 attempts; a schedule of seconds instead
    // of hours lets its parked records reach the DLQ (`retries_exhausted`) while the demo runs.
    config.parking.retry_schedule = "250ms,500ms,1s".parse().expect("a valid schedule");
    config
}

/// Waits until the consumer group has shared out every partition, so that the workload is not
/// interrupted by members joining late.
async fn wait_for_group(args: &Args, stack: &mut Stack, interrupt: &CancellationToken) -> Result<()> {
    let started = Instant::now();
    let partitions = i64::from(args.partitions);
    let members = usize::try_from(args.consumers.min(args.partitions.unsigned_abs())).unwrap_or(usize::MAX);
    println!("Waiting for the consumer group to share out {partitions} partitions...");
    loop {
        let assigned = stack.assigned();
        if assigned.iter().sum::<i64>() == partitions && assigned.iter().filter(|n| **n > 0).count() == members {
            let shares: Vec<String> = assigned.iter().map(i64::to_string).collect();
            println!(
                "Consumer group ready in {:.1}s (partitions per consumer: {}).",
                started.elapsed().as_secs_f64(),
                shares.join(" + ")
            );
            return Ok(());
        }
        if let Some(error) = stack.failed_consumer().await {
            return Err(error);
        }
        if interrupt.is_cancelled() {
            return Err(Error::Interrupted);
        }
        if started.elapsed() > GROUP_READY_TIMEOUT {
            return Err(Error::GroupNotReady { partitions: args.partitions, waited: started.elapsed() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A suffix that makes topic and group names unique per run on a shared cluster.
fn unique_suffix() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    format!("{millis:x}-{}", std::process::id())
}

/// Per-customer expected deliveries, for callers that want them before running.
pub fn expected_deliveries(events: u32) -> BTreeMap<&'static str, u64> {
    workload::expected(events, cast::CAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_setting(config: &hookline_consumer::Config, key: &str) -> Option<String> {
        hookline_core::kafka::group_consumer_config(&config.kafka, "demo", &config.group).get(key).map(str::to_owned)
    }

    #[test]
    fn on_the_mock_cluster_members_get_short_sessions_that_the_pass_through_still_overrides() {
        let topics = TopicArgs::default();
        let mock = consumer_config(&KafkaArgs::new("m:1"), &topics, "g", true);
        assert_eq!(member_setting(&mock, "session.timeout.ms").as_deref(), Some("6000"));
        assert_eq!(member_setting(&mock, "heartbeat.interval.ms").as_deref(), Some("500"));

        let operator = KafkaArgs::new("m:1").with_property("session.timeout.ms", "10000");
        let overridden = consumer_config(&operator, &topics, "g", true);
        assert_eq!(member_setting(&overridden, "session.timeout.ms").as_deref(), Some("10000"));

        // A real Kafka ends a rebalance once every member has rejoined: its defaults stay.
        let real = consumer_config(&KafkaArgs::new("k:9092"), &topics, "g", false);
        assert_eq!(member_setting(&real, "session.timeout.ms"), None);
    }
}
