//! From the metrics' recommendation to the replica count the autoscaler sets, as Kubernetes'
//! `normalizeDesiredReplicas` (no `behavior`: scale-down stabilization, scale-up capped at
//! max(2×current, 4)) and `normalizeDesiredReplicasWithBehaviors` (stabilization windows both
//! ways, then the Pods/Percent policies per period with selectPolicy Max/Min/Disabled), both
//! bounded by min/max replicas. The recommendations and scale events they remember are per
//! autoscaler, in memory, like Kubernetes' controller.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

use super::replicas::{milli_value, Tolerances, DEFAULT_TOLERANCE};

/// The scale-down stabilization window when none is given
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_SCALE_DOWN_WINDOW_SECONDS: i32 = 300;

/// How policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the biggest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

/// One direction's rules with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select: Select,
    pub policies: Vec<Policy>,
    pub tolerance: f64,
}

/// `spec.behavior` with Kubernetes' defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Behavior {
    /// The behavior of an autoscaler; `None` without `spec.behavior` (the legacy algorithm).
    /// Values the API server should have rejected are errors naming the field.
    pub fn resolve(
        given: Option<&HorizontalPodAutoscalerBehavior>,
    ) -> Result<Option<Behavior>, String> {
        let Some(b) = given else { return Ok(None) };
        Ok(Some(Behavior {
            scale_up: rules(
                b.scale_up.as_ref(),
                "scaleUp",
                0,
                &[(PolicyKind::Pods, 4, 15), (PolicyKind::Percent, 100, 15)],
            )?,
            scale_down: rules(
                b.scale_down.as_ref(),
                "scaleDown",
                DEFAULT_SCALE_DOWN_WINDOW_SECONDS,
                &[(PolicyKind::Percent, 100, 15)],
            )?,
        }))
    }

    pub fn tolerances(&self) -> Tolerances {
        Tolerances {
            scale_down: self.scale_down.tolerance,
            scale_up: self.scale_up.tolerance,
        }
    }
}

