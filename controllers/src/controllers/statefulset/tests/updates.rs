//! Rolling and OnDelete updates, status, the claim retention policy, ownership and failures.

use super::*;

#[tokio::test]
async fn rolling_update_respects_the_partition_from_the_highest_ordinal_down() {
    let f = fixture(web(3));
    f.all_ready(3).await;
    let old = update_revision(&f.set());
    f.edit(|s| {
        new_image(s);
        spec_mut(s).update_strategy = rolling(1);
    });
    let new = update_revision(&f.set());
    assert_ne!(old, new);
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-2", "create Pod default/web-2"]
    );
    assert!(
        f.run().await.is_empty(),
        "web-1 waits for the new web-2 to be Ready"
    );
    f.ready("web-2");
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-1", "create Pod default/web-1"]
    );
    f.ready("web-1");
    assert!(
        f.run().await.is_empty(),
        "ordinals below the partition keep their revision"
    );
    let rev = |n: &str| f.pod(n).metadata.labels.unwrap()[REVISION_LABEL].clone();
    assert_eq!(
        [rev("web-0"), rev("web-1"), rev("web-2")],
        [old.clone(), new.clone(), new.clone()]
    );
    let st = f.status();
    assert_eq!(st.current_revision.as_deref(), Some(old.as_str()));
    assert_eq!(st.update_revision.as_deref(), Some(new.as_str()));
    assert_eq!(
        (st.current_replicas, st.updated_replicas),
        (Some(1), Some(2))
    );

    f.edit(|s| spec_mut(s).update_strategy = rolling(0));
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-0", "create Pod default/web-0"]
    );
    f.ready("web-0");
    assert!(f.run().await.is_empty());
    let st = f.status();
    assert_eq!(st.current_revision.as_deref(), Some(new.as_str()));
    assert_eq!(
        (st.current_replicas, st.updated_replicas),
        (Some(3), Some(3))
    );
}

#[tokio::test]
async fn on_delete_replaces_only_pods_the_user_deletes() {
    let f = fixture(web(2));
    f.all_ready(2).await;
    f.edit(|s| {
        new_image(s);
        spec_mut(s).update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
    });
    assert!(f.run().await.is_empty());
    f.gone("web-1");
    assert_eq!(f.run().await, ["create Pod default/web-1"]);
    let rev = f.pod("web-1").metadata.labels.unwrap()[REVISION_LABEL].clone();
    assert_eq!(rev, update_revision(&f.set()));
}

#[tokio::test]
async fn status_counts_pods_and_is_written_only_when_it_changes() {
    let mut set = web(3);
    spec_mut(&mut set).min_ready_seconds = Some(300);
    let f = fixture(set);
    f.run().await;
    f.ready("web-0");
    // Ready for 100 s of the 300 needed: web-1 waits, and web-0 is not available yet.
    assert!(f.run().await.is_empty());
    let st = f.status();
    assert_eq!(st.replicas, 1);
    assert_eq!(st.ready_replicas, Some(1));
    assert_eq!(st.available_replicas, Some(0));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.collision_count, Some(0));
    *f.now.lock().unwrap() += jiff::SignedDuration::from_secs(200);
    assert_eq!(
        f.run().await,
        [
            "create PersistentVolumeClaim default/www-web-1",
            "create Pod default/web-1"
        ]
    );
    assert_eq!(f.status().available_replicas, Some(1));
    f.fake.take_summaries();
    f.controller.queue.add(ObjectKey::new(NS, "web"));
    f.controller.run_until_idle().await;
    assert!(
        f.fake.take_summaries().is_empty(),
        "nothing changed, nothing written"
    );
}

#[tokio::test]
async fn claim_retention_policy_delete() {
    let mut set = web(3);
    spec_mut(&mut set).persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Delete".into()),
            when_scaled: Some("Delete".into()),
        });
    let f = fixture(set);
    f.all_ready(3).await;
    let claim = f
        .informers
        .get::<PersistentVolumeClaim>()
        .get(NS, "www-web-0")
        .unwrap();
    let owner = &claim.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StatefulSet", "uid-web")
    );
    assert_eq!(owner.controller, None);
    f.edit(|s| spec_mut(s).replicas = Some(1));
    let writes = f.run().await;
    assert!(writes.contains(&"delete PersistentVolumeClaim default/www-web-2".to_string()));
    assert_eq!(f.claim_names(), ["www-web-0"]);
}

#[tokio::test]
async fn a_pod_of_another_controller_blocks_its_ordinal() {
    let f = fixture(web(2));
    let mut other = new_pod(&f.set(), 0, "x");
    other.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-other".into();
    other.metadata.uid = Some("uid-other-pod".into());
    f.informers.get::<Pod>().upsert(other);
    assert!(f.run().await.is_empty());
    assert!(f.events()[0].starts_with("Warning FailedCreate create Pod web-0"));
}

#[tokio::test]
async fn a_failed_create_is_reported_and_retried() {
    let f = fixture(web(1));
    f.fake
        .fail_next(crate::error::Error::Invalid("quota exceeded".into()));
    f.controller.queue.add(ObjectKey::new(NS, "web"));
    let key = f.controller.queue.try_get().unwrap();
    f.controller.process(key).await;
    assert!(f.claim_names().is_empty());
    assert!(f.events()[0].starts_with("Warning FailedCreate create Claim www-web-0"));
    assert_eq!(f.controller.queue.failures(&ObjectKey::new(NS, "web")), 1);
}

#[tokio::test]
async fn a_matching_orphan_with_an_ordinal_name_is_adopted() {
    let f = fixture(web(1));
    let mut orphan = new_pod(&f.set(), 0, "x");
    orphan.metadata.owner_references = None;
    orphan.metadata.uid = Some("uid-orphan".into());
    orphan.metadata.resource_version = Some("5".into());
    f.informers.get::<Pod>().upsert(orphan);
    assert_eq!(
        f.run().await,
        [
            "patch Pod default/web-0",
            // The adopted pod's claim is created as for any pod that lacks one.
            "create PersistentVolumeClaim default/www-web-0"
        ]
    );
    let pod = f.pod("web-0");
    assert_eq!(pod.metadata.uid.as_deref(), Some("uid-orphan"));
    let owner = util::controller_of(&pod).unwrap();
    assert_eq!(owner.uid, "uid-web");
    assert_eq!(f.status().replicas, 1);
}
