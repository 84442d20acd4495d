//! Defaulting and validation of the kinds outside the core group that are not workloads: Lease
//! and PriorityClass here, HorizontalPodAutoscaler in `hpa` (re-exported for the strategy table).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::fields::{validate_enum, validate_immutable, validate_nonnegative};
use crate::strategy::KindRules;
use crate::validation::common::{push_all, qualified_name};
use crate::validation::{FieldError, FieldErrors, Path};

pub use super::hpa::HorizontalPodAutoscalerRules;

/// The highest priority a user-defined PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The highest priority of all: `system-node-critical`.
pub const HIGHEST_SYSTEM_PRIORITY: i32 = 2_000_001_000;
/// Names with this prefix are reserved for the system priority classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// Leases (`coordination.k8s.io/v1`), as used for leader election and node heartbeats.
pub struct LeaseRules;

impl KindRules for LeaseRules {
    type Object = Lease;

    fn validate(&self, lease: &Lease, errs: &mut FieldErrors) {
        let Some(spec) = &lease.spec else { return };
        let sp = Path::root("spec");
        if let Some(d) = spec.lease_duration_seconds {
            if d <= 0 {
                errs.push(FieldError::invalid(
                    &sp.child("leaseDurationSeconds"),
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = spec.lease_transitions {
            validate_nonnegative(t.into(), &sp.child("leaseTransitions"), errs);
        }
        let strategy = spec.strategy.as_deref().unwrap_or_default();
        if !strategy.is_empty() && strategy != "OldestEmulationVersion" {
            // Unprefixed strategies are Kubernetes'; custom ones are `example.com/my-strategy`.
            if strategy.contains('/') {
                push_all(
                    errs,
                    &sp.child("strategy"),
                    strategy,
                    qualified_name(strategy),
                );
            } else {
                errs.push(FieldError::not_supported(
                    &sp.child("strategy"),
                    strategy,
                    &["OldestEmulationVersion"],
                ));
            }
        }
        if spec
            .preferred_holder
            .as_deref()
            .is_some_and(|h| !h.is_empty())
            && strategy.is_empty()
        {
            errs.push(FieldError::forbidden(
                &sp.child("preferredHolder"),
                "may only be specified if `strategy` is defined",
            ));
        }
    }
}

/// PriorityClasses (`scheduling.k8s.io/v1`): a bounded value that never changes.
pub struct PriorityClassRules;

impl KindRules for PriorityClassRules {
    type Object = PriorityClass;

    fn default(&self, pc: &mut PriorityClass) {
        pc.preemption_policy
            .get_or_insert_with(|| "PreemptLowerPriority".to_string());
    }

    fn validate(&self, pc: &PriorityClass, errs: &mut FieldErrors) {
        let value = pc.value.unwrap_or(0);
        let name = pc.metadata.name.as_deref().unwrap_or_default();
        let (max, who) = if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
            (HIGHEST_SYSTEM_PRIORITY, "system")
        } else {
            (HIGHEST_USER_DEFINABLE_PRIORITY, "user defined")
        };
        if value > max {
            errs.push(FieldError::forbidden(
                &Path::root("value"),
                &format!("maximum allowed value of a {who} priority is {max}"),
            ));
        }
        validate_enum(
            pc.preemption_policy.as_deref(),
            &["Never", "PreemptLowerPriority"],
            true,
            &Path::root("preemptionPolicy"),
            errs,
        );
    }

    fn validate_update(&self, new: &PriorityClass, old: &PriorityClass, errs: &mut FieldErrors) {
        self.validate(new, errs);
        if new.value.unwrap_or(0) != old.value.unwrap_or(0) {
            errs.push(FieldError::forbidden(
                &Path::root("value"),
                "may not be changed in an update.",
            ));
        }
        validate_immutable(
            new.preemption_policy.as_deref(),
            old.preemption_policy.as_deref(),
            &Path::root("preemptionPolicy"),
            errs,
        );
    }
}

#[cfg(test)]
#[path = "other_tests.rs"]
mod tests;
