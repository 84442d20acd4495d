//! `apps/v1` workload rules: ReplicaSet, Deployment, DaemonSet and StatefulSet. Each needs a
//! non-empty selector that selects its template and keeps that selector for life; the rollout
//! strategies are defaulted and checked as Kubernetes does.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    forbid_active_deadline, or_default, validate_always_running_template,
    validate_immutable_selector, validate_required_selector, validate_selector_matches,
};
use crate::strategies::pod::defaults::default_pod_template;
use crate::strategy::KindRules;
use crate::validation::common::{dns1035_label, dns1123_label, push_all};
use crate::validation::pod_spec::checks::{
    int_or_string, json_value, nonnegative, semantic_json, NONNEGATIVE_MSG,
};
use crate::validation::pod_spec::PodSpecOptions;
use crate::validation::{FieldError, FieldErrors, Path};

const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
const STATEFULSET_UPDATE_MSG: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

pub struct ReplicaSetRules;

impl KindRules for ReplicaSetRules {
    type Object = ReplicaSet;

    fn default(&self, rs: &mut ReplicaSet) {
        let spec = &mut rs.spec;
        spec.replicas.get_or_insert(1);
        default_pod_template(spec.template.get_or_insert_with(Default::default));
    }

    fn validate(&self, rs: &ReplicaSet, errs: &mut FieldErrors) {
        let path = Path::root("spec");
        let spec = &rs.spec;
        nonnegative(spec.replicas, &path.child("replicas"), errs);
        nonnegative(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        let template = or_default(&spec.template);
        // Kubernetes' message says "deployment" for ReplicaSets too.
        if validate_required_selector(&spec.selector, "deployment", &path.child("selector"), errs) {
            validate_selector_matches(&spec.selector, &template, &path.child("template"), errs);
        }
        validate_replica_set_template(&template, &path.child("template"), errs);
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let (new, old) = (&new.spec, &old.spec);
        validate_immutable_selector(
            &new.selector,
            &old.selector,
            &Path::root("spec").child("selector"),
            errs,
        );
    }
}

/// A ReplicaSet's (or a Deployment's) template; Kubernetes names the ReplicaSet in both cases.
fn validate_replica_set_template(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    path: &Path,
    errs: &mut FieldErrors,
) {
    validate_always_running_template(template, path, &PodSpecOptions::default(), errs);
    forbid_active_deadline(template, "ReplicaSet", path, errs);
}

pub struct DeploymentRules;

impl KindRules for DeploymentRules {
    type Object = Deployment;

    fn default(&self, d: &mut Deployment) {
        let spec = &mut d.spec;
        spec.replicas.get_or_insert(1);
        let strategy = spec.strategy.get_or_insert_with(Default::default);
        if strategy.type_.as_deref().unwrap_or_default().is_empty() {
            strategy.type_ = Some("RollingUpdate".to_string());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            let quarter = || IntOrString::String("25%".to_string());
            rolling.max_unavailable.get_or_insert_with(quarter);
            rolling.max_surge.get_or_insert_with(quarter);
        }
        spec.revision_history_limit
            .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
        spec.progress_deadline_seconds.get_or_insert(600);
        default_pod_template(&mut spec.template);
    }

