//! Table tests of the Job and CronJob rules: defaults, validation messages and update rules.

use serde_json::{json, Value};

use super::{CronJobRules, JobRules};
use crate::strategies::pod::test_support::{create_errors, defaulted_json, update_errors, with};

fn job(spec: Value) -> Value {
    let base = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": {"app": "j"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    });
    with(&base, json!({"spec": spec}))
}

fn cron_job(spec: Value) -> Value {
    let base = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    });
    with(&base, json!({"spec": spec}))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn job_defaults() {
    let defaulted = defaulted_json(&JobRules, &job(json!({})));
    let spec = &defaulted["spec"];
    assert_eq!(
        (spec["completions"].clone(), spec["parallelism"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    assert_eq!(defaulted["metadata"]["labels"], json!({"app": "j"}));
    // The registry assigns the uid after defaulting a new Job, so its selector uses the name.
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/job-name": "j"}})
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({"app": "j", "batch.kubernetes.io/job-name": "j", "job-name": "j"})
    );

    // A work queue: parallelism alone leaves completions unset.
    let queue = defaulted_json(&JobRules, &job(json!({"parallelism": 3})));
    assert_eq!(
        (
            queue["spec"]["completions"].clone(),
            queue["spec"]["parallelism"].clone()
        ),
        (Value::Null, json!(3))
    );

    let stored = with(&job(json!({})), json!({"metadata": {"uid": "1234"}}));
    let generated = defaulted_json(&JobRules, &stored);
    assert_eq!(
        generated["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}})
    );
    assert_eq!(
        generated["spec"]["template"]["metadata"]["labels"],
        json!({"app": "j", "batch.kubernetes.io/controller-uid": "1234", "batch.kubernetes.io/job-name": "j",
               "controller-uid": "1234", "job-name": "j"})
    );
    assert_eq!(create_errors(&JobRules, &stored), Vec::<String>::new());

    // Once stored (with the uid the registry gives it), the Job keeps its selector on update.
    let created = with(&defaulted, json!({"metadata": {"uid": "5678"}}));
    let relabelled = with(
        &created,
        json!({"metadata": {"labels": {"team": "x"}}, "spec": {"suspend": true}}),
    );
    assert_eq!(
        update_errors(&JobRules, &created, &relabelled),
        Vec::<String>::new()
    );
}

#[test]
fn job_validation() {
    let cases = vec![
        ("valid", job(json!({})), vec![]),
        ("indexed", job(json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1})), vec![]),
        (
            "restart policy",
            with(&job(json!({})), json!({"spec": {"template": {"spec": {"restartPolicy": null}}}})),
            s(&[r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#]),
        ),
        (
            "numbers",
            job(json!({"parallelism": -1, "completions": -1, "backoffLimit": -1, "activeDeadlineSeconds": 0, "ttlSecondsAfterFinished": -1})),
            s(&[
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0",
            ]),
        ),
        (
            "completion mode",
            job(json!({"completionMode": "Sometimes"})),
            s(&[r#"spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed""#]),
        ),
        (
            "indexed without completions",
            job(json!({"completionMode": "Indexed", "parallelism": 2})),
            s(&["spec.completions: Required value: when completion mode is Indexed"]),
        ),
        (
            "per-index backoff",
            job(json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 1})),
            s(&["spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode"]),
        ),
        ("manual selector", job(json!({"manualSelector": true})), s(&["spec.selector: Required value"])),
        (
            "selector without manualSelector",
            job(json!({"selector": {"matchLabels": {"app": "j"}}})),
            s(&[r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"j"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated"#]),
        ),
        (
            "selector mismatch",
            job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "other"}}})),
            s(&["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"j\"}: `selector` does not match template `labels`"]),
        ),
        (
            "template",
            job(json!({"template": {"spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 0}]}]}}})),
            s(&["spec.template.spec.containers[0].ports[0].containerPort: Required value"]),
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&JobRules, &obj), want, "case {name}");
    }
}

#[test]
fn job_updates() {
    let old = with(
        &job(json!({"completions": 2})),
        json!({"metadata": {"uid": "u1"}}),
    );
    assert_eq!(
        update_errors(
            &JobRules,
            &old,
            &with(&old, json!({"spec": {"parallelism": 2, "suspend": true}}))
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(
            &JobRules,
            &old,
            &with(&old, json!({"spec": {"completions": 3}}))
        ),
        s(&["spec.completions: Invalid value: 3: field is immutable"])
    );
    let errs = update_errors(
        &JobRules,
        &old,
        &with(
            &old,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}),
        ),
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.template: Invalid value: {")
            && errs[0].ends_with("}: field is immutable"),
        "{}",
        errs[0]
    );
    let manual = job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "j"}}}));
    let reselected = with(
        &manual,
        json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}}),
    );
    assert_eq!(
        update_errors(&JobRules, &manual, &reselected),
        s(&[
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"j"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"Exists", Values:[]string(nil)}}}: field is immutable"#
        ])
    );
    // An Indexed Job scales by changing completions and parallelism together.
    let indexed = job(json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2}));
    assert_eq!(
        update_errors(
            &JobRules,
            &indexed,
            &with(
                &indexed,
                json!({"spec": {"completions": 4, "parallelism": 4}})
            )
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(&JobRules, &indexed, &with(&indexed, json!({"spec": {"completions": 4}}))),
        s(&["spec.completions: Invalid value: 4: can only be modified in tandem with spec.parallelism"])
    );
}

