//! Logs, exec, port forwarding and metrics through the API server, which proxies to the node
//! agent's own service over mutual TLS: an in-process 1-server cluster with its control loops and
//! one in-process agent on the process runtime. Covers the client calls (tail, previous log after
//! a restart, follow, timestamps, since; exec output, exit code and stdin; port-forward to the demo app; pod and
//! node metrics of a busy pod), the error messages, authentication at the API server, the
//! agent refusing callers that are not API servers, and the CLI verbs end to end.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use rkube_client::{Client, Error, ExecEvent, LogOptions};
use rkube_proto::agent::{agent_client::AgentClient, StatsRequest};
use rkube_tests::agent::Agent;
use rkube_tests::api_cluster::{ApiCluster, ClusterOptions};
use rkube_tests::wait::wait_until;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "serve-1";
const TIMEOUT: Duration = Duration::from_secs(60);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// An agent that only runs pods (no service proxy or DNS: nothing here needs them).
fn start_agent(client: &Client) -> Agent {
    Agent::start_with(client.clone(), NODE, |o| {
        o.proxy = false;
        o.cluster_ip = false;
        o.cluster_dns = None;
    })
}

fn pod(name: &str, labels: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers}
    })
}

fn shell(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "busybox", "command": ["sh", "-c", script]})
}

fn demo_app() -> Value {
    let bin = rkube_tests::process::rkube_bin();
    json!([{"name": "web", "image": "rkube-demo", "command": [bin.to_string_lossy(), "demo-app"]}])
}

async fn running(client: &Client, name: &str) -> Pod {
    wait_until(TIMEOUT, &format!("pod {name} running"), || {
        let client = client.clone();
        async move {
            let p: Pod = client.get_typed("default", name).await.ok()?;
            let status = p.status.as_ref()?;
            let all_running = status
                .container_statuses
                .as_ref()?
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
            (status.phase.as_deref() == Some("Running") && all_running).then_some(p)
        }
    })
    .await
}

async fn node_published(client: &Client) -> Node {
    wait_until(TIMEOUT, "the node publishes its agent endpoint", || {
        let client = client.clone();
        async move {
            let node: Node = client.get_typed("", NODE).await.ok()?;
            let annotations = node.metadata.annotations.as_ref()?;
            let port = node
                .status
                .as_ref()?
                .daemon_endpoints
                .as_ref()?
                .kubelet_endpoint
                .as_ref()?
                .port;
            (annotations.contains_key("rkube.io/agent-address")
                && annotations.contains_key("rkube.io/serving-cert-sha256")
                && port > 0)
                .then_some(node)
        }
    })
    .await
}

