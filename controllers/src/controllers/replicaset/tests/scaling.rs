//! Sizing the pod set: creating, deleting, counting, failures and a lagging cache.

use std::sync::atomic::{AtomicUsize, Ordering};

use rkube_client::KindRef;
use serde_json::Value;

use super::*;
use crate::runtime::fake;
use crate::runtime::{Api, Patch};

#[tokio::test]
async fn scale_up_creates_owned_labelled_pods_and_is_idempotent() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    h.informers
        .get::<ReplicaSet>()
        .upsert(replica_set("web", 3));
    c.run_until_idle().await;

    let summaries = h.api.take_summaries();
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("create Pod default/web-"))
            .count(),
        3
    );
    let pods = h.pods().list();
    assert_eq!(pods.len(), 3);
    let rs = h.rs("web");
    for p in &pods {
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            p.metadata.labels,
            Some(labels(&[("app", "web"), ("tier", "fe")]))
        );
        assert_eq!(
            p.metadata.annotations,
            Some(labels(&[("note", "from-template")]))
        );
        let r = util::controller_of(p.as_ref()).expect("a controller ref");
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("ReplicaSet", "uid-web"));
        assert_eq!(p.spec.as_ref().unwrap().containers[0].name, "app");
    }
    let events = h.take_events();
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e.starts_with("Normal SuccessfulCreate Created pod: web-")));
    let st = rs.replica_status();
    assert_eq!(
        (st.replicas, st.fully_labeled_replicas, st.ready_replicas),
        (3, 3, 0)
    );
    assert_eq!(st.observed_generation, Some(1));

    h.run_rs(&c, "web").await;
    assert_eq!(
        h.api.take_summaries(),
        Vec::<String>::new(),
        "a second run writes nothing"
    );
    assert!(h.take_events().is_empty());
}

#[tokio::test]
async fn scale_down_deletes_unscheduled_then_not_ready_then_newest_ready() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    let rs = replica_set("web", 2);
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    let mut unscheduled = owned_by(pod("unscheduled", "web", 50), &rs);
    unscheduled.spec.as_mut().unwrap().node_name = None;
    unscheduled.status.as_mut().unwrap().phase = Some("Pending".into());
    for p in [
        ready_since(owned_by(pod("old-ready", "web", 500), &rs), 400),
        unscheduled,
        owned_by(pod("not-ready", "web", 900), &rs),
        ready_since(owned_by(pod("new-ready", "web", 600), &rs), 10),
        ready_since(owned_by(pod("older-ready", "web", 700), &rs), 400),
    ] {
        h.pods().upsert(p);
    }
    h.run_rs(&c, "web").await;

    let deletes: Vec<_> = h
        .api
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            fake::Action::Delete { key, opts, .. } => Some((key, opts.precondition_uid)),
            _ => None,
        })
        .collect();
    let want = ["unscheduled", "not-ready", "new-ready"];
    assert_eq!(
        deletes,
        want.map(|n| (format!("default/{n}"), Some(format!("uid-{n}")))),
    );
    assert_eq!(h.pod_names(), ["old-ready", "older-ready"]);
    let events = h.take_events();
    assert_eq!(
        events,
        want.map(|n| format!("Normal SuccessfulDelete Deleted pod: {n}"))
    );
    assert_eq!(h.rs("web").replica_status().replicas, 2);
}

#[tokio::test]
async fn terminating_and_finished_pods_do_not_count() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    let rs = replica_set("web", 2);
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    h.pods().upsert(owned_by(pod("running", "web", 30), &rs));
    let mut leaving = owned_by(pod("leaving", "web", 30), &rs);
    leaving.metadata.deletion_timestamp = Some(ago(1));
    h.pods().upsert(leaving);
    let mut done = owned_by(pod("done", "web", 30), &rs);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    h.pods().upsert(done);
    h.run_rs(&c, "web").await;

    let summaries = h.api.take_summaries();
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("create Pod"))
            .count(),
        1
    );
    assert!(!summaries.iter().any(|s| s.starts_with("delete")));
    assert_eq!(h.rs("web").replica_status().replicas, 2);
}

#[tokio::test]
async fn status_counts_ready_and_available_pods_and_requeues_until_available() {
    let h = Harness::new();
    let mut rs = replica_set("web", 4);
    rs.spec.min_ready_seconds = Some(10);
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    let mut partly_labelled = owned_by(pod("partial", "web", 90), &rs);
    partly_labelled.metadata.labels = Some(labels(&[("app", "web")]));
    for p in [
        ready_since(owned_by(pod("available", "web", 90), &rs), 30),
        ready_since(owned_by(pod("warming", "web", 90), &rs), 4),
        owned_by(pod("starting", "web", 90), &rs),
        partly_labelled,
    ] {
        h.pods().upsert(p);
    }
    let r = reconciler::<ReplicaSet>(&h);
    let key = ObjectKey::new(NS, "web");
    let action = r.reconcile(&key).await.unwrap();
    assert_eq!(action, Action::RequeueAfter(Duration::from_secs(6)));
    assert_eq!(
        h.api.take_summaries(),
        ["update-status ReplicaSet default/web"]
    );
    let st = h.rs("web").replica_status();
    assert_eq!(
        st,
        ReplicaStatus {
            replicas: 4,
            fully_labeled_replicas: 3,
            ready_replicas: 2,
            available_replicas: 1,
            observed_generation: Some(1),
            failure: None,
        }
    );
    assert_eq!(
        r.reconcile(&key).await.unwrap(),
        Action::RequeueAfter(Duration::from_secs(6))
    );
    assert!(
        h.api.take_summaries().is_empty(),
        "an unchanged status is not written"
    );
}

