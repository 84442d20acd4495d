//! Scaling decisions end to end through the reconciler: the utilization ratio and tolerance,
//! min/max replicas, the scale-down stabilization window, behavior policies and selectPolicy,
//! StatefulSet targets, memory AverageValue targets and several metrics.

use serde_json::json;

use super::*;

#[tokio::test]
async fn scales_a_deployment_up_by_the_utilization_ratio() {
    let h = Harness::new();
    h.deployment(3);
    h.pods(3, 90);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    assert_eq!(
        h.sync().await.unwrap(),
        Action::RequeueAfter(Duration::from_secs(15))
    );
    // 90% of requests against 50%: ceil(3 × 1.8) = 6.
    assert_eq!(h.scale_writes(), vec![6]);
    assert_eq!(h.target_replicas(), 6);
    let st = h.status();
    assert_eq!((st.current_replicas, st.desired_replicas), (Some(3), 6));
    assert_eq!(st.last_scale_time, Some(Time(ts(T0))));
    assert_eq!(st.observed_generation, Some(1));
    let current = &st.current_metrics.unwrap()[0];
    let r = current.resource.as_ref().unwrap();
    assert_eq!(
        (
            r.name.as_str(),
            r.current.average_utilization,
            r.current.average_value.clone()
        ),
        ("cpu", Some(90), Some(Quantity("90m".into())))
    );
    assert_eq!(
        h.conditions(),
        vec![
            "AbleToScale=True/SucceededRescale",
            "ScalingActive=True/ValidMetricFound",
            "ScalingLimited=False/DesiredWithinRange",
        ]
    );
    assert_eq!(
        h.condition_message("ScalingActive"),
        "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
    );
    assert_eq!(
        h.take_events(),
        vec!["Normal SuccessfulRescale New size: 6; reason: cpu resource utilization (percentage of request) above target"]
    );
}

#[tokio::test]
async fn within_the_tolerance_nothing_is_written_to_the_target() {
    let h = Harness::new();
    h.deployment(4);
    // 54% against 50%: a ratio of 1.08 is within the 10% tolerance.
    h.pods(4, 54);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), Vec::<i64>::new());
    let st = h.status();
    assert_eq!((st.current_replicas, st.desired_replicas), (Some(4), 4));
    assert_eq!(st.last_scale_time, None);
    assert_eq!(
        h.conditions(),
        vec![
            "AbleToScale=True/ReadyForNewScale",
            "ScalingActive=True/ValidMetricFound",
            "ScalingLimited=False/DesiredWithinRange",
        ]
    );
    // 56% is outside it: ceil(4 × 1.12) = 5.
    h.pods(4, 56);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![5]);
}

#[tokio::test]
async fn max_and_min_replicas_bound_the_recommendation() {
    let h = Harness::new();
    h.deployment(3);
    h.pods(3, 100);
    h.add(hpa("Deployment", 1, 4, vec![cpu_utilization(20)]));
    h.sync().await.unwrap();
    // ceil(3 × 5) = 15, limited to 4.
    assert_eq!(h.scale_writes(), vec![4]);
    assert!(h
        .conditions()
        .contains(&"ScalingLimited=True/TooManyReplicas".to_string()));
    assert_eq!(
        h.condition_message("ScalingLimited"),
        "the desired replica count is more than the maximum replica count"
    );

    // Without a behavior a scale-up is also capped at max(2 × current, 4).
    let h = Harness::new();
    h.deployment(3);
    h.pods(3, 100);
    h.add(hpa("Deployment", 1, 100, vec![cpu_utilization(20)]));
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![6]);
    assert!(h
        .conditions()
        .contains(&"ScalingLimited=True/ScaleUpLimit".to_string()));

    // Scale-down to the minimum (no stabilization window in this behavior).
    let h = Harness::new();
    h.deployment(5);
    h.pods(5, 5);
    let mut a = hpa("Deployment", 2, 10, vec![cpu_utilization(50)]);
    a.spec.behavior = Some(HorizontalPodAutoscalerBehavior {
        scale_down: Some(rules(Some(0), "Max", &[("Percent", 100, 15)])),
        scale_up: None,
    });
    h.add(a);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![2]);
    assert!(h
        .conditions()
        .contains(&"ScalingLimited=True/TooFewReplicas".to_string()));

    // A target outside the bounds is brought inside them without looking at metrics.
    let h = Harness::new();
    h.deployment(12);
    h.pods(12, 50);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![10]);
    assert_eq!(
        h.take_events(),
        vec!["Normal SuccessfulRescale New size: 10; reason: Current number of replicas above Spec.MaxReplicas"]
    );
}

