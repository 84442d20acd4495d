//! The back-off between deletions of failed daemon pods on one node (Kubernetes'
//! `failedPodsBackoff`, a `flowcontrol.Backoff` of 1 s doubling to 15 min): a node agent that
//! keeps rejecting a DaemonSet's pod must not make the controller delete and recreate it in a
//! hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// First delay after a failed pod was deleted.
pub const INITIAL: Duration = Duration::from_secs(1);
/// Longest delay.
pub const MAX: Duration = Duration::from_secs(15 * 60);

/// A DaemonSet (uid and observed generation) and a node.
pub type BackoffKey = (String, String);

/// Per (DaemonSet, node) delays, timed by the controller's clock.
#[derive(Default)]
pub struct FailedPodBackoff {
    entries: Mutex<HashMap<BackoffKey, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: jiff::Timestamp,
}

impl FailedPodBackoff {
    /// The current delay when `now` is still within it of the last failed pod's deletion
    /// (Kubernetes' `IsInBackOffSinceUpdate`).
    pub fn in_backoff(&self, key: &BackoffKey, now: jiff::Timestamp) -> Option<Duration> {
        let entries = self.entries.lock().expect("backoff lock");
        let e = entries.get(key)?;
        let since = elapsed(e.last_update, now);
        (!expired(since) && since < e.delay).then_some(e.delay)
    }

    /// Record a failed pod's deletion at `now`: the delay starts at [`INITIAL`] and doubles up
    /// to [`MAX`]; an entry untouched for twice [`MAX`] starts over. Expired entries of other
    /// keys are dropped on the way.
    pub fn next(&self, key: &BackoffKey, now: jiff::Timestamp) {
        let mut entries = self.entries.lock().expect("backoff lock");
        entries.retain(|_, e| !expired(elapsed(e.last_update, now)));
        let delay = match entries.get(key) {
            Some(e) => (e.delay * 2).min(MAX),
            None => INITIAL,
        };
        entries.insert(
            key.clone(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }
}

fn elapsed(from: jiff::Timestamp, to: jiff::Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

fn expired(since: Duration) -> bool {
    since > MAX * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_start_over_after_a_long_quiet() {
        let t0: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let at = |secs: i64| t0 + jiff::SignedDuration::from_secs(secs);
        let b = FailedPodBackoff::default();
        let key = ("ds".to_string(), "n1".to_string());
        assert_eq!(b.in_backoff(&key, t0), None);
        b.next(&key, t0);
        assert_eq!(b.in_backoff(&key, t0), Some(INITIAL));
        assert_eq!(b.in_backoff(&key, at(1)), None);
        b.next(&key, at(1));
        assert_eq!(b.in_backoff(&key, at(2)), Some(Duration::from_secs(2)));
        assert_eq!(b.in_backoff(&key, at(3)), None);
        for i in 0..20 {
            b.next(&key, at(10 + i));
        }
        assert_eq!(b.in_backoff(&key, at(40)), Some(MAX));
        let quiet = at(40 + 2 * 15 * 60 + 1);
        assert_eq!(b.in_backoff(&key, quiet), None);
        b.next(&key, quiet);
        assert_eq!(b.in_backoff(&key, quiet), Some(INITIAL));
    }
}
