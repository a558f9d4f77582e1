//! The parked customers of one partition (`--park-after`): which customers are parked, where
//! their oldest parked record is, when it is due, and the rules of the retry schedule.
//!
//! Pure bookkeeping, no I/O: the partition worker ([`crate::partition`]) asks it whether a
//! record's customer is parked (then the record is parked behind the others, never attempted),
//! which parked customers are due, and what comes after a try of a customer's oldest parked
//! record (its *head*); the retry topic and the parking state are written by [`crate::parked`].
//!
//! A parked customer goes through these phases:
//! - waiting for its head's next try, at `due`;
//! - busy: its head is being read from the retry topic and tried (one attempt when it is a
//!   probe after a failure; `--park-after` attempts in place when the previous record was just
//!   delivered, so that a recovered customer drains at full speed);
//! - unparking: every parked record is done and the tombstone of its state is being written;
//!   its live records wait for it (so none is delivered ahead of a parked one, and none is parked
//!   after the state that would find it is gone).
//!
//! Bounded: one entry per parked customer of the partition (at most the customers keyed to it).

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use hookline_core::parking::ParkState;

/// What a partition knows of one parked customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// As written to (or read from) the parking state.
    pub state: ParkState,
    pub phase: Phase,
    /// The last try delivered its record: the next head is tried at once, in place.
    pub draining: bool,
    /// Live records of the customer being written to the retry topic, not yet acknowledged.
    pub parks_in_flight: u32,
    /// The head became the head while the customer was failing (the record before it ran out of
    /// schedule or was dead-lettered): if it outlived its own schedule meanwhile, it gets no try.
    pub behind: bool,
}

/// See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Busy,
    Unparking,
}

/// What comes after a failed try of a head record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try it again at `due_ms`, the schedule's step `step`.
    Retry { step: u32, due_ms: u64 },
    /// The record's schedule ran out: it goes to the DLQ (`retries_exhausted`).
    Exhausted,
}

/// The rule of the retry schedule for a head record whose try at `now_ms` failed, `tried` steps
/// of `schedule` into it (`None`: failed in place, before its first step): each delay counts
/// from the failure before it, and the record's schedule has run out after its last step. (A
/// record parked behind a failing one waits its schedule out there, counted from its own parking:
/// see [`outlived`] and [`resume`].)
pub fn after_failure(schedule: &[Duration], tried: Option<u32>, now_ms: u64) -> AfterFailure {
    let step = tried.map_or(0, |s| s.saturating_add(1));
    match usize::try_from(step).ok().and_then(|s| schedule.get(s)) {
        Some(delay) => AfterFailure::Retry { step, due_ms: now_ms.saturating_add(millis(*delay)) },
        None => AfterFailure::Exhausted,
    }
}

/// Whether a record parked at `parked_ms` has outlived its whole schedule at `now_ms`: when its
/// customer is still failing, it is dead-lettered without a try of its own.
pub fn outlived(schedule: &[Duration], parked_ms: u64, now_ms: u64) -> bool {
    now_ms >= parked_ms.saturating_add(millis(schedule.iter().sum()))
}

/// Where a record parked at `parked_ms`, not outlived at `now_ms`, stands in its own schedule:
/// the step of its next try and when that is due (each step's time counted from the parking).
/// `None` once outlived.
pub fn resume(schedule: &[Duration], parked_ms: u64, now_ms: u64) -> Option<(u32, u64)> {
    let mut at = parked_ms;
    for (step, delay) in schedule.iter().enumerate() {
        at = at.saturating_add(millis(*delay));
        if at > now_ms {
            return Some((u32::try_from(step).unwrap_or(u32::MAX), at));
        }
    }
    None
}

