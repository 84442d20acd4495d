//! What every kind of sync shares (Kubernetes' `sync.go`): telling the new ReplicaSet from the
//! old ones and syncing revisions, creating the new ReplicaSet (with hash collisions), scaling
//! one ReplicaSet, proportional scaling, the revision history limit and the status of a paused
//! or scaled Deployment.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::error::Result;
use crate::runtime::events::{NORMAL, WARNING};
use crate::runtime::{ApiExt, Context, DeleteOptions, Informer, ObjectKey, Recorder};
use crate::util;

use super::helpers::{
    self, annotation, by_creation, by_revision, by_size, equal_ignore_hash, is_active, rs_template,
    spec_replicas, status_replicas, Params,
};
use super::status::{self, condition, new_condition, reason, set_condition, PROGRESSING};
use super::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION};

/// How long to wait for the cache to show a ReplicaSet this controller created.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// A Deployment's ReplicaSets: the one whose template is the Deployment's, and the others.
#[derive(Debug, Clone, Default)]
pub(super) struct Sets {
    pub new: Option<ReplicaSet>,
    pub old: Vec<ReplicaSet>,
}

impl Sets {
    /// The old ReplicaSets, then the new one.
    pub fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }

    /// The active old ReplicaSets (with replicas), oldest first.
    pub fn active_old(&self) -> Vec<ReplicaSet> {
        let mut old: Vec<ReplicaSet> = self
            .old
            .iter()
            .filter(|rs| is_active(rs))
            .cloned()
            .collect();
        old.sort_by(by_creation);
        old
    }

    /// Replace a ReplicaSet by its updated version.
    pub fn put(&mut self, rs: ReplicaSet) {
        let slot = self
            .new
            .iter_mut()
            .chain(self.old.iter_mut())
            .find(|x| x.metadata.name == rs.metadata.name);
        if let Some(slot) = slot {
            *slot = rs;
        }
    }
}

/// One sync of one Deployment. `d` is the latest version this controller knows of (every write
/// replaces it by the server's answer, so later writes carry a current resourceVersion).
pub(super) struct Rollout<'a> {
    ctx: &'a Context,
    replica_sets: &'a Informer<ReplicaSet>,
    pub d: Deployment,
    pub params: Params,
    /// A progress check this sync asks for.
    pub requeue: Option<Duration>,
}

impl<'a> Rollout<'a> {
    pub fn new(
        ctx: &'a Context,
        replica_sets: &'a Informer<ReplicaSet>,
        d: Deployment,
        params: Params,
    ) -> Rollout<'a> {
        Rollout {
            ctx,
            replica_sets,
            d,
            params,
            requeue: None,
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.ctx.now()
    }

    pub fn recorder(&self) -> &Recorder {
        &self.ctx.recorder
    }

    fn namespace(&self) -> String {
        self.d.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }

