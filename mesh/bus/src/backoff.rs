//! Exponential backoff: how long the relay waits after a failed publish and
//! how long a subscriber hides a message it will retry.

use std::time::Duration;

use serde::Deserialize;

/// `initial`, doubling per attempt, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failures
    /// (`attempt` 0 and 1 both give `initial`).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// [`Self::delay`] spread over its upper half ("equal jitter"), so that
    /// replicas that failed together do not retry together, while the
    /// delay still grows.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let full = self.delay(attempt);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..7).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for attempt in 1..6 {
            let full = b.delay(attempt);
            for _ in 0..50 {
                let d = b.jittered(attempt);
                assert!(d >= full / 2 && d <= full, "{d:?} outside {full:?}");
            }
        }
    }
}
