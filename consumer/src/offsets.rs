//! Which offset of a partition may be committed.
//!
//! A record's offset may be committed only when it and every record before it is done (ACKed
//! and in the ledger, or safely in the DLQ). In key mode records of different keys finish out of
//! offset order; the tracker commits the contiguous watermark below the oldest record not done,
//! and holds only the records not done (memory bounded by what the partition worker takes in
//! flight, however far completions run ahead of the watermark).

use std::collections::BTreeMap;

/// Tracks the records of one partition taken and not done, and yields the next offset to commit.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Offset → the record's timestamp (Unix milliseconds), of each record taken and not done.
    in_flight: BTreeMap<i64, Option<i64>>,
    /// The offset after the newest record taken.
    next: Option<i64>,
    highest_done: Option<i64>,
    /// The last commit position handed out (or the position the partition started from).
    last_released: Option<i64>,
}

impl OffsetTracker {
    /// Records that the record at `offset`, published at `timestamp_ms`, was taken from the
    /// partition. Offsets must be begun in increasing order (the order the partition yields them).
    pub fn begin(&mut self, offset: i64, timestamp_ms: Option<i64>) {
        // The first record's offset is where the committed position already is.
        self.last_released.get_or_insert(offset);
        self.next = Some(offset + 1);
        self.in_flight.insert(offset, timestamp_ms);
    }

    /// Records that the record at `offset` is done. Returns the new commit position (the offset
    /// of the next record to consume) when it moved forward.
    pub fn complete(&mut self, offset: i64) -> Option<i64> {
        self.in_flight.remove(&offset)?;
        self.highest_done = Some(self.highest_done.map_or(offset, |h| h.max(offset)));
        let position = match self.in_flight.first_key_value() {
            Some((&oldest_in_flight, _)) => oldest_in_flight,
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
        debug_assert!(self.in_flight.contains_key(&offset));
    }

    /// Records taken and not done.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The oldest record not done: its offset and timestamp (Unix milliseconds).
    pub fn oldest(&self) -> Option<(i64, Option<i64>)> {
        self.in_flight.first_key_value().map(|(&offset, &timestamp)| (offset, timestamp))
    }

    /// Offsets between the commit position and the newest record taken: what a restart would
    /// read again.
    pub fn uncommitted(&self) -> u64 {
        match (self.last_released, self.next) {
            (Some(position), Some(next)) => u64::try_from(next - position).unwrap_or(0),
            _ => 0,
        }
    }

    /// Offsets past the commit position that are done (delivered, dead-lettered, skipped, or
    /// gaps in the partition's offsets): a restart reads them again and the ledger skips them.
    pub fn done_beyond_watermark(&self) -> u64 {
        self.uncommitted().saturating_sub(self.in_flight.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_records_commit_one_past_each() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin(offset, None);
            assert_eq!(tracker.complete(offset), Some(offset + 1));
        }
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_watermark() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..4 {
            tracker.begin(offset, None);
        }
        assert_eq!(tracker.complete(2), None, "0 and 1 still in flight");
        assert_eq!(tracker.complete(1), None, "0 still in flight");
        assert_eq!(tracker.complete(0), Some(3), "0..=2 done, 3 in flight");
        assert_eq!(tracker.complete(3), Some(4));
    }

    #[test]
    fn an_abandoned_record_holds_the_watermark() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(5, None);
        tracker.begin(6, None);
        tracker.abandon(5);
        assert_eq!(tracker.complete(6), None);
        assert_eq!(tracker.in_flight(), 1);
    }

    #[test]
    fn unknown_or_repeated_completions_change_nothing() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.complete(3), None);
        tracker.begin(3, None);
        assert_eq!(tracker.complete(3), Some(4));
        assert_eq!(tracker.complete(3), None);
    }

    #[test]
    fn completions_ahead_of_the_watermark_are_counted_and_the_oldest_is_known() {
        let mut tracker = OffsetTracker::default();
        for offset in 100..110 {
            tracker.begin(offset, Some(offset * 1000));
        }
        assert_eq!(tracker.oldest(), Some((100, Some(100_000))));
        assert_eq!((tracker.uncommitted(), tracker.done_beyond_watermark()), (10, 0));
        for offset in 101..110 {
            assert_eq!(tracker.complete(offset), None, "100 holds the watermark");
        }
        assert_eq!((tracker.in_flight(), tracker.uncommitted(), tracker.done_beyond_watermark()), (1, 10, 9));
        assert_eq!(tracker.complete(100), Some(110));
        assert_eq!((tracker.in_flight(), tracker.uncommitted(), tracker.done_beyond_watermark()), (0, 0, 0));
        assert_eq!(tracker.oldest(), None);
    }
}