#[tokio::test]
async fn scale_down_waits_for_the_default_stabilization_window() {
    let h = Harness::new();
    h.deployment(5);
    h.pods(5, 50);
    h.add(hpa("Deployment", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), Vec::<i64>::new());
    // Load drops: the recommendation is 1, but 5 was recommended within the last 300 s.
    h.advance(15);
    h.pods(5, 10);
    for _ in 0..19 {
        h.sync().await.unwrap();
        assert_eq!(h.scale_writes(), Vec::<i64>::new(), "at {}", h.now());
        assert_eq!(h.target_replicas(), 5);
        assert!(
            h.conditions()
                .contains(&"AbleToScale=True/ScaleDownStabilized".to_string()),
            "{:?}",
            h.conditions()
        );
        h.advance(15);
    }
    // 300 s after the last recommendation of 5, the low ones win.
    h.advance(15);
    h.pods(5, 10);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![1]);
    assert!(h
        .conditions()
        .contains(&"AbleToScale=True/SucceededRescale".to_string()));
}

#[tokio::test]
async fn the_behavior_window_is_honoured_and_scale_up_is_immediate() {
    let h = Harness::new();
    h.deployment(4);
    h.pods(4, 50);
    let mut a = hpa("Deployment", 1, 10, vec![cpu_utilization(50)]);
    a.spec.behavior = Some(HorizontalPodAutoscalerBehavior {
        scale_down: Some(rules(Some(60), "Max", &[("Percent", 100, 15)])),
        scale_up: None,
    });
    h.add(a);
    h.sync().await.unwrap();
    h.advance(10);
    h.pods(4, 20);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), Vec::<i64>::new());
    // 60 s after the recommendation of 4: ceil(4 × 0.4) = 2.
    h.advance(51);
    h.pods(4, 20);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![2]);
    // The scale-up window defaults to 0: a spike is followed at once.
    h.advance(1);
    h.pods(2, 100);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![4]);
}

#[tokio::test]
async fn scale_up_policies_limit_the_rate_per_period() {
    let h = Harness::new();
    h.deployment(2);
    h.pods(2, 150);
    let mut a = hpa("Deployment", 1, 20, vec![cpu_utilization(50)]);
    a.spec.behavior = Some(HorizontalPodAutoscalerBehavior {
        scale_up: Some(rules(Some(0), "Max", &[("Pods", 1, 60)])),
        scale_down: None,
    });
    h.add(a);
    h.sync().await.unwrap();
    // ceil(2 × 3) = 6, but one pod per minute.
    assert_eq!(h.scale_writes(), vec![3]);
    assert!(h
        .conditions()
        .contains(&"ScalingLimited=True/ScaleUpLimit".to_string()));
    h.advance(30);
    h.pods(3, 150);
    h.sync().await.unwrap();
    assert_eq!(
        h.scale_writes(),
        Vec::<i64>::new(),
        "the minute is not over"
    );
    h.advance(31);
    h.pods(3, 150);
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![4]);
}

