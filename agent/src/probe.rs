//! Container probes with Kubernetes' semantics: the handlers (httpGet over a minimal HTTP/1.1
//! GET, tcpSocket, exec through the runtime), the probe settings with their defaults, the
//! threshold counting that turns single results into a visible result, and the loop that probes
//! one container periodically. The worker decides what a result means (ready, started, kill).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::runtime::{BoxFuture, Runtime};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As the kubelet names it in events: "Liveness probe failed: ...".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// The visible result before the first probe: alive, not ready, and unknown for startup
    /// (so its first success and its first `failure_threshold` failures both count).
    fn initial(self) -> Option<bool> {
        match self {
            Kind::Liveness => Some(true),
            Kind::Readiness => Some(false),
            Kind::Startup => None,
        }
    }
}

/// A probe's timing and thresholds, with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Settings {
    pub fn from_probe(kind: Kind, p: &Probe) -> Settings {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let success = match kind {
            // Validation requires 1 for these; never wait for more.
            Kind::Liveness | Kind::Startup => 1,
            Kind::Readiness => p.success_threshold.unwrap_or(1).max(1) as u32,
        };
        Settings {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: success,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Turns single results into the visible result: it changes only after `success_threshold`
/// successes or `failure_threshold` failures in a row (the kubelet's `resultRun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    visible: Option<bool>,
    last: Option<bool>,
    run: u32,
}

impl Thresholds {
    pub fn new(kind: Kind) -> Thresholds {
        Thresholds {
            visible: kind.initial(),
            last: None,
            run: 0,
        }
    }

    /// Count one result; `Some(new)` when the visible result changes.
    pub fn observe(&mut self, success: bool, settings: &Settings) -> Option<bool> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let needed = if success {
            settings.success_threshold
        } else {
            settings.failure_threshold
        };
        if self.run < needed || self.visible == Some(success) {
            return None;
        }
        self.visible = Some(success);
        Some(success)
    }
}

/// One probe's outcome: success, or failure with the kubelet-style message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// What a probe loop tells its worker after each probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub kind: Kind,
    pub outcome: Outcome,
    /// The visible result changed to this.
    pub changed: Option<bool>,
}

