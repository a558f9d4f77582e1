//! When to try a failed delivery again.
//!
//! The schedule is backon's exponential backoff with jitter, clamped to `--max-backoff` (backon's
//! jitter may add up to one more current delay). A `Retry-After` from the endpoint replaces the
//! scheduled delay, still within `--max-backoff`, so a receiver cannot park a partition for longer
//! than the operator allows: that rule is [`crate::decision::decide`]'s, which is given the
//! scheduled delay.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::DeliveryArgs;

/// Retry settings of one consumer.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// When the attempts run out, park the record's customer (`--park-after`) instead of
    /// dead-lettering the record.
    pub park: bool,
}

impl From<&DeliveryArgs> for RetryPolicy {
    fn from(args: &DeliveryArgs) -> Self {
        Self {
            max_attempts: args.max_attempts,
            initial_backoff: args.initial_backoff,
            max_backoff: args.max_backoff,
            park: false,
        }
    }
}

impl RetryPolicy {
    /// The policy of live records with parking after `park_after` attempts (`None`: off).
    pub fn parking_after(mut self, park_after: Option<u32>) -> Self {
        if let Some(attempts) = park_after {
            self.max_attempts = attempts.min(self.max_attempts);
            self.park = true;
        }
        self
    }

    /// The policy of a probe: one attempt, and the customer stays parked if it fails.
    pub fn probe(&self) -> Self {
        Self { max_attempts: 1, park: true, ..self.clone() }
    }

    /// Delays between attempts for one record: `max_attempts - 1` of them.
    pub fn schedule(&self) -> Schedule {
        let retries = usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(retries)
            .build();
        Schedule { backoff: Box::new(backoff), max_backoff: self.max_backoff }
    }
}

/// The delays before each retry of one record.
pub struct Schedule {
    backoff: Box<dyn Iterator<Item = Duration> + Send>,
    max_backoff: Duration,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule").field("max_backoff", &self.max_backoff).finish_non_exhaustive()
    }
}

impl Schedule {
    /// The scheduled delay before the next attempt, within the maximum, or `None` when no
    /// attempt is left.
    pub fn next_backoff(&mut self) -> Option<Duration> {
        Some(self.backoff.next()?.min(self.max_backoff))
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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

    #[test]
    fn schedule_has_one_delay_per_retry_and_stays_within_bounds() {
        for _ in 0..50 {
            let mut schedule = policy(8).schedule();
            let delays: Vec<_> = std::iter::from_fn(|| schedule.next_backoff()).collect();
            assert_eq!(delays.len(), 7);
            assert!(
                delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)),
                "{delays:?}"
            );
            // Exponential: the later delays reach the cap's neighbourhood, the first does not.
            assert!(delays[0] < Duration::from_millis(200));
            assert!(delays[6] >= Duration::from_secs(1), "{delays:?}");
        }
        let mut single = policy(1).schedule();
        assert_eq!(single.next_backoff(), None);
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