    pub fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    /// Set `status` as the Deployment's and write it if it differs from the known one.
    pub async fn write_status(&mut self, status: DeploymentStatus) -> Result<()> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.d = self.ctx.api.update_object_status(&self.d).await?;
        Ok(())
    }

    /// Record the current revision on the Deployment: a metadata write (the status subresource
    /// does not take annotations here), conditional on the resourceVersion this sync read, so a
    /// revision is never stamped on a template this sync has not seen.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<()> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "resourceVersion": self.d.metadata.resource_version,
            "annotations": {REVISION_ANNOTATION: revision},
        }});
        let status = self.d.status.take();
        self.d = self
            .ctx
            .api
            .merge_patch::<Deployment>(&self.namespace(), &self.name(), patch, false)
            .await?;
        self.d.status = status;
        Ok(())
    }

    /// Add the Progressing condition (Paused or Resumed) that matches `spec.paused`, so a
    /// paused spell never counts against the progress deadline.
    pub async fn check_paused_conditions(&mut self) -> Result<()> {
        if self.params.progress_deadline_seconds.is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let current = condition(&status, PROGRESSING).map(|c| reason(c).to_string());
        if current.as_deref() == Some("ProgressDeadlineExceeded") {
            return Ok(());
        }
        let paused_recorded = current.as_deref() == Some("DeploymentPaused");
        let (why, message) = match (self.params.paused, paused_recorded) {
            (true, false) => ("DeploymentPaused", "Deployment is paused"),
            (false, true) => ("DeploymentResumed", "Deployment is resumed"),
            _ => return Ok(()),
        };
        let c = new_condition(PROGRESSING, "Unknown", why, message.into(), self.now());
        set_condition(&mut status, c);
        self.write_status(status).await
    }

    /// Whether `replicas` changed since the active ReplicaSets were last sized (their
    /// desired-replicas annotation): then the sync only scales, it does not roll.
    pub fn is_scaling_event(&self, rs_list: &[ReplicaSet]) -> bool {
        rs_list.iter().filter(|rs| is_active(rs)).any(|rs| {
            helpers::desired_replicas_annotation(rs).is_some_and(|n| n != self.params.replicas)
        })
    }

    /// The new ReplicaSet (the oldest one with the Deployment's template) and the old ones,
    /// with the new one's revision and annotations synced; with `create`, a missing new
    /// ReplicaSet is created. None when a hash collision was recorded instead (the status write
    /// brings the Deployment back with the next collisionCount).
    pub async fn new_and_old(
        &mut self,
        mut rs_list: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<Sets>> {
        rs_list.sort_by(by_creation);
        let template = self.d.spec.template.clone();
        let found = rs_list
            .iter()
            .position(|rs| equal_ignore_hash(&rs_template(rs), &template));
        let existing = found.map(|i| rs_list.remove(i));
        let mut sets = Sets {
            new: None,
            old: rs_list,
        };
        match existing {
            Some(rs) => sets.new = Some(self.sync_new_replica_set(rs, &sets.old).await?),
            None if create => match self.create_new_replica_set(&sets.old).await? {
                Some(rs) => sets.new = Some(rs),
                None => return Ok(None),
            },
            None => {}
        }
        Ok(Some(sets))
    }

    /// Bring an existing new ReplicaSet's revision (max old revision + 1, which makes a rolled
    /// back ReplicaSet current again), annotations and minReadySeconds up to date.
    async fn sync_new_replica_set(
        &mut self,
        rs: ReplicaSet,
        old: &[ReplicaSet],
    ) -> Result<ReplicaSet> {
        let new_revision = helpers::max_revision(old) + 1;
        let mut copy = rs.clone();
        let mut changed =
            helpers::set_new_rs_annotations(&self.d, &mut copy, new_revision, true, &self.params);
        let spec = &mut copy.spec;
        if spec.min_ready_seconds.unwrap_or(0) != self.params.min_ready_seconds {
            spec.min_ready_seconds = Some(self.params.min_ready_seconds);
            changed = true;
        }
        let rs = if changed {
            self.ctx.api.update_object(&copy).await?
        } else {
            rs
        };
        let revision = annotation(&rs, REVISION_ANNOTATION)
            .unwrap_or_default()
            .to_string();
        self.set_deployment_revision(&revision).await?;
        let mut status = self.status();
        if self.params.progress_deadline_seconds.is_some()
            && condition(&status, PROGRESSING).is_none()
        {
            let message = format!(
                "Found new replica set {:?}",
                rs.metadata.name.clone().unwrap_or_default()
            );
            let c = new_condition(
                PROGRESSING,
                "True",
                "FoundNewReplicaSet",
                message,
                self.now(),
            );
            set_condition(&mut status, c);
            self.write_status(status).await?;
        }
        Ok(rs)
    }

    /// Create the ReplicaSet of the Deployment's template, named `<deployment>-<hash>`. A
    /// ReplicaSet of that name with another template or owner is a hash collision: bump
    /// `status.collisionCount` and return None.
    async fn create_new_replica_set(&mut self, old: &[ReplicaSet]) -> Result<Option<ReplicaSet>> {
        let (ns, name) = (self.namespace(), self.name());
        let spec = self.d.spec.clone();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = helpers::pod_template_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{name}-{hash}");
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![util::controller_ref(&self.d)]),
                labels,
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(self.params.min_ready_seconds),
                selector,
                template: Some(template),
            },
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
        let replicas = helpers::new_rs_new_replicas(&self.params, &all, &rs);
        rs.spec.replicas = Some(replicas);
        let new_revision = helpers::max_revision(old) + 1;
        helpers::set_new_rs_annotations(&self.d, &mut rs, new_revision, false, &self.params);

        // Ok: created now; Err: a ReplicaSet of that name was already there.
        let outcome = match self.replica_sets.get(&ns, &rs_name) {
            Some(existing) => Err(existing),
            None => match self.ctx.api.create_object(&rs).await {
                Ok(created) => {
                    let shown = |c: &Informer<ReplicaSet>| c.get(&ns, &rs_name).is_some();
                    if !self.replica_sets.wait_until(CACHE_WAIT, shown).await {
                        tracing::warn!(
                            replicaset = %rs_name,
                            "created replica set not yet in the cache"
                        );
                    }
                    Ok(created)
                }
                Err(e) if e.is_already_exists() => {
                    let shown = |c: &Informer<ReplicaSet>| c.get(&ns, &rs_name).is_some();
                    self.replica_sets.wait_until(CACHE_WAIT, shown).await;
                    Err(self.replica_sets.get(&ns, &rs_name).ok_or(e)?)
                }
                Err(e) => {
                    if !e.is_fenced() {
                        self.report_create_failure(&rs_name, &e.to_string()).await;
                    }
                    return Err(e);
                }
            },
        };
        let created = match outcome {
            Ok(created) => created,
            Err(existing) => {
                let ours = util::controller_of(existing.as_ref())
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                if ours && equal_ignore_hash(&rs_template(&existing), &spec.template) {
                    return Ok(Some((*existing).clone()));
                }
                let mut status = self.status();
                let count = status.collision_count.unwrap_or(0).saturating_add(1);
                status.collision_count = Some(count);
                tracing::info!(
                    deployment = %ObjectKey::of(&self.d),
                    replicaset = %rs_name,
                    collision_count = count,
                    "pod template hash collision; bumping collisionCount"
                );
                self.write_status(status).await?;
                return Ok(None);
            }
        };

        if replicas > 0 {
            let message = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
            self.ctx
                .recorder
                .event(&self.d, NORMAL, "ScalingReplicaSet", message);
        }
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if self.params.progress_deadline_seconds.is_some() {
            let mut status = self.status();
            let message = format!("Created new replica set {rs_name:?}");
            let c = new_condition(
                PROGRESSING,
                "True",
                "NewReplicaSetCreated",
                message,
                self.now(),
            );
            set_condition(&mut status, c);
            self.write_status(status).await?;
        }
        Ok(Some(created))
    }

    async fn report_create_failure(&mut self, rs_name: &str, error: &str) {
        let message = format!("Failed to create new replica set {rs_name:?}: {error}");
        self.ctx
            .recorder
            .event(&self.d, WARNING, "ReplicaSetCreateError", message.clone());
        if self.params.progress_deadline_seconds.is_some() {
            let mut status = self.status();
            let c = new_condition(
                PROGRESSING,
                "False",
                "ReplicaSetCreateError",
                message,
                self.now(),
            );
            set_condition(&mut status, c);
            if let Err(e) = self.write_status(status).await {
                tracing::debug!(error = %e, "could not record the replica set creation failure");
            }
        }
    }

    /// Scale `rs` to `new_scale` unless it already has that size; whether it was scaled.
    pub async fn scale_to(&self, rs: &ReplicaSet, new_scale: i32) -> Result<(bool, ReplicaSet)> {
        if spec_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        self.scale_replica_set(rs, new_scale).await
    }

    /// Size `rs` and record the Deployment's replicas annotations on it (written when either
    /// changes); a size change is reported as a ScalingReplicaSet event.
    pub async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet)> {
        let old_scale = spec_replicas(rs);
        let mut copy = rs.clone();
        let annotations_changed = helpers::set_replicas_annotations(
            &mut copy,
            self.params.replicas,
            self.params.max_replicas(),
        );
        if old_scale == new_scale && !annotations_changed {
            return Ok((false, rs.clone()));
        }
        copy.spec.replicas = Some(new_scale);
        let updated = self.ctx.api.update_object(&copy).await?;
        if old_scale != new_scale {
            let direction = if old_scale < new_scale { "up" } else { "down" };
            let name = updated.metadata.name.clone().unwrap_or_default();
            let message =
                format!("Scaled {direction} replica set {name} from {old_scale} to {new_scale}");
            self.ctx
                .recorder
                .event(&self.d, NORMAL, "ScalingReplicaSet", message);
        }
        Ok((old_scale != new_scale, updated))
    }

    /// A scaling event or a paused Deployment: resize without rolling (Kubernetes' `scale`).
    /// A lone active ReplicaSet (or the newest, when none is active) takes every replica; a
    /// saturated new one leaves nothing to the old ones; otherwise, during a rolling update,
    /// the difference to `replicas + maxSurge` is shared in proportion to the ReplicaSets'
    /// sizes, largest first, any rounding leftover going to the largest.
    pub async fn scale(&mut self, sets: &mut Sets) -> Result<()> {
        let mut old_newest_first = sets.old.clone();
        old_newest_first.sort_by(|a, b| by_creation(b, a));
        let active: Vec<ReplicaSet> = old_newest_first
            .iter()
            .chain(sets.new.as_ref())
            .filter(|rs| is_active(rs))
            .cloned()
            .collect();
        let lone = match active.len() {
            0 => sets
                .new
                .clone()
                .or_else(|| old_newest_first.first().cloned()),
            1 => Some(active[0].clone()),
            _ => None,
        };
        if let Some(rs) = lone {
            let (_, rs) = self.scale_to(&rs, self.params.replicas).await?;
            sets.put(rs);
            return Ok(());
        }
        if helpers::is_saturated(&self.params, sets.new.as_ref()) {
            for rs in sets.active_old() {
                let (_, rs) = self.scale_to(&rs, 0).await?;
                sets.put(rs);
            }
            return Ok(());
        }
        if !self.params.rolling {
            return Ok(());
        }
        let mut all = active;
        let current: i32 = all.iter().map(spec_replicas).sum();
        let allowed = if self.params.replicas > 0 {
            self.params.max_replicas()
        } else {
            0
        };
        let to_add = allowed - current;
        if to_add != 0 {
            all.sort_by(|a, b| by_size(a, b, to_add > 0));
        }
        let status_replicas = self.status().replicas.unwrap_or(0);
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            let share = helpers::proportion(rs, &self.params, status_replicas, to_add, added);
            sizes.push(spec_replicas(rs) + share);
            added += share;
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in all.iter().zip(sizes) {
            let (_, rs) = self.scale_replica_set(rs, size).await?;
            sets.put(rs);
        }
        Ok(())
    }

    /// Delete the oldest revisions beyond `revisionHistoryLimit` among old ReplicaSets that
    /// are scaled to zero, have no pods and whose spec their controller has seen.
    pub async fn cleanup(&self, old: &[ReplicaSet]) -> Result<()> {
        let Some(limit) = self.params.revision_history_limit else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| !util::is_terminating(*rs)).collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            tracing::info!(
                deployment = %ObjectKey::of(&self.d),
                replicaset = %name,
                "deleting an old replica set beyond the revision history limit"
            );
            let opts = DeleteOptions {
                precondition_uid: rs.metadata.uid.clone(),
                ..Default::default()
            };
            self.ctx
                .api
                .delete_object::<ReplicaSet>(&self.namespace(), &name, opts)
                .await?;
        }
        Ok(())
    }

    /// A paused Deployment or a scaling event: scale, clean up when paused, update the status
    /// (no progress estimate).
    pub async fn sync(&mut self, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let Some(mut sets) = self.new_and_old(rs_list, false).await? else {
            return Ok(());
        };
        self.scale(&mut sets).await?;
        if self.params.paused {
            self.cleanup(&sets.old).await?;
        }
        let status = status::calculate_status(
            &self.d,
            &self.params,
            &sets.all(),
            sets.new.as_ref(),
            self.now(),
        );
        self.write_status(status).await
    }
}