/// `duration` in whole milliseconds (saturating), for times kept as Unix milliseconds.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The parked customers of one partition, by record key.
///
/// The worker asks for [`Parking::next_due_ms`] and [`Parking::busy`] once per record it takes;
/// both are computed over every parked customer only after a change (a customer parked,
/// unparked, taken or handed out mutably), so records of customers who are not parked cost no
/// scan however many are parked.
#[derive(Debug, Default)]
pub struct Parking {
    customers: HashMap<Vec<u8>, Parked>,
    /// Counts the changes that may move the summary.
    changes: u64,
    /// The summary and the change count it was computed at.
    summary: Cell<Option<(u64, Summary)>>,
}

/// What the worker asks of all parked customers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    next_due_ms: Option<u64>,
    busy: usize,
}

impl Parking {
    /// Restored from the parking state read back on assignment: every customer waits for its due
    /// time (a past one is due at once).
    pub fn restore(states: HashMap<Vec<u8>, ParkState>) -> Self {
        let customers = states
            .into_iter()
            .map(|(key, state)| {
                (key, Parked { state, phase: Phase::Waiting, draining: false, parks_in_flight: 0, behind: false })
            })
            .collect();
        Self { customers, ..Self::default() }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Parked> {
        self.customers.get(key)
    }

    /// The customer, to change (which counts as a change of the summary).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Parked> {
        let found = self.customers.get_mut(key);
        if found.is_some() {
            self.changes += 1;
        }
        found
    }

    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// The customer is parked now, its first parked record at `head`.
    pub fn park(&mut self, key: Vec<u8>, state: ParkState) {
        self.changes += 1;
        self.customers
            .insert(key, Parked { state, phase: Phase::Waiting, draining: false, parks_in_flight: 0, behind: false });
    }

    /// The customer's parked records are all done and its tombstone acknowledged.
    pub fn unpark(&mut self, key: &[u8]) -> Option<Parked> {
        self.changes += 1;
        self.customers.remove(key)
    }

    /// The customers waiting whose head is due at `now_ms`, at most `limit` of them, earliest
    /// first; they are marked busy.
    pub fn take_due(&mut self, now_ms: u64, limit: usize) -> Vec<Vec<u8>> {
        let mut due: Vec<(&Vec<u8>, u64)> = self
            .customers
            .iter()
            .filter(|(_, p)| p.phase == Phase::Waiting && p.state.due_ms <= now_ms)
            .map(|(key, p)| (key, p.state.due_ms))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        let keys: Vec<Vec<u8>> = due.into_iter().take(limit).map(|(key, _)| key.clone()).collect();
        self.changes += 1;
        for key in &keys {
            if let Some(parked) = self.customers.get_mut(key) {
                parked.phase = Phase::Busy;
            }
        }
        keys
    }

