//! The demo end to end on the in-process mock cluster (no external broker needed).

use hookline_demo::Args;
use hookline_demo::cast::{Behaviour, CAST};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_delivery_is_accounted_for() {
    let summary = hookline_demo::run(Args::with_events(40)).await.expect("the demo runs");
    println!("{summary}");

    assert!(summary.is_complete(), "{summary}");
    let expected = hookline_demo::expected_deliveries(40);
    assert_eq!(summary.customers.len(), CAST.len());
    for customer in &summary.customers {
        assert_eq!(customer.published, expected[customer.id.as_str()], "{}", customer.id);
        assert!(customer.published > 0, "every customer gets something in 40 events: {}", customer.id);
        assert!(customer.is_accounted_for(), "{customer:?}");
        match customer.behaviour {
            Behaviour::Healthy => {
                assert_eq!(customer.delivered, customer.published, "{customer:?}");
                assert_eq!(customer.dead_lettered, 0, "{customer:?}");
            }
            Behaviour::Flaky { fail_first } => {
                assert_eq!(customer.delivered, customer.published, "{customer:?}");
                assert_eq!(customer.dead_lettered, 0, "{customer:?}");
                assert!(customer.retries >= u64::from(fail_first) * customer.published, "{customer:?}");
            }
            Behaviour::Failing => {
                assert_eq!(customer.delivered, 0, "{customer:?}");
                assert_eq!(customer.dead_lettered, customer.published, "{customer:?}");
                assert!(customer.retries > 0, "{customer:?}");
                // Parked after 3 attempts in place (key mode's default), then dead-lettered when
                // the demo's short retry schedule runs out.
                assert_eq!(customer.dlq_reasons.keys().collect::<Vec<_>>(), ["retries_exhausted"], "{customer:?}");
            }
        }
    }
    // Client retries with the same Idempotency-Key deliver nothing more (the workload checks each
    // repeat was a replay), and nothing is received twice.
    assert_eq!(summary.total(|c| c.duplicates), 0, "{summary}");
    assert!(
        summary.consumers.iter().map(|c| c.parkings).sum::<u64>() >= 1,
        "the failing customer was parked: {summary}"
    );
    // The operator's endpoint heard of it, as an operational event, and of nothing else.
    assert!(
        summary.operator_notices.get("hookline.endpoint.parked").is_some_and(|n| *n >= 1),
        "the operator's endpoint received the parking: {summary}"
    );
    assert!(summary.operator_notices.keys().all(|t| t.starts_with("hookline.endpoint.")), "{summary}");
    let consumers_delivered: u64 = summary.consumers.iter().map(|c| c.delivered).sum();
    assert!(consumers_delivered >= summary.total(|c| c.delivered));
}
