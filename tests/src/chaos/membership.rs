//! The membership-change fault's two halves, through the API's Cluster service: waiting until a
//! joining server is a voter, and removing it again once the other faults healed.

use std::time::{Duration, Instant};

use rkube_client::Client;

/// Wait until the cluster lists `id` as a voter; the time since `since`, or `None` when it
/// did not become one within `timeout`.
pub async fn wait_voter(
    client: &Client,
    id: u64,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    while since.elapsed() < timeout {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), client.members()).await {
            if m.members.iter().any(|m| m.id == id && m.voter) {
                return Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Remove `id` from the membership (whether it got to be a voter, a learner or nothing) and
/// wait until no server lists it; the time it took.
pub async fn remove(client: &Client, id: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last_error = String::from("no answer");
    while start.elapsed() < timeout {
        match tokio::time::timeout(Duration::from_secs(5), client.members()).await {
            Ok(Ok(m)) if !m.members.iter().any(|m| m.id == id) => return Ok(start.elapsed()),
            Ok(Ok(_)) => {
                match tokio::time::timeout(Duration::from_secs(10), client.remove_member(id)).await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => last_error = e.to_string(),
                    Err(_) => last_error = "remove-member timed out".into(),
                }
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "members timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("server {id} still a member after {timeout:?}: {last_error}")
}
