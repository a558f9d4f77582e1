//! The benchmarks themselves. Each function runs one scenario `--runs` times, every run on a
//! fresh broker, and returns its figures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline_core::customer::StoredPublicKey;
use hookline_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, OrderingMode, Scenario, Sealing};
use crate::load::{self, MakeRequest};
use crate::receiver::{Endpoints, FastReceiver, OddOne};
use crate::stack::{self, HooklineProcess, Stack};
use crate::stats::{Figure, Latencies};
use crate::{Error, Result};

const GROUP_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the group must stay as it is (every partition assigned and waiting at the gate)
/// before a drain's clock starts.
const GROUP_SETTLED: Duration = Duration::from_secs(1);
/// A head-of-line drain ends when the healthy customers' deliveries stop for this long.
const HEAD_OF_LINE_QUIET: Duration = Duration::from_secs(3);

/// Everything one scenario needs.
#[derive(Debug)]
pub struct Bench<'a> {
    pub config: &'a Config,
    pub bin_dir: &'a Path,
    /// The customers' public keys (JWE scenarios).
    pub keys: &'a [StoredPublicKey],
    pub shutdown: &'a CancellationToken,
}

/// The set-up of a drain: the workload, the endpoints, the consumers and when a run ends.
#[derive(Debug, Clone, Copy)]
struct DrainSpec {
    sealing: Sealing,
    consumers: u32,
    ordering: OrderingMode,
    /// Extra consumer arguments (`--park-after` for the head-of-line run with parking).
    extra_args: &'static [&'static str],
    /// Records prefilled.
    events: usize,
    endpoints: Endpoints,
    end: DrainEnd,
}

/// When a drain run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainEnd {
    /// When every healthy delivery arrived (the run fails if that takes too long).
    Complete,
    /// Then, or when the healthy deliveries stop arriving for [`HEAD_OF_LINE_QUIET`].
    Quiet,
    /// Then, or this long after the gate opened (the missing ones are left behind).
    Cap(Duration),
}

/// What one drain run measured.
#[derive(Debug)]
struct DrainRun {
    /// Distinct deliveries to healthy customers per second, from the gate opening to the last.
    per_second: f64,
    /// Healthy deliveries when the run ended, of those expected.
    delivered: usize,
    expected: usize,
    /// CPU seconds per 1000 deliveries: the consumer processes together, and the broker.
    consumer_cpu_per_1k: f64,
    broker_cpu_per_1k: f64,
}

