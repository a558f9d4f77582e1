//! The demo's customers: who subscribes to what, and how each one's endpoint behaves.
//!
//! Each customer gets its own in-process [`hookline_receiver`] on `127.0.0.1:0`, registered in
//! the customers topic with that receiver's URL. Four endpoints are healthy, one refuses the first
//! two attempts of every event (so its deliveries are retried, then succeed) and one refuses
//! everything (so its deliveries end in the DLQ).

use std::fmt;
use std::net::SocketAddr;

use hookline_core::config::{KafkaArgs, TopicArgs};
use hookline_core::customer::Customer;
use hookline_core::directory::put_customer;
use hookline_receiver::{Receiver, ReceiverConfig, ReceiverHandle, Stats};

use crate::{Error, Result};

/// How a customer's endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts every delivery at once.
    Healthy,
    /// Answers 503 to the first `fail_first` attempts of every event, then accepts it.
    Flaky { fail_first: u32 },
    /// Answers 503 to every attempt.
    Failing,
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Flaky { fail_first } => write!(f, "flaky: first {fail_first} attempts fail"),
            Self::Failing => f.write_str("down: always 503"),
        }
    }
}

/// One demo customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub id: &'static str,
    /// Event types it subscribes to (`*` = all).
    pub events: &'static [&'static str],
    pub behaviour: Behaviour,
}

impl Profile {
    /// Whether a fanned-out event of this type goes to this customer (the directory's rule).
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| *e == event_type || *e == hookline_core::customer::ALL_EVENTS)
    }
}

/// Attempts the flaky customer refuses per event.
pub const FLAKY_FAILURES: u32 = 2;

/// The customers, in the order the summary lists them.
pub const CAST: &[Profile] = &[
    Profile { id: "acme", events: &["*"], behaviour: Behaviour::Healthy },
    Profile { id: "globex", events: &["order.created", "order.shipped"], behaviour: Behaviour::Healthy },
    Profile { id: "initech", events: &["invoice.paid"], behaviour: Behaviour::Healthy },
    Profile { id: "umbrella", events: &["order.created", "invoice.paid"], behaviour: Behaviour::Healthy },
    Profile { id: "hooli", events: &["refund.issued"], behaviour: Behaviour::Flaky { fail_first: FLAKY_FAILURES } },
    Profile { id: "vandelay", events: &["account.closed"], behaviour: Behaviour::Failing },
];

/// A customer with its running receiver.
#[derive(Debug)]
pub struct Member {
    pub profile: Profile,
    receiver: ReceiverHandle,
}

impl Member {
    /// The receiver's counters so far.
    pub fn stats(&self) -> Stats {
        self.receiver.stats()
    }

    /// The receiver's webhook URL.
    pub fn url(&self) -> String {
        self.receiver.url()
    }
}

/// Starts one receiver per customer of [`CAST`].
pub async fn start_receivers() -> Result<Vec<Member>> {
    let mut members = Vec::with_capacity(CAST.len());
    for profile in CAST {
        let mut config = ReceiverConfig::named(profile.id);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = match profile.behaviour {
            Behaviour::Healthy => config,
            Behaviour::Flaky { fail_first } => config.with_fail_first(fail_first),
            Behaviour::Failing => config.with_fail_rate(1.0),
        };
        let receiver = Receiver::bind(config)
            .await
            .map_err(|source| Error::Receiver { customer: profile.id.to_owned(), source })?;
        members.push(Member { profile: *profile, receiver });
    }
    Ok(members)
}

/// Writes every customer, with its receiver's URL, to the customers topic.
pub async fn register(kafka: &KafkaArgs, topics: &TopicArgs, members: &[Member]) -> Result<()> {
    for member in members {
        let events = member.profile.events.iter().map(|e| (*e).to_owned()).collect();
        let customer = Customer::new(member.profile.id, &member.url(), events)?;
        put_customer(kafka, &topics.customers, &customer).await?;
    }
    Ok(())
}

/// Stops every receiver.
pub async fn stop_receivers(members: Vec<Member>) {
    for member in members {
        if let Err(error) = member.receiver.shutdown().await {
            tracing::warn!(customer = member.profile.id, %error, "receiver did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_is_valid_and_has_one_flaky_and_one_failing_customer() {
        for profile in CAST {
            let events = profile.events.iter().map(|e| (*e).to_owned()).collect();
            let customer = Customer::new(profile.id, "http://127.0.0.1:1/webhook", events).unwrap();
            for event_type in ["order.created", "invoice.paid", "refund.issued", "account.closed", "x"] {
                assert_eq!(customer.subscribes_to(event_type), profile.subscribes_to(event_type));
            }
        }
        let count = |wanted: fn(&Behaviour) -> bool| CAST.iter().filter(|p| wanted(&p.behaviour)).count();
        assert_eq!(count(|b| matches!(b, Behaviour::Flaky { .. })), 1);
        assert_eq!(count(|b| matches!(b, Behaviour::Failing)), 1);
        assert_eq!(count(|b| matches!(b, Behaviour::Healthy)), 4);
    }
}
