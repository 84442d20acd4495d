//! The docker mode of the chaos suite: the compose deployment of `deploy/` (three servers and
//! three agents in containers on a private network, from an image built from this checkout's
//! binary) with faults made by Docker and the kernel: `docker kill -s KILL`, `docker pause`
//! (the cgroup freezer), and network partitions as iptables rules in the servers' own network
//! namespaces (entered with `nsenter`; a one-way drop is one server's `OUTPUT` rules).
//!
//! The servers and agents are reached on their addresses on the deployment's private network
//! (which the host can route to); a container keeps its address when it is restarted, which
//! [`DockerBackend::restart`] checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;

use super::faults::{Backend, ServerIx};

/// Run `docker ARGS`, failing with its output when it fails.
pub fn docker(args: &[&str]) -> anyhow::Result<()> {
    output("docker", args).map(drop)
}

/// Run a program, returning its stdout; an error carries stderr.
fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why the docker mode cannot run here, or `None` when it can: a Docker engine that answers,
/// compose (plugin or standalone), and the tools for partitions (nsenter, iptables, as root).
pub fn unavailable() -> Option<String> {
    if output("docker", &["info", "--format", "{{.ServerVersion}}"]).is_err() {
        return Some("no Docker engine answers `docker info`".into());
    }
    let compose = output("docker", &["compose", "version"]).is_ok()
        || output("docker-compose", &["version"]).is_ok();
    if !compose {
        return Some("neither `docker compose` nor `docker-compose` is installed".into());
    }
    for tool in ["nsenter", "iptables"] {
        if output("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed (partitions need it)"));
        }
    }
    if output("id", &["-u"]).ok().as_deref() != Some("0") {
        return Some("partitions need root (iptables in the containers' namespaces)".into());
    }
    None
}

/// One container of the deployment.
#[derive(Debug, Clone)]
struct Container {
    service: String,
    id: String,
    /// Its address on the deployment's network (kept across restarts).
    ip: String,
}

/// How the deployment is started.
pub struct DockerOptions<'a> {
    pub repo_root: &'a Path,
    pub rkube_bin: &'a Path,
    /// Logs of the image build, compose and every container go here.
    pub out_dir: &'a Path,
    pub server_flags: &'a str,
    pub agent_flags: &'a str,
}

/// The compose deployment under the chaos suite's control.
pub struct DockerBackend {
    compose_sh: PathBuf,
    project: String,
    image: String,
    network: String,
    seed_volume: String,
    server_flags: String,
    servers: Vec<Container>,
    agents: Vec<Container>,
    joiners: BTreeMap<u64, String>,
    paused: BTreeSet<ServerIx>,
    /// server 1's `tls/` and the admin kubeconfig, copied out of its volume.
    admin_dir: tempfile::TempDir,
    out_dir: PathBuf,
    down: bool,
}

