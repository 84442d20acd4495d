//! `rkube demo-app`: a small HTTP server like the kubia app of "Kubernetes in Action", used to
//! show Deployments, Services and probes working on an rkube cluster.
//!
//! `GET /` answers `You've hit <hostname>` (or `This is <version> running in pod <hostname>` when
//! `--version` is given); `/healthz` and `/ready` are the liveness and readiness endpoints, and
//! `POST /fail`, `POST /unready` and `POST /ready` flip them so probes can be seen to act.
//! `POST /busy[?millicores=N]` makes it burn CPU (N thousandths of a core, default 1000) until
//! `POST /idle`, so a HorizontalPodAutoscaler can be seen to act.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The port the demo app listens on when `--listen` is not given.
pub const DEFAULT_PORT: u16 = 8080;

/// Flags of `rkube demo-app`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on. Default: `$POD_IP:8080` when the node agent exported `POD_IP`
    /// (so several replicas on one machine do not collide), otherwise `0.0.0.0:8080`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Answer `/` with 500 once this many requests to `/` have been answered (the book's kubia v3).
    #[arg(long, value_name = "N")]
    pub fail_after: Option<u64>,
    /// Version shown in responses: `This is <VERSION> running in pod <hostname>` (kubia v2 style).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
}

impl DemoArgs {
    /// The address to listen on: `--listen`, else `$POD_IP:8080`, else `0.0.0.0:8080`.
    pub fn listen_addr(&self) -> String {
        listen_addr(
            self.listen.as_deref(),
            std::env::var("POD_IP").ok().as_deref(),
        )
    }
}

/// Bind the address from `args` and serve until `shutdown` resolves.
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let addr = args.listen_addr();
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    serve(args, listener, shutdown).await
}

/// Serve the demo app on `listener` until `shutdown` resolves, then stop accepting, let requests
/// in flight finish and return.
pub async fn serve(
    args: DemoArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = Arc::new(App::new(args, hostname()));
    let local = listener.local_addr()?;
    tracing::info!(%local, hostname = %app.hostname, "demo app listening");

    let (stop_tx, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.as_mut() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Accept errors (e.g. too many open files) are transient; keep serving.
                    tracing::warn!("demo app: accept failed: {e}");
                    continue;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(remote, req)) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, "demo app: connection ended: {e}");
            }
        });
    }

    tracing::info!("demo app shutting down");
    drop(listener);
    let _ = stop_tx.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The hostname the app reports: `$HOSTNAME` (the agent sets it to the pod name), else
/// `$POD_NAME`, else the machine's hostname.
pub fn hostname() -> String {
    hostname_from(|name| std::env::var(name).ok(), machine_hostname)
}

/// The app's state, shared by all connections.
struct App {
    hostname: String,
    version: Option<String>,
    fail_after: Option<u64>,
    /// Requests to `/` answered so far.
    requests: AtomicU64,
    healthy: AtomicBool,
    ready: AtomicBool,
    /// The CPU load asked for by `POST /busy`, in millicores (0: idle), which a burner thread
    /// (started by the first `POST /busy`) follows.
    load: Arc<Load>,
    burner: std::sync::Once,
}

/// The CPU load to burn, in millicores, and the signal that it changed.
#[derive(Default)]
struct Load {
    millicores: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
}

/// How often the burner thread alternates between spinning and sleeping.
const BURN_SLICE: Duration = Duration::from_millis(10);

/// Forever: spin for `millicores / 1000` of every [`BURN_SLICE`] and sleep the rest, or wait
/// while the load is 0.
fn burn(load: &Load) {
    loop {
        let millicores = {
            let guard = load.millicores.lock().expect("load lock");
            *load
                .changed
                .wait_while(guard, |m| *m == 0)
                .expect("load lock")
        };
        let start = Instant::now();
        let busy = BURN_SLICE * u32::try_from(millicores).unwrap_or(1000) / 1000;
        while start.elapsed() < busy {
            std::hint::spin_loop();
        }
        if let Some(rest) = BURN_SLICE.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// The `millicores` of a `/busy` query: 1000 when absent, 1..=1000 otherwise.
fn busy_millicores(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("millicores="));
    match value {
        None => Ok(1000),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(format!(
                "millicores must be a whole number from 1 to 1000, not {v:?}\n"
            )),
        },
    }
}

