//! Which offset of a partition may be committed.
//!
//! A record's offset may be committed only when it and every record before it is done (ACKed,
//! or safely in the DLQ). Today a partition is processed one record at a time, so records finish
//! in order; the tracker does not rely on that, so that a key-ordered mode (records of different
//! customers of one partition in flight together) can reuse it unchanged: it commits the
//! contiguous watermark below the oldest record still in flight.

use std::collections::BTreeSet;

/// Tracks in-flight records of one partition and yields the next offset to commit.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    in_flight: BTreeSet<i64>,
    highest_done: Option<i64>,
    /// The last commit position handed out (or the position the partition started from).
    last_released: Option<i64>,
}

impl OffsetTracker {
    /// Records that the record at `offset` was taken from the partition. Offsets must be begun in
    /// increasing order (the order the partition yields them).
    pub fn begin(&mut self, offset: i64) {
        // The first record's offset is where the committed position already is.
        self.last_released.get_or_insert(offset);
        self.in_flight.insert(offset);
    }

    /// Records that the record at `offset` is done. Returns the new commit position (the offset
    /// of the next record to consume) when it moved forward.
    pub fn complete(&mut self, offset: i64) -> Option<i64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        self.highest_done = Some(self.highest_done.map_or(offset, |h| h.max(offset)));
        let position = match self.in_flight.first() {
            Some(&oldest_in_flight) => oldest_in_flight,
            None => self.highest_done? + 1,
        };
        if self.last_released.is_some_and(|released| released >= position) {
            return None;
        }
        self.last_released = Some(position);
        Some(position)
    }

    /// Forgets a record that will not be finished here (its partition was revoked or the consumer
    /// is stopping): the commit position never passes it.
    pub fn abandon(&mut self, offset: i64) {
        // Left in `in_flight` on purpose: later completions must not commit past it.
        debug_assert!(self.in_flight.contains(&offset));
    }

    /// Records begun and not finished.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_records_commit_one_past_each() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin(offset);
            assert_eq!(tracker.complete(offset), Some(offset + 1));
        }
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_watermark() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..4 {
            tracker.begin(offset);
        }
        assert_eq!(tracker.complete(2), None, "0 and 1 still in flight");
        assert_eq!(tracker.complete(1), None, "0 still in flight");
        assert_eq!(tracker.complete(0), Some(3), "0..=2 done, 3 in flight");
        assert_eq!(tracker.complete(3), Some(4));
    }

    #[test]
    fn an_abandoned_record_holds_the_watermark() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(5);
        tracker.begin(6);
        tracker.abandon(5);
        assert_eq!(tracker.complete(6), None);
        assert_eq!(tracker.in_flight(), 1);
    }

    #[test]
    fn unknown_or_repeated_completions_change_nothing() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.complete(3), None);
        tracker.begin(3);
        assert_eq!(tracker.complete(3), Some(4));
        assert_eq!(tracker.complete(3), None);
    }
}
