//! What operators see: the consumer's metrics change as deliveries succeed, retry and
//! dead-letter, and `/readyz` follows the member's state, against a real broker (tansu).

mod common;

use std::time::Duration;

use common::{Env, metric_value};
use hookline_consumer::Metrics;
use hookline_testkit::{Endpoint, wait_until};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

/// The value of the series `name{labels}` in a Prometheus text exposition, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_acks_retries_and_dead_letters_and_readyz_follows_the_member() {
    let env = Env::new(1).await;
    let flaky = Endpoint::fail_first(2, 503).await;
    let dead = Endpoint::always(500).await;
    env.customer("flaky", &flaky.url()).await;
    env.customer("dead", &dead.url()).await;

    // The endpoints are served before the consumer starts, so `/readyz` is seen refusing first.
    let metrics = Metrics::new().expect("metrics");
    let serving = CancellationToken::new();
    let address =
        hookline_consumer::metrics::serve("127.0.0.1:0".parse().expect("address"), metrics.clone(), serving.clone())
            .await
            .expect("serve metrics");
    let http = reqwest::Client::new();
    let readyz = |http: reqwest::Client| async move {
        let response = http.get(format!("http://{address}/readyz")).send().await.expect("readyz");
        (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("JSON"))
    };
    let (status, body) = readyz(http.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let live = http.get(format!("http://{address}/healthz")).send().await.expect("healthz");
    assert_eq!(live.status().as_u16(), 200);

    let mut config = env.config();
    config.kafka = config.kafka.with_property("statistics.interval.ms", "500");
    // Slow enough retries that the partition is seen blocked by the dead endpoint.
    config.delivery.initial_backoff = Duration::from_millis(700);
    config.delivery.max_backoff = Duration::from_millis(700);
    config.delivery.max_attempts = 4;
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(hookline_consumer::run_with_metrics(config, shutdown.clone(), metrics.clone()));
    env.publish("flaky", json!({"n": 1})).await;
    env.publish("dead", json!({"n": 2})).await;
    env.publish("flaky", json!({"n": 3})).await;

    wait_until(WAIT, "readiness", || metrics.assigned_partitions.get() == 1).await;
    let (status, body) = readyz(http.clone()).await;
    assert_eq!(status, 200, "{body}");

    // While the dead endpoint's record retries, the partition is blocked and its record ages.
    wait_until(WAIT, "the dead endpoint's retries", || dead.count() >= 2).await;
    let text = metrics.render();
    assert!(sample(&text, r#"hookline_partition_blocked_seconds{partition="0"}"#).is_some_and(|s| s > 0.0), "{text}");
    assert!(
        sample(&text, r#"hookline_oldest_undelivered_age_seconds{partition="0"}"#).is_some_and(|s| s > 0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "hookline_keys_in_backoff"), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"hookline_records_in_flight{partition="0"}"#), Some(1.0), "{text}");

    wait_until(WAIT, "every record finished", || {
        metric_value(&metrics, "hookline_deliveries_total", &[("outcome", "delivered")]) == 2
            && metric_value(&metrics, "hookline_deliveries_total", &[("outcome", "dead_lettered")]) == 1
    })
    .await;
    wait_until(WAIT, "the lag statistics", || {
        sample(&metrics.render(), r#"hookline_consumer_lag{partition="0"}"#) == Some(0.0)
    })
    .await;
    let text = metrics.render();
    assert_eq!(sample(&text, r#"hookline_delivery_attempts_total{outcome="ack",status_class="2xx"}"#), Some(2.0));
    // 2 failures for each of the flaky endpoint's events, 4 for the dead one's.
    assert_eq!(sample(&text, r#"hookline_delivery_attempts_total{outcome="failed",status_class="5xx"}"#), Some(8.0));
    assert_eq!(sample(&text, "hookline_retries_total"), Some(7.0), "2 + 2 + 3 retries: {text}");
    assert_eq!(sample(&text, r#"hookline_dlq_records_total{reason="max_attempts"}"#), Some(1.0));
    assert_eq!(sample(&text, "hookline_delivery_latency_seconds_count"), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"hookline_partition_blocked_seconds{partition="0"}"#), Some(0.0), "{text}");
    assert_eq!(sample(&text, r#"hookline_consumer_lag{partition="0"}"#), Some(0.0), "{text}");
    assert!(sample(&text, "hookline_ledger_records_total").is_some_and(|n| n >= 2.0), "{text}");

    shutdown.cancel();
    consumer.await.expect("consumer task").expect("consumer result");
    let (status, _) = readyz(http).await;
    assert_eq!(status, 503, "a stopped member is not ready");
    serving.cancel();
}
