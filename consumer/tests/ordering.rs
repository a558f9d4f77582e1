//! Key-ordered delivery (`--ordering key`) against a real broker (tansu): a customer's records
//! in offset order while customers of one partition are delivered at once, a SIGKILL with
//! records done beyond the commit watermark, a member joining while lanes are busy, and the
//! `--max-in-flight` back-pressure of a dead customer.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use common::{
    Env, Recording, Running, assert_customer_order, assert_each_acked_once, assert_handed_over, customer_seq,
    customers, free_port, key_mode, metric_value, publish, sample, scrape_until, usage_error,
};
use hookline_consumer::config::ParkAfter;
use hookline_testkit::kafka::{committed_offsets, read_topic};
use hookline_testkit::{Endpoint, Received, Respond, tenants, wait_until};
use rdkafka::message::Message;

const WAIT: Duration = Duration::from_secs(60);

/// A pseudo-random number decided by the request's `webhook-id` and attempt.
fn mix(request: &Received) -> u64 {
    let mut hasher = DefaultHasher::new();
    (request.webhook_id(), request.earlier_attempts).hash(&mut hasher);
    hasher.finish()
}

/// An endpoint that behaves like a real one: 0-50 ms to answer, and 503 to about a fifth of the
/// first and second attempts (so an event fails at most twice, within the tests' 4 attempts).
/// Decided by [`mix`], so the answer to any request received can be told afterwards.
fn jittery(request: &Received) -> Respond {
    let roll = mix(request);
    let delay = Duration::from_millis(roll % 51);
    let status = if request.earlier_attempts < 2 && (roll >> 32).is_multiple_of(5) { 503 } else { 200 };
    Respond::status(status).delayed(delay)
}

/// Two requests for customers of the same partition that were at the endpoint at once: the second
/// arrived before the first was answered (the first's delay started when it arrived), so the
/// partition had two attempts in flight.
fn overlapping_on_one_partition(
    received: &[Received],
    partition_of: &HashMap<String, i32>,
) -> Option<(String, String)> {
    for (index, first) in received.iter().enumerate() {
        let answered = first.at + jittery(first).delay;
        let (first_customer, _) = customer_seq(first);
        for second in received[index + 1..].iter().take_while(|r| r.at < answered) {
            let (second_customer, _) = customer_seq(second);
            if second_customer != first_customer && partition_of[&second_customer] == partition_of[&first_customer] {
                return Some((first_customer, second_customer));
            }
        }
    }
    None
}

/// Customers of two partitions, an endpoint with random latency and failures: each event is
/// ACKed exactly once, each customer's in order, and customers of one partition are delivered at
/// once (in partition mode the overlap assertion fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_is_delivered_in_order_while_keys_of_a_partition_run_at_once() {
    let env = Env::new(2).await;
    let endpoint = Recording::start(jittery).await;
    let names = customers(&env, "customer", 20, &endpoint.endpoint.url()).await;
    let published = publish(&env, &names, 0..10).await;

    let consumer = env.start(key_mode(&env));
    let mut most_attempts = 0;
    wait_until(WAIT, "every event ACKed", || {
        most_attempts = most_attempts.max(sample(&consumer, "hookline_attempts_in_flight", &[]));
        endpoint.acked_ids().len() == published.len()
    })
    .await;
    // Anything sent again would arrive within the next attempts; give it the time of a few.
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_each_acked_once(&[&endpoint], &published);
    assert_customer_order(&[&endpoint]);
    let received = endpoint.endpoint.received();
    assert!(received.iter().any(|r| jittery(r).status == 503), "some attempts failed and were retried");
    assert!(most_attempts > 1, "attempts ran at once (at most {most_attempts} seen)");
    let partition_of: HashMap<String, i32> = read_topic(&env.kafka, &env.topics.deliveries)
        .await
        .iter()
        .map(|m| (String::from_utf8(m.key().expect("key").to_vec()).expect("UTF-8 key"), m.partition()))
        .collect();
    assert_eq!(partition_of.values().collect::<BTreeSet<_>>().len(), 2, "customers on both partitions");
    let overlap = overlapping_on_one_partition(&received, &partition_of);
    assert!(overlap.is_some(), "no two customers of one partition were ever at the endpoint at once");
    assert_eq!(consumer.counter("hookline_deliveries_total", &[("outcome", "delivered")]), published.len() as u64);
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty(), "nothing dead-lettered");
    consumer.stop().await;
}

