//! Failures and their conditions and Events: a missing or unsupported target, unreadable
//! metrics, a container without a request, an unsupported metric source, a target scaled to
//! zero, and a failed scale write.

use super::*;

#[tokio::test]
async fn failures_are_reported_in_conditions_and_events() {
    // No target.
    let h = Harness::new();
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(h.conditions(), vec!["AbleToScale=False/FailedGetScale"]);
    assert_eq!(
        h.condition_message("AbleToScale"),
        "the HPA controller was unable to get the target's current scale: deployments.apps \"web\" not found"
    );
    assert_eq!(
        h.take_events(),
        vec!["Warning FailedGetScale deployments.apps \"web\" not found"]
    );

    // An unsupported target kind.
    let h = Harness::new();
    let mut a = hpa("Deployment", 1, 10, vec![cpu_utilization(50)]);
    a.spec.scale_target_ref.kind = "CronJob".into();
    a.spec.scale_target_ref.api_version = Some("batch/v1".into());
    h.add(a);
    h.sync().await.unwrap();
    assert!(h
        .condition_message("AbleToScale")
        .contains("unsupported scale target batch/v1 CronJob"));

    // Metrics unavailable.
    let h = Harness::new();
    h.deployment(3);
    h.pods(3, 50);
    *h.metrics.error.lock().unwrap() = Some("the metrics API is unreachable".into());
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(
        h.conditions(),
        vec![
            "AbleToScale=True/SucceededGetScale",
            "ScalingActive=False/FailedGetResourceMetric",
        ]
    );
    assert_eq!(
        h.condition_message("ScalingActive"),
        "the HPA was unable to compute the replica count: unable to get metrics for resource cpu: the metrics API is unreachable"
    );
    assert_eq!(
        h.take_events(),
        vec![
            "Warning FailedGetResourceMetric unable to get metrics for resource cpu: the metrics API is unreachable",
            "Warning FailedComputeMetricsReplicas invalid metrics (1 invalid out of 1), first error is: unable to get metrics for resource cpu: the metrics API is unreachable",
        ]
    );
    assert_eq!(h.status().current_replicas, Some(3));
    assert_eq!(h.scale_writes(), Vec::<i64>::new());

    // A container without a cpu request.
    let h = Harness::new();
    h.deployment(1);
    h.pods(1, 50);
    let mut p = pod("web-0", "100m", "1Mi");
    p.spec.as_mut().unwrap().containers[0].resources = None;
    h.informers.get::<Pod>().upsert(p);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert!(h
        .condition_message("ScalingActive")
        .ends_with("missing request for cpu in container app of Pod web-0"));

    // An unsupported metric source type.
    let h = Harness::new();
    h.deployment(1);
    h.pods(1, 50);
    h.add(hpa(
        "Deployment",
        1,
        10,
        vec![MetricSpec {
            type_: "External".into(),
            ..Default::default()
        }],
    ));
    h.sync().await.unwrap();
    assert!(h
        .conditions()
        .contains(&"ScalingActive=False/InvalidMetricSourceType".to_string()));

    // A target scaled to zero disables autoscaling.
    let h = Harness::new();
    h.deployment(0);
    h.pods(0, 0);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert!(h
        .conditions()
        .contains(&"ScalingActive=False/ScalingDisabled".to_string()));
    assert_eq!(h.scale_writes(), Vec::<i64>::new());
}

#[tokio::test]
async fn a_failed_scale_write_sets_able_to_scale_false() {
    let h = Harness::new();
    h.deployment(2);
    h.pods(2, 100);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.api.fail_next(Error::Api(rkube_client::Error::Conflict(
        "the object has been modified".into(),
    )));
    assert!(h.sync().await.unwrap_err().is_conflict());
    assert!(h
        .conditions()
        .contains(&"AbleToScale=False/FailedUpdateScale".to_string()));
    assert_eq!(
        h.take_events(),
        vec!["Warning FailedRescale New size: 4; reason: cpu resource utilization (percentage of request) above target; error: Error from server (Conflict): the object has been modified"]
    );
    // The retry succeeds and the condition's transition time moves.
    h.advance(1);
    h.sync().await.unwrap();
    assert_eq!(h.target_replicas(), 4);
    let st = h.status();
    let able = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "AbleToScale")
        .unwrap();
    assert_eq!(
        (able.status.as_str(), able.last_transition_time),
        ("True", Some(Time(ts("2025-01-01T00:00:01Z"))))
    );
}
