//! A Job's way to completion: parallel pods, work-queue mode, Indexed mode, suspension and
//! resumption, deletion after `ttlSecondsAfterFinished`, adoption of orphans.

use super::*;
use crate::runtime::fake::Action as Write;

#[tokio::test]
async fn completes_five_pods_never_more_than_two_at_once() {
    let h = Harness::new();
    h.add_job(job("batch", Some(5), 2));
    let mut created = 0;
    for _round in 0..10 {
        assert_eq!(h.reconcile("batch").await, Action::Done);
        let active = h.active();
        assert!(active.len() <= 2, "{} active pods", active.len());
        created += h
            .api
            .take_summaries()
            .iter()
            .filter(|s| s.starts_with("create Pod"))
            .count();
        if h.condition("batch", "Complete").is_some() {
            break;
        }
        assert_eq!(h.status("batch").active, Some(active.len() as i32));
        for p in active {
            h.finish(&p, "Succeeded");
        }
        h.advance(30);
    }
    assert_eq!(created, 5, "one pod per completion");
    let st = h.status("batch");
    assert_eq!(st.succeeded, Some(5));
    assert_eq!(st.active, None);
    assert_eq!(st.start_time, Some(Time(start())));
    assert_eq!(st.completion_time, Some(Time(h.now())));
    assert_eq!(
        h.condition("batch", "Complete"),
        Some(("True".into(), "CompletionsReached".into()))
    );
    let events = h.take_events();
    assert_eq!(
        count(&events, "Normal SuccessfulCreate Created pod: batch-"),
        5
    );
    assert_eq!(count(&events, "Normal Completed Job completed"), 1);

    let pod = &h.pods()[0];
    let l = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(l[JOB_NAME_LABEL], "batch");
    assert_eq!(l[LEGACY_JOB_NAME_LABEL], "batch");
    assert_eq!(l[CONTROLLER_UID_LABEL], "uid-batch");
    assert_eq!(l[LEGACY_CONTROLLER_UID_LABEL], "uid-batch");
    assert_eq!(util::controller_of(pod.as_ref()).unwrap().uid, "uid-batch");

    // Finished and nothing changed: the next reconcile writes nothing.
    assert_eq!(h.reconcile("batch").await, Action::Done);
    assert!(h.api.take_summaries().is_empty());
}

#[tokio::test]
async fn work_queue_mode_stops_creating_after_the_first_success() {
    let h = Harness::new();
    h.add_job(job("queue", None, 3));
    h.reconcile("queue").await;
    let pods = h.active();
    assert_eq!(pods.len(), 3);
    h.finish(&pods[0], "Succeeded");
    h.reconcile("queue").await;
    assert_eq!(h.active().len(), 2, "no replacement once a pod succeeded");
    assert!(
        h.condition("queue", "Complete").is_none(),
        "others still run"
    );
    h.finish(&pods[1], "Succeeded");
    h.finish(&pods[2], "Succeeded");
    h.reconcile("queue").await;
    assert_eq!(h.condition("queue", "Complete").unwrap().0, "True");
    assert_eq!(h.status("queue").succeeded, Some(3));
}

#[tokio::test]
async fn indexed_pods_carry_their_index_and_complete_every_index() {
    let h = Harness::new();
    h.add_job(with_spec(job("ix", Some(4), 2), |s| {
        s.completion_mode = Some("Indexed".into());
        s.template.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: "init".into(),
            ..Default::default()
        }]);
    }));
    h.reconcile("ix").await;
    let by_index = |h: &Harness| -> BTreeMap<i32, Arc<Pod>> {
        h.active()
            .into_iter()
            .map(|p| (pods::completion_index(&p).unwrap(), p))
            .collect()
    };
    let running = by_index(&h);
    assert_eq!(running.keys().copied().collect::<Vec<_>>(), [0, 1]);
    let p1 = &running[&1];
    assert!(p1.metadata.name.as_ref().unwrap().starts_with("ix-1-"));
    assert_eq!(
        p1.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION],
        "1"
    );
    assert_eq!(
        p1.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION],
        "1"
    );
    let spec = p1.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("ix-1"));
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let env = c.env.as_ref().unwrap();
        let var = env.iter().find(|e| e.name == COMPLETION_INDEX_ENV).unwrap();
        let field = &var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(
            field.field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }

    h.finish(p1, "Succeeded");
    h.reconcile("ix").await;
    assert_eq!(by_index(&h).keys().copied().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(h.status("ix").completed_indexes.as_deref(), Some("1"));

    // A second pod for a running index is surplus; a failed index runs again.
    let dup = by_index(&h)[&0].clone();
    let mut twin = (*dup).clone();
    twin.metadata.name = Some("ix-0-twin".into());
    twin.metadata.uid = Some("uid-twin".into());
    h.informers.get::<Pod>().upsert(twin);
    h.api.take_summaries();
    h.advance(5);
    h.finish(&by_index(&h)[&2], "Failed");
    assert_eq!(
        h.reconcile("ix").await,
        secs(10),
        "back-off before index 2 runs again"
    );
    let summaries = h.api.take_summaries();
    assert_eq!(
        count(&summaries, "delete Pod default/ix-0-"),
        1,
        "{summaries:?}"
    );
    assert_eq!(count(&summaries, "create Pod"), 0, "{summaries:?}");
    h.advance(10);
    h.reconcile("ix").await;
    assert_eq!(by_index(&h).keys().copied().collect::<Vec<_>>(), [0, 2]);

    for p in h.active() {
        h.finish(&p, "Succeeded");
    }
    h.reconcile("ix").await;
    assert_eq!(by_index(&h).keys().copied().collect::<Vec<_>>(), [3]);
    h.finish(&by_index(&h)[&3], "Succeeded");
    h.reconcile("ix").await;
    let st = h.status("ix");
    assert_eq!(st.completed_indexes.as_deref(), Some("0-3"));
    assert_eq!(st.succeeded, Some(4));
    assert_eq!(st.failed, Some(1));
    assert_eq!(h.condition("ix", "Complete").unwrap().0, "True");
}

