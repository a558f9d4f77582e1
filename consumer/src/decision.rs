//! What to do after each step of a record's delivery: ACK (done), retry after a delay,
//! dead-letter with a reason, or wait for the infrastructure (schema registry, customer
//! directory) to come back.
//!
//! The delivery of a record ([`crate::delivery`]) gathers facts (the record's key and value, the
//! decoded event, the customer's record, the sealed body, the HTTP attempt's result and the next
//! scheduled backoff), asks [`decide`], and acts on its answer. [`decide`] is pure: every dead
//! letter reason and every retry rule is here, tested without a broker or a network.

use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::seal::SealError;
use crate::webhook::Failure;
use hookline_core::deadletter::DlqReason;

/// Pause before trying again when the infrastructure a record needs (the schema registry
/// holding its schema, the customer directory) is unavailable.
pub const INFRASTRUCTURE_RETRY: Duration = Duration::from_secs(1);

/// One fact gathered while delivering a record, for [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<'a> {
    /// The record's key is missing or not UTF-8: no customer to deliver to.
    KeyNotUtf8,
    /// The record has no value.
    NoValue,
    /// The record's value cannot be decoded; `transient` when only the schema registry holding
    /// its schema is away (the record may be fine).
    Undecodable { error: String, transient: bool },
    /// The customer directory cannot answer.
    DirectoryUnavailable { error: String },
    /// No customer (any more) with the record's key.
    UnknownCustomer { customer: &'a str },
    /// The customer has no webhook URL.
    NoWebhookUrl { customer: &'a str },
    /// The customer's endpoint is disabled, since `since` (Unix seconds), for `reason`.
    Disabled { customer: &'a str, since: i64, reason: String },
    /// The attempt's bytes cannot be prepared (signed, encrypted).
    Unsealable(SealError),
    /// The endpoint answered 2xx.
    Acked,
    /// The attempt failed; `scheduled` is the schedule's next backoff (with jitter), `None` when
    /// the schedule has no retry left.
    Failed { failure: Failure, scheduled: Option<Duration> },
    /// The SSRF guard refused the destination.
    Blocked { reason: String },
}

/// What the delivery of a record does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered: done once the ledger has it.
    Ack,
    /// Attempt again after `after`.
    Retry { after: Duration },
    /// Write the record to the DLQ, saying why.
    DeadLetter { reason: DlqReason, error: String },
    /// The attempts ran out under a parking policy: the record's customer is (or stays) parked.
    Park { error: String },
    /// Something the record needs is unavailable: try the same step again after `after`,
    /// without counting an attempt.
    WaitForInfrastructure { after: Duration },
}

/// The decision on `fact`, `attempts` HTTP attempts into the record under `policy`.
///
/// Only a 2xx ACKs. A failed attempt (3xx, 4xx, 5xx, timeout, connection error: the endpoint may
/// recover, and a 4xx is often a deployment in progress) is retried after the scheduled backoff,
/// or the endpoint's `Retry-After` instead, both capped at `--max-backoff`, until the last
/// attempt; under a parking policy the record's customer is parked then instead. Everything
/// retrying cannot fix is dead-lettered at once, parking or not.
pub fn decide(fact: &Fact<'_>, attempts: u32, policy: &RetryPolicy) -> Decision {
    let dead_letter = |reason, error: String| Decision::DeadLetter { reason, error };
    match fact {
        Fact::KeyNotUtf8 => dead_letter(DlqReason::Undecodable, "record key is not a UTF-8 customer id".into()),
        Fact::NoValue => dead_letter(DlqReason::Undecodable, "record has no value".into()),
        Fact::Undecodable { transient: true, .. } | Fact::DirectoryUnavailable { .. } => {
            Decision::WaitForInfrastructure { after: INFRASTRUCTURE_RETRY }
        }
        Fact::Undecodable { error, transient: false } => {
            dead_letter(DlqReason::Undecodable, format!("record value is not a Hookline event: {error}"))
        }
        Fact::UnknownCustomer { customer } => {
            dead_letter(DlqReason::UnknownCustomer, format!("customer `{customer}` does not exist"))
        }
        Fact::NoWebhookUrl { customer } => {
            dead_letter(DlqReason::NoWebhookUrl, format!("customer `{customer}` has no webhook URL"))
        }
        Fact::Disabled { customer, since, reason } => dead_letter(
            DlqReason::EndpointDisabled,
            format!("the endpoint of customer `{customer}` is disabled (since {since}, Unix seconds): {reason}"),
        ),
        Fact::Unsealable(SealError::Signing(error)) => dead_letter(DlqReason::SigningFailed, error.clone()),
        Fact::Unsealable(SealError::Encryption(error)) => dead_letter(DlqReason::EncryptionFailed, error.clone()),
        Fact::Acked => Decision::Ack,
        Fact::Blocked { reason } => {
            dead_letter(DlqReason::BlockedDestination, format!("destination blocked: {reason}"))
        }
        Fact::Failed { failure, scheduled } => match scheduled {
            Some(scheduled) if attempts < policy.max_attempts => {
                Decision::Retry { after: failure.retry_after.unwrap_or(*scheduled).min(policy.max_backoff) }
            }
            _ if policy.park => Decision::Park { error: failure.error.clone() },
            _ => dead_letter(DlqReason::MaxAttempts, format!("{} after {attempts} attempts", failure.error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            park: false,
        }
    }

    fn failed(status: Option<u16>, class: &'static str, retry_after: Option<Duration>) -> Failure {
        let error = status.map_or_else(|| format!("{class} failure"), |status| format!("HTTP {status}"));
        Failure { status, error, retry_after, class, took: Duration::from_millis(5), excerpt: None }
    }

    fn reason(decision: &Decision) -> Option<DlqReason> {
        match decision {
            Decision::DeadLetter { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn what_retrying_cannot_fix_is_dead_lettered_at_once_with_its_reason() {
        let policy = policy(8);
        let cases = [
            (Fact::KeyNotUtf8, DlqReason::Undecodable, "record key is not a UTF-8 customer id".to_owned()),
            (Fact::NoValue, DlqReason::Undecodable, "record has no value".to_owned()),
            (
                Fact::Undecodable { error: "bad magic byte".into(), transient: false },
                DlqReason::Undecodable,
                "record value is not a Hookline event: bad magic byte".to_owned(),
            ),
            (
                Fact::UnknownCustomer { customer: "acme" },
                DlqReason::UnknownCustomer,
                "customer `acme` does not exist".into(),
            ),
            (
                Fact::NoWebhookUrl { customer: "acme" },
                DlqReason::NoWebhookUrl,
                "customer `acme` has no webhook URL".into(),
            ),
            (
                Fact::Blocked { reason: "10.0.0.1 is private".into() },
                DlqReason::BlockedDestination,
                "destination blocked: 10.0.0.1 is private".into(),
            ),
            (
                Fact::Disabled { customer: "acme", since: 1_790_000_000, reason: "failing for 5d".into() },
                DlqReason::EndpointDisabled,
                "the endpoint of customer `acme` is disabled (since 1790000000, Unix seconds): failing for 5d".into(),
            ),
        ];
        for (fact, expected, error) in cases {
            // Whatever attempt it is: no retry is left to spend on these.
            for attempts in [0, 1, 7] {
                assert_eq!(
                    decide(&fact, attempts, &policy),
                    Decision::DeadLetter { reason: expected, error: error.clone() },
                    "{fact:?}"
                );
            }
        }
    }

    #[test]
    fn signing_and_encryption_failures_are_dead_lettered_never_sent() {
        let signing = SealError::Signing("no active signing secret".into());
        assert_eq!(
            decide(&Fact::Unsealable(signing), 1, &policy(8)),
            Decision::DeadLetter { reason: DlqReason::SigningFailed, error: "no active signing secret".into() }
        );
        let encryption = SealError::Encryption("unusable key".into());
        assert_eq!(reason(&decide(&Fact::Unsealable(encryption), 1, &policy(8))), Some(DlqReason::EncryptionFailed));
    }

    #[test]
    fn an_unavailable_registry_or_directory_is_waited_for_not_dead_lettered() {
        let wait = Decision::WaitForInfrastructure { after: INFRASTRUCTURE_RETRY };
        let registry = Fact::Undecodable { error: "registry unavailable".into(), transient: true };
        let directory = Fact::DirectoryUnavailable { error: "not loaded".into() };
        for attempts in [0, 3, 8] {
            assert_eq!(decide(&registry, attempts, &policy(8)), wait);
            assert_eq!(decide(&directory, attempts, &policy(8)), wait);
        }
    }

    #[test]
    fn only_a_2xx_acks_and_every_failure_class_is_retried_after_the_scheduled_delay() {
        assert_eq!(decide(&Fact::Acked, 8, &policy(8)), Decision::Ack);
        let scheduled = Some(Duration::from_millis(150));
        for failure in [
            failed(Some(302), "3xx", None),
            failed(Some(404), "4xx", None),
            failed(Some(503), "5xx", None),
            failed(None, "timeout", None),
            failed(None, "connect", None),
            failed(None, "other", None),
        ] {
            assert_eq!(
                decide(&Fact::Failed { failure, scheduled }, 1, &policy(8)),
                Decision::Retry { after: Duration::from_millis(150) }
            );
        }
    }

    #[test]
    fn retry_after_replaces_the_delay_within_the_cap() {
        let decide_after = |retry_after| {
            let fact = Fact::Failed {
                failure: failed(Some(429), "4xx", retry_after),
                scheduled: Some(Duration::from_millis(100)),
            };
            decide(&fact, 1, &policy(5))
        };
        assert_eq!(
            decide_after(Some(Duration::from_millis(1500))),
            Decision::Retry { after: Duration::from_millis(1500) }
        );
        assert_eq!(decide_after(Some(Duration::from_secs(3600))), Decision::Retry { after: Duration::from_secs(2) });
        assert_eq!(decide_after(Some(Duration::ZERO)), Decision::Retry { after: Duration::ZERO });
    }

    #[test]
    fn the_last_attempt_dead_letters_with_its_error_and_the_attempt_count() {
        let last = Fact::Failed { failure: failed(Some(503), "5xx", None), scheduled: None };
        assert_eq!(
            decide(&last, 8, &policy(8)),
            Decision::DeadLetter { reason: DlqReason::MaxAttempts, error: "HTTP 503 after 8 attempts".into() }
        );
        // A Retry-After does not buy an attempt more.
        let asked = Fact::Failed { failure: failed(None, "timeout", Some(Duration::from_secs(1))), scheduled: None };
        assert_eq!(reason(&decide(&asked, 8, &policy(8))), Some(DlqReason::MaxAttempts));
        // The attempt count is the bound even if a schedule offered another delay.
        let offered = Fact::Failed { failure: failed(Some(500), "5xx", None), scheduled: Some(Duration::from_secs(1)) };
        assert_eq!(reason(&decide(&offered, 8, &policy(8))), Some(DlqReason::MaxAttempts));
        assert_eq!(decide(&offered, 7, &policy(8)), Decision::Retry { after: Duration::from_secs(1) });
        // One attempt allowed: its failure is final.
        let single =
            Fact::Failed { failure: failed(Some(500), "5xx", None), scheduled: policy(1).schedule().next_backoff() };
        assert_eq!(reason(&decide(&single, 1, &policy(1))), Some(DlqReason::MaxAttempts));
    }

    #[test]
    fn under_a_parking_policy_the_last_failure_parks_and_nothing_else_changes() {
        let parking = RetryPolicy { park: true, ..policy(3) };
        let last = Fact::Failed { failure: failed(Some(503), "5xx", None), scheduled: None };
        assert_eq!(decide(&last, 3, &parking), Decision::Park { error: "HTTP 503".into() });
        let early = Fact::Failed { failure: failed(Some(503), "5xx", None), scheduled: Some(Duration::from_secs(1)) };
        assert_eq!(decide(&early, 2, &parking), Decision::Retry { after: Duration::from_secs(1) });
        // What retrying cannot fix is not parked: it would fail the same way later.
        let blocked = Fact::Blocked { reason: "private".into() };
        assert_eq!(reason(&decide(&blocked, 1, &parking)), Some(DlqReason::BlockedDestination));
        // A probe is one attempt: its failure parks at once.
        let probe = parking.probe();
        assert_eq!(probe.max_attempts, 1);
        let first = Fact::Failed { failure: failed(None, "timeout", None), scheduled: probe.schedule().next_backoff() };
        assert_eq!(decide(&first, 1, &probe), Decision::Park { error: "timeout failure".into() });
    }
}
