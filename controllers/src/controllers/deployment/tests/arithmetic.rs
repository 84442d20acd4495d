//! The pure helpers: fenceposts, resolved parameters, the pod template hash and revision
//! annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::super::helpers::{fnv1a32, safe_encode, set_new_rs_annotations, Params};
use super::deployment;
use crate::controllers::deployment::{
    equal_ignore_hash, pod_template_hash, resolve_fenceposts, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};

fn percent(p: &str) -> IntOrString {
    IntOrString::String(p.into())
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    use IntOrString::Int;
    let cases = [
        // (maxSurge, maxUnavailable, replicas) -> (surge, unavailable)
        (Some(percent("25%")), Some(percent("25%")), 6, (2, 1)),
        (Some(percent("25%")), Some(percent("25%")), 4, (1, 1)),
        (Some(percent("25%")), Some(percent("25%")), 3, (1, 0)),
        (Some(percent("10%")), Some(percent("10%")), 1, (1, 0)),
        (Some(percent("50%")), Some(percent("50%")), 3, (2, 1)),
        (Some(percent("0%")), Some(percent("1%")), 10, (0, 1)),
        (Some(percent("25%")), Some(percent("25%")), 0, (0, 1)),
        (Some(Int(0)), Some(Int(0)), 5, (0, 1)),
        (Some(Int(2)), Some(Int(1)), 5, (2, 1)),
        (Some(Int(1)), Some(Int(0)), 3, (1, 0)),
        (None, None, 5, (0, 1)),
        (Some(percent("100%")), None, 7, (7, 0)),
    ];
    for (surge, unavailable, replicas, want) in cases {
        let got = resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), replicas);
        assert_eq!(got, Ok(want), "{surge:?} {unavailable:?} of {replicas}");
    }
    for bad in ["25", "a%", ""] {
        let err = resolve_fenceposts(Some(&percent(bad)), None, 4).expect_err(bad);
        assert!(err.to_string().contains("percentage"), "{err}");
    }
}

#[test]
fn parameters_follow_kubernetes_limits() {
    let mut d = deployment(3, "web:v1");
    let p = Params::of(&d).expect("params");
    assert_eq!(
        (p.max_surge, p.max_unavailable, p.max_replicas()),
        (1, 0, 4)
    );
    assert_eq!(
        (p.progress_deadline_seconds, p.revision_history_limit),
        (Some(600), Some(10))
    );

    // maxUnavailable never exceeds replicas, and is 0 without replicas.
    let rolling = d
        .spec
        .strategy
        .as_mut()
        .and_then(|s| s.rolling_update.as_mut())
        .expect("rollingUpdate");
    rolling.max_unavailable = Some(IntOrString::Int(5));
    assert_eq!(Params::of(&d).expect("params").max_unavailable, 3);
    d.spec.replicas = Some(0);
    assert_eq!(Params::of(&d).expect("params").max_unavailable, 0);

    d.spec.strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    d.spec.progress_deadline_seconds = Some(i32::MAX);
    d.spec.revision_history_limit = None;
    let p = Params::of(&d).expect("params");
    assert_eq!((p.rolling, p.max_surge, p.max_unavailable), (false, 0, 0));
    assert_eq!(
        (p.progress_deadline_seconds, p.revision_history_limit),
        (None, Some(10))
    );

    d.spec.strategy.as_mut().expect("strategy").type_ = Some("BlueGreen".into());
    let err = Params::of(&d).expect_err("unknown strategy");
    assert!(err.to_string().contains("\"Recreate\""), "{err}");
}

#[test]
fn fnv1a_and_safe_encoding_match_their_definitions() {
    assert_eq!(fnv1a32(0x811c_9dc5, b""), 0x811c_9dc5);
    assert_eq!(fnv1a32(0x811c_9dc5, b"a"), 0xe40c_292c);
    assert_eq!(fnv1a32(0x811c_9dc5, b"foobar"), 0xbf9c_f968);
    assert_eq!(safe_encode("0123456789"), "456789bcdf");
}

#[test]
fn the_pod_template_hash_is_stable_and_ignores_its_own_label() {
    let d = deployment(1, "web:v1");
    let t = d.spec.template.clone();
    let hash = pod_template_hash(&t, None);
    // A snapshot (FNV-1a of the canonical JSON
    // {"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"web:v1","name":"app"}]}}
    // is 3735473245): ReplicaSet names must not change between releases.
    assert_eq!(hash, "7c798c7689");
    assert_eq!(pod_template_hash(&t, None), hash);
    assert_ne!(pod_template_hash(&t, Some(1)), hash);
    assert_ne!(
        pod_template_hash(&t, Some(1)),
        pod_template_hash(&t, Some(2))
    );

    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
        .expect("labels")
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    assert_eq!(pod_template_hash(&labelled, None), hash);
    assert!(equal_ignore_hash(&labelled, &t));

    let other = deployment(1, "web:v2").spec.template;
    assert_ne!(pod_template_hash(&other, None), hash);
    assert!(!equal_ignore_hash(&other, &t));

    // Absent and empty lists and maps are the same template.
    let mut sparse = t.clone();
    sparse.metadata.as_mut().expect("metadata").annotations = Some(BTreeMap::new());
    sparse.spec.as_mut().expect("spec").volumes = Some(Vec::new());
    assert!(equal_ignore_hash(&sparse, &t));
    assert_eq!(pod_template_hash(&sparse, None), hash);
}

#[test]
fn a_rolled_back_replica_set_keeps_its_old_revisions() {
    let d = deployment(2, "web:v1");
    let params = Params::of(&d).expect("params");
    let mut rs = ReplicaSet::default();
    assert!(set_new_rs_annotations(&d, &mut rs, 1, false, &params));
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(REVISION_ANNOTATION).map(String::as_str),
        Some("1")
    );
    assert_eq!(annotations.get(REVISION_HISTORY_ANNOTATION), None);
    assert!(
        !set_new_rs_annotations(&d, &mut rs, 1, true, &params),
        "nothing new"
    );

    assert!(set_new_rs_annotations(&d, &mut rs, 3, true, &params));
    assert!(set_new_rs_annotations(&d, &mut rs, 6, true, &params));
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(REVISION_ANNOTATION).map(String::as_str),
        Some("6")
    );
    assert_eq!(
        annotations
            .get(REVISION_HISTORY_ANNOTATION)
            .map(String::as_str),
        Some("1,3")
    );
    // A lower revision never replaces a higher one.
    assert!(!set_new_rs_annotations(&d, &mut rs, 4, true, &params));
}
