//! The arithmetic behind a Job's status: its conditions, the compressed completed-index ranges
//! of Indexed Jobs ("0-2,4"), and the exponential back-off between pod re-creations after
//! failures.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::pods::{finish_time, phase};

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";

/// The condition of type `ty`, if the Job has one.
pub fn condition<'a>(job: &'a Job, ty: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// The Complete or Failed condition of a finished Job.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    [COMPLETE, FAILED]
        .into_iter()
        .filter_map(|ty| condition(job, ty))
        .find(|c| c.status == "True")
}

/// Set condition `ty` to `status` (Kubernetes' `ensureJobConditionStatus`): an existing
/// condition keeps its transition time unless its status changes; a False condition is only
/// recorded over an existing one. Returns whether the status changed.
pub fn set_condition(
    conditions: &mut Vec<JobCondition>,
    ty: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    let fresh = JobCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == ty) {
        Some(c) if c.status == status => false,
        Some(c) => {
            *c = fresh;
            true
        }
        None if status == "False" => false,
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// Kubernetes' compressed form of a set of indexes: ascending, with runs of consecutive
/// indexes as `first-last` ("0-2,4").
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The indexes below `completions` in a compressed range string; malformed parts are skipped
/// (the string is the controller's own, but a user may have edited it).
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bounds = match part.split_once('-') {
            Some((a, b)) => a.parse::<i32>().ok().zip(b.parse::<i32>().ok()),
            None => part.parse::<i32>().ok().map(|a| (a, a)),
        };
        if let Some((a, b)) = bounds {
            out.extend((a.max(0)..=b.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    out
}

/// The delay after `failures` consecutive failures: `base`, doubling per further failure,
/// capped at `max` (Kubernetes' `getRemainingTimeForFailuresCount`).
pub fn backoff_delay(failures: usize, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let mut d = base;
    for _ in 1..failures {
        d = d.saturating_mul(2);
        if d >= max {
            return max;
        }
    }
    d.min(max)
}

/// How long pod creation must still wait after the failures among `finished` pods: the failures
/// since the last success count, and the delay runs from the latest of them.
pub fn backoff_remaining(
    finished: &[Arc<Pod>],
    now: jiff::Timestamp,
    base: Duration,
    max: Duration,
) -> Duration {
    let last_success = finished
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .map(|p| finish_time(p))
        .max();
    let failures: Vec<jiff::Timestamp> = finished
        .iter()
        .filter(|p| phase(p) == "Failed")
        .map(|p| finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last_failure) = failures.iter().max() else {
        return Duration::ZERO;
    };
    let delay = backoff_delay(failures.len(), base, max);
    let elapsed = Duration::try_from(now.duration_since(*last_failure)).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_compress_into_ranges_and_back() {
        let cases: &[(&[i32], &str)] = &[
            (&[], ""),
            (&[3], "3"),
            (&[0, 1, 2, 4], "0-2,4"),
            (&[1, 2, 5, 6, 7, 9], "1-2,5-7,9"),
        ];
        for (set, want) in cases {
            let set: BTreeSet<i32> = set.iter().copied().collect();
            assert_eq!(format_indexes(&set), *want);
            assert_eq!(parse_indexes(want, 10), set, "{want}");
        }
        let clipped: Vec<i32> = parse_indexes("0-3,x,8-12", 10).into_iter().collect();
        assert_eq!(clipped, [0, 1, 2, 3, 8, 9]);
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        let delays: Vec<u64> = (0..8)
            .map(|n| backoff_delay(n, base, max).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 320, 360]);
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let t0: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let t1 = t0 + jiff::SignedDuration::from_secs(60);
        let mut conds = Vec::new();
        assert!(!set_condition(
            &mut conds,
            SUSPENDED,
            false,
            "JobResumed",
            "",
            t0
        ));
        assert!(
            conds.is_empty(),
            "no False condition without a True one before"
        );
        assert!(set_condition(
            &mut conds,
            SUSPENDED,
            true,
            "JobSuspended",
            "",
            t0
        ));
        assert!(!set_condition(
            &mut conds,
            SUSPENDED,
            true,
            "JobSuspended",
            "",
            t1
        ));
        assert_eq!(conds[0].last_transition_time, Some(Time(t0)));
        assert!(set_condition(
            &mut conds,
            SUSPENDED,
            false,
            "JobResumed",
            "",
            t1
        ));
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[0].last_transition_time, Some(Time(t1)));
    }
}
