//! The replica calculator's arithmetic, table by table: the ratio and tolerance, pods that are
//! pending, unready, being deleted, failed or missing metrics, on scale-up and scale-down.

use super::*;
use crate::controllers::horizontal_pod_autoscaler::metrics::resource_metrics;

fn calculator() -> Calculator {
    Calculator {
        tolerances: Tolerances::default(),
        cpu_initialization_period: CPU_INITIALIZATION_PERIOD,
        initial_readiness_delay: INITIAL_READINESS_DELAY,
        now: ts(T0),
    }
}

/// What a pod is like in a case.
#[derive(Clone, Copy)]
enum P {
    /// Running and ready, using this many millicores of its 100m request.
    Ready(u64),
    /// Running, Ready=False since it started 1 minute ago, using this much.
    Unready(u64),
    /// Pending (no metrics).
    Pending,
    /// Running and ready without a metrics sample.
    Missing,
    /// Being deleted, using this much.
    Deleting(u64),
    /// Failed, using this much.
    Failed(u64),
}

fn run(current: i32, target: Target, pods: &[P]) -> Result<Proposal, MetricsError> {
    let mut list = Vec::new();
    let mut usages = Vec::new();
    for (i, p) in pods.iter().enumerate() {
        let name = format!("p{i}");
        let mut pod = pod(&name, "100m", "100Mi");
        let status = pod.status.as_mut().unwrap();
        let used = match *p {
            P::Ready(m) => Some(m),
            P::Unready(m) => {
                let started = Time(ts(T0) - jiff::SignedDuration::from_secs(60));
                status.start_time = Some(started.clone());
                let ready = &mut status.conditions.as_mut().unwrap()[0];
                ready.status = "False".into();
                ready.last_transition_time = Some(started);
                Some(m)
            }
            P::Pending => {
                status.phase = Some("Pending".into());
                None
            }
            P::Missing => None,
            P::Deleting(m) => {
                pod.metadata.deletion_timestamp = Some(Time(ts(T0)));
                Some(m)
            }
            P::Failed(m) => {
                pod.status.as_mut().unwrap().phase = Some("Failed".into());
                Some(m)
            }
        };
        if let Some(m) = used {
            usages.push(usage(&name, m, 1 << 20, T0));
        }
        list.push(Arc::new(pod));
    }
    let info = resource_metrics(&usages, Resource::Cpu);
    calculator().resource_replicas(current, target, Resource::Cpu, &list, info)
}

fn replicas(current: i32, target: Target, pods: &[P]) -> i32 {
    run(current, target, pods).unwrap().replicas
}

#[test]
fn ratio_and_tolerance() {
    use P::Ready as R;
    let u = Target::Utilization;
    let cases: &[(i32, Target, &[P], i32)] = &[
        // ceil(current × usage / target)
        (3, u(50), &[R(90), R(90), R(90)], 6),
        (3, u(50), &[R(20), R(20), R(20)], 2),
        (4, u(50), &[R(10), R(10), R(10), R(10)], 1),
        // Within 10% of the target nothing changes, even when ceil would.
        (3, u(50), &[R(54), R(54), R(54)], 3),
        (3, u(50), &[R(46), R(46), R(46)], 3),
        (3, u(50), &[R(56), R(56), R(56)], 4),
        // Utilization is of the sum of requests: 150 of 300.
        (3, u(50), &[R(0), R(50), R(100)], 3),
        // AverageValue: average per pod against the target, in millicores.
        (2, Target::AverageValue(100), &[R(300), R(300)], 6),
        (2, Target::AverageValue(100), &[R(105), R(105)], 2),
    ];
    for (i, (current, target, pods, want)) in cases.iter().enumerate() {
        assert_eq!(replicas(*current, *target, pods), *want, "case {i}");
    }
    let p = run(3, u(50), &[R(90), R(90), R(90)]).unwrap();
    assert_eq!((p.utilization, p.average), (Some(90), 90));
}