#[tokio::test]
async fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let h = Harness::new();
    h.add_job(with_spec(job("sus", Some(4), 2), |s| {
        s.active_deadline_seconds = Some(600);
    }));
    assert_eq!(h.reconcile("sus").await, secs(600));
    assert_eq!(h.active().len(), 2);
    h.api.take_summaries();

    h.advance(100);
    h.edit_job("sus", |s| s.suspend = Some(true));
    assert_eq!(
        h.reconcile("sus").await,
        Action::Done,
        "no deadline while suspended"
    );
    assert!(h.active().is_empty());
    assert_eq!(
        h.condition("sus", "Suspended"),
        Some(("True".into(), "JobSuspended".into()))
    );
    let st = h.status("sus");
    assert_eq!(
        (st.active, st.failed),
        (None, None),
        "suspension is not failure"
    );
    let events = h.take_events();
    assert_eq!(count(&events, "Normal SuccessfulDelete"), 2);
    assert_eq!(count(&events, "Normal Suspended Job suspended"), 1);

    h.advance(1000);
    h.edit_job("sus", |s| s.suspend = Some(false));
    assert_eq!(
        h.reconcile("sus").await,
        secs(600),
        "deadline counts from resumption"
    );
    assert_eq!(h.active().len(), 2);
    assert_eq!(
        h.condition("sus", "Suspended"),
        Some(("False".into(), "JobResumed".into()))
    );
    assert_eq!(h.status("sus").start_time, Some(Time(h.now())));
    assert_eq!(count(&h.take_events(), "Normal Resumed Job resumed"), 1);
}

#[tokio::test]
async fn a_job_created_suspended_starts_no_pods_and_no_clock() {
    let h = Harness::new();
    h.add_job(with_spec(job("later", Some(1), 1), |s| {
        s.suspend = Some(true)
    }));
    h.reconcile("later").await;
    assert!(h.pods().is_empty());
    assert_eq!(h.status("later").start_time, None);
    assert_eq!(h.condition("later", "Suspended").unwrap().0, "True");
}

#[tokio::test]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let h = Harness::new();
    h.add_job(with_spec(job("ttl", Some(1), 1), |s| {
        s.ttl_seconds_after_finished = Some(100);
    }));
    h.reconcile("ttl").await;
    h.finish(&h.active()[0], "Succeeded");
    h.reconcile("ttl").await;
    assert_eq!(h.condition("ttl", "Complete").unwrap().0, "True");
    h.api.take_actions();

    h.advance(40);
    assert_eq!(h.reconcile("ttl").await, secs(60));
    assert!(h.api.take_actions().is_empty());
    h.advance(60);
    assert_eq!(h.reconcile("ttl").await, Action::Done);
    let writes = h.api.take_actions();
    let [Write::Delete { kind, key, opts }] = writes.as_slice() else {
        panic!("expected one delete, got {writes:?}");
    };
    assert_eq!((kind.as_str(), key.as_str()), ("Job", "default/ttl"));
    assert_eq!(opts.propagation, Propagation::Background);
    assert_eq!(opts.precondition_uid.as_deref(), Some("uid-ttl"));
    assert_eq!(
        h.reconcile("ttl").await,
        Action::Done,
        "a deleted Job is no work"
    );
}

#[tokio::test]
async fn matching_orphans_are_adopted_and_counted() {
    let h = Harness::new();
    h.add_job(job("adopt", Some(2), 2));
    let orphan = Pod {
        metadata: ObjectMeta {
            namespace: Some(NS.into()),
            name: Some("stray".into()),
            uid: Some("uid-stray".into()),
            resource_version: Some("5".into()),
            labels: Some(labels(&[(CONTROLLER_UID_LABEL, "uid-adopt")])),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        }),
    };
    h.informers.get::<Pod>().upsert(orphan);
    h.reconcile("adopt").await;
    let summaries = h.api.take_summaries();
    assert_eq!(
        count(&summaries, "patch Pod default/stray"),
        1,
        "{summaries:?}"
    );
    assert_eq!(
        count(&summaries, "create Pod"),
        1,
        "the orphan fills one slot"
    );
    let stray = h.informers.get::<Pod>().get(NS, "stray").unwrap();
    assert_eq!(util::controller_of(stray.as_ref()).unwrap().name, "adopt");
    assert_eq!(h.status("adopt").active, Some(2));
}

#[tokio::test]
async fn job_and_pod_changes_wake_the_controller() {
    let h = Harness::new();
    let c = controller(&h.ctx, JobOptions::default());
    h.add_job(job("wired", Some(3), 2));
    c.run_until_idle().await;
    assert_eq!(h.active().len(), 2);
    for p in h.active() {
        h.finish(&p, "Succeeded");
    }
    c.run_until_idle().await;
    assert_eq!(h.active().len(), 1, "a finished pod queues its Job");
    h.finish(&h.active()[0], "Succeeded");
    c.run_until_idle().await;
    assert_eq!(h.condition("wired", "Complete").unwrap().0, "True");
}
