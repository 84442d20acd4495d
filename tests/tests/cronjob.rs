//! CronJobs on a real cluster under a fast clock (`--clock-rate`, a test setting: the cronjob
//! controller's minutes pass in real seconds) with an in-process agent running the Jobs' pods
//! on the process runtime: the example CronJob starts a Job at each scheduled time, keeps only
//! its history limits of finished Jobs, and `concurrencyPolicy: Forbid` starts no second Job
//! while one runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use rkube_client::{Client, KindRef, ListParams, WatchEvent};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");
/// One simulated minute per real second.
const CLOCK_RATE: f64 = 60.0;

/// The example CronJob with a command the process runtime can run and `spec` merged in.
fn example_cron_job(command: &str, spec: Value) -> Value {
    let mut cj: Value = yaml_serde::from_str(
        &std::fs::read_to_string(format!("{EXAMPLES}/cron-batch-job.yaml")).unwrap(),
    )
    .unwrap();
    let container = &mut cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    container["command"] = json!(["sh", "-c", command]);
    for (k, v) in spec.as_object().unwrap() {
        cj["spec"][k] = v.clone();
    }
    cj
}

fn finished(job: &Value) -> Option<String> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| {
            matches!(c["type"].as_str(), Some("Complete" | "Failed"))
                && c["status"].as_str() == Some("True")
        })
        .map(|c| c["type"].as_str().unwrap_or_default().to_string())
}

/// What a watch of the CronJob's Jobs saw: every Job created (in order) with the number of
/// unfinished Jobs that existed when it appeared, and which Jobs exist now.
#[derive(Default)]
struct Seen {
    created: Vec<(String, usize)>,
    existing: BTreeMap<String, Option<String>>,
}

fn watch_jobs(client: &Client) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (client, out) = (client.clone(), seen.clone());
    tokio::spawn(async move {
        let params = ListParams {
            namespace: "default".into(),
            ..Default::default()
        };
        let mut w = Box::pin(client.watch(&KindRef::of::<Job>(), &params, true));
        while let Some(Ok(ev)) = w.next().await {
            let mut s = out.lock().unwrap();
            match &ev {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                    if !s.existing.contains_key(&name) {
                        let running = s.existing.values().filter(|f| f.is_none()).count();
                        s.created.push((name.clone(), running));
                    }
                    s.existing.insert(name, finished(o));
                }
                WatchEvent::Deleted(o) => {
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    s.existing.remove(name);
                }
                WatchEvent::Bookmark { .. } => {}
            }
        }
    });
    seen
}

/// The scheduled minute (since the epoch) in a CronJob's Job name.
fn scheduled_minute(job: &str) -> i64 {
    job.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cron_job_runs_on_schedule_and_keeps_its_history_limits() {
    let opts = ClusterOptions::with_control_loops().with_clock_rate(CLOCK_RATE);
    let c = ApiCluster::start_opts(1, opts).await;
    let client = c.client();
    let agent = Agent::start(client.clone(), "agent-1");
    let seen = watch_jobs(&client);
    let cj = example_cron_job(
        "exit 0",
        json!({"schedule": "*/2 * * * *", "successfulJobsHistoryLimit": 2}),
    );
    client.create(&cj, "default").await.unwrap();

    // Five Jobs, each for an even minute (every other real second) ...
    let created = wait_until(Duration::from_secs(90), "five jobs of the cron job", || {
        let seen = seen.clone();
        async move {
            let s = seen.lock().unwrap();
            (s.created.len() >= 5)
                .then(|| s.created.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())
        }
    })
    .await;
    let minutes: Vec<i64> = created.iter().map(|n| scheduled_minute(n)).collect();
    assert!(
        minutes.iter().all(|m| m % 2 == 0),
        "every job is for a scheduled (even) minute: {created:?}"
    );
    assert!(
        minutes.windows(2).all(|w| w[1] > w[0]),
        "one job per scheduled time, in order: {created:?}"
    );

    // ... that complete, of which only the last two are kept.
    wait_until(Duration::from_secs(60), "only 2 finished jobs kept", || {
        let client = client.clone();
        async move {
            let cj: CronJob = client.get_typed("default", "cron-batch-job").await.ok()?;
            let st = cj.status?;
            st.last_successful_time.as_ref()?;
            let (jobs, _) = client
                .list_typed::<Job>(&ListParams {
                    namespace: "default".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            let complete: BTreeSet<String> = jobs
                .iter()
                .filter(|j| {
                    j.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Complete" && c.status == "True")
                        })
                })
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .filter_map(|j| j.metadata.name.clone())
                .collect();
            (complete.len() == 2 && jobs.len() <= 3).then_some(())
        }
    })
    .await;
    {
        let s = seen.lock().unwrap();
        let kept: Vec<&String> = s.existing.keys().collect();
        assert!(
            kept.len() <= 3 && s.created.len() >= 5,
            "finished jobs beyond the limit were deleted: kept {kept:?} of {:?}",
            s.created
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_starts_no_second_job_while_one_runs() {
    let opts = ClusterOptions::with_control_loops().with_clock_rate(CLOCK_RATE);
    let c = ApiCluster::start_opts(1, opts).await;
    let client = c.client();
    let agent = Agent::start(client.clone(), "agent-1");
    let seen = watch_jobs(&client);
    // Each Job runs 4 real seconds: 4 scheduled minutes pass while it runs.
    let cj = example_cron_job("sleep 4", json!({"concurrencyPolicy": "Forbid"}));
    client.create(&cj, "default").await.unwrap();

    let created = wait_until(Duration::from_secs(90), "a second job", || {
        let seen = seen.clone();
        async move {
            let s = seen.lock().unwrap();
            (s.created.len() >= 2).then(|| s.created.clone())
        }
    })
    .await;
    for (job, running) in &created {
        assert_eq!(
            *running, 0,
            "{job} started while another job ran: {created:?}"
        );
    }
    // Schedules came and went while the first Job ran: at least one was skipped for it.
    let (first, second) = (
        scheduled_minute(&created[0].0),
        scheduled_minute(&created[1].0),
    );
    assert!(second - first >= 2, "a schedule was skipped: {created:?}");
    let events = wait_until(Duration::from_secs(30), "a JobAlreadyActive event", || {
        let client = client.clone();
        async move {
            let list = client
                .list(
                    &KindRef::kind("v1", "Event"),
                    &ListParams {
                        namespace: "default".into(),
                        ..Default::default()
                    },
                )
                .await
                .ok()?;
            let reasons: Vec<String> = list
                .items
                .iter()
                .filter_map(|e| e["reason"].as_str().map(str::to_string))
                .collect();
            reasons
                .iter()
                .any(|r| r == "JobAlreadyActive")
                .then_some(reasons)
        }
    })
    .await;
    assert!(events.iter().any(|r| r == "SuccessfulCreate"), "{events:?}");
    agent.stop().await;
}