impl DockerBackend {
    /// Build the image from `rkube_bin`, bring the deployment up (returns once 3 servers are
    /// members and 3 nodes Ready) and copy out the admin credentials.
    pub fn start(o: &DockerOptions<'_>) -> anyhow::Result<DockerBackend> {
        let project = format!("rkube-chaos-{}", std::process::id());
        let image = format!("rkube:{project}");
        let log = o.out_dir.join("compose.log");
        let log_file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening {}", log.display()))
        };
        let status = Command::new(o.repo_root.join("deploy/build-image.sh"))
            .args(["--binary"])
            .arg(o.rkube_bin)
            .args(["--tag", &image])
            .stdout(log_file()?)
            .stderr(log_file()?)
            .status()
            .context("running deploy/build-image.sh")?;
        anyhow::ensure!(
            status.success(),
            "building the image failed; see {}",
            log.display()
        );
        let compose_sh = o.repo_root.join("deploy/compose.sh");
        let mut backend = DockerBackend {
            compose_sh,
            project: project.clone(),
            image: image.clone(),
            network: String::new(),
            seed_volume: String::new(),
            server_flags: o.server_flags.to_string(),
            servers: Vec::new(),
            agents: Vec::new(),
            joiners: BTreeMap::new(),
            paused: BTreeSet::new(),
            admin_dir: tempfile::tempdir().context("a directory for the admin credentials")?,
            out_dir: o.out_dir.to_path_buf(),
            down: false,
        };
        let status = Command::new(&backend.compose_sh)
            .args([
                "up",
                "--project",
                &project,
                "--image",
                &image,
                "--random-ports",
            ])
            .arg("--dir")
            .arg(backend.admin_dir.path())
            .env("RKUBE_SERVER_FLAGS", o.server_flags)
            .env("RKUBE_AGENT_FLAGS", o.agent_flags)
            .stdout(log_file()?)
            .stderr(log_file()?)
            .status()
            .context("running deploy/compose.sh up")?;
        anyhow::ensure!(
            status.success(),
            "the compose deployment did not come up; see {}",
            log.display()
        );
        for i in 1..=3 {
            backend
                .servers
                .push(backend.container(&format!("server-{i}"))?);
            backend
                .agents
                .push(backend.container(&format!("agent-{i}"))?);
        }
        let first = backend.servers[0].id.clone();
        backend.network = output(
            "docker",
            &[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
                &first,
            ],
        )?;
        backend.seed_volume = output(
            "docker",
            &[
                "inspect",
                "-f",
                "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Name}}{{end}}{{end}}",
                &first,
            ],
        )?;
        let admin = backend.admin_dir.path().to_path_buf();
        docker(&[
            "cp",
            &format!("{first}:/data/tls"),
            &admin.to_string_lossy(),
        ])?;
        docker(&[
            "cp",
            &format!("{first}:/data/admin.kubeconfig"),
            &admin.join("admin.kubeconfig").to_string_lossy(),
        ])?;
        Ok(backend)
    }

    fn container(&self, service: &str) -> anyhow::Result<Container> {
        let id = output(
            "docker",
            &[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ],
        )?;
        let id = id
            .lines()
            .next()
            .with_context(|| format!("no running container for {service}"))?
            .to_string();
        let ip = ip_of(&id)?;
        Ok(Container {
            service: service.into(),
            id,
            ip,
        })
    }

    /// The agents as (node name, container id).
    pub fn agents(&self) -> Vec<(String, String)> {
        self.agents
            .iter()
            .map(|c| (c.service.clone(), c.id.clone()))
            .collect()
    }

    /// Keep every container's log, then remove the deployment, its volumes and the image.
    pub fn shutdown(&mut self) {
        if std::mem::replace(&mut self.down, true) {
            return;
        }
        let all = self
            .servers
            .iter()
            .chain(&self.agents)
            .map(|c| (c.service.clone(), c.id.clone()))
            .chain(
                self.joiners
                    .iter()
                    .map(|(id, c)| (format!("server-{id}"), c.clone())),
            );
        for (service, id) in all {
            self.save_log(&service, &id);
        }
        for id in self.joiners.values() {
            let _ = docker(&["rm", "--force", id]);
        }
        for s in 0..self.servers.len() {
            if self.paused.contains(&s) {
                let _ = docker(&["unpause", &self.servers[s].id]);
            }
        }
        let status = Command::new(&self.compose_sh)
            .args(["down", "--project", &self.project, "--volumes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            tracing::warn!(project = %self.project, "chaos: compose down failed");
        }
        let _ = docker(&["rmi", "--force", &self.image]);
    }

    /// Keep a container's log as `SERVICE.log` in the output directory (best effort).
    fn save_log(&self, service: &str, id: &str) {
        if let Ok(out) = Command::new("docker").args(["logs", id]).output() {
            let mut log = out.stdout;
            log.extend_from_slice(&out.stderr);
            let _ = std::fs::write(self.out_dir.join(format!("{service}.log")), log);
        }
    }

    fn pid(&self, server: ServerIx) -> anyhow::Result<Option<String>> {
        let id = &self.servers[server].id;
        let state = output(
            "docker",
            &["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", id],
        )?;
        Ok(match state.split_once(' ') {
            Some(("true", pid)) if pid != "0" => Some(pid.to_string()),
            _ => None,
        })
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A container's address on its (only) network.
fn ip_of(id: &str) -> anyhow::Result<String> {
    let ip = output(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            id,
        ],
    )?;
    anyhow::ensure!(!ip.is_empty(), "container {id} has no address");
    Ok(ip)
}

impl Backend for DockerBackend {
    fn mode(&self) -> &'static str {
        "docker mode: compose deployment; docker kill/pause, iptables partitions in the containers' namespaces"
    }

    fn servers(&self) -> usize {
        self.servers.len()
    }

    fn api_addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|c| format!("{}:6443", c.ip))
            .collect()
    }

    fn peer_addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|c| format!("{}:6444", c.ip))
            .collect()
    }

    /// Server 1's `tls/` directory and `admin.kubeconfig` (whose servers are in-network names:
    /// use [`Backend::api_addrs`]), copied out of its volume.
    fn admin_dir(&self) -> &Path {
        self.admin_dir.path()
    }

    fn kill(&mut self, i: ServerIx) -> anyhow::Result<()> {
        if self.paused.remove(&i) {
            docker(&["unpause", &self.servers[i].id])?;
        }
        if self.is_running(i) {
            docker(&["kill", "--signal", "KILL", &self.servers[i].id])?;
        }
        Ok(())
    }

    fn restart(&mut self, i: ServerIx) -> anyhow::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let c = &self.servers[i];
        docker(&["start", &c.id])?;
        let ip = ip_of(&c.id)?;
        // Every client and the peers know the server by this address.
        anyhow::ensure!(
            ip == c.ip,
            "{} came back at {ip} instead of {}",
            c.service,
            c.ip
        );
        Ok(())
    }

    fn pause(&mut self, i: ServerIx) -> anyhow::Result<()> {
        docker(&["pause", &self.servers[i].id])?;
        self.paused.insert(i);
        Ok(())
    }

    fn resume(&mut self, i: ServerIx) -> anyhow::Result<()> {
        if self.paused.remove(&i) {
            docker(&["unpause", &self.servers[i].id])?;
        }
        Ok(())
    }

    fn block(&mut self, from: ServerIx, to: &BTreeSet<ServerIx>) -> anyhow::Result<()> {
        let Some(pid) = self.pid(from)? else {
            // A crashed server comes back with a fresh namespace, without rules.
            return Ok(());
        };
        let iptables = |args: &[&str]| -> anyhow::Result<()> {
            let mut all = vec!["-t", &pid, "-n", "iptables", "-w"];
            all.extend_from_slice(args);
            output("nsenter", &all).map(drop)
        };
        iptables(&["-F", "OUTPUT"])?;
        for &t in to {
            iptables(&["-A", "OUTPUT", "-d", &self.servers[t].ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    fn is_running(&mut self, i: ServerIx) -> bool {
        output(
            "docker",
            &["inspect", "-f", "{{.State.Running}}", &self.servers[i].id],
        )
        .is_ok_and(|s| s == "true")
    }

    fn start_joiner(&mut self, id: u64, via: ServerIx) -> anyhow::Result<()> {
        let name = format!("server-{id}");
        let script = format!(
            "export RKUBE_TOKEN=\"$(cat /seed/join-token)\"; exec /rkube server --data-dir=/data \
             --node-id={id} --listen-peer=0.0.0.0:6444 --advertise-peer={name}:6444 \
             --listen-api=0.0.0.0:6443 --advertise-api={name}:6443 \
             --node-port-range=30000-30009 {} --join={}:6444",
            self.server_flags, self.servers[via].service
        );
        let container = output(
            "docker",
            &[
                "run",
                "--detach",
                "--name",
                &format!("{}-{name}", self.project),
                "--hostname",
                &name,
                "--network",
                &self.network,
                "--network-alias",
                &name,
                "--volume",
                &format!("{}:/seed:ro", self.seed_volume),
                "--entrypoint",
                "/bin/sh",
                &self.image,
                "-c",
                &script,
            ],
        )?;
        self.joiners.insert(id, container);
        Ok(())
    }

    fn stop_joiner(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(c) = self.joiners.remove(&id) {
            self.save_log(&format!("server-{id}"), &c);
            docker(&["rm", "--force", "--volumes", &c])?;
        }
        Ok(())
    }
}
