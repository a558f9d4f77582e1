//! Per-customer rate limits (the customer record's `rate_limit`, deliveries per second): when
//! each customer's next attempt may start. Attempts of a customer with a limit are spaced
//! `1 / rate` apart, retries and parked tries included, since the limit is what its endpoint can
//! take. A customer's records are handled by the one member owning its partition, so the limit
//! holds across the group.
//!
//! The decision is pure (times in, a time out); the deliverer sleeps until it, in its lane: in key
//! ordering a throttled customer waits alone, in partition ordering its partition waits with it.
//!
//! Bound: one entry per customer whose next slot is still ahead. A customer has at most one
//! attempt under way at a time (its lane, or its partition), so a slot is never more than one
//! interval (at most a second) ahead; entries past are dropped whenever the map has doubled
//! since the last sweep.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The map is swept when it holds at least this many entries and has doubled since the last
/// sweep.
const MIN_SWEEP: usize = 1024;

/// When each rate-limited customer's next attempt may start.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    state: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    next: HashMap<String, Instant>,
    sweep_at: usize,
}

impl Pacer {
    /// Takes `customer`'s next slot at `per_second` attempts a second, as of `now`: when its
    /// attempt may start (`now` if it has not used its rate since).
    pub(crate) fn reserve(&self, customer: &str, per_second: u32, now: Instant) -> Instant {
        let interval = Duration::from_secs(1) / per_second.max(1);
        let mut slots = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.next.len() >= slots.sweep_at.max(MIN_SWEEP) {
            slots.next.retain(|_, at| *at > now);
            slots.sweep_at = slots.next.len() * 2;
        }
        let slot = slots.next.get(customer).copied().filter(|at| *at > now).unwrap_or(now);
        slots.next.insert(customer.to_owned(), slot + interval);
        slot
    }

    /// Customers with a slot kept (for tests of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).next.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_of_a_customer_are_spaced_by_its_rate_and_others_are_not_held() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.reserve("a", 4, t0), t0, "a first attempt goes at once");
        assert_eq!(pacer.reserve("a", 4, t0), t0 + Duration::from_millis(250));
        assert_eq!(pacer.reserve("a", 4, t0 + Duration::from_millis(100)), t0 + Duration::from_millis(500));
        assert_eq!(pacer.reserve("b", 4, t0), t0, "another customer has its own pace");
        // After a pause longer than its interval, the next attempt goes at once again (no burst
        // is saved up either).
        let later = t0 + Duration::from_secs(10);
        assert_eq!(pacer.reserve("a", 4, later), later);
        assert_eq!(pacer.reserve("a", 4, later), later + Duration::from_millis(250));
    }

    #[test]
    fn slots_past_are_swept_so_the_map_tracks_only_recent_customers() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        for n in 0..MIN_SWEEP {
            pacer.reserve(&format!("c{n}"), 1, t0);
        }
        assert_eq!(pacer.len(), MIN_SWEEP);
        // Two seconds on, every slot is past: the next reservation sweeps them.
        pacer.reserve("fresh", 1, t0 + Duration::from_secs(2));
        assert_eq!(pacer.len(), 1);
    }
}