/// A key-mode process is SIGKILLed while a dead customer's first record holds the commit
/// watermark and the other customers' records past it are all delivered: the commit never
/// passed the dead record, and after a restart everything is delivered, nothing ACKed before the
/// kill is sent again (the ledger), and every customer's order is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_records_done_beyond_the_watermark_sends_none_of_them_again() {
    let env = Env::new(1).await;
    let (dead, healthy) = Recording::switchable().await;
    let flowing = Recording::start(|_| Respond::ok()).await;
    env.customer("dead", &dead.endpoint.url()).await;
    let others = customers(&env, "customer", 10, &flowing.endpoint.url()).await;
    let dead_name = ["dead".to_owned()];
    // The dead customer's first record comes after one round of the others and before four.
    let mut published = publish(&env, &others, 0..1).await;
    published.extend(publish(&env, &dead_name, 0..1).await);
    for seq in 1..5 {
        published.extend(publish(&env, &others, seq..seq + 1).await);
        published.extend(publish(&env, &dead_name, seq..seq + 1).await);
    }
    let first_dead = read_topic(&env.kafka, &env.topics.deliveries)
        .await
        .iter()
        .find(|m| m.key() == Some(b"dead".as_slice()))
        .expect("the dead customer's first record")
        .offset();

    let http = reqwest::Client::new();
    let key_process = |port: u16| {
        env.spawn_process(&[
            "--ordering",
            "key",
            "--max-attempts",
            "1000",
            // The dead customer retries in place: its records are what holds the watermark.
            "--park-after",
            "off",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
    };
    let port = free_port();
    let mut first = key_process(port);
    let others_count = others.len() * 5;
    wait_until(WAIT, "the other customers' events ACKed", || flowing.acked_ids().len() == others_count).await;
    // Their deliveries are in the ledger; the offsets stored (those of the first round) are
    // committed every second.
    scrape_until(&http, port, "hookline_ledger_records_total", |n| n >= others_count as f64).await;
    scrape_until(&http, port, "hookline_offset_commits_total{result=\"ok\"}", |n| n >= 1.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = committed_offsets(&env.kafka, &env.group, &env.topics.deliveries).await;
    assert!(
        committed.get(&0).is_some_and(|position| *position <= first_dead),
        "committed up to the dead customer's first record at {first_dead} at most: {committed:?}"
    );
    // The watermark is held by the dead customer, the others' records past it are done.
    scrape_until(&http, port, "hookline_records_done_beyond_watermark{partition=\"0\"}", |n| n >= 40.0).await;
    assert!(dead.endpoint.count() >= 1, "the dead customer's first record is being retried");
    assert!(dead.acks().is_empty());
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("wait");

    healthy.store(true, AtomicOrdering::SeqCst);
    let port = free_port();
    let mut second = key_process(port);
    wait_until(WAIT, "every event ACKed after the restart", || {
        flowing.acked_ids().len() + dead.acked_ids().len() == published.len()
    })
    .await;
    // Anything sent again would arrive within the next attempts; give it the time of a few.
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_each_acked_once(&[&flowing, &dead], &published);
    assert_eq!(flowing.endpoint.count(), others_count, "no other customer's event sent again");
    assert_customer_order(&[&flowing, &dead]);
    // The restart read the records past the watermark again and the ledger skipped them.
    scrape_until(&http, port, "hookline_duplicates_skipped_total", |n| n >= 40.0).await;
    second.start_kill().expect("SIGKILL");
    second.wait().await.expect("wait");
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
}

/// A second member joins while several lanes of the first have an attempt in flight to slow
/// endpoints: the first drains them before its partitions move, so the new owner sends nothing
/// the first had ACKed, and each customer's order is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_while_lanes_are_busy_sends_nothing_the_previous_owner_delivered() {
    let env = Env::new(2).await;
    // Each customer's first event takes 4 s to be answered, longer than tansu takes to hand a
    // partition to the member joining: without the drain the new owner would send those events
    // again while the old one still awaits their ACKs. The others take 300 ms.
    let endpoint = Recording::start(|request| {
        let slow = customer_seq(request).1 == 0;
        Respond::ok().delayed(Duration::from_millis(if slow { 4000 } else { 300 }))
    })
    .await;
    let names = customers(&env, "customer", 12, &endpoint.endpoint.url()).await;
    let published = publish(&env, &names, 0..6).await;
    let mut config = key_mode(&env);
    // Longer than an attempt, below the 6 s session timeout.
    config.revoke_drain_timeout = Some(Duration::from_secs(5));

    let first = env.start(config.clone());
    wait_until(WAIT, "several lanes of the first member mid-attempt", || {
        sample(&first, "hookline_attempts_in_flight", &[]) >= 6
    })
    .await;
    let second = env.start(config);
    wait_until(WAIT, "every event ACKed", || endpoint.acked_ids().len() == published.len()).await;
    // Anything sent again would arrive within the next attempts; give it the time of a few.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_handed_over(&first, &second);
    assert_each_acked_once(&[&endpoint], &published);
    assert_customer_order(&[&endpoint]);
    first.stop().await;
    second.stop().await;
}

/// One partition, `--max-in-flight 20`, a dead customer with 40 records: the customers published
/// among its first records are delivered, then its records fill the bound and the partition
/// takes nothing more (the customers published behind wait), while the member stays in its group
/// longer than `max.poll.interval.ms`; once the endpoint recovers everything is delivered in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_customer_fills_max_in_flight_and_the_partition_waits_in_its_group() {
    const BOUND: u64 = 20;
    let env = Env::new(1).await;
    let (dead, healthy) = Recording::switchable().await;
    let flowing = Recording::start(|_| Respond::ok()).await;
    env.customer("dead", &dead.endpoint.url()).await;
    let others = customers(&env, "customer", 5, &flowing.endpoint.url()).await;
    let dead_name = ["dead".to_owned()];
    let mut published = publish(&env, &dead_name, 0..10).await;
    let with_room = publish(&env, &others, 0..1).await;
    published.extend(with_room.iter().cloned());
    published.extend(publish(&env, &dead_name, 10..40).await);
    let behind = publish(&env, &others, 1..3).await;
    published.extend(behind.iter().cloned());

    let mut config = key_mode(&env);
    config.ordering.max_in_flight = BOUND;
    config.delivery.max_attempts = 1000;
    // Retrying in place, as without parking: the bound is what is tested.
    config.parking.park_after = Some(ParkAfter(None));
    // The partition stalls longer than this: the member must keep polling to stay in its group.
    // A slow ledger (its writes wait a second to be sent): records delivered stay in flight until
    // their ledger entry is acknowledged, and count against the bound meanwhile.
    config.kafka = config.kafka.with_property("max.poll.interval.ms", "6500").with_property("linger.ms", "1000");
    let consumer = env.start(config);
    let partition = [("partition", "0")];
    let mut most_in_flight = 0;
    let mut watch = |consumer: &Running| {
        most_in_flight = most_in_flight.max(sample(consumer, "hookline_records_in_flight", &partition));
        assert!(sample(consumer, "hookline_keys_in_backoff", &[]) <= 1, "only the dead customer retries");
    };
    wait_until(WAIT, "the customers published with room delivered and the bound reached", || {
        watch(&consumer);
        flowing.acked_ids().len() == with_room.len()
            && sample(&consumer, "hookline_records_in_flight", &partition) == BOUND
    })
    .await;
    let stalled = tokio::time::Instant::now();
    while stalled.elapsed() < Duration::from_secs(8) {
        watch(&consumer);
        assert_eq!(sample(&consumer, "hookline_assigned_partitions", &[]), 1, "the member keeps its partition");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(flowing.endpoint.count(), with_room.len(), "nothing published behind the bound was taken");
    assert!(dead.endpoint.count() > 3, "the dead customer's first record was retried meanwhile");
    assert!(dead.endpoint.received().iter().all(|r| customer_seq(r).1 == 0), "only its first record was attempted");
    assert_eq!(consumer.counter("hookline_rebalances_total", &[("kind", "revoke")]), 0, "never left the group");

    healthy.store(true, AtomicOrdering::SeqCst);
    wait_until(WAIT, "every event ACKed after the recovery", || {
        watch(&consumer);
        flowing.acked_ids().len() + dead.acked_ids().len() == published.len()
    })
    .await;
    assert!(most_in_flight <= BOUND, "{most_in_flight} records in flight, above --max-in-flight {BOUND}");
    assert_each_acked_once(&[&flowing, &dead], &published);
    assert_customer_order(&[&flowing, &dead]);
    assert_eq!(consumer.counter("hookline_rebalances_total", &[("kind", "revoke")]), 0, "never left the group");
    consumer.stop().await;
    assert!(read_topic(&env.kafka, &env.topics.dlq).await.is_empty());
}

/// Key mode needs the ledger: without it, a restart would send again every record delivered past
/// the commit watermark. A usage error, before any broker is contacted.
#[test]
fn key_ordering_without_the_ledger_is_refused_with_exit_code_2() {
    let stderr = usage_error(&["--ordering", "key", "--dedup-window", "off"]);
    assert!(stderr.contains("--ordering key") && stderr.contains("--dedup-window off"), "{stderr}");
}

/// A record whose attempt waits for `--max-concurrency` (held by another customer's slow
/// attempt) starts no attempt once the consumer is stopping: the wait for the permit ends the
/// record unfinished, as a backoff wait does, instead of sending it after the stop began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_waiting_for_the_concurrency_bound_is_not_started_after_the_stop() {
    let env = Env::new(1).await;
    let endpoint = Endpoint::start(|_| Respond::ok().delayed(Duration::from_secs(2))).await;
    let names = customers(&env, "permit", 2, &endpoint.url()).await;
    publish(&env, &names, 0..1).await;
    let mut config = key_mode(&env);
    config.ordering.max_concurrency = 1;
    let consumer = env.start(config);
    wait_until(WAIT, "the first attempt", || endpoint.count() == 1).await;
    // The other customer's lane is waiting for the one permit meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sample(&consumer, "hookline_attempts_in_flight", &[]), 1);
    let metrics = consumer.metrics.clone();
    // The stop lets the attempt in flight finish (2 s, within the 5 s grace); without the check,
    // the waiting record would then take the permit and be sent (2 s more, still within it).
    consumer.stop().await;
    assert_eq!(endpoint.count(), 1, "a record was sent after the stop began");
    assert_eq!(metric_value(&metrics, "hookline_deliveries_total", &[("outcome", "delivered")]), 1);
    assert_eq!(metric_value(&metrics, "hookline_abandoned_records_total", &[("cause", "shutdown")]), 1);
}

