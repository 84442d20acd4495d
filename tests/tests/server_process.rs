//! Black-box tests of `rkube server` as a real process: crash and restart, refusing foreign or
//! corrupt data directories, authentication, bad input, clean shutdown and a full disk.

use std::time::Duration;

use rkube_proto::store as pb;
use rkube_tests::process::{free_port, rkube_bin, ServerProcess};

fn put(key: &str, value: Vec<u8>) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_killed_server_restarts_from_its_data_directory_with_every_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let port = free_port();
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, port, &[]);
    s.ready().await;
    let mut kv = s.kv(&dir).await;
    for i in 0..50 {
        kv.put(put(&format!("/crash/{i}"), vec![b'x'; 100]))
            .await
            .expect("put");
    }
    s.kill9();
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, port, &[]);
    s.ready().await;
    assert!(
        s.log_text().contains("rkube server is ready")
            && !s.log_text().contains("created a new cluster"),
        "must resume, not re-create:\n{}",
        s.log_text()
    );
    let mut kv = s.kv(&dir).await;
    let all = kv
        .range(pb::RangeRequest {
            key: b"/crash/".to_vec(),
            range_end: b"/crash0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(all.count, 50, "every acknowledged write survives SIGKILL");
}

#[tokio::test]
async fn foreign_corrupt_and_mismatched_data_directories_are_refused_not_reset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A non-empty directory that is not an rkube data directory.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("precious.txt"), "do not delete").expect("write");
    let mut s = ServerProcess::spawn(&rkube_bin(), &foreign, free_port(), &[]);
    assert!(!s.exit_status(Duration::from_secs(20)).await.success());
    assert!(
        s.log_text()
            .contains("is not empty but has no cluster.json"),
        "{}",
        s.log_text()
    );
    assert!(foreign.join("precious.txt").exists());

    // A real data directory started with another node id.
    let dir = tmp.path().join("real");
    let port = free_port();
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, port, &[]);
    s.ready().await;
    s.signal("TERM");
    assert!(
        s.exit_status(Duration::from_secs(20)).await.success(),
        "SIGTERM shuts down cleanly:\n{}",
        s.log_text()
    );
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, port, &["--node-id", "7"]);
    assert!(!s.exit_status(Duration::from_secs(20)).await.success());
    assert!(
        s.log_text().contains("belongs to node 1"),
        "{}",
        s.log_text()
    );

    // A corrupt identity file.
    std::fs::write(dir.join("cluster.json"), "{ not json").expect("write");
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, port, &[]);
    assert!(!s.exit_status(Duration::from_secs(20)).await.success());
    assert!(
        s.log_text().contains("is corrupt") && s.log_text().contains("refusing to start"),
        "{}",
        s.log_text()
    );

    // An unusable data directory path.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let mut s = ServerProcess::spawn(&rkube_bin(), &file.join("sub"), free_port(), &[]);
    assert!(!s.exit_status(Duration::from_secs(20)).await.success());
    assert!(s.log_text().contains("Not a directory"), "{}", s.log_text());
}

#[tokio::test]
async fn clients_must_authenticate_and_bad_requests_get_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, free_port(), &[]);
    s.ready().await;

    // TLS with the right CA but no client certificate: refused.
    let ca = std::fs::read_to_string(dir.join("tls/ca.pem")).expect("ca");
    let tls = rkube_store::tls::client_tls_config(&ca, None);
    let ch = rkube_store::network::endpoint(&s.addr, &tls)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let err = rkube_proto::store::kv_client::KvClient::new(ch)
        .put(put("/x", b"1".to_vec()))
        .await
        .expect_err("unauthenticated");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut kv = s.kv(&dir).await;
    let cases: Vec<(pb::PutRequest, &str)> = vec![
        (
            put("/big", vec![0u8; 1536 * 1024 + 1]),
            "put.value is 1572865 bytes, at most 1572864 (1.5 MiB)",
        ),
        (put("", b"1".to_vec()), "put.key must not be empty"),
        (
            pb::PutRequest {
                precondition: Some(pb::Precondition { condition: None }),
                ..put("/p", vec![])
            },
            "put.precondition is empty",
        ),
    ];
    for (req, want) in cases {
        let err = kv.put(req).await.expect_err("invalid");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(
            err.message().contains(want),
            "{} does not contain {want}",
            err.message()
        );
    }
    // Far beyond the message limit: refused by the transport, server unharmed.
    let err = kv
        .put(put("/huge", vec![0u8; 3 << 20]))
        .await
        .expect_err("too large");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    kv.put(put("/ok", b"fine".to_vec()))
        .await
        .expect("the server still serves");
    let err = kv
        .range(pb::RangeRequest {
            key: b"/ok".to_vec(),
            revision: 1_000_000,
            serializable: true,
            ..Default::default()
        })
        .await
        .expect_err("future");
    assert!(err.message().contains("future revision"), "{err}");
}

