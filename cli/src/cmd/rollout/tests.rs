//! Table tests of the rollout status messages, the history table and the choice and effect of
//! an undo, on synthetic Deployments and ReplicaSets.

use serde_json::{json, Value};

use super::history::revision_template;
use super::{history_table, rollback, select_revision, status_message, RolloutState};

fn deployment(generation: i64, observed: i64, replicas: i64, status: Value) -> Value {
    let mut st = status;
    st["observedGeneration"] = json!(observed);
    json!({
        "kind": "Deployment",
        "metadata": {"name": "kubia", "generation": generation, "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": replicas},
        "status": st,
    })
}

#[test]
fn deployment_status_messages() {
    let waiting = |m: &str| Ok::<_, String>(RolloutState::Waiting(m.to_string()));
    let cases: Vec<(Value, Result<RolloutState, String>)> = vec![
        (deployment(2, 1, 3, json!({})), waiting("Waiting for deployment spec update to be observed...")),
        (
            deployment(1, 1, 3, json!({"updatedReplicas": 1, "replicas": 3})),
            waiting("Waiting for deployment \"kubia\" rollout to finish: 1 out of 3 new replicas have been updated..."),
        ),
        (
            deployment(1, 1, 3, json!({"updatedReplicas": 3, "replicas": 4, "availableReplicas": 3})),
            waiting("Waiting for deployment \"kubia\" rollout to finish: 1 old replicas are pending termination..."),
        ),
        (
            deployment(1, 1, 3, json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})),
            waiting("Waiting for deployment \"kubia\" rollout to finish: 2 of 3 updated replicas are available..."),
        ),
        (
            deployment(1, 1, 3, json!({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})),
            Ok(RolloutState::Done("deployment \"kubia\" successfully rolled out".into())),
        ),
        (
            deployment(0, 0, 0, json!({})),
            Ok(RolloutState::Done("deployment \"kubia\" successfully rolled out".into())),
        ),
        (
            deployment(
                1,
                1,
                3,
                json!({"updatedReplicas": 1, "replicas": 3, "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ]}),
            ),
            Err("deployment \"kubia\" exceeded its progress deadline".into()),
        ),
    ];
    for (i, (d, want)) in cases.into_iter().enumerate() {
        let got = status_message("Deployment", &d, 0).map_err(|e| e.to_string());
        assert_eq!(got, want, "case {i}");
    }
    let d = deployment(1, 1, 3, json!({}));
    assert_eq!(
        status_message("Deployment", &d, 5).unwrap_err().to_string(),
        "desired revision (5) is different from the running revision (2)"
    );
}

#[test]
fn daemon_set_and_stateful_set_status_messages() {
    let ds = json!({
        "kind": "DaemonSet",
        "metadata": {"name": "ssd-monitor", "generation": 1},
        "spec": {"updateStrategy": {"type": "RollingUpdate"}},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1},
    });
    assert_eq!(
        status_message("DaemonSet", &ds, 0).unwrap(),
        RolloutState::Waiting("Waiting for daemon set \"ssd-monitor\" rollout to finish: 1 of 2 updated pods are available...".into())
    );
    let sts = json!({
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 1},
        "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate"}},
        "status": {"observedGeneration": 1, "readyReplicas": 1},
    });
    assert_eq!(
        status_message("StatefulSet", &sts, 0).unwrap(),
        RolloutState::Waiting("Waiting for 2 pods to be ready...".into())
    );
}

fn rs(name: &str, revision: Option<&str>, cause: Option<&str>, image: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(r) = revision {
        annotations.insert("deployment.kubernetes.io/revision".into(), json!(r));
    }
    if let Some(c) = cause {
        annotations.insert("kubernetes.io/change-cause".into(), json!(c));
    }
    json!({
        "kind": "ReplicaSet",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "annotations": annotations},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "kubia", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "nodejs", "image": image}]},
            },
        },
    })
}

fn history() -> Vec<Value> {
    vec![
        rs(
            "h3",
            Some("3"),
            Some("kubectl set image deployment/kubia nodejs=luksa/kubia:v3"),
            "luksa/kubia:v3",
        ),
        rs("h1", Some("1"), None, "luksa/kubia:v1"),
        rs("h2", Some("2"), Some("upgrade to v2"), "luksa/kubia:v2"),
        rs("stray", None, None, "luksa/kubia:v0"),
    ]
}

#[test]
fn history_table_lists_revisions_in_order() {
    assert_eq!(
        history_table(&history()),
        "\
REVISION  CHANGE-CAUSE
1         <none>
2         upgrade to v2
3         kubectl set image deployment/kubia nodejs=luksa/kubia:v3
"
    );
    assert_eq!(history_table(&[]), "No rollout history found.");
}

#[test]
fn one_revision_prints_its_template_with_raw_tabs() {
    assert_eq!(
        revision_template(&history(), 2).unwrap(),
        "Pod Template:
  Labels:\tapp=kubia
\tpod-template-hash=h2
  Annotations:\tkubernetes.io/change-cause: upgrade to v2
  Containers:
   nodejs:
    Image:\tluksa/kubia:v2
    Port:\t<none>
    Host Port:\t<none>
    Environment:\t<none>
    Mounts:\t<none>
  Volumes:\t<none>
  Node-Selectors:\t<none>
  Tolerations:\t<none>
"
    );
    assert_eq!(
        revision_template(&history(), 9).unwrap_err().to_string(),
        "unable to find the specified revision"
    );
}

#[test]
fn undo_selects_the_previous_or_the_named_revision() {
    let h = history();
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name(select_revision(&h, 0, "kubia").unwrap()), "h2");
    assert_eq!(name(select_revision(&h, 1, "kubia").unwrap()), "h1");
    assert_eq!(
        select_revision(&h, 7, "kubia").unwrap_err().to_string(),
        "unable to find specified revision 7 in history"
    );
    let only_one = vec![rs("h1", Some("1"), None, "x")];
    assert_eq!(
        select_revision(&only_one, 0, "kubia")
            .unwrap_err()
            .to_string(),
        "no rollout history found for deployment \"kubia\""
    );
    assert_eq!(
        select_revision(&[], 0, "kubia").unwrap_err().to_string(),
        "no rollout history found for deployment \"kubia\""
    );
}

#[test]
fn undo_copies_the_template_without_the_hash_label() {
    let d = json!({
        "kind": "Deployment",
        "metadata": {
            "name": "kubia",
            "resourceVersion": "42",
            "annotations": {"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "v3", "team": "web"},
        },
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "kubia"}},
                "spec": {"containers": [{"name": "nodejs", "image": "luksa/kubia:v3"}]},
            },
        },
    });
    let h = history();
    let target = select_revision(&h, 1, "kubia").unwrap();
    let rolled = rollback(&d, target).expect("the templates differ");
    assert_eq!(
        rolled["spec"]["template"],
        json!({"metadata": {"labels": {"app": "kubia"}}, "spec": {"containers": [{"name": "nodejs", "image": "luksa/kubia:v1"}]}})
    );
    // The revision annotation stays the Deployment's; the rest come from the ReplicaSet.
    assert_eq!(
        rolled["metadata"]["annotations"],
        json!({"deployment.kubernetes.io/revision": "3"})
    );
    assert_eq!(rolled["metadata"]["resourceVersion"], json!("42"));
    assert_eq!(rolled["spec"]["replicas"], json!(3));
    // Rolling back to the template the Deployment already has is skipped.
    let current = rs("h3", Some("3"), None, "luksa/kubia:v3");
    assert!(rollback(&d, &current).is_none());
}
