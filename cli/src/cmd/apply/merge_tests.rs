//! Tests of the three-way apply patch: table-driven cases of fields set, kept and deleted, lists
//! merged by key, as sets, and replaced whole, and the last-applied annotation.

use super::*;

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kubia", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "kubia"}},
            "template": {"metadata": {"labels": {"app": "kubia"}}, "spec": {"containers": containers}}}
    })
}

/// A live object: the manifest as the server stored it, with what the server and others added.
fn live(manifest: &Value, extra: Value) -> Value {
    let mut obj = with_last_applied(manifest);
    json_patch::merge(&mut obj, &extra);
    obj
}

#[test]
fn the_patch_follows_the_three_way_rules() {
    let base = deployment(
        json!([{"name": "nodejs", "image": "kubia:v1", "ports": [{"containerPort": 8080}]}]),
    );
    let others = json!({"metadata": {"uid": "u1", "labels": {"added-by": "someone"}},
        "spec": {"revisionHistoryLimit": 10, "template": {"spec": {"dnsPolicy": "ClusterFirst"}}},
        "status": {"replicas": 3}});
    let cases: Vec<(&str, Value, Value, Value)> = vec![
        (
            "same manifest: nothing to do",
            base.clone(),
            json!({}),
            json!({}),
        ),
        (
            "a changed field is set, others' fields kept",
            {
                let mut m = base.clone();
                m["spec"]["replicas"] = json!(5);
                m
            },
            json!({}),
            json!({"spec": {"replicas": 5}}),
        ),
        (
            "a field removed from the manifest is deleted",
            {
                let mut m = base.clone();
                m["spec"].as_object_mut().unwrap().remove("replicas");
                m
            },
            json!({}),
            json!({"spec": {"replicas": null}}),
        ),
        (
            "a field changed by someone else and not in the manifest is kept",
            base.clone(),
            json!({"spec": {"revisionHistoryLimit": 3, "paused": true}}),
            json!({}),
        ),
        (
            "a field in the manifest changed by someone else is set back",
            base.clone(),
            json!({"spec": {"replicas": 7}}),
            json!({"spec": {"replicas": 3}}),
        ),
        (
            "a label added to the manifest is added",
            {
                let mut m = base.clone();
                m["metadata"]["labels"] = json!({"tier": "web"});
                m
            },
            json!({}),
            json!({"metadata": {"labels": {"tier": "web"}}}),
        ),
        (
            "a container's image changes by merge key",
            deployment(
                json!([{"name": "nodejs", "image": "kubia:v2", "ports": [{"containerPort": 8080}]}]),
            ),
            json!({}),
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "nodejs", "image": "kubia:v2"}],
                "$setElementOrder/containers": [{"name": "nodejs"}]}}}}),
        ),
        (
            "a container added to the manifest is added",
            deployment(
                json!([{"name": "nodejs", "image": "kubia:v1", "ports": [{"containerPort": 8080}]}, {"name": "side", "image": "busybox"}]),
            ),
            json!({}),
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "side", "image": "busybox"}],
                "$setElementOrder/containers": [{"name": "nodejs"}, {"name": "side"}]}}}}),
        ),
        (
            "a container port removed from the manifest is deleted by key",
            deployment(json!([{"name": "nodejs", "image": "kubia:v1"}])),
            json!({}),
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "nodejs", "ports": null}],
                "$setElementOrder/containers": [{"name": "nodejs"}]}}}}),
        ),
    ];
    for (what, modified, changed_by_others, want) in cases {
        let mut current = live(&base, others.clone());
        json_patch::merge(&mut current, &changed_by_others);
        let original = last_applied(&current);
        assert_eq!(
            original.as_ref(),
            Some(&base),
            "{what}: the annotation round-trips"
        );
        let mut patch = three_way(
            "Deployment",
            original.as_ref(),
            &with_last_applied(&modified),
            &current,
        );
        // The annotation changes with every manifest change; checked separately.
        let annotation = patch
            .get_mut("metadata")
            .and_then(|m| m.as_object_mut())
            .and_then(|m| {
                let a = m
                    .get_mut("annotations")?
                    .as_object_mut()?
                    .remove(LAST_APPLIED);
                if m["annotations"].as_object().is_some_and(Map::is_empty) {
                    m.remove("annotations");
                }
                a
            });
        if patch
            .get("metadata")
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            patch.remove("metadata");
        }
        assert_eq!(
            annotation.is_some(),
            modified != base,
            "{what}: annotation in the patch"
        );
        assert_eq!(Value::Object(patch), want, "{what}");
    }
}