/// `--max-in-flight-bytes` bounds what a partition's lanes hold by the size of the records: with
/// room for about two records, a dead customer's records fill it and the customers published
/// behind them wait, although `--max-in-flight` would let hundreds in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_a_partition_back_like_the_record_bound() {
    let env = Env::new(1).await;
    let (dead, healthy) = Recording::switchable().await;
    let flowing = Recording::start(|_| Respond::ok()).await;
    env.customer("dead", &dead.endpoint.url()).await;
    let others = customers(&env, "customer", 3, &flowing.endpoint.url()).await;
    let dead_name = ["dead".to_owned()];
    let mut published = publish(&env, &dead_name, 0..3).await;
    let behind = publish(&env, &others, 0..2).await;
    published.extend(behind.iter().cloned());

    // What a record weighs: its value and key, as read back from the topic.
    let records = read_topic(&env.kafka, &env.topics.deliveries).await;
    let first = records.first().expect("a record");
    let size = first.payload().map_or(0, <[u8]>::len) + first.key().map_or(0, <[u8]>::len);
    let mut config = key_mode(&env);
    config.ordering.max_in_flight_bytes = u64::try_from(size * 2).expect("size");
    config.delivery.max_attempts = 1000;
    config.parking.park_after = Some(ParkAfter(None));
    let consumer = env.start(config);
    wait_until(WAIT, "the dead customer's first record retried", || dead.endpoint.count() >= 3).await;
    // Two of the dead customer's records fill the bound (the second is let in below it): the
    // third, and the others' records behind it, are not taken while the first retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sample(&consumer, "hookline_records_in_flight", &[("partition", "0")]), 2);
    assert_eq!(flowing.endpoint.count(), 0, "records behind the byte bound were taken");

    healthy.store(true, AtomicOrdering::SeqCst);
    wait_until(WAIT, "every event ACKed after the recovery", || {
        flowing.acked_ids().len() + dead.acked_ids().len() == published.len()
    })
    .await;
    assert_each_acked_once(&[&flowing, &dead], &published);
    assert_customer_order(&[&flowing, &dead]);
    consumer.stop().await;
}