#[test]
fn cron_job_defaults() {
    let spec = defaulted_json(&CronJobRules, &cron_job(json!({})))["spec"].clone();
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    let template = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(template["dnsPolicy"], "ClusterFirst");
    assert_eq!(template["containers"][0]["imagePullPolicy"], "Always");
    // Job defaults apply to the Jobs the CronJob creates, not to its template.
    assert_eq!(spec["jobTemplate"]["spec"].get("backoffLimit"), None);
}

#[test]
fn cron_job_validation() {
    let long_name = "a".repeat(53);
    let cases = vec![
        ("valid", cron_job(json!({})), vec![]),
        ("macro", cron_job(json!({"schedule": "@hourly"})), vec![]),
        ("every", cron_job(json!({"schedule": "@every 1h30m"})), vec![]),
        ("no schedule", cron_job(json!({"schedule": ""})), s(&["spec.schedule: Required value"])),
        (
            "fields",
            cron_job(json!({"schedule": "* * *"})),
            s(&[r#"spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: [* * *]"#]),
        ),
        (
            "descriptor",
            cron_job(json!({"schedule": "@sometimes"})),
            s(&[r#"spec.schedule: Invalid value: "@sometimes": unrecognized descriptor: @sometimes"#]),
        ),
        (
            "time zone in schedule",
            cron_job(json!({"schedule": "TZ=UTC 0 * * * *"})),
            s(&[r#"spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"#]),
        ),
        (
            "policy and numbers",
            cron_job(json!({"concurrencyPolicy": "Sometimes", "startingDeadlineSeconds": -1, "successfulJobsHistoryLimit": -1})),
            s(&[
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
                "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
            ]),
        ),
        (
            "job template",
            cron_job(json!({"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "manualSelector": true,
                "template": {"spec": {"restartPolicy": "Always"}}}}})),
            s(&[
                r#"spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#,
                r#"spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"#,
                r#"spec.jobTemplate.spec.manualSelector: Unsupported value: "true": supported values: "nil", "false""#,
            ]),
        ),
        (
            "long name",
            with(&cron_job(json!({})), json!({"metadata": {"name": long_name}})),
            vec![format!(r#"metadata.name: Invalid value: "{long_name}": must be no more than 52 characters"#)],
        ),
    ];
    for (name, obj, want) in cases {
        assert_eq!(create_errors(&CronJobRules, &obj), want, "case {name}");
    }
    // A schedule stored with TZ before the timeZone field existed may keep it.
    let old = cron_job(json!({"schedule": "TZ=UTC 0 * * * *"}));
    assert_eq!(
        update_errors(
            &CronJobRules,
            &old,
            &with(&old, json!({"spec": {"suspend": true}}))
        ),
        Vec::<String>::new()
    );
}