#[test]
fn containers_removed_and_reordered() {
    let two = deployment(json!([{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]));
    let current = live(&two, json!({}));
    // b dropped from the manifest: deleted by merge key.
    let one = deployment(json!([{"name": "a", "image": "1"}]));
    let patch = three_way(
        "Deployment",
        last_applied(&current).as_ref(),
        &one,
        &current,
    );
    assert_eq!(
        patch["spec"]["template"]["spec"],
        json!({"containers": [{"name": "b", "$patch": "delete"}], "$setElementOrder/containers": [{"name": "a"}]})
    );
    // Reordered: only the order is sent.
    let swapped = deployment(json!([{"name": "b", "image": "1"}, {"name": "a", "image": "1"}]));
    let patch = three_way(
        "Deployment",
        last_applied(&current).as_ref(),
        &swapped,
        &current,
    );
    assert_eq!(
        patch["spec"]["template"]["spec"],
        json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]})
    );
    // A container someone else added (not in the last applied configuration) is kept.
    let mut with_sidecar = current.clone();
    with_sidecar["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "istio", "image": "proxy"}));
    let patch = three_way(
        "Deployment",
        last_applied(&with_sidecar).as_ref(),
        &two,
        &with_sidecar,
    );
    assert!(patch.get("spec").is_none(), "{patch:?}");
    // In a list without a merge key (args), the manifest's list replaces the live one.
    let mut args = two.clone();
    args["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["x"]);
    let cur = live(&args, json!({}));
    let mut new_args = two.clone();
    new_args["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["y", "z"]);
    let patch = three_way("Deployment", last_applied(&cur).as_ref(), &new_args, &cur);
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "args": ["y", "z"]}])
    );
}

#[test]
fn replaced_lists_ignore_server_defaults_but_not_dropped_fields() {
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 8080, "name": "http"}]}]});
    let mut current = live(&ep, json!({}));
    current["subsets"][0]["ports"][0]["protocol"] = json!("TCP");
    assert!(three_way(
        "Endpoints",
        last_applied(&current).as_ref(),
        &with_last_applied(&ep),
        &current
    )
    .is_empty());
    // A field dropped from an element: the whole list is sent.
    let mut dropped = ep.clone();
    dropped["subsets"][0]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let patch = three_way(
        "Endpoints",
        last_applied(&current).as_ref(),
        &dropped,
        &current,
    );
    assert_eq!(patch["subsets"], dropped["subsets"]);
    // A changed or added element too.
    let mut more = ep.clone();
    more["subsets"][0]["addresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"ip": "127.0.0.2"}));
    let patch = three_way(
        "Endpoints",
        last_applied(&current).as_ref(),
        &more,
        &current,
    );
    assert_eq!(patch["subsets"], more["subsets"]);
}

#[test]
fn sets_service_ports_and_quantities() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["a", "b"]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let current = live(&svc, json!({"spec": {"clusterIP": "10.96.0.7"}}));
    let new = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["a", "c"]},
        "spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let patch = three_way("Service", last_applied(&current).as_ref(), &new, &current);
    assert_eq!(patch["metadata"]["finalizers"], json!(["a", "c"]));
    assert_eq!(
        patch["metadata"]["$deleteFromPrimitiveList/finalizers"],
        json!(["b"])
    );
    assert_eq!(
        patch["spec"],
        json!({"ports": [{"port": 443, "$patch": "delete"}, {"port": 80, "targetPort": 9090}], "$setElementOrder/ports": [{"port": 80}]})
    );
    // A number stored as a quantity string is no change; elsewhere it is.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}});
    let mut current = live(&pod, json!({}));
    current["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1");
    assert!(three_way(
        "Pod",
        last_applied(&current).as_ref(),
        &with_last_applied(&pod),
        &current
    )
    .is_empty());
    let mut odd = current.clone();
    odd["metadata"]["labels"] = json!({"n": "1"});
    let mut pod_n = pod.clone();
    pod_n["metadata"]["labels"] = json!({"n": 1});
    let patch = three_way("Pod", None, &pod_n, &odd);
    assert_eq!(patch["metadata"]["labels"], json!({"n": 1}));
}

#[test]
fn no_last_applied_configuration_deletes_nothing() {
    let manifest = deployment(json!([{"name": "a", "image": "1"}]));
    let mut current = manifest.clone();
    current["spec"]["paused"] = json!(true);
    let modified = with_last_applied(&manifest);
    let patch = three_way("Deployment", None, &modified, &current);
    assert_eq!(
        Value::Object(patch),
        json!({"metadata": {"annotations": {LAST_APPLIED: modified["metadata"]["annotations"][LAST_APPLIED].clone()}}})
    );
}

#[test]
fn the_annotation_is_the_manifest_without_itself() {
    let m = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "annotations": {LAST_APPLIED: "old", "a": "b"}}});
    let out = with_last_applied(&m);
    assert_eq!(
        out["metadata"]["annotations"][LAST_APPLIED],
        json!("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{\"a\":\"b\"},\"name\":\"p\"}}\n")
    );
    let bare = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}});
    let out = with_last_applied(&bare);
    assert_eq!(last_applied(&out), Some(bare));
    assert_eq!(
        list_merge("Deployment", "spec.template.spec.containers[*].env"),
        Some(ByKey("name"))
    );
    assert_eq!(
        list_merge("CronJob", "spec.jobTemplate.spec.template.spec.volumes"),
        Some(ByKey("name"))
    );
    assert_eq!(list_merge("Pod", "spec.tolerations"), None);
}
