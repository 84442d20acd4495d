//! Polling with deadlines: tests wait for conditions, never for time.

use std::future::Future;
use std::time::Duration;

/// Poll `check` until it returns `Some`, or fail after `timeout` with `what` in the message.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        // Yield between polls; the interval bounds the polling cost, not the test's timing.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