#[tokio::test]
async fn failed_create_reports_an_event_and_condition_and_is_retried() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    h.informers
        .get::<ReplicaSet>()
        .upsert(replica_set("web", 3));
    let key = c.queue.try_get().expect("the new ReplicaSet is queued");
    let quota = "pods \"web-x\" is forbidden: exceeded quota: pods=10";
    h.api
        .fail_next(Error::Api(rkube_client::Error::Forbidden(quota.into())));
    c.process(key.clone()).await;

    assert!(
        h.pods().is_empty(),
        "slow start stops after the failing first batch"
    );
    assert_eq!(
        h.take_events(),
        [format!(
            "Warning FailedCreate Error creating: Error from server (Forbidden): {quota}"
        )]
    );
    assert_eq!(
        c.queue.failures(&key),
        1,
        "the failure is retried with back-off"
    );
    let rs = h.rs("web");
    let failure = rs
        .replica_status()
        .failure
        .expect("a ReplicaFailure condition");
    assert_eq!(failure.reason, "FailedCreate");
    assert!(failure.message.contains("exceeded quota"));
    assert_eq!(failure.last_transition_time, Some(Time(now())));
    assert_eq!(
        rs.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .len(),
        1
    );

    // The status write queued the key again (as in Kubernetes): the retry succeeds.
    c.run_until_idle().await;
    assert_eq!(h.pods().len(), 3);
    assert_eq!(h.take_events().len(), 3);
    let rs = h.rs("web");
    assert_eq!(
        rs.replica_status().failure,
        None,
        "removed once creation succeeds"
    );
    assert_eq!(rs.status.as_ref().unwrap().conditions, None);
    assert_eq!(c.queue.failures(&key), 0);
}

/// Creates succeed until `limit` pods exist, then fail as a quota would.
struct QuotaApi {
    inner: Arc<FakeApi>,
    limit: usize,
    created: AtomicUsize,
}

#[async_trait::async_trait]
impl Api for QuotaApi {
    async fn create(&self, obj: Value, namespace: &str) -> Result<Value> {
        if self.created.fetch_add(1, Ordering::SeqCst) >= self.limit {
            return Err(Error::Api(rkube_client::Error::Forbidden(
                "exceeded quota".into(),
            )));
        }
        self.inner.create(obj, namespace).await
    }
    async fn update(&self, obj: Value) -> Result<Value> {
        self.inner.update(obj).await
    }
    async fn update_status(&self, obj: Value) -> Result<Value> {
        self.inner.update_status(obj).await
    }
    async fn patch(&self, k: &KindRef, ns: &str, n: &str, p: Patch, s: bool) -> Result<Value> {
        self.inner.patch(k, ns, n, p, s).await
    }
    async fn delete(
        &self,
        k: &KindRef,
        ns: &str,
        n: &str,
        o: DeleteOptions,
    ) -> Result<Option<Value>> {
        self.inner.delete(k, ns, n, o).await
    }
}

#[tokio::test]
async fn creates_in_slow_start_batches_and_stops_at_the_first_failing_batch() {
    let informers = Informers::new();
    let fake = Arc::new(FakeApi::new(informers.clone()));
    let quota = Arc::new(QuotaApi {
        inner: fake.clone(),
        limit: 4,
        created: AtomicUsize::new(0),
    });
    let h = Harness::with_api(informers, fake, quota.clone());
    h.informers
        .get::<ReplicaSet>()
        .upsert(replica_set("web", 10));
    let r = reconciler::<ReplicaSet>(&h);
    assert!(r.reconcile(&ObjectKey::new(NS, "web")).await.is_err());

    // Batches of 1, 2 and 4: the third batch hits the quota after one pod; no fourth batch.
    assert_eq!(quota.created.load(Ordering::SeqCst), 7);
    assert_eq!(h.pods().len(), 4);
    let events = h.take_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.contains("SuccessfulCreate"))
            .count(),
        4
    );
    assert_eq!(
        events.iter().filter(|e| e.contains("FailedCreate")).count(),
        3
    );
    // The failed creations are not expected: the next reconcile may size the set again.
    assert_eq!(
        r.expectations.gate(&ObjectKey::new(NS, "web"), &h.pods()),
        Gate::Open
    );
}

#[tokio::test(start_paused = true)]
async fn a_lagging_pod_cache_never_causes_extra_creates() {
    // The API writes into a separate store whose pods reach the controller's cache only when
    // the test delivers them.
    let informers = Informers::new();
    let server = Informers::new();
    server.get::<Pod>();
    let fake = Arc::new(FakeApi::new(server.clone()));
    let h = Harness::with_api(informers, fake.clone(), fake.clone());
    let mut rs = replica_set("web", 3);
    rs.status = Some(Default::default());
    rs.status.as_mut().unwrap().observed_generation = Some(1);
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    server.get::<ReplicaSet>().upsert(rs);
    let r = reconciler::<ReplicaSet>(&h);
    let key = ObjectKey::new(NS, "web");
    let first = r.reconcile(&key).await.unwrap();
    assert!(matches!(first, Action::RequeueAfter(d) if d > Duration::from_secs(60)));
    assert_eq!(fake.take_summaries().len(), 3);
    assert_eq!(r.reconcile(&key).await.unwrap(), first);
    assert!(
        fake.take_summaries().is_empty(),
        "waits for the cache instead of creating again"
    );

    for p in server.get::<Pod>().list() {
        h.pods().upsert((*p).clone());
    }
    assert_eq!(r.reconcile(&key).await.unwrap(), Action::Done);
    assert_eq!(
        fake.take_summaries(),
        ["update-status ReplicaSet default/web"]
    );
    assert_eq!(r.expectations.gate(&key, &h.pods()), Gate::Open);
}