#[tokio::test]
async fn a_join_with_a_wrong_token_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d1 = tmp.path().join("one");
    let mut s1 = ServerProcess::spawn(&rkube_bin(), &d1, free_port(), &[]);
    s1.ready().await;
    let token = std::fs::read_to_string(d1.join("join-token")).expect("token");
    let (hash, _) = token.trim().rsplit_once('.').expect("token shape");
    let wrong = format!("{hash}.{}", "0".repeat(64));
    let d2 = tmp.path().join("two");
    let mut s2 = ServerProcess::spawn(
        &rkube_bin(),
        &d2,
        free_port(),
        &["--join", &s1.addr, "--token", &wrong, "--node-id", "2"],
    );
    assert!(!s2.exit_status(Duration::from_secs(20)).await.success());
    assert!(
        s2.log_text().contains("join token is not valid"),
        "{}",
        s2.log_text()
    );
    // A token pinning another CA is refused before the secret is sent.
    let other_ca = format!("rk1.{}.{}", "ab".repeat(32), "1".repeat(64));
    let d3 = tmp.path().join("three");
    let mut s3 = ServerProcess::spawn(
        &rkube_bin(),
        &d3,
        free_port(),
        &["--join", &s1.addr, "--token", &other_ca],
    );
    assert!(!s3.exit_status(Duration::from_secs(20)).await.success());
    assert!(
        s3.log_text()
            .contains("does not present the CA the join token names"),
        "{}",
        s3.log_text()
    );
    // The right token works.
    let mut s4 = ServerProcess::spawn(
        &rkube_bin(),
        &tmp.path().join("four"),
        free_port(),
        &[
            "--join",
            &s1.addr,
            "--token",
            token.trim(),
            "--node-id",
            "4",
        ],
    );
    s4.ready().await;
    let members = s1
        .cluster(&d1)
        .await
        .members(pb::MembersRequest {})
        .await
        .expect("members")
        .into_inner();
    assert_eq!(members.members.iter().filter(|m| m.voter).count(), 2);
}

/// Mount a small tmpfs (needs root; says so and skips otherwise) and fill it: the replica must
/// stop with a clear message instead of acknowledging writes it cannot persist.
#[tokio::test]
async fn a_full_disk_stops_the_replica_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); the full-disk test did not run");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let dir = mnt.join("data");
    let mut s = ServerProcess::spawn(&rkube_bin(), &dir, free_port(), &[]);
    s.ready().await;
    let mut kv = s.kv(&dir).await;
    let mut acked = Vec::new();
    let mut failed = false;
    for i in 0..2000 {
        match kv
            .put(put(&format!("/fill/{i}"), vec![i as u8; 512 * 1024]))
            .await
        {
            Ok(_) => acked.push(i),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a 256 MiB disk cannot hold 1 GiB of writes");
    let status = s.exit_status(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = s.log_text();
    assert!(
        log.contains("disk nearly full") && log.contains("this replica stops"),
        "{log}"
    );
    assert!(!acked.is_empty());
}

/// The operator's path for a learner: join with `--learner`, see it listed as a non-voter, promote
/// it with `rkube cluster promote`.
#[tokio::test]
async fn a_server_joined_as_learner_is_promoted_with_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d1 = tmp.path().join("one");
    let mut s1 = ServerProcess::spawn(&rkube_bin(), &d1, free_port(), &[]);
    s1.ready().await;
    let token = std::fs::read_to_string(d1.join("join-token")).expect("token");
    let d2 = tmp.path().join("two");
    let args = [
        "--join",
        &s1.addr,
        "--token",
        token.trim(),
        "--node-id",
        "2",
        "--learner",
    ];
    let mut s2 = ServerProcess::spawn(&rkube_bin(), &d2, free_port(), &args);
    s2.ready().await;
    let kubeconfig = d1.join("admin.kubeconfig");
    rkube_tests::wait::wait_until(Duration::from_secs(30), "the admin kubeconfig", || {
        let k = kubeconfig.clone();
        async move { k.exists().then_some(()) }
    })
    .await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(rkube_bin())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("run rkube");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let voter_of = |table: &str, id: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
    };
    assert_eq!(
        voter_of(&cli(&["cluster", "members"]), "2").as_deref(),
        Some("false")
    );
    let promoted = cli(&["cluster", "promote", "2"]);
    assert!(
        promoted.contains("Member 2 promoted to voter"),
        "{promoted}"
    );
    assert_eq!(
        voter_of(&cli(&["cluster", "members"]), "2").as_deref(),
        Some("true")
    );
}
