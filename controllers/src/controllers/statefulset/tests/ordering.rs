//! Ordered and parallel creation, claims, scale-down and the one-pod-per-ordinal rule.

use super::*;

#[tokio::test]
async fn ordered_ready_creates_the_next_ordinal_only_after_the_previous_is_ready() {
    let f = fixture(web(3));
    assert_eq!(
        f.run().await,
        [
            "create PersistentVolumeClaim default/www-web-0",
            "create Pod default/web-0"
        ]
    );
    assert_eq!(
        f.events(),
        [
            "Normal SuccessfulCreate create Claim www-web-0 Pod web-0 in StatefulSet web success",
            "Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful",
        ]
    );
    assert!(
        f.run().await.is_empty(),
        "web-1 waits for web-0 to be Ready"
    );
    f.phase("web-0", "Running");
    assert!(
        f.run().await.is_empty(),
        "Running but not Ready is not enough"
    );
    f.ready("web-0");
    assert_eq!(
        f.run().await,
        [
            "create PersistentVolumeClaim default/www-web-1",
            "create Pod default/web-1"
        ]
    );
    f.ready("web-1");
    f.run().await;
    assert_eq!(f.pod_names(), ["web-0", "web-1", "web-2"]);
    assert_eq!(f.claim_names(), ["www-web-0", "www-web-1", "www-web-2"]);
}

#[tokio::test]
async fn pods_carry_their_identity_and_reference_their_claims() {
    let f = fixture(web(1));
    f.run().await;
    let pod = f.pod("web-0");
    let l = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(l["app"], "nginx");
    assert_eq!(l[POD_NAME_LABEL], "web-0");
    assert_eq!(l[POD_INDEX_LABEL], "0");
    assert_eq!(l[REVISION_LABEL], update_revision(&f.set()));
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StatefulSet", "uid-web")
    );
    assert_eq!(owner.controller, Some(true));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let volumes = spec.volumes.unwrap();
    assert_eq!(
        volumes.len(),
        1,
        "the claim replaces the template's same-named volume"
    );
    assert_eq!(volumes[0].name, "www");
    assert!(volumes[0].empty_dir.is_none());
    let source = volumes[0].persistent_volume_claim.as_ref().unwrap();
    assert_eq!(source.claim_name, "www-web-0");
    let claim = f
        .informers
        .get::<PersistentVolumeClaim>()
        .get(NS, "www-web-0")
        .unwrap();
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "nginx");
    assert!(
        claim.metadata.owner_references.is_none(),
        "Retain: no owner"
    );
    assert_eq!(
        claim.spec.as_ref().unwrap().access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
}

#[tokio::test]
async fn ordinals_start_at_spec_ordinals_start() {
    let mut set = web(2);
    spec_mut(&mut set).ordinals =
        Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) });
    spec_mut(&mut set).pod_management_policy = Some("Parallel".into());
    let f = fixture(set);
    f.run().await;
    assert_eq!(f.pod_names(), ["web-5", "web-6"]);
    assert_eq!(
        f.pod("web-6").metadata.labels.unwrap()[POD_INDEX_LABEL],
        "6"
    );
}

#[tokio::test]
async fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
    let f = fixture(web(3));
    f.all_ready(3).await;
    f.edit(|s| spec_mut(s).replicas = Some(1));
    // The fake removes pods at once, so both deletions happen, highest first.
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-2", "delete Pod default/web-1"]
    );
    assert_eq!(f.pod_names(), ["web-0"]);
    assert_eq!(
        f.claim_names(),
        ["www-web-0", "www-web-1", "www-web-2"],
        "claims are retained on scale-down by default"
    );
}

#[tokio::test]
async fn scale_down_waits_for_the_terminating_pod() {
    let f = fixture(web(3));
    f.all_ready(3).await;
    f.terminating("web-2");
    f.edit(|s| spec_mut(s).replicas = Some(1));
    assert!(f.run().await.is_empty(), "web-1 waits until web-2 is gone");
    f.gone("web-2");
    assert_eq!(f.run().await, ["delete Pod default/web-1"]);
}

#[tokio::test]
async fn a_deleted_pod_is_recreated_with_its_old_claim() {
    let f = fixture(web(2));
    f.all_ready(2).await;
    let claim_uid = |f: &Fixture| {
        let c = f
            .informers
            .get::<PersistentVolumeClaim>()
            .get(NS, "www-web-0");
        c.unwrap().metadata.uid.clone()
    };
    let before = claim_uid(&f);
    f.gone("web-0");
    assert_eq!(f.run().await, ["create Pod default/web-0"]);
    assert_eq!(claim_uid(&f), before);
    let vols = f.pod("web-0").spec.unwrap().volumes.unwrap();
    assert_eq!(
        vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-0"
    );
}

#[tokio::test]
async fn a_terminating_pod_blocks_its_ordinal() {
    let f = fixture(web(3));
    f.all_ready(3).await;
    f.terminating("web-1");
    assert!(
        f.run().await.is_empty(),
        "no second web-1, and web-2 is not touched"
    );
    f.gone("web-1");
    assert_eq!(f.run().await, ["create Pod default/web-1"]);
}

#[tokio::test]
async fn parallel_creates_every_ordinal_but_still_one_per_ordinal() {
    let mut set = web(3);
    spec_mut(&mut set).pod_management_policy = Some("Parallel".into());
    let f = fixture(set);
    let writes = f.run().await;
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.starts_with("create Pod"))
            .count(),
        3
    );
    assert_eq!(f.claim_names(), ["www-web-0", "www-web-1", "www-web-2"]);
    f.terminating("web-1");
    f.gone("web-2");
    assert_eq!(f.run().await, ["create Pod default/web-2"]);
    f.edit(|s| spec_mut(s).replicas = Some(0));
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-2", "delete Pod default/web-0"]
    );
    assert_eq!(
        f.pod_names(),
        ["web-1"],
        "the terminating pod is left to finish"
    );
}

#[tokio::test]
async fn finished_pods_are_replaced() {
    let f = fixture(web(2));
    f.all_ready(2).await;
    f.phase("web-1", "Failed");
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-1", "create Pod default/web-1"]
    );
    f.phase("web-0", "Succeeded");
    assert_eq!(
        f.run().await,
        ["delete Pod default/web-0", "create Pod default/web-0"]
    );
}