impl Bench<'_> {
    fn check_stop(&self) -> Result<()> {
        if self.shutdown.is_cancelled() { Err(Error::Invalid("interrupted".into())) } else { Ok(()) }
    }

    fn progress(&self, what: &str, run: u32) {
        eprintln!("[{}] {what}: run {}/{}", now_hms(), run + 1, self.config.runs);
    }

    /// The ceiling: the receiver alone (as many sequential clients as partitions, then as many
    /// as the publisher benchmark uses), the broker's produce and raw consume rates.
    pub async fn ceiling(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        let (mut sequential, mut concurrent, mut produce, mut consume) = (vec![], vec![], vec![], vec![]);
        // Per end-to-end rate: the broker's own produce-to-consume p50 and p99 of each run.
        let mut broker_latency_runs: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); config.rates.len()];
        let body = Bytes::from(vec![b'x'; 1400]);
        for run in 0..config.runs {
            self.check_stop()?;
            self.progress("ceiling", run);
            let receiver = FastReceiver::start(false, Endpoints::default()).await?;
            let url = receiver.url(1);
            let body = body.clone();
            let make: Arc<MakeRequest> = Arc::new(move |client, n| {
                client
                    .post(&url)
                    .header("content-type", "application/jose")
                    .header("webhook-id", format!("evt_{n}"))
                    .header("webhook-timestamp", "1764410000")
                    .header("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=")
                    .body(body.clone())
            });
            let warmup = Config::warmup(config.load_duration);
            let clients = usize::try_from(config.partitions).unwrap_or(1);
            let one = load::closed_loop(load::client(), clients, warmup, config.load_duration, Arc::clone(&make)).await;
            let many = load::closed_loop(load::client(), config.clients, warmup, config.load_duration, make).await;
            for result in [&one, &many] {
                if result.failed > 0 || result.completed == 0 {
                    return Err(Error::Invalid(format!("receiver ceiling: {result:?}")));
                }
            }
            sequential.push(one.per_second());
            concurrent.push(many.per_second());

            let stack = Stack::start(config).await?;
            let started = Instant::now();
            stack.prefill(config.events, config.customers).await?;
            produce.push(config.events as f64 / started.elapsed().as_secs_f64());
            consume.push(raw_consume_rate(&stack, config.events).await?);
            for (rate, (p50, p99)) in config.rates.iter().zip(&mut broker_latency_runs) {
                let probe = broker_latency(&stack, *rate, config.e2e_duration).await?;
                p50.push(probe.quantile_ms(0.5));
                p99.push(probe.quantile_ms(0.99));
            }
        }
        let mut figures = vec![
            Figure::new(
                "ceiling.receiver.sequential",
                &format!("Receiver alone, {} sequential clients (one per partition)", config.partitions),
                "requests/s",
                sequential,
            ),
            Figure::new(
                "ceiling.receiver.concurrent",
                &format!("Receiver alone, {} concurrent clients", config.clients),
                "requests/s",
                concurrent,
            ),
            Figure::new(
                "ceiling.broker.produce",
                &format!("Broker: produce {} records (acks=all, idempotent, lz4)", config.events),
                "records/s",
                produce,
            ),
            Figure::new(
                "ceiling.broker.consume",
                &format!("Broker: raw consume of {} records, {} partitions", config.events, config.partitions),
                "records/s",
                consume,
            ),
        ];
        for (rate, (p50, p99)) in config.rates.iter().zip(broker_latency_runs) {
            let label = format!("Broker: produce-to-consume latency at {rate} records/s");
            figures.push(
                Figure::new(&format!("ceiling.broker.latency.{rate}.p50"), &format!("{label}: p50"), "ms", p50)
                    .with_note("the publisher's producer settings, Hookline's consumer settings: the floor under the end-to-end latency at this rate"),
            );
            figures.push(Figure::new(
                &format!("ceiling.broker.latency.{rate}.p99"),
                &format!("{label}: p99"),
                "ms",
                p99,
            ));
        }
        Ok(figures)
    }

    /// The publisher under `--clients` keep-alive clients, each event for one customer.
    pub async fn publisher(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        let (mut rates, mut p50, mut p99, mut cpu) = (vec![], vec![], vec![], vec![]);
        for run in 0..config.runs {
            self.check_stop()?;
            self.progress("publisher", run);
            let stack = Stack::start(config).await?;
            stack.put_customers(config.customers, |n| format!("http://127.0.0.1:9/c/{n}"), &[]).await?;
            let publisher = stack.spawn_publisher(self.bin_dir).await?;
            let make = publish_requests(&publisher, config.customers);
            let before = Cpu::read(&[&publisher], &stack);
            let warmup = Config::warmup(config.load_duration);
            let result = load::closed_loop(load::client(), config.clients, warmup, config.load_duration, make).await;
            let after = Cpu::read(&[&publisher], &stack);
            if result.failed > 0 || result.completed == 0 {
                return Err(Error::Invalid(format!(
                    "publisher: {} accepted, {} failed; first failure: {:?}",
                    result.completed, result.failed, result.first_failure
                )));
            }
            let total_requests = result.completed as f64 * (warmup + config.load_duration).as_secs_f64()
                / config.load_duration.as_secs_f64();
            rates.push(result.per_second());
            p50.push(result.latencies.quantile_ms(0.50));
            p99.push(result.latencies.quantile_ms(0.99));
            cpu.push(after.since(&before).hookline.as_secs_f64() * 1000.0 / total_requests);
            publisher.stop().await;
        }
        let clients = config.clients;
        Ok(vec![
            Figure::new(
                "publisher.events_per_second",
                &format!(
                    "Publisher: events accepted, {clients} keep-alive clients, acks=all{}",
                    threads_label(config.worker_threads)
                ),
                "events/s",
                rates,
            ),
            Figure::new("publisher.latency.p50", "Publisher: request latency p50", "ms", p50),
            Figure::new("publisher.latency.p99", "Publisher: request latency p99", "ms", p99),
            Figure::new("publisher.cpu_per_1k", "Publisher: CPU per 1000 events (publisher process)", "CPU s", cpu)
                .with_note("approximate: the warm-up's requests are counted in proportion to the window"),
        ])
    }

    /// Drains of a prefilled topic: both sealings, one consumer and `--consumers`, in every
    /// `--orderings` mode (side by side), and the first of them once more without the delivery
    /// log (what recording every attempt costs).
    pub async fn drains(&self) -> Result<Vec<Figure>> {
        let mut figures = vec![];
        let mut first = true;
        for &sealing in &self.config.sealing {
            for &consumers in &self.config.consumers {
                for &ordering in &self.config.orderings {
                    figures.extend(self.plain_drain(sealing, consumers, ordering, false).await?);
                    // Right after the drain it repeats, so that both meet the same broker and
                    // machine state (a drain run last ran on a warmer broker than the first).
                    if std::mem::take(&mut first) {
                        figures.extend(self.plain_drain(sealing, consumers, ordering, true).await?);
                    }
                }
            }
        }
        Ok(figures)
    }

    /// The figures of one drain of healthy customers, with the delivery log off if `log_off`.
    async fn plain_drain(
        &self,
        sealing: Sealing,
        consumers: u32,
        ordering: OrderingMode,
        log_off: bool,
    ) -> Result<Vec<Figure>> {
        let spec = DrainSpec {
            sealing,
            consumers,
            ordering,
            extra_args: if log_off { LOG_OFF } else { &[] },
            events: self.config.events,
            endpoints: Endpoints::instant(None),
            end: DrainEnd::Complete,
        };
        let runs = self.drain_runs(&spec).await?;
        let (id_suffix, label_suffix) = if log_off { (".log_off", ", delivery log off") } else { ("", "") };
        Ok(drain_figures(
            &ordered_id(&format!("drain.{}.{consumers}{id_suffix}", sealing.id()), ordering),
            &format!(
                "Consumer drain, {}, {consumers} consumer{}, {} ordering{}{label_suffix}",
                sealing.label(),
                if consumers == 1 { "" } else { "s" },
                ordering.id(),
                threads_label(self.config.worker_threads)
            ),
            &runs,
        ))
    }

    /// The drain with customer 0 answering 503 to everything: the throughput of the others, in
    /// every `--orderings` mode (key ordering parks failing customers by default), and in
    /// partition ordering once more with parking on (`--park-after 1`).
    pub async fn head_of_line(&self) -> Result<Vec<Figure>> {
        let mut figures = vec![];
        let mut cases: Vec<(OrderingMode, &'static [&'static str])> =
            self.config.orderings.iter().map(|&ordering| (ordering, &[] as &[&str])).collect();
        if self.config.orderings.contains(&OrderingMode::Partition) {
            cases.push((OrderingMode::Partition, PARTITION_PARKING));
        }
        for (ordering, extra_args) in cases {
            let parked = !extra_args.is_empty();
            let spec = DrainSpec {
                sealing: Sealing::Jwe,
                consumers: 1,
                ordering,
                extra_args,
                events: self.config.events,
                endpoints: Endpoints::instant(Some(0)),
                end: DrainEnd::Quiet,
            };
            let runs = self.drain_runs(&spec).await?;
            let id = format!("{}{}", ordered_id("head_of_line.jwe.1", ordering), if parked { ".parked" } else { "" });
            let mode = format!(
                "{} ordering{}",
                ordering.id(),
                match (ordering, parked) {
                    (OrderingMode::Partition, false) => ", no parking",
                    (OrderingMode::Partition, true) => ", parking at the first failure",
                    (OrderingMode::Key, _) => ", parking after 3 attempts (its default)",
                }
            );
            figures.extend(drain_figures(
                &id,
                &format!("Head-of-line: drain with 1 customer always 503, {mode} (the other customers' deliveries)"),
                &runs,
            ));
            let stuck = left_behind(&runs);
            figures.push(
                Figure::new(
                    &format!("{id}.stuck"),
                    &format!("Head-of-line: healthy deliveries left behind the failing customer, {mode}"),
                    "deliveries",
                    stuck,
                )
                .with_note(
                    "records queued behind the failing customer's (in its partition in partition ordering without \
                     parking; production retry schedule: 8 attempts from 1 s); the run ends when the other \
                     deliveries stop for 3 s",
                ),
            );
        }
        Ok(figures)
    }

    /// Endpoints that behave like real ones: every customer's answer takes `--endpoint-latency`;
    /// a drain of healthy customers, one with customer 0 dead (503) and one with it slow, each
    /// in every `--orderings` mode (side by side), each against its ideal. The runs with a dead
    /// or slow customer end when the others are all delivered or at `--endpoint-cap`.
    pub async fn endpoints(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        // Customer 0 healthy, dead, slow.
        let cases = [None, Some(OddOne::Dead), Some(OddOne::Slow(config.slow_endpoint_latency))];
        let mut figures = vec![];
        for odd in cases {
            for &ordering in &config.orderings {
                let spec = DrainSpec {
                    sealing: Sealing::Signing,
                    consumers: 1,
                    ordering,
                    extra_args: &[],
                    events: config.endpoint_events,
                    endpoints: Endpoints { latency: config.endpoint_latency, odd_one: odd.map(|odd| (0, odd)) },
                    end: if odd.is_some() { DrainEnd::Cap(config.endpoint_cap) } else { DrainEnd::Complete },
                };
                let runs = self.drain_runs(&spec).await?;
                figures.extend(endpoint_figures(config, &spec, &runs));
            }
        }
        Ok(figures)
    }

    async fn drain_runs(&self, spec: &DrainSpec) -> Result<Vec<DrainRun>> {
        let config = self.config;
        let (sealing, consumers) = (spec.sealing, spec.consumers);
        let odd = spec.endpoints.odd_customer();
        let mut runs = vec![];
        let name = format!(
            "drain, {}, {consumers} consumer(s), {} ordering{}{}",
            sealing.label(),
            spec.ordering.id(),
            match spec.endpoints.latency {
                Duration::ZERO => String::new(),
                latency => format!(", {} endpoints", humantime::format_duration(latency)),
            },
            match spec.endpoints.odd_one {
                None => String::new(),
                Some((_, OddOne::Dead)) => ", one customer failing".to_owned(),
                Some((_, OddOne::Slow(latency))) =>
                    format!(", one customer slow ({})", humantime::format_duration(latency)),
            }
        );
        for run in 0..config.runs {
            self.check_stop()?;
            self.progress(&name, run);
            let stack = Stack::start(config).await?;
            let receiver = FastReceiver::start(true, spec.endpoints).await?;
            let keys = if sealing == Sealing::Jwe { self.keys } else { &[] };
            stack.put_customers(config.customers, |n| receiver.url(n), keys).await?;
            let prefill_started = Instant::now();
            let per_partition = stack.prefill(spec.events, config.customers).await?;
            eprintln!(
                "    prefilled {} records in {:.1} s: {per_partition:?}",
                spec.events,
                prefill_started.elapsed().as_secs_f64()
            );
            let odd_events = odd.map_or(0, |n| events_of(spec.events, config.customers, n));
            let expected = spec.events - odd_events;

            let group = hookline_testkit::unique_name("bench-group");
            let mut processes = (0..consumers)
                .map(|n| {
                    let args: Vec<&str> =
                        spec.ordering.consumer_args().iter().chain(spec.extra_args).copied().collect();
                    stack.spawn_consumer(self.bin_dir, &group, &format!("consumer-{n}"), &args)
                })
                .collect::<Result<Vec<_>>>()?;
            let joining = Instant::now();
            wait_group_ready(&mut processes, &receiver, stack.partitions, per_partition.len(), self.shutdown).await?;
            let pids: Vec<u32> = processes.iter().filter_map(HooklineProcess::pid).collect();
            eprintln!("    group settled in {:.1} s; consumer pids {pids:?}", joining.elapsed().as_secs_f64());

            let before = Cpu::read(&processes.iter().collect::<Vec<_>>(), &stack);
            let opened = receiver.open();
            let ended = wait_drained(&mut processes, &receiver, expected, spec, self.shutdown).await?;
            let after = Cpu::read(&processes.iter().collect::<Vec<_>>(), &stack);
            if receiver.unsigned() > 0 {
                return Err(Error::Invalid(format!("{} deliveries were not signed", receiver.unsigned())));
            }
            let delivered = receiver.healthy_delivered().min(expected);
            if spec.end == DrainEnd::Complete && delivered != expected {
                return Err(Error::Invalid(format!("{delivered} of {expected} deliveries arrived")));
            }
            let last = last_healthy_delivery(&receiver, odd).unwrap_or(ended);
            let elapsed = last.saturating_duration_since(opened).as_secs_f64().max(1e-6);
            let cpu = after.since(&before);
            let thousands = (receiver.delivered().max(1)) as f64 / 1000.0;
            runs.push(DrainRun {
                per_second: delivered as f64 / elapsed,
                delivered,
                expected,
                consumer_cpu_per_1k: cpu.hookline.as_secs_f64() / thousands,
                broker_cpu_per_1k: cpu.broker.as_secs_f64() / thousands,
            });
            eprintln!(
                "    {delivered} deliveries in {elapsed:.2} s: {:.0}/s (CPU s: consumers {:.2}, broker {:.2}, receiver {:.2})",
                delivered as f64 / elapsed,
                cpu.hookline.as_secs_f64(),
                cpu.broker.as_secs_f64(),
                cpu.bench.as_secs_f64()
            );
        }
        Ok(runs)
    }

    /// Publish-to-delivery latency at each offered rate: publisher, one consumer, JWE customers.
    pub async fn end_to_end(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        let mut figures = vec![];
        for &rate in &config.rates {
            let (mut p50, mut p99, mut p999, mut achieved) = (vec![], vec![], vec![], vec![]);
            for run in 0..config.runs {
                self.check_stop()?;
                self.progress(&format!("end to end at {rate}/s"), run);
                let latencies = self.end_to_end_run(rate).await?;
                p50.push(latencies.0.quantile_ms(0.50));
                p99.push(latencies.0.quantile_ms(0.99));
                p999.push(latencies.0.quantile_ms(0.999));
                achieved.push(latencies.1);
            }
            let threads = match config.e2e_worker_threads {
                0 => "default threads".to_owned(),
                n => format!("{n} worker thread{}", if n == 1 { "" } else { "s" }),
            };
            let label = format!("End to end at {rate} events/s (publisher → 1 consumer, signing + JWE, {threads})");
            figures.push(Figure::new(&format!("end_to_end.{rate}.p50"), &format!("{label}: p50"), "ms", p50));
            figures.push(Figure::new(&format!("end_to_end.{rate}.p99"), &format!("{label}: p99"), "ms", p99));
            figures.push(Figure::new(&format!("end_to_end.{rate}.p999"), &format!("{label}: p99.9"), "ms", p999));
            figures.push(Figure::new(
                &format!("end_to_end.{rate}.delivered_per_second"),
                &format!("{label}: deliveries/s achieved"),
                "deliveries/s",
                achieved,
            ));
        }
        Ok(figures)
    }

    /// One end-to-end run: the latencies (from when each publish was due to its first delivery)
    /// of the events due after the warm-up, and the deliveries per second in the window.
    async fn end_to_end_run(&self, rate: u32) -> Result<(Latencies, f64)> {
        let config = self.config;
        let stack = Stack::start_with_threads(config, config.e2e_worker_threads).await?;
        let receiver = FastReceiver::start(false, Endpoints::default()).await?;
        stack.put_customers(config.customers, |n| receiver.url(n), self.keys).await?;
        let publisher = stack.spawn_publisher(self.bin_dir).await?;
        let group = hookline_testkit::unique_name("bench-group");
        let mut consumer = vec![stack.spawn_consumer(self.bin_dir, &group, "consumer-0", &[])?];
        wait_assigned(&mut consumer, stack.partitions, self.shutdown).await?;
        // The partition workers read their (empty) ledgers after the assignment.
        tokio::time::sleep(GROUP_SETTLED).await;

        let make = publish_requests(&publisher, config.customers);
        let warmup = Config::warmup(config.e2e_duration);
        let started = Instant::now();
        let sent = load::open_loop(load::client(), rate, warmup + config.e2e_duration, 4096, make).await;
        if sent.failed > 0 || sent.shed > 0 {
            return Err(Error::Invalid(format!(
                "end to end at {rate}/s: {} publishes failed, {} shed; first failure: {:?}",
                sent.failed, sent.shed, sent.first_failure
            )));
        }
        let mut due_by_event = HashMap::with_capacity(sent.answered.len());
        for answered in &sent.answered {
            let accepted: serde_json::Value = serde_json::from_slice(&answered.body)?;
            let event_id = accepted["event_id"].as_str().unwrap_or_default().to_owned();
            due_by_event.insert(event_id, answered.due);
        }
        let expected = due_by_event.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while receiver.delivered() < expected {
            consumer[0].check_alive()?;
            self.check_stop()?;
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("{expected} deliveries ({} arrived)", receiver.delivered()),
                    seconds: 60,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let window_start = started + warmup;
        let mut latencies = Latencies::default();
        let mut in_window = 0_usize;
        for arrival in receiver.arrivals().iter().filter(|a| a.first_delivery) {
            let Some(due) = due_by_event.get(&arrival.webhook_id) else {
                return Err(Error::Invalid(format!("a delivery of unknown event {}", arrival.webhook_id)));
            };
            if *due >= window_start {
                latencies.record(arrival.at.saturating_duration_since(*due));
            }
            if arrival.at >= window_start && arrival.at < window_start + config.e2e_duration {
                in_window += 1;
            }
        }
        eprintln!(
            "    {expected} events: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            latencies.quantile_ms(0.5),
            latencies.quantile_ms(0.99),
            latencies.quantile_ms(0.999)
        );
        publisher.stop().await;
        Ok((latencies, in_window as f64 / config.e2e_duration.as_secs_f64()))
    }

    /// A stack and a publisher for the scenarios that write to a state topic and read the
    /// write back. The bench's `fetch.wait.max.ms` for tansu is not applied to them: the
    /// read-back's wait for the follower's fetch is what they measure, with the publisher's own
    /// default.
    async fn state_stack(&self) -> Result<(Stack, HooklineProcess)> {
        let mut stack = Stack::start(self.config).await?;
        stack.without_property("fetch.wait.max.ms");
        stack.put_customers(self.config.customers, |n| format!("http://127.0.0.1:9/c/{n}"), &[]).await?;
        let publisher = stack.spawn_publisher(self.bin_dir).await?;
        Ok((stack, publisher))
    }

    /// Publishes with an `Idempotency-Key` each, under `--clients` keep-alive clients.
    pub async fn keyed(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        let (mut rates, mut p50, mut p99) = (vec![], vec![], vec![]);
        for run in 0..config.runs {
            self.check_stop()?;
            self.progress("keyed publishes", run);
            let (_stack, publisher) = self.state_stack().await?;
            let plain = publish_requests(&publisher, config.customers);
            let make: Arc<MakeRequest> =
                Arc::new(move |client, n| (*plain)(client, n).header("idempotency-key", format!("bench-{run}-{n}")));
            let warmup = Config::warmup(config.load_duration);
            let result = load::closed_loop(load::client(), config.clients, warmup, config.load_duration, make).await;
            check_closed_loop("keyed publishes", &result)?;
            rates.push(result.per_second());
            p50.push(result.latencies.quantile_ms(0.50));
            p99.push(result.latencies.quantile_ms(0.99));
            publisher.stop().await;
        }
        let label = format!("Keyed publish (Idempotency-Key), {} keep-alive clients", config.clients);
        let note = "each claims its key on the idempotency topic and reads the claim back; the publisher's own \
                    fetch.wait.max.ms (not the bench's tansu setting)";
        Ok(vec![
            Figure::new("keyed.events_per_second", &format!("{label}: events accepted"), "events/s", rates)
                .with_note(note),
            Figure::new("keyed.latency.p50", &format!("{label}: request latency p50"), "ms", p50),
            Figure::new("keyed.latency.p99", &format!("{label}: request latency p99"), "ms", p99),
        ])
    }

    /// Subscription changes through the customer API, one client, one change after another.
    pub async fn customer_api(&self) -> Result<Vec<Figure>> {
        let config = self.config;
        let (mut p50, mut p99) = (vec![], vec![]);
        for run in 0..config.runs {
            self.check_stop()?;
            self.progress("customer API writes", run);
            let (_stack, publisher) = self.state_stack().await?;
            let api_key = create_api_customer(&publisher, "bench-api").await?;
            let url = format!("http://{}/v1/customer/subscriptions", publisher.address);
            let make: Arc<MakeRequest> = Arc::new(move |client, n| {
                client.put(&url).bearer_auth(&api_key).json(&serde_json::json!({ "events": [format!("order.v{n}")] }))
            });
            let warmup = Config::warmup(config.load_duration);
            let result = load::closed_loop(load::client(), 1, warmup, config.load_duration, make).await;
            check_closed_loop("customer API writes", &result)?;
            p50.push(result.latencies.quantile_ms(0.50));
            p99.push(result.latencies.quantile_ms(0.99));
            publisher.stop().await;
        }
        let label = "Customer API write (PUT /v1/customer/subscriptions), one after another";
        let note = "each is caught up, written and read back through the customer directory; the publisher's own \
                    fetch.wait.max.ms (not the bench's tansu setting)";
        Ok(vec![
            Figure::new("customer_api.write.p50", &format!("{label}: p50"), "ms", p50).with_note(note),
            Figure::new("customer_api.write.p99", &format!("{label}: p99"), "ms", p99),
        ])
    }

    /// Runs `scenario`.
    pub async fn run(&self, scenario: Scenario) -> Result<Vec<Figure>> {
        match scenario {
            Scenario::Ceiling => self.ceiling().await,
            Scenario::Publisher => self.publisher().await,
            Scenario::Drain => self.drains().await,
            Scenario::HeadOfLine => self.head_of_line().await,
            Scenario::Endpoints => self.endpoints().await,
            Scenario::EndToEnd => self.end_to_end().await,
            Scenario::Keyed => self.keyed().await,
            Scenario::CustomerApi => self.customer_api().await,
            Scenario::Ledger => crate::ledger::run(self.config, self.shutdown).await,
        }
    }
}