/// Probe periodically until the loop has nothing left to decide: after `initial_delay` from
/// `started_at`, and, for liveness and readiness, only once `gate` (the startup probe's success)
/// opens. A startup probe ends at its first visible result, a liveness probe at failure (the
/// container is then killed); `report` returning false (the worker is gone) ends it too.
pub async fn run<C, F>(
    kind: Kind,
    settings: Settings,
    started_at: Instant,
    gate: Option<watch::Receiver<bool>>,
    mut check: C,
    mut report: impl FnMut(Update) -> bool,
) where
    C: FnMut() -> F,
    F: Future<Output = Outcome>,
{
    if let Some(mut gate) = gate {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
    }
    tokio::time::sleep_until(started_at + settings.initial_delay).await;
    let mut thresholds = Thresholds::new(kind);
    let mut ticks = tokio::time::interval(settings.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = check().await;
        let changed = thresholds.observe(outcome == Outcome::Success, &settings);
        if !report(Update {
            kind,
            outcome,
            changed,
        }) {
            return;
        }
        match (kind, changed) {
            (Kind::Startup, Some(_)) | (Kind::Liveness, Some(false)) => return,
            _ => {}
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    HttpGet {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        host: String,
        port: u16,
    },
    Exec {
        argv: Vec<String>,
    },
    /// A probe this agent cannot run (every probe fails with this message).
    Unsupported(String),
}

impl Handler {
    /// The handler of `probe` on `container`, whose pod has address `pod_ip`.
    pub fn from_probe(probe: &Probe, container: &Container, pod_ip: &str) -> Handler {
        let port = |p: &IntOrString| -> Result<u16, String> {
            match p {
                IntOrString::Int(n) => u16::try_from(*n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("port {n} is out of range: expected 1 to 65535")),
                IntOrString::String(name) => container
                    .ports
                    .iter()
                    .flatten()
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
                    .ok_or_else(|| {
                        format!(
                            "port name {name:?} is not among the ports of container {:?}",
                            container.name
                        )
                    }),
            }
        };
        let host = |h: &Option<String>| {
            h.clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| pod_ip.to_string())
        };
        if let Some(exec) = &probe.exec {
            return Handler::Exec {
                argv: exec.command.clone().unwrap_or_default(),
            };
        }
        if let Some(http) = &probe.http_get {
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
            {
                return Handler::Unsupported(format!(
                    "httpGet scheme {:?} is not supported by this agent: only \"HTTP\"",
                    http.scheme.as_deref().unwrap_or_default()
                ));
            }
            return match port(&http.port) {
                Ok(port) => Handler::HttpGet {
                    host: host(&http.host),
                    port,
                    path: http
                        .path
                        .clone()
                        .filter(|p| p.starts_with('/'))
                        .unwrap_or_else(|| "/".into()),
                    headers: http
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|h| (h.name.clone(), h.value.clone()))
                        .collect(),
                },
                Err(e) => Handler::Unsupported(e),
            };
        }
        if let Some(tcp) = &probe.tcp_socket {
            return match port(&tcp.port) {
                Ok(port) => Handler::TcpSocket {
                    host: host(&tcp.host),
                    port,
                },
                Err(e) => Handler::Unsupported(e),
            };
        }
        if probe.grpc.is_some() {
            return Handler::Unsupported("grpc probes are not supported by this agent".into());
        }
        Handler::Unsupported("the probe has no handler (exec, httpGet or tcpSocket)".into())
    }

    /// Probe once, within `timeout`. Exec runs in container `id` of `runtime`.
    pub fn check(
        self: Arc<Self>,
        runtime: Arc<dyn Runtime>,
        id: String,
        timeout: Duration,
    ) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            match &*self {
                Handler::HttpGet {
                    host,
                    port,
                    path,
                    headers,
                } => http_get(host, *port, path, headers, timeout).await,
                Handler::TcpSocket { host, port } => {
                    let addr = join_host_port(host, *port);
                    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
                        Ok(Ok(_)) => Outcome::Success,
                        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
                        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
                    }
                }
                Handler::Exec { argv } => match runtime.exec(&id, argv, timeout).await {
                    Ok(out) if out.exit_code == 0 => Outcome::Success,
                    Ok(out) => Outcome::Failure(if out.output.trim().is_empty() {
                        format!("command {argv:?} exited with {}", out.exit_code)
                    } else {
                        out.output.trim_end().to_string()
                    }),
                    Err(e) => Outcome::Failure(e.to_string()),
                },
                Handler::Unsupported(message) => Outcome::Failure(message.clone()),
            }
        })
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The largest response head read while looking for the status line.
const MAX_STATUS_LINE: usize = 8192;

/// A minimal HTTP/1.1 GET: success is a status from 200 to 399 (redirects are not followed,
/// as a redirect counts as success for the kubelet when it leaves the host).
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let addr = join_host_port(host, port);
    let url = format!("http://{addr}{path}");
    let request = async {
        let mut stream = TcpStream::connect(&addr).await?;
        let mut head = format!("GET {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {addr}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            head.push_str("User-Agent: kube-probe/rkube\r\n");
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            head.push_str("Accept: */*\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < MAX_STATUS_LINE {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(timeout, request).await {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return Outcome::Failure(format!("Get {url:?}: {e}")),
        Err(_) => {
            return Outcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (timeout {}s)",
                timeout.as_secs()
            ))
        }
    };
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or_default();
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=399) => Outcome::Success,
        Some(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        None => Outcome::Failure(format!("Get {url:?}: malformed HTTP response {line:?}")),
    }
}

#[cfg(test)]
mod tests;