/// A customer with a rate limit (here 2 deliveries a second) gets its attempts spaced by it, in
/// its own lane: the other customers of its partition, published behind it, are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_customer_is_paced_in_its_lane_and_the_others_flow() {
    let env = Env::new(1).await;
    let healthy = Recording::start(|_| Respond::ok()).await;
    let paced = Recording::start(|_| Respond::ok()).await;
    let others = customers(&env, "free", 3, &healthy.endpoint.url()).await;
    let (mut limited, _) = tenants::signed_customer("limited", &paced.endpoint.url(), &["*"]);
    limited.set_rate_limit(Some(2)).expect("a valid limit");
    env.put(&limited).await;
    let consumer = env.start(key_mode(&env));
    let mut all = vec!["limited".to_owned()];
    all.extend(others.iter().cloned());
    // The limited customer first in each round, so that everyone else's records are behind its.
    let published = publish(&env, &all, 0..5).await;

    wait_until(WAIT, "the other customers' 15 deliveries", || healthy.acks().len() >= 15).await;
    assert!(paced.acks().len() < 5, "the others were delivered while the limited customer was paced");
    wait_until(WAIT, "the limited customer's 5 deliveries", || paced.acks().len() >= 5).await;
    let arrivals: Vec<_> = paced.endpoint.received().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 5, "one attempt each");
    for pair in arrivals.windows(2) {
        // 500 ms apart at the consumer, less what the network time of one may differ from the next.
        assert!(pair[1] - pair[0] >= Duration::from_millis(400), "{:?}", pair[1] - pair[0]);
    }
    assert_customer_order(&[&paced, &healthy]);
    assert_each_acked_once(&[&paced, &healthy], &published);
    assert!(sample(&consumer, "hookline_throttled_attempts_total", &[]) >= 4);
    consumer.stop().await;
}