impl App {
    fn new(args: DemoArgs, hostname: String) -> Self {
        App {
            hostname,
            version: args.version,
            fail_after: args.fail_after,
            requests: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            ready: AtomicBool::new(true),
            load: Arc::new(Load::default()),
            burner: std::sync::Once::new(),
        }
    }

    /// Burn `millicores` (at most 1000) of CPU from now on, replacing any earlier load.
    fn set_load(&self, millicores: u64) {
        *self.load.millicores.lock().expect("load lock") = millicores.min(1000);
        self.load.changed.notify_all();
        if millicores > 0 {
            self.burner.call_once(|| {
                let load = self.load.clone();
                std::thread::spawn(move || burn(&load));
            });
        }
    }

    fn handle(&self, remote: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = self.route(req.method(), req.uri().path(), req.uri().query());
        tracing::debug!(%remote, method = %req.method(), path = req.uri().path(), status = status.as_u16(), "demo app request");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    fn route(&self, method: &Method, path: &str, query: Option<&str>) -> (StatusCode, String) {
        let host = &self.hostname;
        match (method, path) {
            (&Method::GET, "/") => {
                let count = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
                if self.fail_after.is_some_and(|n| count > n) {
                    let body = format!("Some internal error has occurred! This is pod {host}\n");
                    return (StatusCode::INTERNAL_SERVER_ERROR, body);
                }
                let body = match &self.version {
                    Some(version) => format!("This is {version} running in pod {host}\n"),
                    None => format!("You've hit {host}\n"),
                };
                (StatusCode::OK, body)
            }
            (&Method::GET, "/healthz") => {
                if self.healthy.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok\n".into())
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy\n".into())
                }
            }
            (&Method::GET, "/ready") => {
                if self.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready\n".into())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
                }
            }
            (&Method::POST, "/fail") => {
                self.healthy.store(false, Ordering::SeqCst);
                (StatusCode::OK, format!("{host} will now fail /healthz\n"))
            }
            (&Method::POST, "/unready") => {
                self.ready.store(false, Ordering::SeqCst);
                (StatusCode::OK, format!("{host} is now not ready\n"))
            }
            (&Method::POST, "/ready") => {
                self.ready.store(true, Ordering::SeqCst);
                (StatusCode::OK, format!("{host} is now ready\n"))
            }
            (&Method::POST, "/busy") => match busy_millicores(query) {
                Ok(millicores) => {
                    self.set_load(millicores);
                    (StatusCode::OK, format!("{host} is now burning {millicores}m of CPU\n"))
                }
                Err(msg) => (StatusCode::BAD_REQUEST, msg),
            },
            (&Method::POST, "/idle") => {
                self.set_load(0);
                (StatusCode::OK, format!("{host} is now idle\n"))
            }
            (_, "/" | "/healthz" | "/ready" | "/fail" | "/unready" | "/busy" | "/idle") => (
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed on {path}\n"),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                format!("no such path {path}: try /, /healthz, /ready, POST /fail, POST /unready, POST /ready, POST /busy or POST /idle\n"),
            ),
        }
    }
}

fn listen_addr(listen: Option<&str>, pod_ip: Option<&str>) -> String {
    match (listen, pod_ip.filter(|ip| !ip.is_empty())) {
        (Some(listen), _) => listen.to_string(),
        (None, Some(ip)) if ip.contains(':') => format!("[{ip}]:{DEFAULT_PORT}"),
        (None, Some(ip)) => format!("{ip}:{DEFAULT_PORT}"),
        (None, None) => format!("0.0.0.0:{DEFAULT_PORT}"),
    }
}

