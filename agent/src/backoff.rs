//! Kubernetes' crash-loop back-off: the first restart of a failed container is immediate, then
//! the wait doubles from the base (10 s) up to the cap (5 min); a container that ran for the reset
//! period (10 min) before it exited starts over.

use std::time::Duration;

/// The back-off schedule (the kubelet's defaults unless configured, e.g. short in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub max: Duration,
    /// A container that ran at least this long before exiting restarts without delay, and its
    /// back-off starts over.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// One container's back-off state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the next restart after this one, or `None` when the next restart is
    /// immediate (no recent failure).
    next: Option<Duration>,
}

impl Backoff {
    /// The container exited after running for `ran_for`: how long to wait before restarting it.
    /// Mirrors the kubelet: no wait after the first exit, then base, 2×base, … capped at max.
    pub fn on_exit(&mut self, policy: &BackoffPolicy, ran_for: Duration) -> Duration {
        if ran_for >= policy.reset_after {
            self.next = None;
        }
        let delay = self.next.unwrap_or(Duration::ZERO);
        self.next = Some(match self.next {
            None => policy.base.min(policy.max),
            Some(d) => d.saturating_mul(2).min(policy.max),
        });
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_from_base_to_cap_after_an_immediate_first_restart() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| b.on_exit(&policy, secs(1)).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_long_run_resets_the_schedule() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_exit(&policy, secs(1));
        }
        assert_eq!(b.on_exit(&policy, secs(600)), Duration::ZERO);
        assert_eq!(b.on_exit(&policy, secs(599)), secs(10));
    }

    #[test]
    fn a_short_base_for_tests() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(250),
            reset_after: secs(60),
        };
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..5)
            .map(|_| b.on_exit(&policy, Duration::ZERO).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 250, 250]);
    }
}