#[test]
fn unready_pods_count_as_idle_on_scale_up_and_are_ignored_otherwise() {
    use P::*;
    let u = Target::Utilization(50);
    // Two ready pods at 100%: alone they ask for ceil(2 × 2) = 4 of 4 pods... but counted with
    // the two unready ones at 0% the ratio is (200 + 0 + 0) / 400 = 50% → within tolerance.
    assert_eq!(
        replicas(4, u, &[Ready(100), Ready(100), Unready(90), Unready(90)]),
        4
    );
    // At 200% each: 400 / 400 = 100% → ceil(2 × 4) = 8.
    assert_eq!(
        replicas(4, u, &[Ready(200), Ready(200), Unready(0), Unready(0)]),
        8
    );
    // Pending pods are unready too.
    assert_eq!(
        replicas(4, u, &[Ready(200), Ready(200), Pending, Pending]),
        8
    );
    // On a scale-down unready pods are left out: ceil(0.2 × 2 ready) = 1.
    assert_eq!(
        replicas(4, u, &[Ready(10), Ready(10), Unready(90), Pending]),
        1
    );
    // Only unready pods: no usable metrics.
    assert_eq!(
        run(2, u, &[Unready(50), Pending]).unwrap_err().0,
        "did not receive metrics for targeted pods (pods might be unready)"
    );
}

#[test]
fn missing_metrics_are_assumed_full_on_scale_down_and_idle_on_scale_up() {
    use P::*;
    let u = Target::Utilization(50);
    // Scale-down: the missing pod counts as 100% of its request: (30 + 100) / 400 = 32.5% →
    // 32% → ceil(0.64 × 4) = 3 (instead of 1 without it).
    assert_eq!(
        replicas(4, u, &[Ready(10), Ready(10), Ready(10), Missing]),
        3
    );
    // ... which can cancel the scale-down: (40 + 100) / 300 = 46% is within the tolerance.
    assert_eq!(replicas(3, u, &[Ready(20), Ready(20), Missing]), 3);
    // Scale-up: the missing pod counts as 0%: 200 / 300 = 66% → ceil(1.32 × 3) = 4.
    assert_eq!(replicas(3, u, &[Ready(100), Ready(100), Missing]), 4);
    // A recomputed ratio on the other side of 1 keeps the current size:
    // 2 pods at 60% with 3 missing → (120 + 0) / 500 = 24% < 50%.
    assert_eq!(
        replicas(5, u, &[Ready(60), Ready(60), Missing, Missing, Missing]),
        5
    );
    // AverageValue fills missing pods with the target on a scale-down: (40 + 100) / 3 = 46
    // against 100 → ceil(0.46 × 3) = 2 (instead of ceil(0.2 × 2) = 1).
    assert_eq!(
        replicas(
            3,
            Target::AverageValue(100),
            &[Ready(20), Ready(20), Missing]
        ),
        2
    );
}

#[test]
fn pods_being_deleted_or_failed_are_ignored() {
    use P::*;
    let u = Target::Utilization(50);
    assert_eq!(
        replicas(3, u, &[Ready(50), Ready(50), Deleting(1000), Failed(1000)]),
        3
    );
    assert_eq!(
        run(1, u, &[]).unwrap_err().0,
        "no pods returned by selector while calculating replica count"
    );
}

#[test]
fn configured_tolerances_apply_per_direction() {
    let mut c = calculator();
    c.tolerances = Tolerances {
        scale_down: 0.5,
        scale_up: 0.01,
    };
    let pods: Vec<Arc<Pod>> = (0..2)
        .map(|i| Arc::new(pod(&format!("p{i}"), "100m", "1Mi")))
        .collect();
    let info = |m: u64| {
        let u: Vec<PodMetrics> = (0..2).map(|i| usage(&format!("p{i}"), m, 1, T0)).collect();
        resource_metrics(&u, Resource::Cpu)
    };
    let t = Target::Utilization(50);
    // 52% is outside a 1% scale-up tolerance.
    assert_eq!(
        c.resource_replicas(2, t, Resource::Cpu, &pods, info(52))
            .unwrap()
            .replicas,
        3
    );
    // 30% is inside a 50% scale-down tolerance.
    assert_eq!(
        c.resource_replicas(2, t, Resource::Cpu, &pods, info(30))
            .unwrap()
            .replicas,
        2
    );
}
