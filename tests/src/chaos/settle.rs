//! Settling and convergence after faults: waiting until every server agrees on a leader, until
//! the Deployment converged, and comparing the servers' revisions and content hashes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rkube_client::Client;

use super::deployment;
use super::verdict::{CheckResult, Status};

/// Each server's (revision, content hash), read over the store's Cluster service.
pub async fn store_status(
    pki: &std::path::Path,
    peers: &[String],
    _probe: (),
) -> Vec<Option<(i64, String)>> {
    let tls = crate::process::admin_tls(pki);
    let mut out = Vec::new();
    for addr in peers {
        let status = async {
            let ch = rkube_store::network::endpoint(addr, &tls)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut c = rkube_proto::store::cluster_client::ClusterClient::new(ch);
            let st = c
                .status(rkube_proto::store::StatusRequestOptions { content_hash: true })
                .await
                .ok()?
                .into_inner();
            Some((st.header?.revision, st.content_hash))
        };
        out.push(
            tokio::time::timeout(Duration::from_secs(2), status)
                .await
                .ok()
                .flatten(),
        );
    }
    out
}

/// Wait until every server answers and they agree on one leader.
pub async fn wait_recovered(per_server: &[Client], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = BTreeSet::new();
        let mut answered = 0;
        for c in per_server {
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), c.members()).await {
                answered += 1;
                leaders.insert(m.leader_id);
            }
        }
        if answered == per_server.len() && leaders.len() == 1 && !leaders.contains(&0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "within {timeout:?}, {answered} of {} servers answered, reporting leaders {leaders:?}",
                per_server.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_deployment(
    client: &Client,
    replicas: i32,
    version: u32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match deployment::not_converged(client, replicas, version).await {
            None => return Ok(()),
            Some(why) if Instant::now() > deadline => {
                anyhow::bail!("the Deployment did not converge within {timeout:?}: {why}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Observe every server's (revision, content hash) until one revision was seen on all of them;
/// any revision two servers report with different hashes is an anomaly. (The control loops and
/// node leases keep writing, so the servers are compared at a revision they all pass through.)
pub async fn replicas_identical<S, F>(status: &S, timeout: Duration) -> CheckResult
where
    S: Fn(()) -> F,
    F: std::future::Future<Output = Vec<Option<(i64, String)>>>,
{
    const NAME: &str = "replicas identical after healing";
    let deadline = Instant::now() + timeout;
    let mut seen: BTreeMap<i64, BTreeMap<usize, String>> = BTreeMap::new();
    loop {
        let now = status(()).await;
        let servers = now.len();
        for (server, st) in now.into_iter().enumerate() {
            if let Some((rev, hash)) = st {
                seen.entry(rev).or_default().insert(server, hash);
            }
        }
        let diverged: Vec<String> = seen
            .iter()
            .filter(|(_, h)| h.values().collect::<BTreeSet<_>>().len() > 1)
            .map(|(rev, h)| format!("revision {rev}: hashes {h:?}"))
            .collect();
        if !diverged.is_empty() {
            return fail(NAME, "content hashes".into(), diverged);
        }
        if let Some((rev, h)) = seen
            .iter()
            .rev()
            .find(|(_, h)| h.len() == servers && servers > 1)
        {
            let hash = h.values().next().cloned().unwrap_or_default();
            return pass(
                NAME,
                format!(
                    "{servers} servers at revision {rev}, hash {}",
                    &hash[..hash.len().min(12)]
                ),
            );
        }
        if Instant::now() > deadline {
            return fail(
                NAME,
                "revisions".into(),
                vec![format!(
                    "no revision reported by every server within {timeout:?}"
                )],
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pass(name: &str, checked: String) -> CheckResult {
    CheckResult {
        name: name.into(),
        status: Status::Pass,
        checked,
        anomalies: 0,
        inconclusive: 0,
        details: Vec::new(),
    }
}

pub fn fail(name: &str, checked: String, details: Vec<String>) -> CheckResult {
    CheckResult {
        name: name.into(),
        status: Status::Fail,
        checked,
        anomalies: details.len(),
        inconclusive: 0,
        details,
    }
}