/// `POST /publish` number `n`: an event of a typical size for customer `n % customers`.
fn publish_requests(publisher: &HooklineProcess, customers: u32) -> Arc<MakeRequest> {
    let url = format!("http://{}/publish", publisher.address);
    let customers = u64::from(customers);
    Arc::new(move |client, n| {
        let body = format!(
            r#"{{"type":"{}","payload":{},"target":"{}"}}"#,
            stack::EVENT_TYPE,
            stack::payload(usize::try_from(n).unwrap_or(0)),
            stack::customer_id(u32::try_from(n % customers).unwrap_or(0))
        );
        client.post(&url).bearer_auth(stack::PRODUCER_TOKEN).header("content-type", "application/json").body(body)
    })
}

/// Fails unless a closed-loop run completed requests and none failed.
fn check_closed_loop(what: &str, result: &load::ClosedLoop) -> Result<()> {
    if result.failed > 0 || result.completed == 0 {
        return Err(Error::Invalid(format!(
            "{what}: {} answered, {} failed; first failure: {:?}",
            result.completed, result.failed, result.first_failure
        )));
    }
    Ok(())
}

/// Creates customer `id` through the publisher's onboarding API; its API key.
async fn create_api_customer(publisher: &HooklineProcess, id: &str) -> Result<String> {
    let response = load::client()
        .post(format!("http://{}/v1/customers", publisher.address))
        .bearer_auth(stack::ADMIN_TOKEN)
        .json(&serde_json::json!({ "id": id }))
        .send()
        .await
        .map_err(|e| Error::Invalid(format!("creating a customer: {e}")))?;
    let created: serde_json::Value =
        response.json().await.map_err(|e| Error::Invalid(format!("creating a customer: {e}")))?;
    created["api_key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Invalid(format!("creating a customer: no api_key in {created}")))
}

/// Each process's `hookline_assigned_partitions`; fails if one has exited.
async fn assigned_partitions(processes: &mut [HooklineProcess]) -> Result<Vec<f64>> {
    let mut assigned = Vec::with_capacity(processes.len());
    for process in processes.iter_mut() {
        process.check_alive()?;
        assigned.push(process.metric("hookline_assigned_partitions").await);
    }
    Ok(assigned)
}

/// `, N worker thread(s)` for a label, or nothing for the processes' default.
fn threads_label(threads: usize) -> String {
    match threads {
        0 => String::new(),
        1 => ", 1 worker thread".to_owned(),
        n => format!(", {n} worker threads"),
    }
}

/// The figures of a set of drain runs under `id`.
fn drain_figures(id: &str, label: &str, runs: &[DrainRun]) -> Vec<Figure> {
    vec![
        Figure::new(id, label, "deliveries/s", runs.iter().map(|r| r.per_second).collect()),
        Figure::new(
            &format!("{id}.consumer_cpu_per_1k"),
            &format!("{label}: consumer CPU per 1000 deliveries"),
            "CPU s",
            runs.iter().map(|r| r.consumer_cpu_per_1k).collect(),
        ),
        Figure::new(
            &format!("{id}.broker_cpu_per_1k"),
            &format!("{label}: broker CPU per 1000 deliveries"),
            "CPU s",
            runs.iter().map(|r| r.broker_cpu_per_1k).collect(),
        ),
    ]
}

/// A figure id for `ordering`: partition ordering keeps the id it always had, key ordering
/// adds `.key` (which also relates its rate to the receiver under concurrent clients).
/// The consumer arguments of the drain without the delivery log.
const LOG_OFF: &[&str] = &["--delivery-log", "off"];

/// The consumer arguments of the head-of-line run in partition ordering with parking.
/// Parking at the first failure: in partition ordering every attempt in place holds the whole
/// partition back (three would stop it for 3 to 6 s with the production backoff).
const PARTITION_PARKING: &[&str] = &["--park-after", "1"];

fn ordered_id(id: &str, ordering: OrderingMode) -> String {
    match ordering {
        OrderingMode::Partition => id.to_owned(),
        OrderingMode::Key => format!("{id}.key"),
    }
}

/// How many of `events` (spread round-robin over `customers`) are customer `n`'s.
fn events_of(events: usize, customers: u32, n: u32) -> usize {
    let (customers, n) = (customers as usize, n as usize);
    events / customers + usize::from(n < events % customers)
}

/// Waits until the consumers share every partition, each worker holds its first delivery at the
/// receiver's gate (`busy_partitions` of them: the partitions with records), and this stays so
/// for [`GROUP_SETTLED`].
async fn wait_group_ready(
    processes: &mut [HooklineProcess],
    receiver: &FastReceiver,
    partitions: i32,
    busy_partitions: usize,
    shutdown: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + GROUP_READY_TIMEOUT;
    let mut settled_since: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return Err(Error::Invalid("interrupted".into()));
        }
        let assigned = assigned_partitions(processes).await?;
        let every_member_works = assigned.iter().all(|a| *a >= 1.0) || processes.len() > partitions as usize;
        let ready = assigned.iter().sum::<f64>() == f64::from(partitions)
            && every_member_works
            && receiver.held() >= busy_partitions;
        match (ready, settled_since) {
            (true, Some(since)) if since.elapsed() >= GROUP_SETTLED => return Ok(()),
            (true, None) => settled_since = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => settled_since = None,
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!(
                    "the group to settle (assigned {assigned:?} of {partitions}, {} of {busy_partitions} held)",
                    receiver.held()
                ),
                seconds: GROUP_READY_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the consumer processes have every partition.
async fn wait_assigned(processes: &mut [HooklineProcess], partitions: i32, shutdown: &CancellationToken) -> Result<()> {
    let deadline = Instant::now() + GROUP_READY_TIMEOUT;
    loop {
        if shutdown.is_cancelled() {
            return Err(Error::Invalid("interrupted".into()));
        }
        if assigned_partitions(processes).await?.iter().sum::<f64>() == f64::from(partitions) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "the partition assignment".into(),
                seconds: GROUP_READY_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `expected` healthy deliveries arrived, or until the run's [`DrainEnd`]. Returns
/// when it noticed.
async fn wait_drained(
    processes: &mut [HooklineProcess],
    receiver: &FastReceiver,
    expected: usize,
    spec: &DrainSpec,
    shutdown: &CancellationToken,
) -> Result<Instant> {
    // Room for a drain one delivery at a time (at 2 ms each on loopback, plus the endpoints').
    let one_by_one = (Duration::from_millis(2) + spec.endpoints.latency).saturating_mul(expected as u32);
    let timeout = Duration::from_secs(120).max(one_by_one);
    let started = Instant::now();
    let deadline = started + timeout;
    let (mut last_count, mut last_change) = (0, Instant::now());
    loop {
        let delivered = receiver.healthy_delivered();
        if delivered >= expected {
            return Ok(Instant::now());
        }
        if delivered != last_count {
            (last_count, last_change) = (delivered, Instant::now());
        } else if spec.end == DrainEnd::Quiet && delivered > 0 && last_change.elapsed() >= HEAD_OF_LINE_QUIET {
            return Ok(last_change);
        }
        if let DrainEnd::Cap(cap) = spec.end
            && started.elapsed() >= cap
        {
            return Ok(Instant::now());
        }
        if shutdown.is_cancelled() {
            return Err(Error::Invalid("interrupted".into()));
        }
        for process in processes.iter_mut() {
            process.check_alive()?;
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("{expected} deliveries ({delivered} arrived)"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// When the last first delivery to a customer other than `odd` (dead or slow) arrived.
fn last_healthy_delivery(receiver: &FastReceiver, odd: Option<u32>) -> Option<Instant> {
    receiver.arrivals().iter().filter(|a| a.first_delivery && Some(a.customer) != odd).map(|a| a.at).max()
}

/// Per run, the healthy deliveries still missing when it ended.
fn left_behind(runs: &[DrainRun]) -> Vec<f64> {
    runs.iter().map(|r| (r.expected - r.delivered) as f64).collect()
}

/// The figures of a set of endpoint-scenario runs: deliveries/s (of the customers other than
/// the odd one) as a share of the mode's ideal, and for a dead or slow customer, how many of the
/// others' deliveries were left behind.
fn endpoint_figures(config: &Config, spec: &DrainSpec, runs: &[DrainRun]) -> Vec<Figure> {
    let customers = config.customers;
    let latency = humantime::format_duration(spec.endpoints.latency);
    let mode = spec.ordering.id();
    let concurrency = spec.ordering.concurrency(config.partitions, spec.consumers);
    let (case_id, healthy, what) = match spec.endpoints.odd_one {
        None => ("drain", customers, format!("{customers} customers")),
        Some((_, OddOne::Dead)) => {
            ("dead", customers - 1, format!("1 of {customers} customers dead (503), the others' deliveries"))
        }
        Some((_, OddOne::Slow(slow))) => (
            "slow",
            customers - 1,
            format!("1 of {customers} customers slow ({}), the others' deliveries", humantime::format_duration(slow)),
        ),
    };
    let ideal = config::ideal_rate(healthy, concurrency, spec.endpoints.latency);
    let id = format!("endpoints.{case_id}.{mode}");
    let label = format!(
        "Drain to {latency} endpoints, {what}, {mode} ordering, {} consumer{}",
        spec.consumers,
        if spec.consumers == 1 { "" } else { "s" },
    );
    let rate_label = format!("{label} (ideal {:.0}/s)", ideal.unwrap_or_default());
    let rates = runs.iter().map(|r| r.per_second).collect();
    let rate = Figure::new(&id, &rate_label, "deliveries/s", rates).with_ideal(ideal);
    match spec.endpoints.odd_one {
        None => vec![rate.with_note(format!(
            "{} records prefilled, signing only; ideal: min(customers, {concurrency} deliveries in flight) ÷ {latency}",
            spec.events
        ))],
        Some(_) => vec![
            rate,
            Figure::new(
                &format!("{id}.left_behind"),
                &format!("{label}: left behind"),
                "deliveries",
                left_behind(runs),
            )
            .with_note(format!(
                "the others' deliveries missing when they were all done or at the {} cap",
                humantime::format_duration(config.endpoint_cap)
            )),
        ],
    }
}

/// The broker's raw consume rate: one reader assigned every partition from the start, counting
/// `records` records without looking at them.
async fn raw_consume_rate(stack: &Stack, records: usize) -> Result<f64> {
    let kafka = stack.kafka.clone();
    let (topic, partitions) = (stack.topics.deliveries.clone(), stack.partitions);
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let reader: BaseConsumer = kafka::reader_config(&kafka, "hookline-bench-raw").create()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
        }
        reader.assign(&assignment)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        // The clock starts at the first record, leaving connection and metadata set-up out.
        let mut first: Option<Instant> = None;
        let mut seen = 0;
        while seen < records {
            if Instant::now() > deadline {
                return Err(Error::Timeout { what: format!("reading {records} records ({seen} read)"), seconds: 300 });
            }
            if let Some(message) = reader.poll(Duration::from_millis(100)) {
                message?;
                first.get_or_insert_with(Instant::now);
                seen += 1;
            }
        }
        let elapsed = first.map_or(Duration::ZERO, |first| first.elapsed()).as_secs_f64().max(1e-6);
        Ok((records - 1) as f64 / elapsed)
    })
    .await
    .map_err(|e| Error::Invalid(format!("reader task: {e}")))?
}

/// Produce-to-consume latency through the broker alone: records produced at `rate` per second
/// (to one partition) for a second of warm-up then `duration`, with the publisher's producer
/// settings, read by a consumer with Hookline's consumer settings, each timed from its send to
/// its arrival.
async fn broker_latency(stack: &Stack, rate: u32, duration: Duration) -> Result<Latencies> {
    let topic = stack.topics.dlq.clone();
    let reader_kafka = stack.kafka.clone();
    let reader_topic = topic.clone();
    let stop = CancellationToken::new();
    let reader_stop = stop.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // Arrivals by sequence number, recorded on a thread of its own (librdkafka's poll blocks).
    let reader = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, Instant)>> {
        let reader: BaseConsumer = kafka::group_consumer_config(&reader_kafka, "hookline-bench-probe", "bench-probe")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&reader_topic, 0, Offset::End)?;
        reader.assign(&assignment)?;
        let _ = ready_tx.send(());
        let mut arrivals = vec![];
        while !reader_stop.is_cancelled() {
            if let Some(message) = reader.poll(Duration::from_millis(50)) {
                let at = Instant::now();
                let message = message?;
                let sequence = rdkafka::message::Message::payload(&message)
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|p| p.parse::<u64>().ok());
                if let Some(sequence) = sequence {
                    arrivals.push((sequence, at));
                }
            }
        }
        Ok(arrivals)
    });
    let _ = ready_rx.await;
    // The reader's assignment at the end of the partition takes effect after its first fetch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The publisher's producer settings (its shorter linger), since that producer is the one on
    // the path from a publish to a delivery.
    let mut producer_config = kafka::producer_config(&stack.kafka, "hookline-bench-probe");
    if !stack.kafka.kafka_properties.iter().any(|(key, _)| key == "linger.ms") {
        producer_config.set("linger.ms", "1");
    }
    let producer: rdkafka::producer::FutureProducer = producer_config.create()?;
    // The first second is a warm-up (connections, the reader's first fetches), not counted.
    let warmup = u64::from(rate);
    let count = warmup + (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let mut sent = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    // Sent in 1 ms steps (the timer's resolution), as many as are due, like the open-loop load.
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let started = Instant::now();
    for sequence in 0..count {
        let due = started + Duration::from_secs_f64(sequence as f64 / f64::from(rate));
        while Instant::now() < due {
            ticker.tick().await;
        }
        let payload = sequence.to_string();
        sent.push(Instant::now());
        let record = rdkafka::producer::FutureRecord::<str, str>::to(&topic).partition(0).payload(&payload);
        // Not awaited: the probe times the record's way to the reader, not its acknowledgement.
        let _ = producer.send_result(record);
    }
    tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)))
        .await
        .map_err(|e| Error::Invalid(format!("flush task: {e}")))??;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let arrivals = reader.await.map_err(|e| Error::Invalid(format!("probe reader: {e}")))??;
    let mut latencies = Latencies::default();
    for (sequence, at) in arrivals.into_iter().filter(|(sequence, _)| *sequence >= warmup) {
        if let Some(sent_at) = usize::try_from(sequence).ok().and_then(|n| sent.get(n)) {
            latencies.record(at.saturating_duration_since(*sent_at));
        }
    }
    let measured = count - warmup;
    if latencies.count() < measured {
        return Err(Error::Invalid(format!("broker probe: {} of {measured} records read", latencies.count())));
    }
    Ok(latencies)
}

