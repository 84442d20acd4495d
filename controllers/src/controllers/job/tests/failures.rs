//! How a Job fails: exponential back-off between re-created pods up to `backoffLimit`, container
//! restarts under `restartPolicy: OnFailure`, `activeDeadlineSeconds`, and writes that fail.

use super::*;

#[tokio::test]
async fn backoff_limit_is_reached_after_delays_that_double() {
    let h = Harness::new();
    h.add_job(with_spec(job("flaky", Some(1), 1), |s| {
        s.backoff_limit = Some(2)
    }));
    assert_eq!(h.reconcile("flaky").await, Action::Done);
    h.finish(&h.active()[0], "Failed");
    assert_eq!(h.reconcile("flaky").await, secs(10), "first failure: 10 s");
    assert!(h.active().is_empty(), "no pod during the back-off");
    assert_eq!(h.status("flaky").failed, Some(1));

    h.advance(10);
    assert_eq!(h.reconcile("flaky").await, Action::Done);
    assert_eq!(h.active().len(), 1, "re-created once the back-off passed");
    h.advance(5);
    h.finish(&h.active()[0], "Failed");
    assert_eq!(h.reconcile("flaky").await, secs(20), "second failure: 20 s");
    h.advance(7);
    assert_eq!(h.reconcile("flaky").await, secs(13));
    assert!(h.active().is_empty());
    h.advance(13);
    h.reconcile("flaky").await;
    assert_eq!(h.active().len(), 1);
    assert!(
        h.condition("flaky", "Failed").is_none(),
        "two failures are within the limit"
    );

    h.finish(&h.active()[0], "Failed");
    assert_eq!(h.reconcile("flaky").await, Action::Done);
    assert_eq!(
        h.condition("flaky", "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(h.status("flaky").failed, Some(3));
    assert!(h.active().is_empty());
    let events = h.take_events();
    assert_eq!(count(&events, "Normal SuccessfulCreate"), 3);
    assert_eq!(
        count(
            &events,
            "Warning BackoffLimitExceeded Job has reached the specified backoff limit"
        ),
        1
    );
    h.api.take_summaries();
    assert_eq!(h.reconcile("flaky").await, Action::Done);
    assert!(
        h.api.take_summaries().is_empty(),
        "a failed Job is left alone"
    );
}

#[test]
fn backoff_counts_failures_since_the_last_success() {
    let at = |secs: i64, phase: &str| {
        let t = start() + jiff::SignedDuration::from_secs(secs);
        Arc::new(terminated(&Pod::default(), phase, t))
    };
    let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
    let now = start() + jiff::SignedDuration::from_secs(4);
    let remaining = |pods: &[Arc<Pod>]| status::backoff_remaining(pods, now, base, max);
    let (f1, f2, ok, f3) = (
        at(0, "Failed"),
        at(1, "Failed"),
        at(2, "Succeeded"),
        at(3, "Failed"),
    );
    assert_eq!(
        remaining(&[f1.clone(), f2.clone()]),
        Duration::from_secs(17)
    );
    assert_eq!(remaining(&[f1, f2, ok.clone(), f3]), Duration::from_secs(9));
    assert_eq!(remaining(&[ok]), Duration::ZERO);
}

#[tokio::test]
async fn container_restarts_count_towards_the_limit_under_on_failure() {
    let h = Harness::new();
    h.add_job(with_spec(job("restarts", Some(1), 1), |s| {
        s.backoff_limit = Some(3);
        s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    }));
    h.reconcile("restarts").await;
    let pod = h.active()[0].clone();
    h.running(&pod, 2);
    h.reconcile("restarts").await;
    assert!(h.condition("restarts", "Failed").is_none());
    assert_eq!(h.active().len(), 1, "the pod restarts in place");

    h.running(&pod, 3);
    h.reconcile("restarts").await;
    assert_eq!(
        h.condition("restarts", "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert!(h.active().is_empty(), "the restarting pod is stopped");
    assert_eq!(h.status("restarts").failed, Some(1));
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_stops_its_pods() {
    let h = Harness::new();
    h.add_job(with_spec(job("slow", Some(4), 2), |s| {
        s.active_deadline_seconds = Some(30);
    }));
    assert_eq!(h.reconcile("slow").await, secs(30));
    assert_eq!(h.active().len(), 2);
    h.api.take_summaries();
    h.advance(10);
    assert_eq!(h.reconcile("slow").await, secs(20));
    assert!(h.api.take_summaries().is_empty());

    h.advance(20);
    assert_eq!(h.reconcile("slow").await, Action::Done);
    assert_eq!(
        h.condition("slow", "Failed"),
        Some(("True".into(), "DeadlineExceeded".into()))
    );
    assert!(h.active().is_empty());
    let st = h.status("slow");
    assert_eq!(
        (st.active, st.failed, st.completion_time),
        (None, Some(2), None)
    );
    let events = h.take_events();
    assert_eq!(count(&events, "Normal SuccessfulDelete"), 2);
    assert_eq!(
        count(
            &events,
            "Warning DeadlineExceeded Job was active longer than specified deadline"
        ),
        1
    );
}

#[tokio::test]
async fn a_failed_creation_is_reported_and_retried() {
    let h = Harness::new();
    h.add_job(job("quota", Some(3), 3));
    h.api.fail_next(Error::Api(rkube_client::Error::Forbidden(
        "exceeded quota".into(),
    )));
    let err = h
        .reconciler
        .reconcile(&ObjectKey::new(NS, "quota"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeded quota"), "{err}");
    assert!(
        h.pods().is_empty(),
        "slow start: nothing after the failed first batch"
    );
    assert_eq!(h.status("quota").active, None);
    assert_eq!(count(&h.take_events(), "Warning FailedCreate"), 1);

    assert_eq!(h.reconcile("quota").await, Action::Done);
    assert_eq!(h.active().len(), 3);
    assert_eq!(h.status("quota").active, Some(3));
}

#[tokio::test]
async fn writes_not_yet_in_the_cache_hold_back_the_next_sizing() {
    let h = Harness::new();
    h.add_job(job("lag", Some(2), 2));
    let key = ObjectKey::new(NS, "lag");
    h.reconciler
        .expectations
        .created(&key, ObjectKey::new(NS, "lag-unseen"));
    assert!(matches!(h.reconcile("lag").await, Action::RequeueAfter(_)));
    assert!(h.pods().is_empty(), "no pods while a creation is not shown");
    h.reconciler
        .expectations
        .observed(&key, &ObjectKey::new(NS, "lag-unseen"));
    assert_eq!(h.reconcile("lag").await, Action::Done);
    assert_eq!(h.active().len(), 2);
}