/// A `429` with `Retry-After` slows its own customer, whose next attempt waits for it, and never
/// the other customers of its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_slows_only_its_customer() {
    let env = Env::new(1).await;
    let healthy = Recording::start(|_| Respond::ok()).await;
    let busy =
        Recording::start(
            |r| if r.earlier_attempts == 0 { Respond::status(429).retry_after("2") } else { Respond::ok() },
        )
        .await;
    let others = customers(&env, "free", 3, &healthy.endpoint.url()).await;
    let limited = customers(&env, "busy", 1, &busy.endpoint.url()).await;
    let mut config = key_mode(&env);
    config.delivery.max_backoff = Duration::from_secs(5);
    let consumer = env.start(config);
    let mut all = limited.clone();
    all.extend(others.iter().cloned());
    let published = publish(&env, &all, 0..3).await;

    wait_until(WAIT, "the other customers' 9 deliveries", || healthy.acks().len() >= 9).await;
    assert!(busy.acks().len() < 3, "the others were delivered while the busy customer waited");
    wait_until(WAIT, "the busy customer's 3 deliveries", || busy.acks().len() >= 3).await;
    let received = busy.endpoint.received();
    for ack in busy.acks() {
        let first = received.iter().find(|r| r.webhook_id() == ack.webhook_id() && r.earlier_attempts == 0);
        let waited = ack.at - first.expect("a first attempt").at;
        assert!(waited >= Duration::from_millis(1900), "Retry-After: 2 honoured: {waited:?}");
    }
    assert_customer_order(&[&busy, &healthy]);
    assert_each_acked_once(&[&busy, &healthy], &published);
    consumer.stop().await;
}
