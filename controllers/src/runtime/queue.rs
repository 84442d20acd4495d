//! The keyed work queue: de-duplicating, never handing one key to two workers at once, with
//! per-key exponential retry back-off and delayed adds (client-go's `workqueue` semantics).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// First retry delay of a failing key; doubles per consecutive failure.
pub const BASE_RETRY_DELAY: Duration = Duration::from_millis(5);
/// Longest retry delay of a failing key.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// A work queue of keys.
///
/// # Correctness
/// - A key added several times before a worker takes it is handed out once (de-duplication).
/// - A key is never handed to two workers at once: a key added while it is being processed is
///   handed out again only after [`WorkQueue::done`] for the running one.
/// - Every key added is eventually handed out (unless the queue is shut down).
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting to be processed (in `queue`, or to be re-queued when done).
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    /// The earliest pending delayed add of each key: a later one for the same key is dropped,
    /// an earlier one replaces it (client-go's delaying queue).
    delayed: HashMap<K, tokio::time::Instant>,
    shut_down: bool,
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<K> {
    pub fn new() -> WorkQueue<K> {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    failures: HashMap::new(),
                    delayed: HashMap::new(),
                    shut_down: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    /// Queue `key` (no-op if it is already waiting).
    pub fn add(&self, key: K) {
        let mut st = self.inner.state.lock().expect("queue lock");
        if st.shut_down || st.dirty.contains(&key) {
            return;
        }
        st.dirty.insert(key.clone());
        if st.processing.contains(&key) {
            // Re-queued by `done`.
            return;
        }
        st.queue.push_back(key);
        drop(st);
        self.inner.notify.notify_one();
    }

    /// Queue `key` after `delay` (at most one pending delayed add per key: the earliest).
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let at = tokio::time::Instant::now() + delay;
        {
            let mut st = self.inner.state.lock().expect("queue lock");
            match st.delayed.get(&key) {
                Some(pending) if *pending <= at => return,
                _ => {
                    st.delayed.insert(key.clone(), at);
                }
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let due = {
                let mut st = me.inner.state.lock().expect("queue lock");
                if st.delayed.get(&key) == Some(&at) {
                    st.delayed.remove(&key);
                    true
                } else {
                    // Replaced by an earlier add, which fired or will fire.
                    false
                }
            };
            if due {
                me.add(key);
            }
        });
    }

    /// Queue `key` after its back-off delay, which doubles with every consecutive call until
    /// [`WorkQueue::forget`]. Returns the delay used.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let failures = {
            let mut st = self.inner.state.lock().expect("queue lock");
            let n = st.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = retry_delay(failures);
        self.add_after(key, delay);
        delay
    }

    /// Reset `key`'s back-off (it succeeded).
    pub fn forget(&self, key: &K) {
        self.inner
            .state
            .lock()
            .expect("queue lock")
            .failures
            .remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        let st = self.inner.state.lock().expect("queue lock");
        st.failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process; `None` once the queue is shut down. The caller must call
    /// [`WorkQueue::done`] with it afterwards.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut st = self.inner.state.lock().expect("queue lock");
                if st.shut_down {
                    return None;
                }
                if let Some(key) = st.queue.pop_front() {
                    st.dirty.remove(&key);
                    st.processing.insert(key.clone());
                    if !st.queue.is_empty() {
                        // Wake another worker for the rest.
                        self.inner.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// The next key if one is waiting, without waiting. The caller must call
    /// [`WorkQueue::done`] with it afterwards.
    pub fn try_get(&self) -> Option<K> {
        let mut st = self.inner.state.lock().expect("queue lock");
        if st.shut_down {
            return None;
        }
        let key = st.queue.pop_front()?;
        st.dirty.remove(&key);
        st.processing.insert(key.clone());
        Some(key)
    }

    /// Processing of `key` finished; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &K) {
        let mut st = self.inner.state.lock().expect("queue lock");
        st.processing.remove(key);
        if st.dirty.contains(key) {
            st.queue.push_back(key.clone());
            drop(st);
            self.inner.notify.notify_one();
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.inner.state.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop handing out keys; waiting and future `get` calls return `None`.
    pub fn shut_down(&self) {
        self.inner.state.lock().expect("queue lock").shut_down = true;
        self.inner.notify.notify_waiters();
    }
}

/// The back-off after `failures` consecutive failures: 5 ms doubling, at most 60 s.
pub fn retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    BASE_RETRY_DELAY
        .saturating_mul(1 << exp)
        .min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_are_handed_out_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_waits_for_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.get().await.unwrap();
        q.add("a");
        assert!(q.is_empty(), "not handed out while processing");
        q.add("b");
        assert_eq!(q.get().await, Some("b"));
        q.done(&k);
        assert_eq!(q.get().await, Some("a"), "re-queued by done");
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let q: WorkQueue<&str> = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
        q.add("late");
        assert_eq!(q.get().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::new();
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(5));
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(10));
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(20));
        assert_eq!(q.failures(&"a"), 3);
        assert!(q.is_empty(), "nothing before the delay");
        assert_eq!(q.get().await, Some("a"));
        q.forget(&"a");
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_of_one_key_coalesce_to_the_earliest() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::from_secs(10));
        q.add_after("a", Duration::from_secs(20));
        q.add_after("a", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(q.len(), 1, "the earliest fired");
        let k = q.get().await.unwrap();
        q.done(&k);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(q.is_empty(), "the later ones were dropped");
    }

    #[test]
    fn retry_delay_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(5));
        assert_eq!(retry_delay(2), Duration::from_millis(10));
        assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
    }
}