#[tokio::test]
async fn select_policy_min_max_and_disabled() {
    // Max: the policy allowing the larger change (100% of 4 = +4 beats +1).
    let up = |select: &str| {
        let mut a = hpa("Deployment", 1, 50, vec![cpu_utilization(10)]);
        a.spec.behavior = Some(HorizontalPodAutoscalerBehavior {
            scale_up: Some(rules(
                Some(0),
                select,
                &[("Pods", 1, 60), ("Percent", 100, 60)],
            )),
            scale_down: None,
        });
        a
    };
    for (select, want) in [("Max", vec![8]), ("Min", vec![5]), ("Disabled", vec![])] {
        let h = Harness::new();
        h.deployment(4);
        h.pods(4, 100);
        h.add(up(select));
        h.sync().await.unwrap();
        assert_eq!(h.scale_writes(), want, "selectPolicy {select}");
    }
    // Scale-down by Percent: at most half per minute; Min picks the smaller change.
    let down = |select: &str| {
        let mut a = hpa("Deployment", 1, 50, vec![cpu_utilization(50)]);
        a.spec.behavior = Some(HorizontalPodAutoscalerBehavior {
            scale_down: Some(rules(
                Some(0),
                select,
                &[("Percent", 50, 60), ("Pods", 1, 60)],
            )),
            scale_up: None,
        });
        a
    };
    for (select, want) in [("Max", vec![4]), ("Min", vec![7]), ("Disabled", vec![])] {
        let h = Harness::new();
        h.deployment(8);
        h.pods(8, 5);
        h.add(down(select));
        h.sync().await.unwrap();
        assert_eq!(h.scale_writes(), want, "selectPolicy {select}");
        let reason = h
            .conditions()
            .into_iter()
            .find(|c| c.starts_with("ScalingLimited"))
            .unwrap();
        assert_eq!(reason, "ScalingLimited=True/ScaleDownLimit", "{select}");
    }
}

#[tokio::test]
async fn stateful_sets_are_scaled_through_a_guarded_merge_patch() {
    let h = Harness::new();
    h.informers.get::<StatefulSet>().upsert(StatefulSet {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some("web".into()),
            resource_version: Some("3".into()),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(2),
            selector: selector(),
            ..Default::default()
        },
        status: None,
    });
    h.pods(2, 100);
    h.add(hpa("StatefulSet", 1, 10, vec![cpu_utilization(50)]));
    h.sync().await.unwrap();
    let actions = h.api.take_actions();
    let crate::runtime::fake::Action::Patch { kind, key, patch } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (kind.as_str(), key.as_str()),
        ("StatefulSet", "default/web")
    );
    assert_eq!(
        patch,
        &json!({"metadata": {"resourceVersion": "3"}, "spec": {"replicas": 4}})
    );
}

#[tokio::test]
async fn memory_average_value_targets() {
    let h = Harness::new();
    h.deployment(2);
    h.pods(2, 10);
    for u in h.metrics.pods.lock().unwrap().iter_mut() {
        u.containers[0].memory_bytes = 300 << 20;
    }
    h.add(hpa(
        "Deployment",
        1,
        10,
        vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "memory".into(),
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity("100Mi".into())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }],
    ));
    h.sync().await.unwrap();
    // 300Mi per pod against 100Mi: ceil(2 × 3) = 6, capped at max(2 × 2, 4) = 4 without a
    // behavior.
    assert_eq!(h.scale_writes(), vec![4]);
    let st = h.status();
    let r = st.current_metrics.unwrap()[0].resource.clone().unwrap();
    assert_eq!(
        (r.current.average_utilization, r.current.average_value),
        (None, Some(Quantity((300u64 << 20).to_string())))
    );
    assert_eq!(
        h.condition_message("ScalingActive"),
        "the HPA was able to successfully calculate a replica count from memory resource"
    );
}

#[tokio::test]
async fn the_largest_proposal_over_several_metrics_wins() {
    let h = Harness::new();
    h.deployment(2);
    h.pods(2, 100);
    let memory = MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "memory".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(50),
                ..Default::default()
            },
        }),
        ..Default::default()
    };
    // cpu: 100% against 50% → 4; memory: 50Mi of 100Mi = 50% → 2.
    h.add(hpa("Deployment", 1, 10, vec![memory, cpu_utilization(50)]));
    h.sync().await.unwrap();
    assert_eq!(h.scale_writes(), vec![4]);
    assert_eq!(h.status().current_metrics.unwrap().len(), 2);
}
