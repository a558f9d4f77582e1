//! The sample workload and publishing it through the publisher's HTTP API.
//!
//! Events follow a fixed cycle of twenty: eight `order.created`, five `order.shipped`, three
//! `invoice.paid`, two `refund.issued`, one `account.closed` (all fanned out), and one
//! `plan.changed` targeted at a single customer, in turn. The failing customers subscribe only to
//! the rare types, so that their slow retries do not make the demo long.
//!
//! What each customer should receive is computed here from the same subscriptions the customers
//! were registered with, and checked against the `deliveries` count of every `202` answer.
//!
//! Every request carries an `Idempotency-Key`, and one in [`RETRY_EVERY`] is sent twice, as a
//! client does when an answer is lost: the repeat must be answered from the first request (same
//! event id, `Idempotent-Replayed: true`) and deliver nothing more, which the receivers' duplicate
//! count then shows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::cast::Profile;
use crate::{Error, Result};

/// Publish requests in flight at once.
const CONCURRENCY: usize = 8;
/// One request in this many is sent again, as a client retry.
pub const RETRY_EVERY: u32 = 10;

/// One event of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub index: u32,
    pub event_type: &'static str,
    /// Deliver to this customer only.
    pub target: Option<&'static str>,
}

/// The `index`-th event (see the module documentation).
pub fn event(index: u32, cast: &[Profile]) -> Event {
    let (event_type, target) = match index % 20 {
        0..=7 => ("order.created", None),
        8..=12 => ("order.shipped", None),
        13..=15 => ("invoice.paid", None),
        16..=17 => ("refund.issued", None),
        18 => ("account.closed", None),
        _ => {
            let turn = usize::try_from(index / 20).unwrap_or_default();
            ("plan.changed", cast.get(turn % cast.len().max(1)).map(|p| p.id))
        }
    };
    Event { index, event_type, target }
}

/// The customers an event goes to.
pub fn recipients(event: &Event, cast: &[Profile]) -> Vec<&'static str> {
    match event.target {
        Some(target) => vec![target],
        None => cast.iter().filter(|p| p.subscribes_to(event.event_type)).map(|p| p.id).collect(),
    }
}

/// Deliveries expected per customer for the first `events` events (every customer listed).
pub fn expected(events: u32, cast: &[Profile]) -> BTreeMap<&'static str, u64> {
    let mut expected: BTreeMap<&'static str, u64> = cast.iter().map(|p| (p.id, 0)).collect();
    for index in 0..events {
        for id in recipients(&event(index, cast), cast) {
            *expected.entry(id).or_default() += 1;
        }
    }
    expected
}

/// The answer to an accepted publish request.
#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Accepted {
    event_id: String,
    deliveries: usize,
}

/// What publishing the workload took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub deliveries: usize,
    /// Requests sent again and answered from the first one.
    pub replayed: usize,
}

/// Publishes the first `events` events to the publisher at `publisher` and checks that each one
/// was fanned out to the customers expected, and that each repeated request was answered from the
/// first. `run` makes the idempotency keys unique to this run; `sent` counts the events accepted
/// so far.
pub async fn publish(
    publisher: SocketAddr,
    token: &str,
    run: &str,
    events: u32,
    cast: &[Profile],
    sent: &AtomicU32,
) -> Result<Published> {
    let client = reqwest::Client::builder().build()?;
    let url = format!("http://{publisher}/publish");
    let results: Vec<Result<Published>> = futures::stream::iter(0..events)
        .map(|index| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let event = event(index, cast);
                let key = format!("demo-{run}-{index}");
                let first = publish_one(&client, &url, token, &key, &event, cast).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                if index % RETRY_EVERY != RETRY_EVERY / 2 {
                    return Ok(Published { deliveries: first.0.deliveries, replayed: 0 });
                }
                let (again, replayed) = publish_one(&client, &url, token, &key, &event, cast).await?;
                if !replayed || again != first.0 {
                    return Err(Error::NotReplayed { index, first: first.0.event_id, again: again.event_id });
                }
                Ok(Published { deliveries: first.0.deliveries, replayed: 1 })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().try_fold(Published::default(), |total, one| {
        let one = one?;
        Ok(Published { deliveries: total.deliveries + one.deliveries, replayed: total.replayed + one.replayed })
    })
}

/// Publishes `event` with idempotency key `key`; the answer, and whether it was a replay.
async fn publish_one(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    event: &Event,
    cast: &[Profile],
) -> Result<(Accepted, bool)> {
    let payload = json!({
        "reference": format!("{}-{:05}", event.event_type.replace('.', "-"), event.index),
        "amount_cents": (u64::from(event.index) * 1_237) % 100_000,
        "currency": "EUR",
    });
    let mut body = json!({ "type": event.event_type, "payload": payload });
    if let Some(target) = event.target {
        body["target"] = json!(target);
    }
    let response = client.post(url).bearer_auth(token).header("idempotency-key", key).json(&body).send().await?;
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    if status != reqwest::StatusCode::ACCEPTED {
        let body = response.text().await.unwrap_or_default();
        return Err(Error::Publish {
            index: event.index,
            event_type: event.event_type.to_owned(),
            status: status.as_u16(),
            body,
        });
    }
    let accepted: Accepted = response.json().await?;
    let expected = recipients(event, cast).len();
    if accepted.deliveries != expected {
        return Err(Error::FanOut {
            index: event.index,
            event_type: event.event_type.to_owned(),
            expected,
            actual: accepted.deliveries,
        });
    }
    Ok((accepted, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cast::CAST;

    #[test]
    fn the_cycle_has_the_documented_mix() {
        let types: Vec<_> = (0..20).map(|i| event(i, CAST).event_type).collect();
        let count = |t: &str| types.iter().filter(|e| **e == t).count();
        assert_eq!(
            [count("order.created"), count("order.shipped"), count("invoice.paid"), count("refund.issued")],
            [8, 5, 3, 2]
        );
        assert_eq!([count("account.closed"), count("plan.changed")], [1, 1]);
        let targets: Vec<_> = (0..CAST.len() as u32).map(|turn| event(turn * 20 + 19, CAST).target).collect();
        assert_eq!(targets, CAST.iter().map(|p| Some(p.id)).collect::<Vec<_>>());
    }

    #[test]
    fn expected_counts_follow_subscriptions_and_targets() {
        let counts = expected(200, CAST);
        // acme takes every fanned-out event (190) and two targeted ones.
        assert_eq!(counts["acme"], 192);
        assert_eq!(counts["globex"], 80 + 50 + 2);
        assert_eq!(counts["hooli"], 20 + 1);
        assert_eq!(counts["vandelay"], 10 + 1);
        assert_eq!(counts.values().sum::<u64>(), 500);
        assert_eq!(expected(1, CAST).values().sum::<u64>(), 3);
    }
}
