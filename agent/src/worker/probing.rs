//! Probing a pod's running containers: each started container gets one task per probe
//! ([`crate::probe::run`]) reporting to its worker, which turns results into the container's
//! `started` and `ready` fields, or kills the container on a failed liveness or startup probe
//! (its exit then goes through the restart policy and back-off like any other).
//! Liveness and readiness probes wait for the startup probe's success.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Worker;
use crate::events::{self, NORMAL, WARNING};
use crate::probe::{self, Handler, Kind, Outcome, Settings};

/// The probe tasks of one running container; dropping it stops them.
pub(super) struct Probes {
    tasks: Vec<JoinHandle<()>>,
    /// Opened when the startup probe succeeds (or at once without one).
    started: watch::Sender<bool>,
    /// The last Unhealthy event per probe: a failure repeating the same message is recorded
    /// again only after [`REPEAT_EVENT_AFTER`], so a long-unready container does not write an
    /// Event every period.
    unhealthy: HashMap<Kind, (String, Instant)>,
}

const REPEAT_EVENT_AFTER: Duration = Duration::from_secs(60);

impl Drop for Probes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A probe result for container `id` in slot `slot`.
#[derive(Debug)]
pub(super) struct ProbeUpdate {
    slot: usize,
    id: String,
    update: probe::Update,
}

impl Worker {
    /// Container `i` just started: set its `started` and `ready` fields as its probes allow and
    /// start the probes. Init containers are not probed.
    pub(super) fn start_probes(&mut self, i: usize) {
        let ip = self.ip.clone();
        let runtime = self.ctx.runtime.clone();
        let tx = self.probe_tx.clone();
        let slot = &mut self.slots[i];
        let Some(id) = slot.live.as_ref().map(|l| l.id.clone()) else {
            return;
        };
        let c = &slot.container;
        let probed = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().filter(|_| !slot.init).cloned()
        };
        let (startup, liveness, readiness) = (
            probed(&c.startup_probe),
            probed(&c.liveness_probe),
            probed(&c.readiness_probe),
        );
        let started = startup.is_none();
        slot.status.started = Some(started);
        slot.status.ready = started && readiness.is_none();
        let (started_tx, started_rx) = watch::channel(started);
        let started_at = Instant::now();
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (Kind::Startup, startup),
            (Kind::Liveness, liveness),
            (Kind::Readiness, readiness),
        ] {
            let Some(probe) = probe else { continue };
            let settings = Settings::from_probe(kind, &probe);
            let handler = Arc::new(Handler::from_probe(&probe, c, &ip));
            let (runtime, check_id) = (runtime.clone(), id.clone());
            let check = move || {
                handler
                    .clone()
                    .check(runtime.clone(), check_id.clone(), settings.timeout)
            };
            let (tx, id) = (tx.clone(), id.clone());
            let report = move |update| {
                tx.send(ProbeUpdate {
                    slot: i,
                    id: id.clone(),
                    update,
                })
                .is_ok()
            };
            let gate = (kind != Kind::Startup).then(|| started_rx.clone());
            tasks.push(tokio::spawn(probe::run(
                kind, settings, started_at, gate, check, report,
            )));
        }
        slot.probes = Some(Probes {
            tasks,
            started: started_tx,
            unhealthy: HashMap::new(),
        });
    }

    /// Act on a probe result: events for failures, `started`/`ready`, or a kill.
    pub(super) fn on_probe(&mut self, u: ProbeUpdate) {
        let Some(slot) = self.slots.get_mut(u.slot) else {
            return;
        };
        // A result about a container that has since exited, or is being killed.
        let Some(probes) = slot.probes.as_mut() else {
            return;
        };
        if slot.live.as_ref().map(|l| l.id.as_str()) != Some(u.id.as_str()) {
            return;
        }
        let name = slot.container.name.clone();
        let kind = u.update.kind;
        let now = Instant::now();
        let repeated = |(last, at): &(String, Instant), message: &str| {
            last == message && now.duration_since(*at) < REPEAT_EVENT_AFTER
        };
        let fresh_failure = match &u.update.outcome {
            Outcome::Failure(message)
                if !probes
                    .unhealthy
                    .get(&kind)
                    .is_some_and(|l| repeated(l, message)) =>
            {
                probes.unhealthy.insert(kind, (message.clone(), now));
                Some(message.clone())
            }
            _ => None,
        };
        if let Some(message) = &fresh_failure {
            tracing::debug!(pod = %self.name, container = %name, probe = kind.name(), %message, "probe failed");
            self.event(
                &name,
                WARNING,
                "Unhealthy",
                format!("{} probe failed: {message}", kind.name()),
            );
        }
        let slot = &mut self.slots[u.slot];
        match (kind, u.update.changed) {
            (Kind::Startup, Some(true)) => {
                slot.status.started = Some(true);
                slot.status.ready = slot.container.readiness_probe.is_none();
                if let Some(p) = &slot.probes {
                    p.started.send_replace(true);
                }
            }
            (Kind::Readiness, Some(ready)) => {
                slot.status.ready = ready && slot.status.started == Some(true);
            }
            (Kind::Liveness | Kind::Startup, Some(false)) => self.kill(u.slot, kind),
            _ => {}
        }
    }

    /// Kill container `i` for failing its `kind` probe, gracefully; its exit arrives through
    /// the worker's usual path and is restarted per the restart policy.
    fn kill(&mut self, i: usize, kind: Kind) {
        let probe_grace = {
            let c = &self.slots[i].container;
            match kind {
                Kind::Liveness => c.liveness_probe.as_ref(),
                _ => c.startup_probe.as_ref(),
            }
            .and_then(|p| p.termination_grace_period_seconds)
        };
        let grace = probe_grace.or(self.spec_grace()).unwrap_or(30).max(0) as u64;
        let name = self.slots[i].container.name.clone();
        let probe = kind.name().to_lowercase();
        tracing::info!(pod = %self.name, namespace = %self.namespace, container = %name, %probe, "container failed its probe; killing it");
        self.event(
            &name,
            NORMAL,
            "Killing",
            format!("Container {name} failed {probe} probe, will be restarted"),
        );
        let slot = &mut self.slots[i];
        slot.probes = None;
        slot.status.ready = false;
        let Some(id) = slot.live.as_ref().map(|l| l.id.clone()) else {
            return;
        };
        let runtime = self.ctx.runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.stop(&id, Duration::from_secs(grace)).await {
                tracing::warn!(container = %id, error = %e, "container not stopped");
            }
        });
    }

    fn event(&self, container: &str, type_: &str, reason: &str, message: String) {
        events::record(
            &self.ctx.client,
            &self.ctx.options.node_name,
            &self.pod,
            container,
            type_,
            reason,
            message,
        );
    }
}
