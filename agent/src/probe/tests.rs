//! Probe unit tests: threshold counting, the probe loop's timing and startup gating under a
//! paused clock, handlers built from probes, and the HTTP, TCP and exec handlers for real.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, TCPSocketAction,
};
use tokio::net::TcpListener;

use super::*;
use crate::runtime::{ContainerSpec, ProcessRuntime};

fn settings(success: u32, failure: u32) -> Settings {
    Settings {
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: success,
        failure_threshold: failure,
    }
}

#[test]
fn defaults_are_kubernetes() {
    let s = Settings::from_probe(Kind::Readiness, &Probe::default());
    assert_eq!(
        s,
        Settings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    );
    let p = Probe {
        success_threshold: Some(3),
        ..Default::default()
    };
    assert_eq!(
        Settings::from_probe(Kind::Readiness, &p).success_threshold,
        3
    );
    assert_eq!(
        Settings::from_probe(Kind::Liveness, &p).success_threshold,
        1
    );
}

#[test]
fn visible_results_change_only_after_thresholds() {
    let s = settings(2, 3);
    // Readiness starts not ready: one success is not enough, two are.
    let mut t = Thresholds::new(Kind::Readiness);
    let got: Vec<Option<bool>> = [
        true, false, true, true, true, false, false, true, false, false, false,
    ]
    .iter()
    .map(|ok| t.observe(*ok, &s))
    .collect();
    assert_eq!(
        got,
        [
            None,
            None,
            None,
            Some(true),
            None,
            None,
            None,
            None,
            None,
            None,
            Some(false)
        ]
    );
    // Liveness starts alive: failures only count in a row.
    let s = settings(1, 3);
    let mut t = Thresholds::new(Kind::Liveness);
    let got: Vec<Option<bool>> = [false, false, true, false, false, false]
        .iter()
        .map(|ok| t.observe(*ok, &s))
        .collect();
    assert_eq!(got, [None, None, None, None, None, Some(false)]);
    // Startup starts not started: the first success counts.
    let mut t = Thresholds::new(Kind::Startup);
    assert_eq!(t.observe(false, &s), None);
    assert_eq!(t.observe(true, &s), Some(true));
    // ... and so do `failure_threshold` failures in a row.
    let mut t = Thresholds::new(Kind::Startup);
    let got: Vec<Option<bool>> = [false, false, false]
        .iter()
        .map(|ok| t.observe(*ok, &s))
        .collect();
    assert_eq!(got, [None, None, Some(false)]);
}

/// Run a probe loop on a paused clock with scripted results; returns (seconds since start,
/// changed) for every report.
async fn scripted(
    kind: Kind,
    s: Settings,
    gate: Option<watch::Receiver<bool>>,
    results: Vec<bool>,
) -> Vec<(u64, Option<bool>)> {
    let start = Instant::now();
    let results = Mutex::new(results.into_iter());
    let mut reports = Vec::new();
    let check = || {
        let ok = results.lock().unwrap().next();
        async move {
            match ok {
                Some(true) => Outcome::Success,
                Some(false) => Outcome::Failure("no".into()),
                // Out of results: block, as a hung probe would, until the test ends.
                None => std::future::pending().await,
            }
        }
    };
    let report = |u: Update| {
        reports.push(((Instant::now() - start).as_secs(), u.changed));
        true
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1000),
        run(kind, s, start, gate, check, report),
    )
    .await;
    reports
}

#[tokio::test(start_paused = true)]
async fn the_loop_waits_the_initial_delay_then_probes_each_period() {
    let mut s = settings(1, 2);
    s.initial_delay = Duration::from_secs(5);
    s.period = Duration::from_secs(3);
    let got = scripted(Kind::Liveness, s, None, vec![true, false, false, false]).await;
    // The liveness loop ends at the failure it reports.
    assert_eq!(got, [(5, None), (8, None), (11, Some(false))]);
    let got = scripted(Kind::Startup, s, None, vec![false, true, false]).await;
    assert_eq!(got, [(5, None), (8, Some(true))]);
}

#[tokio::test(start_paused = true)]
async fn liveness_and_readiness_wait_for_the_startup_probe() {
    let (open, gate) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(20)).await;
        open.send_replace(true);
        // Keep the gate's sender alive for the rest of the test.
        std::future::pending::<()>().await;
    });
    let mut s = settings(1, 3);
    s.initial_delay = Duration::from_secs(5);
    let got = scripted(Kind::Readiness, s, Some(gate), vec![false, true]).await;
    // Nothing ran before the gate opened; the initial delay had passed by then.
    assert_eq!(got, [(20, None), (21, Some(true))]);

    // A gate that never opens (its container went away): no probe at all.
    let (closed, gate) = watch::channel(false);
    drop(closed);
    assert_eq!(
        scripted(Kind::Liveness, s, Some(gate), vec![false]).await,
        []
    );
}