    fn validate(&self, d: &Deployment, errs: &mut FieldErrors) {
        let path = Path::root("spec");
        let spec = &d.spec;
        validate_deployment_spec(spec, &path, errs);
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let (new, old) = (&new.spec, &old.spec);
        validate_immutable_selector(
            &new.selector,
            &old.selector,
            &Path::root("spec").child("selector"),
            errs,
        );
    }
}

fn validate_deployment_spec(spec: &DeploymentSpec, path: &Path, errs: &mut FieldErrors) {
    nonnegative(spec.replicas, &path.child("replicas"), errs);
    if validate_required_selector(&spec.selector, "deployment", &path.child("selector"), errs) {
        validate_selector_matches(
            &spec.selector,
            &spec.template,
            &path.child("template"),
            errs,
        );
    }
    validate_replica_set_template(&spec.template, &path.child("template"), errs);
    if let Some(strategy) = &spec.strategy {
        validate_deployment_strategy(strategy, &path.child("strategy"), errs);
    }
    nonnegative(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
    nonnegative(
        spec.revision_history_limit,
        &path.child("revisionHistoryLimit"),
        errs,
    );
    if let Some(deadline) = spec.progress_deadline_seconds {
        let dp = path.child("progressDeadlineSeconds");
        nonnegative(Some(deadline), &dp, errs);
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                &dp,
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn validate_deployment_strategy(
    strategy: &DeploymentStrategy,
    path: &Path,
    errs: &mut FieldErrors,
) {
    let rolling_path = path.child("rollingUpdate");
    match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
        "Recreate" if strategy.rolling_update.is_some() => errs.push(FieldError::forbidden(
            &rolling_path,
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        "RollingUpdate" => {
            // Absent values are the defaults (25%), which are valid.
            let Some(rolling) = &strategy.rolling_update else {
                return;
            };
            let quarter = IntOrString::String("25%".to_string());
            let unavailable = rolling.max_unavailable.as_ref().unwrap_or(&quarter);
            let surge = rolling.max_surge.as_ref().unwrap_or(&quarter);
            let unavailable_path = rolling_path.child("maxUnavailable");
            positive_int_or_percent(unavailable, &unavailable_path, errs);
            positive_int_or_percent(surge, &rolling_path.child("maxSurge"), errs);
            if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                errs.push(FieldError::invalid(
                    &unavailable_path,
                    int_or_string(unavailable),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            not_more_than_100_percent(unavailable, &unavailable_path, errs);
        }
        other => errs.push(FieldError::not_supported(
            &path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
}

pub struct DaemonSetRules;

impl KindRules for DaemonSetRules {
    type Object = DaemonSet;

    fn default(&self, ds: &mut DaemonSet) {
        let spec = &mut ds.spec;
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if strategy.type_.as_deref().unwrap_or_default().is_empty() {
            strategy.type_ = Some("RollingUpdate".to_string());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit
            .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
        default_pod_template(&mut spec.template);
    }

    fn validate(&self, ds: &DaemonSet, errs: &mut FieldErrors) {
        validate_daemon_set_spec(&ds.spec, &Path::root("spec"), errs);
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let (new, old) = (&new.spec, &old.spec);
        validate_immutable_selector(
            &new.selector,
            &old.selector,
            &Path::root("spec").child("selector"),
            errs,
        );
    }
}

fn validate_daemon_set_spec(spec: &DaemonSetSpec, path: &Path, errs: &mut FieldErrors) {
    let template_path = path.child("template");
    if validate_required_selector(&spec.selector, "daemonset", &path.child("selector"), errs) {
        validate_selector_matches(&spec.selector, &spec.template, &template_path, errs);
    }
    validate_always_running_template(
        &spec.template,
        &template_path,
        &PodSpecOptions::default(),
        errs,
    );
    if let Some(deadline) = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
    {
        let dp = template_path.child("spec").child("activeDeadlineSeconds");
        errs.push(FieldError::invalid(
            &dp,
            deadline,
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    nonnegative(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
    nonnegative(
        spec.revision_history_limit,
        &path.child("revisionHistoryLimit"),
        errs,
    );
    let Some(strategy) = &spec.update_strategy else {
        return;
    };
    let sp = path.child("updateStrategy");
    match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let rp = sp.child("rollingUpdate");
            let Some(rolling) = &strategy.rolling_update else {
                errs.push(FieldError::required(&rp, ""));
                return;
            };
            let unavailable = rolling
                .max_unavailable
                .clone()
                .unwrap_or(IntOrString::Int(1));
            let surge = rolling.max_surge.clone().unwrap_or(IntOrString::Int(0));
            let (unavailable_path, surge_path) = (rp.child("maxUnavailable"), rp.child("maxSurge"));
            positive_int_or_percent(&unavailable, &unavailable_path, errs);
            positive_int_or_percent(&surge, &surge_path, errs);
            not_more_than_100_percent(&unavailable, &unavailable_path, errs);
            not_more_than_100_percent(&surge, &surge_path, errs);
            match (
                int_or_percent_value(&unavailable) != 0,
                int_or_percent_value(&surge) != 0,
            ) {
                (true, true) => errs.push(FieldError::invalid(
                    &surge_path,
                    int_or_string(&surge),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(FieldError::required(
                    &unavailable_path,
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        other => errs.push(FieldError::not_supported(
            &sp.child("type"),
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

pub struct StatefulSetRules;

impl KindRules for StatefulSetRules {
    type Object = StatefulSet;

    fn default(&self, sts: &mut StatefulSet) {
        let spec = &mut sts.spec;
        if spec
            .pod_management_policy
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            spec.pod_management_policy = Some("OrderedReady".to_string());
        }
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if strategy.type_.as_deref().unwrap_or_default().is_empty() {
            strategy.type_ = Some("RollingUpdate".to_string());
            strategy.rolling_update.get_or_insert_with(Default::default);
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            if let Some(rolling) = strategy.rolling_update.as_mut() {
                rolling.partition.get_or_insert(0);
            }
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        for policy in [&mut retention.when_deleted, &mut retention.when_scaled] {
            if policy.as_deref().unwrap_or_default().is_empty() {
                *policy = Some("Retain".to_string());
            }
        }
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit
            .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
        default_pod_template(&mut spec.template);
        for claim in spec.volume_claim_templates.iter_mut().flatten() {
            default_claim_template(claim);
        }
    }

    fn validate(&self, sts: &StatefulSet, errs: &mut FieldErrors) {
        validate_stateful_set_spec(&sts.spec, &Path::root("spec"), errs);
    }

    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet, errs: &mut FieldErrors) {
        self.validate(new, errs);
        let (new, old) = (&new.spec, &old.spec);
        // Take over what may change; the rest of the spec must be as it was.
        let mut rest = new.clone();
        rest.replicas = old.replicas;
        rest.template.clone_from(&old.template);
        rest.update_strategy.clone_from(&old.update_strategy);
        rest.min_ready_seconds = old.min_ready_seconds;
        rest.ordinals.clone_from(&old.ordinals);
        rest.revision_history_limit = old.revision_history_limit;
        rest.persistent_volume_claim_retention_policy
            .clone_from(&old.persistent_volume_claim_retention_policy);
        if semantic_json(&rest) != semantic_json(old) {
            errs.push(FieldError::forbidden(
                &Path::root("spec"),
                STATEFULSET_UPDATE_MSG,
            ));
        }
    }
}

/// Claim templates get the defaults of PersistentVolumeClaims.
fn default_claim_template(claim: &mut PersistentVolumeClaim) {
    let spec = claim.spec.get_or_insert_with(Default::default);
    if spec.volume_mode.as_deref().unwrap_or_default().is_empty() {
        spec.volume_mode = Some("Filesystem".to_string());
    }
    let status = claim.status.get_or_insert_with(Default::default);
    status.phase.get_or_insert_with(|| "Pending".to_string());
}

fn validate_stateful_set_spec(spec: &StatefulSetSpec, path: &Path, errs: &mut FieldErrors) {
    match spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
    {
        "" => errs.push(FieldError::required(&path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    if let Some(strategy) = &spec.update_strategy {
        let sp = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
            "" => errs.push(FieldError::required(&sp, "")),
            "OnDelete" if strategy.rolling_update.is_some() => errs.push(FieldError::invalid(
                &sp.child("rollingUpdate"),
                json_value(&strategy.rolling_update),
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            "OnDelete" => {}
            "RollingUpdate" => {
                if let Some(rolling) = &strategy.rolling_update {
                    validate_stateful_rolling_update(rolling, &sp.child("rollingUpdate"), errs);
                }
            }
            other => errs.push(FieldError::invalid(
                &sp,
                other,
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
    }
    if let Some(retention) = &spec.persistent_volume_claim_retention_policy {
        let rp = path.child("persistentVolumeClaimRetentionPolicy");
        for (policy, field) in [
            (&retention.when_deleted, "whenDeleted"),
            (&retention.when_scaled, "whenScaled"),
        ] {
            let policy = policy.as_deref().unwrap_or("Retain");
            if policy != "Retain" && policy != "Delete" {
                errs.push(FieldError::not_supported(
                    &rp.child(field),
                    policy,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative(spec.replicas, &path.child("replicas"), errs);
    nonnegative(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
    nonnegative(
        spec.revision_history_limit,
        &path.child("revisionHistoryLimit"),
        errs,
    );
    if let Some(ordinals) = &spec.ordinals {
        nonnegative(ordinals.start, &path.child("ordinals").child("start"), errs);
    }
    if let Some(name) = spec.service_name.as_deref().filter(|n| !n.is_empty()) {
        push_all(errs, &path.child("serviceName"), name, dns1035_label(name));
    }
    let claims = validate_claim_templates(
        spec.volume_claim_templates.as_deref().unwrap_or_default(),
        &path.child("volumeClaimTemplates"),
        errs,
    );
    let template_path = path.child("template");
    if validate_required_selector(&spec.selector, "statefulset", &path.child("selector"), errs) {
        validate_selector_matches(&spec.selector, &spec.template, &template_path, errs);
    }
    // The controller adds a volume per claim template to each pod, so containers may mount them.
    let opts = PodSpecOptions {
        extra_volumes: &claims,
    };
    validate_always_running_template(&spec.template, &template_path, &opts, errs);
    forbid_active_deadline(&spec.template, "StatefulSet", &template_path, errs);
}

fn validate_stateful_rolling_update(
    rolling: &RollingUpdateStatefulSetStrategy,
    path: &Path,
    errs: &mut FieldErrors,
) {
    nonnegative(rolling.partition, &path.child("partition"), errs);
    if let Some(max) = &rolling.max_unavailable {
        let mp = path.child("maxUnavailable");
        positive_int_or_percent(max, &mp, errs);
        if int_or_percent_value(max) == 0 {
            errs.push(FieldError::invalid(&mp, int_or_string(max), "cannot be 0"));
        }
        not_more_than_100_percent(max, &mp, errs);
    }
}

/// Claim templates: a unique DNS-1123 label name each (it names a pod volume), an access mode
/// and a storage request. Returns the names.
fn validate_claim_templates(
    claims: &[PersistentVolumeClaim],
    path: &Path,
    errs: &mut FieldErrors,
) -> Vec<String> {
    let mut names = BTreeSet::new();
    for (i, claim) in claims.iter().enumerate() {
        let cp = path.index(i);
        let np = cp.child("metadata").child("name");
        let name = claim.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(&np, ""));
        } else {
            push_all(errs, &np, name, dns1123_label(name));
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&np, name));
            }
        }
        let spec = or_default(&claim.spec);
        let sp = cp.child("spec");
        if spec.access_modes.as_ref().is_none_or(|m| m.is_empty()) {
            errs.push(FieldError::required(
                &sp.child("accessModes"),
                "at least 1 access mode is required",
            ));
        }
        let storage = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        match storage {
            None => errs.push(FieldError::required(
                &sp.child("resources").key("storage"),
                "",
            )),
            Some(q) => crate::validation::common::validate_quantity(
                &q.0,
                &sp.child("resources").child("requests").key("storage"),
                errs,
            ),
        }
    }
    names.into_iter().collect()
}

/// A non-negative count or a percentage (`"25%"`).
fn positive_int_or_percent(v: &IntOrString, path: &Path, errs: &mut FieldErrors) {
    match v {
        IntOrString::String(s) if !is_percent(s) => {
            errs.push(FieldError::invalid(path, s, PERCENT_MSG))
        }
        IntOrString::Int(n) if *n < 0 => errs.push(FieldError::invalid(path, *n, NONNEGATIVE_MSG)),
        _ => {}
    }
}

fn is_percent(s: &str) -> bool {
    s.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// The number or percentage itself (Kubernetes' `getIntOrPercentValue`).
fn int_or_percent_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => s.strip_suffix('%').unwrap_or(s).parse().unwrap_or(0),
    }
}

fn not_more_than_100_percent(v: &IntOrString, path: &Path, errs: &mut FieldErrors) {
    if let IntOrString::String(s) = v {
        if is_percent(s) && int_or_percent_value(v) > 100 {
            errs.push(FieldError::invalid(
                path,
                s,
                "must not be greater than 100%",
            ));
        }
    }
}