/// CPU time used so far by Hookline's processes (together) and by the broker.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    hookline: Duration,
    broker: Duration,
    /// This process: the receiver and the load generators.
    bench: Duration,
}

impl Cpu {
    fn read(processes: &[&HooklineProcess], stack: &Stack) -> Self {
        let of = |pid: Option<u32>| pid.and_then(stack::cpu_time).unwrap_or_default();
        Self {
            hookline: processes.iter().map(|p| of(p.pid())).sum(),
            broker: of(stack.broker.pid()),
            bench: of(Some(std::process::id())),
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            hookline: self.hookline.saturating_sub(earlier.hookline),
            broker: self.broker.saturating_sub(earlier.broker),
            bench: self.bench.saturating_sub(earlier.bench),
        }
    }
}

/// `HH:MM:SS` (UTC) for progress lines.
fn now_hms() -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    rfc3339.get(11..19).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_a_customer_under_round_robin() {
        assert_eq!(events_of(100_000, 100, 0), 1000);
        assert_eq!(events_of(10, 4, 0), 3);
        assert_eq!(events_of(10, 4, 1), 3);
        assert_eq!(events_of(10, 4, 2), 2);
        assert_eq!((0..4).map(|n| events_of(10, 4, n)).sum::<usize>(), 10);
    }
}