fn rules(
    given: Option<&HPAScalingRules>,
    direction: &str,
    default_window: i32,
    default_policies: &[(PolicyKind, i32, i32)],
) -> Result<Rules, String> {
    let field = |f: &str| format!("spec.behavior.{direction}.{f}");
    let select = match given
        .and_then(|g| g.select_policy.as_deref())
        .unwrap_or("Max")
    {
        "Max" => Select::Max,
        "Min" => Select::Min,
        "Disabled" => Select::Disabled,
        other => {
            return Err(format!(
                "{}: unsupported value {other:?}: supported values: \"Disabled\", \"Max\", \"Min\"",
                field("selectPolicy")
            ))
        }
    };
    let policies = match given.and_then(|g| g.policies.as_ref()) {
        Some(list) => list
            .iter()
            .map(|p| {
                let kind = match p.type_.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    other => {
                        return Err(format!(
                        "{}: unsupported value {other:?}: supported values: \"Percent\", \"Pods\"",
                        field("policies.type")
                    ))
                    }
                };
                Ok(Policy {
                    kind,
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        None => default_policies
            .iter()
            .map(|&(kind, value, period_seconds)| Policy {
                kind,
                value,
                period_seconds,
            })
            .collect(),
    };
    let tolerance = match given.and_then(|g| g.tolerance.as_ref()) {
        Some(q) => milli_value(&q.0)
            .map(|m| m as f64 / 1000.0)
            .ok_or_else(|| format!("{}: invalid quantity {:?}", field("tolerance"), q.0))?,
        None => DEFAULT_TOLERANCE,
    };
    Ok(Rules {
        stabilization_window_seconds: given
            .and_then(|g| g.stabilization_window_seconds)
            .unwrap_or(default_window),
        select,
        policies,
        tolerance,
    })
}

/// A condition the normalization decided: (status, reason, message).
pub type Verdict = (bool, &'static str, &'static str);

/// The replica count to set and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    /// The AbleToScale condition (always True here).
    pub able_to_scale: Verdict,
    /// The ScalingLimited condition.
    pub scaling_limited: Verdict,
}

#[derive(Debug, Clone, Copy)]
struct Recommendation {
    replicas: i32,
    at: jiff::Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct ScaleEvent {
    change: i32,
    at: jiff::Timestamp,
    outdated: bool,
}

/// What one autoscaler remembers between reconciles.
#[derive(Debug, Default)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// The inputs of one normalization.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    pub behavior: Option<&'a Behavior>,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub current: i32,
    pub desired: i32,
    pub now: jiff::Timestamp,
}

const READY: Verdict = (
    true,
    "ReadyForNewScale",
    "recommended size matches current size",
);
const DOWN_STABILIZED: Verdict = (
    true,
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: Verdict = (
    true,
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN_RANGE: &str = "the desired count is within the acceptable range";
const TOO_MANY: &str = "the desired replica count is more than the maximum replica count";
const TOO_FEW: &str = "the desired replica count is less than the minimum replica count";
const UP_LIMIT: &str = "the desired replica count is increasing faster than the maximum scale rate";
const DOWN_LIMIT: &str =
    "the desired replica count is decreasing faster than the maximum scale rate";

impl History {
    /// A new autoscaler starts from the target's current size as its first recommendation.
    pub fn record_initial(&mut self, current: i32, now: jiff::Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Stabilize and bound the recommendation `args.desired`, remembering it.
    pub fn normalize(&mut self, args: Args<'_>) -> Normalized {
        match args.behavior {
            None => self.normalize_legacy(args),
            Some(b) => self.normalize_with_behavior(args, b),
        }
    }

    /// A rescale from `previous` to `new` replicas happened at `now` (remembered only with a
    /// behavior, whose policies count the changes per period).
    pub fn record_scale(
        &mut self,
        behavior: Option<&Behavior>,
        previous: i32,
        new: i32,
        now: jiff::Timestamp,
    ) {
        let Some(b) = behavior else { return };
        let (events, rules, change) = if new > previous {
            (&mut self.scale_up_events, &b.scale_up, new - previous)
        } else {
            (&mut self.scale_down_events, &b.scale_down, previous - new)
        };
        let longest = rules
            .policies
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = now - jiff::SignedDuration::from_secs(i64::from(longest));
        for e in events.iter_mut() {
            if e.at <= cutoff {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match events.iter().rposition(|e| e.outdated) {
            Some(i) => events[i] = event,
            None => events.push(event),
        }
    }

    fn normalize_legacy(&mut self, args: Args<'_>) -> Normalized {
        let window = jiff::SignedDuration::from_secs(i64::from(DEFAULT_SCALE_DOWN_WINDOW_SECONDS));
        let cutoff = args.now - window;
        let mut stabilized = args.desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                old = Some(i);
            } else {
                stabilized = stabilized.max(r.replicas);
            }
        }
        self.remember(old, args.desired, args.now);
        let able_to_scale = if stabilized != args.desired {
            DOWN_STABILIZED
        } else {
            READY
        };
        // Kubernetes caps a scale-up at twice the current size (at least 4) without a behavior.
        let scale_up_limit = (2 * args.current).max(4);
        let (max_allowed, limit_reason, limit_message) = if args.max_replicas > scale_up_limit {
            (scale_up_limit, "ScaleUpLimit", UP_LIMIT)
        } else {
            (args.max_replicas, "TooManyReplicas", TOO_MANY)
        };
        let (replicas, reason, message) = if stabilized < args.min_replicas {
            (args.min_replicas, "TooFewReplicas", TOO_FEW)
        } else if stabilized > max_allowed {
            (max_allowed, limit_reason, limit_message)
        } else {
            (stabilized, "DesiredWithinRange", WITHIN_RANGE)
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: (replicas != stabilized, reason, message),
        }
    }

    fn normalize_with_behavior(&mut self, args: Args<'_>, b: &Behavior) -> Normalized {
        let secs = |s: i32| jiff::SignedDuration::from_secs(i64::from(s));
        let up_cutoff = args.now - secs(b.scale_up.stabilization_window_seconds);
        let down_cutoff = args.now - secs(b.scale_down.stabilization_window_seconds);
        let (mut up, mut down) = (args.desired, args.desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at > down_cutoff {
                down = down.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = args.current.max(up).min(down);
        self.remember(old, args.desired, args.now);
        let able_to_scale = if stabilized == args.desired {
            READY
        } else if args.desired >= args.current {
            UP_STABILIZED
        } else {
            DOWN_STABILIZED
        };

        let mut result = (stabilized, "DesiredWithinRange", WITHIN_RANGE);
        if stabilized > args.current {
            let limit = self
                .scale_up_limit(args.current, &b.scale_up, args.now)
                .max(args.current);
            let (max_allowed, reason, message) = if args.max_replicas > limit {
                (limit, "ScaleUpLimit", UP_LIMIT)
            } else {
                (args.max_replicas, "TooManyReplicas", TOO_MANY)
            };
            if stabilized > max_allowed {
                result = (max_allowed, reason, message);
            }
        } else if stabilized < args.current {
            let limit = self
                .scale_down_limit(args.current, &b.scale_down, args.now)
                .min(args.current);
            let (min_allowed, reason, message) = if args.min_replicas < limit {
                (limit, "ScaleDownLimit", DOWN_LIMIT)
            } else {
                (args.min_replicas, "TooFewReplicas", TOO_FEW)
            };
            if stabilized < min_allowed {
                result = (min_allowed, reason, message);
            }
        }
        let (replicas, reason, message) = result;
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: (replicas != stabilized, reason, message),
        }
    }

    /// Record the unstabilized recommendation, reusing the slot of an expired one.
    fn remember(&mut self, old: Option<usize>, replicas: i32, now: jiff::Timestamp) {
        let r = Recommendation { replicas, at: now };
        match old {
            Some(i) => self.recommendations[i] = r,
            None => self.recommendations.push(r),
        }
    }

    /// The replicas at the start of a policy's period: now's count minus what was added and
    /// plus what was removed within it.
    fn period_start(&self, current: i32, period_seconds: i32, now: jiff::Timestamp) -> i32 {
        let cutoff = now - jiff::SignedDuration::from_secs(i64::from(period_seconds));
        let sum = |events: &[ScaleEvent]| -> i32 {
            events
                .iter()
                .filter(|e| e.at > cutoff)
                .map(|e| e.change)
                .sum()
        };
        current - sum(&self.scale_up_events) + sum(&self.scale_down_events)
    }

    /// Kubernetes' `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, current: i32, rules: &Rules, now: jiff::Timestamp) -> i32 {
        let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
            Select::Disabled => return current,
            Select::Min => (i32::MAX, i32::min),
            Select::Max => (i32::MIN, i32::max),
        };
        for p in &rules.policies {
            let start = self.period_start(current, p.period_seconds, now);
            let proposed = match p.kind {
                PolicyKind::Pods => start + p.value,
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// Kubernetes' `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, current: i32, rules: &Rules, now: jiff::Timestamp) -> i32 {
        let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
            Select::Disabled => return current,
            Select::Min => (i32::MIN, i32::max),
            Select::Max => (i32::MAX, i32::min),
        };
        for p in &rules.policies {
            let start = self.period_start(current, p.period_seconds, now);
            let proposed = match p.kind {
                PolicyKind::Pods => start - p.value,
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }
}
