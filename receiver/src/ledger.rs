//! What the receiver has seen: attempts per webhook-id, ids accepted, and the counters.
//!
//! Kept apart from HTTP so the de-duplication and failure rules can be tested directly.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Counters served by `GET /stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every `POST /webhook`, whatever the answer.
    pub received: u64,
    /// Distinct webhook-ids accepted (answered 2xx).
    pub unique: u64,
    /// Deliveries of a webhook-id already accepted before (answered 2xx, not processed again).
    pub duplicates: u64,
    /// Deliveries answered 503 on purpose (`--fail-first`, `--fail-rate`).
    pub failed: u64,
    /// Deliveries refused as malformed or unverified (400/401).
    pub rejected: u64,
    /// Deliveries that arrived encrypted (a JWE) and were decrypted, whatever the answer after
    /// (like `received`, it counts duplicates and simulated failures too).
    pub encrypted: u64,
}

/// How to answer a well-formed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// First acceptance of this id: process it.
    Accept { attempt: u32 },
    /// Already accepted earlier: acknowledge again without processing.
    Duplicate { attempt: u32 },
    /// Refuse with 503 to simulate a failing endpoint.
    Fail { attempt: u32, why: FailureKind },
}

/// Which setting made a delivery fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    FailFirst,
    FailRate,
}

/// The receiver's memory. It grows with every distinct id, which is fine for a demo receiver;
/// a real one would expire ids older than the sender's retry horizon.
#[derive(Debug, Default)]
pub struct Ledger {
    stats: Stats,
    attempts: HashMap<String, u32>,
    accepted: HashSet<String>,
}

impl Ledger {
    /// Counts a request that never got as far as a decision (malformed, unverified).
    pub fn reject(&mut self) {
        self.stats.received += 1;
        self.stats.rejected += 1;
    }

    /// Counts a well-formed delivery that arrived encrypted; called before [`Ledger::decide`].
    pub fn decrypted(&mut self) {
        self.stats.encrypted += 1;
    }

    /// Decides how to answer a well-formed delivery of `id`. `roll` is a uniform sample in
    /// `0.0..1.0`, compared with `fail_rate`.
    pub fn decide(&mut self, id: &str, fail_first: u32, fail_rate: f64, roll: f64) -> Decision {
        self.stats.received += 1;
        let attempt = self.attempts.entry(id.to_owned()).or_default();
        *attempt = attempt.saturating_add(1);
        let attempt = *attempt;
        // An idempotent receiver acknowledges what it already processed before doing anything
        // that could fail, so that the sender stops retrying it.
        if self.accepted.contains(id) {
            self.stats.duplicates += 1;
            return Decision::Duplicate { attempt };
        }
        let why = if attempt <= fail_first {
            Some(FailureKind::FailFirst)
        } else if roll < fail_rate {
            Some(FailureKind::FailRate)
        } else {
            None
        };
        if let Some(why) = why {
            self.stats.failed += 1;
            return Decision::Fail { attempt, why };
        }
        self.accepted.insert(id.to_owned());
        self.stats.unique += 1;
        Decision::Accept { attempt }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_first_counts_attempts_per_id() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.decide("a", 2, 0.0, 0.5), Decision::Fail { attempt: 1, why: FailureKind::FailFirst });
        assert_eq!(ledger.decide("b", 2, 0.0, 0.5), Decision::Fail { attempt: 1, why: FailureKind::FailFirst });
        assert_eq!(ledger.decide("a", 2, 0.0, 0.5), Decision::Fail { attempt: 2, why: FailureKind::FailFirst });
        assert_eq!(ledger.decide("a", 2, 0.0, 0.5), Decision::Accept { attempt: 3 });
        assert_eq!(ledger.decide("a", 2, 0.0, 0.5), Decision::Duplicate { attempt: 4 });
        assert_eq!(
            ledger.stats(),
            Stats { received: 5, unique: 1, duplicates: 1, failed: 3, rejected: 0, encrypted: 0 }
        );
    }

    #[test]
    fn fail_rate_compares_the_roll() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.decide("a", 0, 0.3, 0.29), Decision::Fail { attempt: 1, why: FailureKind::FailRate });
        assert_eq!(ledger.decide("a", 0, 0.3, 0.3), Decision::Accept { attempt: 2 });
        // Rate 1.0 fails every roll in 0.0..1.0; rate 0.0 none.
        assert!(matches!(ledger.decide("b", 0, 1.0, 0.999_999), Decision::Fail { .. }));
        assert!(matches!(ledger.decide("c", 0, 0.0, 0.0), Decision::Accept { .. }));
    }

    #[test]
    fn rejections_count_as_received_only() {
        let mut ledger = Ledger::default();
        ledger.reject();
        assert_eq!(ledger.stats(), Stats { received: 1, rejected: 1, ..Stats::default() });
    }
}