async fn logs(client: &Client, name: &str, options: LogOptions) -> Result<String, Error> {
    let mut stream = client.pod_logs("default", name, &options).await?;
    let mut text = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.extend(chunk?);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Run `command` in pod `name`: (stdout, stderr, exit code).
async fn exec(
    client: &Client,
    name: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
) -> Result<(String, String, i32), Error> {
    let input = stdin.map(|data| {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(data.to_vec()).unwrap();
        rx
    });
    let command = command.iter().map(|s| s.to_string()).collect();
    let mut events = client.pod_exec("default", name, "", command, input).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(e) = events.next().await {
        match e? {
            ExecEvent::Stdout(d) => out.extend(d),
            ExecEvent::Stderr(d) => err.extend(d),
            ExecEvent::Exit(code) => {
                return Ok((
                    String::from_utf8_lossy(&out).into_owned(),
                    String::from_utf8_lossy(&err).into_owned(),
                    code,
                ))
            }
        }
    }
    panic!("the exec stream ended without an exit code");
}

async fn http_get_through_port_forward(client: &Client, pod: &str) -> String {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let forward = {
        let client = client.clone();
        let pod = pod.to_string();
        tokio::spawn(async move { client.pod_port_forward("default", &pod, 8080, theirs).await })
    };
    let (mut read, mut write) = tokio::io::split(ours);
    write
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(TIMEOUT, read.read_to_string(&mut answer))
        .await
        .expect("the forwarded answer in time")
        .unwrap();
    drop(write);
    forward.await.unwrap().unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exec_port_forward_and_metrics_through_the_api_server() {
    init_tracing();
    // Build the binary the pods run before the cluster starts (it may take a while).
    rkube_tests::process::rkube_bin();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = start_agent(&client);
    node_published(&client).await;

    let pods = [
        pod(
            "lines",
            json!({}),
            json!([shell(
                "main",
                "echo one; echo two; echo three; exec sleep 1000"
            )]),
        ),
        pod(
            "ticker",
            json!({}),
            json!([shell("main", "while true; do echo tick; sleep 0.2; done")]),
        ),
        pod(
            "crasher",
            json!({}),
            json!([shell("main", "echo started $$$$; sleep 2; exit 1")]),
        ),
        pod(
            "phases",
            json!({}),
            json!([shell(
                "main",
                "echo early; sleep 1; echo late; exec sleep 1000"
            )]),
        ),
        pod(
            "duo",
            json!({}),
            json!([shell("a", "exec sleep 1000"), shell("b", "exec sleep 1000")]),
        ),
        pod("web", json!({"app": "web"}), demo_app()),
        pod(
            "spinner",
            json!({"app": "spin"}),
            json!([shell("main", "while :; do :; done")]),
        ),
    ];
    for p in &pods {
        client.create(p, "default").await.unwrap();
    }
    // Never scheduled: no node has this label.
    let mut stuck = pod("stuck", json!({}), json!([shell("main", "sleep 1")]));
    stuck["spec"]["nodeSelector"] = json!({"no-such": "node"});
    client.create(&stuck, "default").await.unwrap();
    let web = running(&client, "web").await;
    let lines = running(&client, "lines").await;
    running(&client, "duo").await;

    // Logs: whole, tail.
    let log_of = |name: &'static str, tail: Option<i64>| {
        let client = client.clone();
        async move {
            logs(
                &client,
                name,
                LogOptions {
                    tail_lines: tail,
                    ..Default::default()
                },
            )
            .await
        }
    };
    wait_until(TIMEOUT, "the whole log of lines", || async {
        (log_of("lines", None).await.ok()? == "one\ntwo\nthree\n").then_some(())
    })
    .await;
    assert_eq!(log_of("lines", Some(2)).await.unwrap(), "two\nthree\n");
    assert_eq!(log_of("lines", Some(0)).await.unwrap(), "");

    // Follow: lines written after the call arrive.
    let mut follow = client
        .pod_logs(
            "default",
            "ticker",
            &LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut seen = String::new();
    tokio::time::timeout(TIMEOUT, async {
        while seen.matches("tick\n").count() < 4 {
            seen.push_str(&String::from_utf8_lossy(
                &follow.next().await.unwrap().unwrap(),
            ));
        }
    })
    .await
    .expect("new lines while following");
    drop(follow);

    // Previous: after a restart, the log of the instance that ended.
    wait_until(TIMEOUT, "crasher restarted and running again", || {
        let client = client.clone();
        async move {
            let p: Pod = client.get_typed("default", "crasher").await.ok()?;
            let c = p.status?.container_statuses?.into_iter().next()?;
            (c.restart_count >= 1 && c.state?.running.is_some()).then_some(())
        }
    })
    .await;
    let previous = logs(
        &client,
        "crasher",
        LogOptions {
            previous: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let current = wait_until(TIMEOUT, "the current crasher log", || async {
        let l = log_of("crasher", None).await.ok()?;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert!(previous.starts_with("started "), "{previous:?}");
    assert!(current.starts_with("started "), "{current:?}");
    assert_ne!(previous, current, "two instances, two processes");
    let err = logs(
        &client,
        "lines",
        LogOptions {
            previous: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("previous terminated container \"main\" in pod \"lines\" not found"),
        "{err}"
    );

    // Errors name the pod, the containers, the state.
    let err = log_of("nope", None).await.unwrap_err();
    assert_eq!(err, Error::NotFound("pods \"nope\" not found".into()));
    let err = log_of("duo", None).await.unwrap_err();
    assert_eq!(
        err,
        Error::BadRequest(
            "a container name must be specified for pod duo, choose one of: [a b]".into()
        )
    );
    let err = logs(
        &client,
        "duo",
        LogOptions {
            container: "c".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        Error::BadRequest("container c is not valid for pod duo, choose one of: [a b]".into())
    );
    assert_eq!(
        logs(
            &client,
            "duo",
            LogOptions {
                container: "b".into(),
                ..Default::default()
            }
        )
        .await
        .unwrap(),
        ""
    );
    let err = exec(&client, "stuck", &["true"], None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("pod stuck is not scheduled to a node yet"),
        "{err}"
    );

    // Times: with timestamps every line starts with the time it was logged; since_time and
    // since_seconds leave older lines out.
    let timed = wait_until(TIMEOUT, "both lines of phases", || async {
        let options = LogOptions {
            timestamps: true,
            ..Default::default()
        };
        let l = logs(&client, "phases", options).await.ok()?;
        (l.lines().count() == 2).then_some(l)
    })
    .await;
    let stamped: Vec<(jiff::Timestamp, &str)> = timed
        .lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').unwrap();
            (t.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")), rest)
        })
        .collect();
    let texts: Vec<&str> = stamped.iter().map(|(_, l)| *l).collect();
    assert_eq!(texts, ["early", "late"]);
    assert!(stamped[0].0 < stamped[1].0 && stamped[1].0 <= jiff::Timestamp::now());
    let since_late = LogOptions {
        since_time: Some(stamped[1].0.to_string()),
        ..Default::default()
    };
    assert_eq!(logs(&client, "phases", since_late).await.unwrap(), "late\n");
    let whole = wait_until(TIMEOUT, "3 s of ticks", || async {
        let l = log_of("ticker", None).await.ok()?;
        (l.lines().count() >= 15).then_some(l.lines().count())
    })
    .await;
    let asked = jiff::Timestamp::now();
    let last_second = LogOptions {
        since_seconds: Some(1),
        timestamps: true,
        ..Default::default()
    };
    let recent = logs(&client, "ticker", last_second).await.unwrap();
    assert!(recent.lines().count() < whole, "{recent}");
    for line in recent.lines() {
        let time: jiff::Timestamp = line.split_once(' ').unwrap().0.parse().unwrap();
        assert!(
            time >= asked - jiff::SignedDuration::from_secs(1),
            "{line} (asked at {asked})"
        );
        assert!(line.ends_with(" tick"), "{line}");
    }
    let both = LogOptions {
        since_seconds: Some(5),
        since_time: Some(asked.to_string()),
        ..Default::default()
    };
    let err = logs(&client, "ticker", both).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("at most one of since_seconds and since_time"),
        "{err}"
    );

    // Exec: output, exit code, the container's environment, stdin.
    let (out, err, code) = exec(
        &client,
        "lines",
        &["sh", "-c", "echo out $POD_IP; echo err >&2; exit 3"],
        None,
    )
    .await
    .unwrap();
    let ip = lines.status.unwrap().pod_ip.unwrap();
    assert_eq!(
        (out, err, code),
        (format!("out {ip}\n"), "err\n".to_string(), 3)
    );
    let (out, _, code) = exec(
        &client,
        "lines",
        &["tr", "a-z", "A-Z"],
        Some(b"hello stdin\n"),
    )
    .await
    .unwrap();
    assert_eq!((out.as_str(), code), ("HELLO STDIN\n", 0));
    let err = exec(&client, "lines", &["/no/such/program"], None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot run \"/no/such/program\""),
        "{err}"
    );

    // Port forwarding to the demo app.
    let answer = http_get_through_port_forward(&client, "web").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("You've hit web"), "{answer}");
    assert_eq!(web.metadata.name.as_deref(), Some("web"));

    // Metrics: the busy pod uses CPU; the node too.
    let spin = wait_until(TIMEOUT, "CPU usage of the spinner", || {
        let client = client.clone();
        async move {
            let m = client.pod_metrics("default", "app=spin").await.ok()?;
            let p = m.into_iter().find(|p| p.name == "spinner")?;
            (p.cpu_millicores() > 50).then_some(p)
        }
    })
    .await;
    assert_eq!(spin.containers[0].name, "main");
    assert!(
        spin.memory_bytes() > 0 && spin.window >= Duration::from_secs(1),
        "{spin:?}"
    );
    let all = client.pod_metrics("", "").await.unwrap();
    assert!(
        all.iter().any(|p| p.name == "web" && p.memory_bytes() > 0),
        "{all:?}"
    );
    assert!(all.iter().all(|p| p.name != "stuck"));
    let nodes = client.node_metrics().await.unwrap();
    assert!(nodes.unavailable.is_empty(), "{nodes:?}");
    let node = nodes
        .items
        .iter()
        .find(|n| n.name == NODE)
        .expect("our node");
    assert!(node.cpu_millicores > 0 && node.memory_bytes > 0, "{node:?}");
    assert!(node.allocatable_cpu_millicores > 0 && node.allocatable_memory_bytes > 0);

    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authenticated_users_and_only_api_servers_get_in() {
    init_tracing();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = start_agent(&client);
    let node = node_published(&client).await;
    client
        .create(
            &pod(
                "quiet",
                json!({}),
                json!([shell("main", "echo hi; exec sleep 1000")]),
            ),
            "default",
        )
        .await
        .unwrap();
    running(&client, "quiet").await;

    // A caller the API server does not know is refused before anything is looked up.
    let mut config = cluster.client_config();
    config.token = Some("not-a-token".into());
    let stranger = Client::new(config).unwrap();
    let err = stranger
        .pod_logs("default", "quiet", &LogOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    let err = stranger.pod_metrics("", "").await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");

    // The agent itself: API servers' certificates only.
    let annotations = node.metadata.annotations.unwrap();
    let (address, sha) = (
        annotations["rkube.io/agent-address"].clone(),
        annotations["rkube.io/serving-cert-sha256"].clone(),
    );
    let stats = |ca: &rkube_store::tls::CaBundle, cert: &rkube_store::tls::CertKey| {
        let dialer = rkube_apiserver::node_proxy::AgentDialer::new(ca, cert).unwrap();
        let channel = dialer.channel(&address, &sha).unwrap();
        async move { AgentClient::new(channel).stats(StatsRequest {}).await }
    };
    let (ca, server_cert) = rkube_store::tls::TlsDir::new(cluster.data_dir(1).join("tls"))
        .load()
        .unwrap();
    // The API server's own certificate works (the positive control) ...
    let answer = stats(&ca, &server_cert).await.unwrap().into_inner();
    assert_eq!(answer.node_name, NODE);
    assert!(answer
        .pods
        .iter()
        .any(|p| p.pod.as_ref().unwrap().name == "quiet"));
    // ... a certificate from another CA fails the handshake ...
    let other_ca = rkube_store::tls::CaBundle::generate(7).unwrap();
    let foreign = other_ca.issue_server(1, &[]).unwrap();
    let err = stats(&other_ca, &foreign).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    // ... and so does a user's certificate from the cluster CA (clientAuth only).
    let user = ca.issue_client("mallory", &["system:masters"]).unwrap();
    let err = stats(&ca, &user).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("accepts API servers only"), "{err}");
    // A pinned fingerprint that does not match is refused by the API server's side.
    let dialer = rkube_apiserver::node_proxy::AgentDialer::new(&ca, &server_cert).unwrap();
    let wrong = dialer.channel(&address, &"0".repeat(64)).unwrap();
    assert!(AgentClient::new(wrong)
        .stats(StatsRequest {})
        .await
        .is_err());

    agent.stop().await;
}

/// What one `rkube` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn rkube(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(rkube_tests::process::rkube_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("RKUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rkube");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_logs_exec_port_forward_and_top() {
    init_tracing();
    rkube_tests::process::rkube_bin();
    let cluster = ApiCluster::start_opts(1, ClusterOptions::with_control_loops()).await;
    let client = cluster.client();
    let agent = start_agent(&client);
    let kubeconfig = cluster.kubeconfig();
    client
        .create(&pod("web", json!({}), demo_app()), "default")
        .await
        .unwrap();
    client
        .create(
            &pod(
                "duo",
                json!({}),
                json!([
                    shell("a", "echo from-a; exec sleep 1000"),
                    shell("b", "exec sleep 1000")
                ]),
            ),
            "default",
        )
        .await
        .unwrap();
    client
        .create(
            &pod(
                "phases",
                json!({}),
                json!([shell(
                    "main",
                    "echo early; sleep 1; echo late; exec sleep 1000"
                )]),
            ),
            "default",
        )
        .await
        .unwrap();
    running(&client, "web").await;
    running(&client, "duo").await;
    let cfg = kubeconfig.clone();
    let run = move |args: Vec<&'static str>, stdin: Option<&'static str>| {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || rkube(&cfg, &args, stdin))
    };

    // logs
    let r = wait_until(TIMEOUT, "rkube logs duo -c a", || async {
        let r = run(vec!["logs", "duo", "-c", "a"], None).await.unwrap();
        (r.code == Some(0) && r.stdout == "from-a\n").then_some(r)
    })
    .await;
    assert_eq!(r.stderr, "");
    let r = run(vec!["logs", "pod/duo", "--tail", "1", "-c", "a"], None)
        .await
        .unwrap();
    assert_eq!(r.stdout, "from-a\n");
    let r = wait_until(
        TIMEOUT,
        "rkube logs phases --timestamps: 2 lines",
        || async {
            let r = run(
                vec!["logs", "phases", "--timestamps", "--since", "1h"],
                None,
            )
            .await
            .unwrap();
            (r.code == Some(0) && r.stdout.lines().count() == 2).then_some(r)
        },
    )
    .await;
    let lines: Vec<&str> = r.stdout.lines().collect();
    for (line, text) in lines.iter().zip(["early", "late"]) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line}");
        assert_eq!(rest, text);
    }
    // `run` takes 'static arguments.
    let late_time: &'static str = Box::leak(
        lines[1]
            .split_once(' ')
            .unwrap()
            .0
            .to_string()
            .into_boxed_str(),
    );
    let r = run(vec!["logs", "phases", "--since-time", late_time], None)
        .await
        .unwrap();
    assert_eq!(r.stdout, "late\n");
    let r = run(
        vec!["logs", "phases", "--since", "5s", "--since-time", late_time],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            Some(1),
            "error: at most one of --since and --since-time may be given\n"
        )
    );
    let r = run(vec!["logs", "duo"], None).await.unwrap();
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "Error from server (BadRequest): a container name must be specified for pod duo, choose one of: [a b]\n"
    );

    // exec: output, exit code, stdin.
    let r = run(
        vec![
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 7",
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (Some(7), "hi\n", "oops\n")
    );
    let r = run(
        vec!["exec", "-i", "web", "--", "tr", "a-z", "A-Z"],
        Some("shout\n"),
    )
    .await
    .unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), "SHOUT\n"));
    let r = run(vec!["exec", "missing", "--", "true"], None)
        .await
        .unwrap();
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "Error from server (NotFound): pods \"missing\" not found\n"
    );

    // port-forward: a local port that reaches the demo app.
    let mut child = tokio::process::Command::new(rkube_tests::process::rkube_bin())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["port-forward", "web", ":8080"])
        .env_remove("RKUBECONFIG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        TIMEOUT,
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("port-forward prints its address")
    .unwrap();
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.strip_suffix(" -> 8080\n"))
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(&local).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(TIMEOUT, conn.read_to_string(&mut answer))
            .await
            .expect("an answer through port-forward")
            .unwrap();
        assert!(answer.contains("You've hit web"), "{answer}");
    }
    child.kill().await.unwrap();

    // top
    let r = wait_until(TIMEOUT, "rkube top pods lists web", || async {
        let r = run(vec!["top", "pods"], None).await.unwrap();
        (r.code == Some(0) && r.stdout.lines().any(|l| l.starts_with("web "))).then_some(r)
    })
    .await;
    let header: Vec<&str> = r
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let r = run(vec!["top", "pods", "-A"], None).await.unwrap();
    assert!(r.stdout.starts_with("NAMESPACE "), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("default ") && l.contains(" duo ")),
        "{}",
        r.stdout
    );
    let r = run(vec!["top", "nodes"], None).await.unwrap();
    let lines: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    );
    let ours = lines.iter().find(|l| l[0] == NODE).expect("our node");
    assert!(
        ours[1].ends_with('m') && ours[2].ends_with('%') && ours[3].ends_with("Mi"),
        "{ours:?}"
    );

    agent.stop().await;
}
