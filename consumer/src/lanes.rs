//! The lanes of one partition in key mode: one per record key, each holding the records of its
//! key in offset order; the first record of a lane is the one being delivered, the others wait
//! behind it. Different lanes run at once, so a failing customer holds back only its own lane.
//!
//! Pure bookkeeping, no I/O: the partition worker ([`crate::partition`]) pushes each record it
//! takes and is told whether to start it, and when a record finishes it is handed the next one of
//! the same lane. Partition mode is the same with a single lane and room for one record.
//!
//! Bounded: at most `max_records` records and about `max_bytes` bytes of record values held at
//! once (one record more than fits is let in when nothing is held, so a record larger than the
//! bound still goes through); [`Lanes::may_take`] says when the worker must stop taking records.

use std::collections::{HashMap, VecDeque};

/// The lanes of one partition; `T` is what a lane holds per record (the record itself).
#[derive(Debug)]
pub struct Lanes<T> {
    /// Key → the records waiting behind the one being delivered. A key is here while one of
    /// its records is being delivered.
    waiting: HashMap<Vec<u8>, VecDeque<(T, usize)>>,
    held: usize,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

impl<T> Lanes<T> {
    /// Lanes holding at most `max_records` records and about `max_bytes` bytes.
    pub fn new(max_records: usize, max_bytes: usize) -> Self {
        Self { waiting: HashMap::new(), held: 0, bytes: 0, max_records: max_records.max(1), max_bytes }
    }

    /// Whether another record may be taken.
    pub fn may_take(&self) -> bool {
        self.held == 0 || (self.held < self.max_records && self.bytes < self.max_bytes)
    }

    /// Takes a record of `key` of `size` bytes: returned if its lane was idle (start it now),
    /// kept behind the lane's records otherwise.
    pub fn push(&mut self, key: &[u8], size: usize, record: T) -> Option<T> {
        self.held += 1;
        self.bytes += size;
        if let Some(lane) = self.waiting.get_mut(key) {
            lane.push_back((record, size));
            return None;
        }
        self.waiting.insert(key.to_vec(), VecDeque::new());
        Some(record)
    }

    /// The record being delivered in `key`'s lane, of `size` bytes, is finished: the lane's next
    /// record, to start now, if any.
    pub fn finished(&mut self, key: &[u8], size: usize) -> Option<T> {
        self.held = self.held.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        let lane = self.waiting.get_mut(key)?;
        match lane.pop_front() {
            Some((next, _)) => Some(next),
            None => {
                self.waiting.remove(key);
                None
            }
        }
    }

    /// Records held: being delivered or waiting in a lane.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Lanes with a record being delivered.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_runs_one_record_at_a_time_in_order_and_keys_run_side_by_side() {
        let mut lanes = Lanes::new(100, 1 << 20);
        assert_eq!(lanes.push(b"a", 10, 0), Some(0), "an idle lane starts at once");
        assert_eq!(lanes.push(b"b", 10, 1), Some(1), "another key is not held back by a");
        assert_eq!(lanes.push(b"a", 10, 2), None, "waits behind 0");
        assert_eq!(lanes.push(b"a", 10, 3), None);
        assert_eq!(lanes.push(b"b", 10, 4), None);
        assert_eq!((lanes.held(), lanes.busy()), (5, 2));

        assert_eq!(lanes.finished(b"b", 10), Some(4), "b's next");
        assert_eq!(lanes.finished(b"b", 10), None, "b is idle");
        assert_eq!(lanes.busy(), 1);
        assert_eq!(lanes.finished(b"a", 10), Some(2));
        assert_eq!(lanes.finished(b"a", 10), Some(3), "in the order taken");
        assert_eq!(lanes.finished(b"a", 10), None);
        assert_eq!((lanes.held(), lanes.busy()), (0, 0));
        assert_eq!(lanes.push(b"a", 10, 5), Some(5), "an idle lane again starts at once");
    }

    #[test]
    fn taking_stops_at_the_record_and_byte_bounds() {
        let mut lanes = Lanes::new(3, 1 << 20);
        for n in 0..3 {
            assert!(lanes.may_take());
            lanes.push(b"dead", 1, n);
        }
        assert!(!lanes.may_take(), "3 records held");
        lanes.finished(b"dead", 1);
        assert!(lanes.may_take());

        let mut lanes = Lanes::new(100, 1000);
        assert!(lanes.may_take());
        assert_eq!(lanes.push(b"a", 5000, 0), Some(0), "a record above the byte bound goes through alone");
        assert!(!lanes.may_take(), "no more while it is held");
        assert_eq!(lanes.finished(b"a", 5000), None);
        assert!(lanes.may_take());
        lanes.push(b"a", 600, 1);
        assert!(lanes.may_take(), "600 of 1000 bytes");
        lanes.push(b"b", 600, 2);
        assert!(!lanes.may_take(), "1200 of 1000 bytes");
    }

    #[test]
    fn partition_mode_is_one_lane_with_room_for_one_record() {
        let mut lanes = Lanes::new(1, usize::MAX);
        assert_eq!(lanes.push(b"", 1, 0), Some(0));
        assert!(!lanes.may_take());
        assert_eq!(lanes.finished(b"", 1), None);
        assert!(lanes.may_take());
    }
}