fn container() -> Container {
    Container {
        name: "web".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[test]
fn handlers_from_probes() {
    let http = |port: IntOrString, scheme: Option<&str>| Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some("/healthz".into()),
            scheme: scheme.map(str::to_string),
            http_headers: Some(vec![HTTPHeader {
                name: "X-A".into(),
                value: "b".into(),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = container();
    assert_eq!(
        Handler::from_probe(
            &http(IntOrString::String("http".into()), None),
            &c,
            "127.1.1.1"
        ),
        Handler::HttpGet {
            host: "127.1.1.1".into(),
            port: 8080,
            path: "/healthz".into(),
            headers: vec![("X-A".into(), "b".into())],
        }
    );
    assert_eq!(
        Handler::from_probe(&http(IntOrString::String("grpc".into()), None), &c, "ip"),
        Handler::Unsupported(
            "port name \"grpc\" is not among the ports of container \"web\"".into()
        )
    );
    assert!(matches!(
        Handler::from_probe(&http(IntOrString::Int(80), Some("HTTPS")), &c, "ip"),
        Handler::Unsupported(m) if m.contains("HTTPS")
    ));
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            host: Some("10.0.0.1".into()),
            port: IntOrString::Int(22),
        }),
        ..Default::default()
    };
    assert_eq!(
        Handler::from_probe(&tcp, &c, "ip"),
        Handler::TcpSocket {
            host: "10.0.0.1".into(),
            port: 22
        }
    );
}

/// Answer one HTTP request per connection with `status`, recording the request heads.
async fn http_server(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let reply = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    (port, heads)
}

fn check(handler: Handler, runtime: Arc<dyn Runtime>, id: &str) -> BoxFuture<'static, Outcome> {
    Arc::new(handler).check(runtime, id.into(), Duration::from_secs(1))
}

#[tokio::test]
async fn http_get_succeeds_on_2xx_and_3xx_only() {
    let rt: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new());
    for (status, ok) in [(200, true), (302, true), (404, false), (500, false)] {
        let (port, heads) = http_server(status).await;
        let handler = Handler::HttpGet {
            host: "127.0.0.1".into(),
            port,
            path: "/ready".into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        };
        let got = check(handler, rt.clone(), "").await;
        if ok {
            assert_eq!(got, Outcome::Success, "status {status}");
        } else {
            assert_eq!(
                got,
                Outcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
            );
        }
        let head = heads.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /ready HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("X-Probe: yes\r\n"), "{head}");
    }
}

#[tokio::test]
async fn tcp_and_http_fail_on_a_closed_port_and_time_out_on_silence() {
    let rt: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = || Handler::TcpSocket {
        host: "127.0.0.1".into(),
        port,
    };
    assert_eq!(check(tcp(), rt.clone(), "").await, Outcome::Success);
    // Accepting but never answering: the HTTP probe times out.
    let http = Handler::HttpGet {
        host: "127.0.0.1".into(),
        port,
        path: "/".into(),
        headers: vec![],
    };
    let got = check(http, rt.clone(), "").await;
    assert!(
        matches!(&got, Outcome::Failure(m) if m.contains("deadline")),
        "{got:?}"
    );
    drop(listener);
    let got = check(tcp(), rt.clone(), "").await;
    assert!(
        matches!(&got, Outcome::Failure(m) if m.starts_with("dial tcp 127.0.0.1:")),
        "{got:?}"
    );
}

#[tokio::test]
async fn exec_runs_in_the_container_environment() {
    let dir = tempfile::tempdir().unwrap();
    let process = Arc::new(ProcessRuntime::new());
    let spec = ContainerSpec {
        name: "c".into(),
        argv: vec!["sleep".into(), "1000".into()],
        env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("WANT".into(), "marker".into()),
        ],
        working_dir: dir.path().to_path_buf(),
        log_path: dir.path().join("c.log"),
        mounts: vec![],
        engine: Default::default(),
    };
    let started = process.start(&spec).await.unwrap();
    let rt: Arc<dyn Runtime> = process.clone();
    let exec = |script: &str| Handler::Exec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    };
    std::fs::write(dir.path().join("marker"), "").unwrap();
    assert_eq!(
        check(exec("test -f \"$WANT\""), rt.clone(), &started.id).await,
        Outcome::Success
    );
    assert_eq!(
        check(exec("echo not yet; exit 2"), rt.clone(), &started.id).await,
        Outcome::Failure("not yet".into())
    );
    let got = check(exec("sleep 5"), rt.clone(), &started.id).await;
    assert!(
        matches!(&got, Outcome::Failure(m) if m.contains("timed out")),
        "{got:?}"
    );
    let got = check(exec("true"), rt.clone(), "nope").await;
    assert!(
        matches!(&got, Outcome::Failure(m) if m.contains("not running")),
        "{got:?}"
    );
    process.stop(&started.id, Duration::ZERO).await.unwrap();
}

#[test]
fn exec_handlers_keep_their_command() {
    let p = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Default::default()
    };
    assert_eq!(
        Handler::from_probe(&p, &container(), "ip"),
        Handler::Exec {
            argv: vec!["true".into()]
        }
    );
}