    /// The earliest due time of a waiting customer.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.summary().next_due_ms
    }

    fn summary(&self) -> Summary {
        if let Some((at, summary)) = self.summary.get()
            && at == self.changes
        {
            return summary;
        }
        let summary = Summary {
            next_due_ms: self.customers.values().filter(|p| p.phase == Phase::Waiting).map(|p| p.state.due_ms).min(),
            busy: self.customers.values().filter(|p| p.phase == Phase::Busy).count(),
        };
        self.summary.set(Some((self.changes, summary)));
        summary
    }

    /// When the longest-parked customer began failing (Unix milliseconds).
    pub fn oldest_since_ms(&self) -> Option<u64> {
        self.customers.values().map(|p| p.state.since_ms).min()
    }

    /// Customers whose head is being tried.
    pub fn busy(&self) -> usize {
        self.summary().busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        ["5s", "5m", "30m"].iter().map(|s| humantime::parse_duration(s).unwrap()).collect()
    }

    fn state(due_ms: u64) -> ParkState {
        ParkState { head: 0, step: 0, due_ms, since_ms: 0, last_status: None, last_error: None }
    }

    #[test]
    fn the_next_due_time_and_busy_count_follow_every_change() {
        let mut parking = Parking::default();
        assert_eq!((parking.next_due_ms(), parking.busy()), (None, 0));
        parking.park(b"a".to_vec(), state(500));
        parking.park(b"b".to_vec(), state(300));
        assert_eq!((parking.next_due_ms(), parking.busy()), (Some(300), 0));
        // Asked again without a change: the same answer (from the kept summary).
        assert_eq!(parking.next_due_ms(), Some(300));
        assert_eq!(parking.take_due(400, 16), [b"b".to_vec()]);
        assert_eq!((parking.next_due_ms(), parking.busy()), (Some(500), 1));
        let b = parking.get_mut(b"b").unwrap();
        b.phase = Phase::Waiting;
        b.state.due_ms = 100;
        assert_eq!((parking.next_due_ms(), parking.busy()), (Some(100), 0));
        assert!(parking.get_mut(b"not parked").is_none());
        parking.unpark(b"b");
        assert_eq!((parking.next_due_ms(), parking.busy()), (Some(500), 0));
    }

    #[test]
    fn each_try_waits_its_step_from_the_failure_before_and_the_last_failure_exhausts() {
        let s = schedule();
        let t0 = 1_000_000;
        assert_eq!(after_failure(&s, None, t0), AfterFailure::Retry { step: 0, due_ms: t0 + 5_000 });
        assert_eq!(after_failure(&s, Some(0), t0 + 5_100), AfterFailure::Retry { step: 1, due_ms: t0 + 305_100 });
        assert_eq!(
            after_failure(&s, Some(1), t0 + 305_100),
            AfterFailure::Retry { step: 2, due_ms: t0 + 305_100 + 1_800_000 }
        );
        assert_eq!(after_failure(&s, Some(2), t0 + 2_105_100), AfterFailure::Exhausted);
        // Late tries (a busy or restarted consumer) still get every step.
        assert!(matches!(after_failure(&s, Some(1), t0 + 999_999_999), AfterFailure::Retry { step: 2, .. }));
    }

    #[test]
    fn a_record_that_waited_its_schedule_out_behind_another_gets_no_fresh_one() {
        let s = schedule();
        let total = 5_000 + 300_000 + 1_800_000;
        let parked = 1_000_000;
        assert!(outlived(&s, parked, parked + total));
        assert!(!outlived(&s, parked, parked + total - 1));
        // Not outlived: it resumes its own schedule where the time since its parking puts it.
        assert_eq!(resume(&s, parked, parked + 1_000), Some((0, parked + 5_000)));
        assert_eq!(resume(&s, parked, parked + 5_000), Some((1, parked + 305_000)));
        assert_eq!(resume(&s, parked, parked + total - 1), Some((2, parked + total)));
        assert_eq!(resume(&s, parked, parked + total), None);
        assert_eq!(after_failure(&[], None, parked), AfterFailure::Exhausted);
    }

    #[test]
    fn due_customers_are_taken_earliest_first_within_the_limit_and_marked_busy() {
        let mut parking = Parking::default();
        parking.park(b"a".to_vec(), state(300));
        parking.park(b"b".to_vec(), state(100));
        parking.park(b"c".to_vec(), state(200));
        parking.park(b"d".to_vec(), state(900));
        assert_eq!(parking.next_due_ms(), Some(100));
        assert_eq!(parking.oldest_since_ms(), Some(0));
        assert_eq!(parking.take_due(300, 2), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(parking.busy(), 2);
        assert_eq!(parking.take_due(300, 2), vec![b"a".to_vec()]);
        assert_eq!(parking.next_due_ms(), Some(900), "busy customers are not due");
        assert!(parking.take_due(899, 8).is_empty());
        assert_eq!(parking.unpark(b"a").map(|p| p.phase), Some(Phase::Busy));
        assert_eq!(parking.len(), 3);
        let restored = Parking::restore(HashMap::from([(b"x".to_vec(), state(5))]));
        assert_eq!(restored.get(b"x").map(|p| p.phase), Some(Phase::Waiting));
    }
}
