//! Which pods an owner controls: adoption, release, deletion, handlers, ReplicationControllers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;

#[tokio::test]
async fn adopts_matching_orphans_keeping_other_owner_references() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    h.informers
        .get::<ReplicaSet>()
        .upsert(replica_set("web", 2));
    let other = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "cm".into(),
        uid: "uid-cm".into(),
        ..Default::default()
    };
    let mut orphan = pod("orphan", "web", 30);
    orphan.metadata.owner_references = Some(vec![other.clone()]);
    h.pods().upsert(orphan);
    let mut terminating = pod("terminating", "web", 30);
    terminating.metadata.deletion_timestamp = Some(ago(1));
    h.pods().upsert(terminating);
    let foreign = owned_by(pod("foreign", "web", 30), &replica_set("other", 1));
    h.pods().upsert(foreign.clone());
    h.run_rs(&c, "web").await;

    let summaries = h.api.take_summaries();
    assert!(
        summaries.contains(&"patch Pod default/orphan".to_string()),
        "{summaries:?}"
    );
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("create Pod"))
            .count(),
        1
    );
    assert!(!summaries
        .iter()
        .any(|s| s.contains("terminating") || s.contains("foreign")));
    let adopted = h.pods().get(NS, "orphan").unwrap();
    let refs = adopted.metadata.owner_references.clone().unwrap();
    assert_eq!(refs[0], other);
    assert_eq!(refs[1], util::controller_ref(h.rs("web").as_ref()));
    assert_eq!(h.pods().get(NS, "foreign").unwrap().as_ref(), &foreign);
    assert_eq!(h.rs("web").replica_status().replicas, 2);
}

#[tokio::test]
async fn releases_a_pod_whose_labels_stopped_matching_and_replaces_it() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    let rs = replica_set("web", 1);
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    h.pods().upsert(owned_by(pod("web-a", "web", 30), &rs));
    h.run_rs(&c, "web").await;
    assert_eq!(
        h.api.take_summaries(),
        ["update-status ReplicaSet default/web"]
    );

    // Relabel the pod: the handler queues its owner, which releases and replaces it.
    let mut moved = (*h.pods().get(NS, "web-a").unwrap()).clone();
    moved.metadata.labels = Some(labels(&[("app", "debug")]));
    h.pods().upsert(moved);
    c.run_until_idle().await;

    let summaries = h.api.take_summaries();
    assert_eq!(summaries[0], "patch Pod default/web-a");
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("create Pod"))
            .count(),
        1
    );
    let released = h.pods().get(NS, "web-a").unwrap();
    assert_eq!(released.metadata.owner_references, None);
    assert_eq!(h.pods().len(), 2);
    assert_eq!(h.rs("web").replica_status().replicas, 1);
}

#[tokio::test]
async fn a_replica_set_being_deleted_or_gone_is_left_alone() {
    let h = Harness::new();
    let mut rs = replica_set("web", 3);
    rs.metadata.deletion_timestamp = Some(ago(1));
    h.informers.get::<ReplicaSet>().upsert(rs.clone());
    h.pods().upsert(pod("orphan", "web", 5));
    let r = reconciler::<ReplicaSet>(&h);
    assert_eq!(
        r.reconcile(&ObjectKey::new(NS, "web")).await.unwrap(),
        Action::Done
    );
    assert_eq!(
        r.reconcile(&ObjectKey::new(NS, "gone")).await.unwrap(),
        Action::Done
    );
    assert!(h.api.take_summaries().is_empty());
}

#[tokio::test]
async fn pod_changes_queue_owners_and_adopters() {
    let h = Harness::new();
    let c = replica_set_controller(&h.ctx);
    let web = replica_set("web", 1);
    h.informers.get::<ReplicaSet>().upsert(web.clone());
    h.informers.get::<ReplicaSet>().upsert(replica_set("db", 1));
    while let Some(k) = c.queue.try_get() {
        c.queue.done(&k);
    }
    let drain = || {
        let mut keys = Vec::new();
        while let Some(k) = c.queue.try_get() {
            c.queue.done(&k);
            keys.push(k.name);
        }
        keys.sort();
        keys
    };
    h.pods().upsert(pod("orphan", "web", 1));
    assert_eq!(drain(), ["web"], "an orphan queues the owners selecting it");
    let mut status_only = pod("orphan", "web", 1);
    status_only.status.as_mut().unwrap().phase = Some("Pending".into());
    h.pods().upsert(status_only);
    assert!(
        drain().is_empty(),
        "an orphan's status change queues nobody"
    );

    h.pods().upsert(owned_by(pod("owned", "web", 1), &web));
    assert_eq!(drain(), ["web"]);
    // Relabelled to match `db` while still controlled by `web`: only the controller hears.
    h.pods().upsert(owned_by(pod("owned", "db", 1), &web));
    assert_eq!(drain(), ["web"]);
    // Released: the old owner and the new adopter both hear.
    h.pods().upsert(pod("owned", "db", 1));
    assert_eq!(drain(), ["db", "web"]);
}

#[tokio::test]
async fn replication_controllers_with_map_selectors_work_the_same() {
    let h = Harness::new();
    let c = replication_controller_controller(&h.ctx);
    let rcs = h.informers.get::<ReplicationController>();
    rcs.upsert(replication_controller("db", 3, Some(&[("app", "db")])));
    h.pods().upsert(ready_since(pod("orphan", "db", 60), 30));
    h.pods().upsert(pod("other", "web", 60));
    c.run_until_idle().await;

    let summaries = h.api.take_summaries();
    assert!(summaries.contains(&"patch Pod default/orphan".to_string()));
    assert_eq!(
        summaries
            .iter()
            .filter(|s| s.starts_with("create Pod default/db-"))
            .count(),
        2
    );
    let rc = rcs.get(NS, "db").unwrap();
    let owner = util::controller_of(h.pods().get(NS, "orphan").unwrap().as_ref()).cloned();
    assert_eq!(
        owner.map(|r| r.kind),
        Some("ReplicationController".to_string())
    );
    let st = rc.replica_status();
    assert_eq!(
        (st.replicas, st.ready_replicas, st.available_replicas),
        (3, 1, 1)
    );

    // Without a selector, the template's labels select; scaling down deletes the newest.
    let mut rc = (*rc).clone();
    rc.spec.as_mut().unwrap().selector = None;
    rc.spec.as_mut().unwrap().replicas = Some(1);
    rcs.upsert(rc);
    c.run_until_idle().await;
    assert_eq!(
        h.api
            .take_summaries()
            .iter()
            .filter(|s| s.starts_with("delete Pod"))
            .count(),
        2
    );
    let left: Vec<_> = h
        .pods()
        .list()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(left, ["orphan", "other"], "the ready pod is kept");
    assert_eq!(rcs.get(NS, "db").unwrap().replica_status().replicas, 1);
}