fn hostname_from(
    env: impl Fn(&str) -> Option<String>,
    machine: impl FnOnce() -> Option<String>,
) -> String {
    ["HOSTNAME", "POD_NAME"]
        .into_iter()
        .filter_map(env)
        .map(|value| value.trim().to_string())
        .find(|value| !value.is_empty())
        .or_else(machine)
        .unwrap_or_else(|| "localhost".to_string())
}

fn machine_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// An in-process demo app on 127.0.0.1:0, stopped by dropping or calling `stop`.
    struct Running {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    impl Running {
        async fn start(args: DemoArgs) -> Running {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(args, listener, async {
                let _ = stopped.await;
            }));
            Running {
                addr,
                stop: Some(stop),
                task,
            }
        }

        /// One request on a fresh connection; returns the status code and the body.
        async fn request(&self, method: &str, path: &str) -> (u16, String) {
            let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            let status = response
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or_default();
            (status, body)
        }

        async fn stop(mut self) -> anyhow::Result<()> {
            let _ = self.stop.take().unwrap().send(());
            (&mut self.task).await.unwrap()
        }
    }

    #[tokio::test]
    async fn root_answers_with_the_hostname() {
        let app = Running::start(DemoArgs::default()).await;
        assert_eq!(
            app.request("GET", "/").await,
            (200, format!("You've hit {}\n", hostname()))
        );
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn root_shows_the_version_when_given() {
        let args = DemoArgs {
            version: Some("v2".into()),
            ..DemoArgs::default()
        };
        let app = Running::start(args).await;
        assert_eq!(
            app.request("GET", "/").await,
            (200, format!("This is v2 running in pod {}\n", hostname()))
        );
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn healthz_fails_after_post_fail() {
        let app = Running::start(DemoArgs::default()).await;
        assert_eq!(app.request("GET", "/healthz").await, (200, "ok\n".into()));
        assert_eq!(app.request("POST", "/fail").await.0, 200);
        assert_eq!(
            app.request("GET", "/healthz").await,
            (500, "unhealthy\n".into())
        );
        // Liveness failure does not touch readiness or the main page.
        assert_eq!(app.request("GET", "/ready").await.0, 200);
        assert_eq!(app.request("GET", "/").await.0, 200);
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn ready_toggles() {
        let app = Running::start(DemoArgs::default()).await;
        assert_eq!(app.request("GET", "/ready").await, (200, "ready\n".into()));
        assert_eq!(app.request("POST", "/unready").await.0, 200);
        assert_eq!(
            app.request("GET", "/ready").await,
            (503, "not ready\n".into())
        );
        assert_eq!(app.request("GET", "/healthz").await.0, 200);
        assert_eq!(app.request("POST", "/ready").await.0, 200);
        assert_eq!(app.request("GET", "/ready").await, (200, "ready\n".into()));
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn root_fails_after_n_requests() {
        let args = DemoArgs {
            fail_after: Some(3),
            ..DemoArgs::default()
        };
        let app = Running::start(args).await;
        for _ in 0..3 {
            assert_eq!(app.request("GET", "/").await.0, 200);
            // Probes do not count as requests.
            assert_eq!(app.request("GET", "/healthz").await.0, 200);
        }
        for _ in 0..2 {
            let (status, body) = app.request("GET", "/").await;
            assert_eq!(status, 500);
            assert!(body.starts_with("Some internal error"), "{body}");
        }
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let app = Running::start(DemoArgs::default()).await;
        assert_eq!(app.request("GET", "/nope").await.0, 404);
        assert_eq!(app.request("DELETE", "/").await.0, 405);
        assert_eq!(app.request("GET", "/fail").await.0, 405);
        // A refused GET /fail did not fail the app.
        assert_eq!(app.request("GET", "/healthz").await.0, 200);
        app.stop().await.unwrap();
    }

    #[tokio::test]
    async fn busy_and_idle_set_the_load() {
        let app = Running::start(DemoArgs::default()).await;
        let (status, body) = app.request("POST", "/busy?millicores=300").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with("is now burning 300m of CPU\n"), "{body}");
        let (status, body) = app.request("POST", "/busy").await;
        assert!(
            body.ends_with("is now burning 1000m of CPU\n"),
            "{status} {body}"
        );
        assert_eq!(app.request("POST", "/busy?millicores=0").await.0, 400);
        assert_eq!(app.request("POST", "/busy?millicores=2000").await.0, 400);
        assert_eq!(app.request("GET", "/busy").await.0, 405);
        let (status, body) = app.request("POST", "/idle").await;
        assert!(body.ends_with("is now idle\n"), "{status} {body}");
        // The app keeps serving while busy or idle.
        assert_eq!(app.request("GET", "/healthz").await.0, 200);
        app.stop().await.unwrap();
    }

    #[test]
    fn busy_millicores_defaults_to_a_core_and_is_bounded() {
        assert_eq!(busy_millicores(None), Ok(1000));
        assert_eq!(busy_millicores(Some("x=1")), Ok(1000));
        assert_eq!(busy_millicores(Some("x=1&millicores=250")), Ok(250));
        assert!(busy_millicores(Some("millicores=0")).is_err());
        assert!(busy_millicores(Some("millicores=1001")).is_err());
        assert!(busy_millicores(Some("millicores=lots")).is_err());
    }

    #[test]
    fn the_burner_uses_cpu_while_busy() {
        // Thread CPU time of the burner, from /proc/self/task/<tid>/stat, is not reachable
        // portably; measure the whole process (nextest runs each test in its own process).
        fn cpu_ticks() -> u64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        }
        let app = App::new(DemoArgs::default(), "t".into());
        app.set_load(1000);
        let before = cpu_ticks();
        let deadline = Instant::now() + Duration::from_secs(30);
        // At least 0.2 s of CPU (20 ticks at the usual 100 Hz) within the deadline.
        while cpu_ticks() < before + 20 {
            assert!(Instant::now() < deadline, "the burner used no CPU");
            std::thread::sleep(Duration::from_millis(50));
        }
        app.set_load(0);
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_returns() {
        let app = Running::start(DemoArgs::default()).await;
        // A kept-alive connection must not hold the shutdown up.
        let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let addr = app.addr;
        app.stop().await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert_eq!(
            idle.read(&mut buf).await.unwrap(),
            0,
            "idle connection closed"
        );
    }

    #[test]
    fn listen_address_prefers_flag_then_pod_ip() {
        let cases = [
            (Some("127.0.0.1:9000"), Some("127.1.0.2"), "127.0.0.1:9000"),
            (None, Some("127.1.0.2"), "127.1.0.2:8080"),
            (None, Some("fd00::2"), "[fd00::2]:8080"),
            (None, Some(""), "0.0.0.0:8080"),
            (None, None, "0.0.0.0:8080"),
        ];
        for (listen, pod_ip, want) in cases {
            assert_eq!(listen_addr(listen, pod_ip), want, "{listen:?} {pod_ip:?}");
        }
    }

    #[test]
    fn hostname_prefers_hostname_then_pod_name_then_machine() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let machine = || Some("box".to_string());
        let both = env(&[("HOSTNAME", "kubia-1"), ("POD_NAME", "kubia-2")]);
        assert_eq!(hostname_from(both, machine), "kubia-1");
        let pod_only = env(&[("HOSTNAME", ""), ("POD_NAME", "kubia-2")]);
        assert_eq!(hostname_from(pod_only, machine), "kubia-2");
        assert_eq!(hostname_from(env(&[]), machine), "box");
        assert_eq!(hostname_from(env(&[]), || None), "localhost");
    }
}
