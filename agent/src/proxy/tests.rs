//! Tests of the service proxy: endpoint choice, rules from Services and Endpoints (node ports
//! and cluster IPs), shared binding and relaying.

use super::*;
use serde_json::{json, Value};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn round_robin_and_client_ip_affinity() {
    let backends = vec![addr("127.1.1.1:80"), addr("127.1.1.2:80")];
    let mut b = Balancer::new(backends.clone(), None);
    let (c1, c2): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let t0 = Instant::now();
    let picks: Vec<_> = (0..4).map(|_| b.pick(c1, t0).unwrap()).collect();
    assert_eq!(picks, [backends[0], backends[1], backends[0], backends[1]]);

    b.update(backends.clone(), Some(Duration::from_secs(10)));
    let first = b.pick(c1, t0).unwrap();
    assert_eq!(b.pick(c1, t0 + Duration::from_secs(9)), Some(first));
    // Idle time counts from the last connection.
    assert_eq!(b.pick(c1, t0 + Duration::from_secs(18)), Some(first));
    assert_ne!(b.pick(c2, t0).unwrap(), first);
    // Expired: round robin again.
    let after = b.pick(c1, t0 + Duration::from_secs(60)).unwrap();
    assert_eq!(b.pick(c1, t0 + Duration::from_secs(61)), Some(after));
    // A failing endpoint loses its affinity; a removed one too.
    b.failed(c1, after);
    assert!(!b.sticky.contains_key(&c1));
    b.update(vec![backends[0]], Some(Duration::from_secs(10)));
    assert_eq!(b.pick(c2, t0 + Duration::from_secs(62)), Some(backends[0]));
    b.update(vec![], None);
    assert_eq!(b.pick(c1, t0), None);
}

#[test]
fn rules_from_services_and_endpoints() {
    let svc = |name: &str, ty: &str, ports: Value, extra: Value| -> (String, Service) {
        let mut spec = json!({"type": ty, "ports": ports});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let obj = json!({"metadata": {"namespace": "default", "name": name}, "spec": spec});
        (
            format!("default/{name}"),
            serde_json::from_value(obj).unwrap(),
        )
    };
    let services: BTreeMap<String, Service> = [
        svc(
            "web",
            "NodePort",
            json!([{"port": 80, "nodePort": 30080}]),
            json!({}),
        ),
        svc(
            "multi",
            "LoadBalancer",
            json!([
                {"name": "http", "port": 80, "nodePort": 30081},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                {"name": "admin", "port": 9000, "nodePort": 30082},
            ]),
            json!({"sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        ),
        svc(
            "internal",
            "ClusterIP",
            json!([{"port": 80, "nodePort": 30083}]),
            json!({}),
        ),
    ]
    .into();
    let ep = |name: &str, subsets: Value| -> (String, Endpoints) {
        let obj = json!({"metadata": {"namespace": "default", "name": name}, "subsets": subsets});
        (
            format!("default/{name}"),
            serde_json::from_value(obj).unwrap(),
        )
    };
    let endpoints: HashMap<String, Endpoints> = [
        ep(
            "web",
            json!([{"addresses": [{"ip": "127.1.1.2"}, {"ip": "127.1.1.1"}],
                    "notReadyAddresses": [{"ip": "127.1.1.3"}],
                    "ports": [{"port": 8080}]}]),
        ),
        ep(
            "multi",
            json!([{"addresses": [{"ip": "127.1.2.1"}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]}]),
        ),
    ]
    .into();
    let rules = desired_rules(&services, &endpoints);
    assert_eq!(
        rules.keys().copied().collect::<Vec<_>>(),
        [30080, 30081, 30082]
    );
    assert_eq!(
        rules[&30080],
        PortRule {
            service: "default/web:".into(),
            backends: vec![addr("127.1.1.1:8080"), addr("127.1.1.2:8080")],
            affinity: None,
        }
    );
    assert_eq!(rules[&30081].backends, [addr("127.1.2.1:8080")]);
    assert_eq!(rules[&30082].backends, [addr("127.1.2.1:9090")]);
    assert_eq!(rules[&30082].affinity, Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn relays_to_an_endpoint_and_closes_without_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = backend.accept().await {
            let _ = c.write_all(b"hello").await;
        }
    });
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    drop(front);
    let balancer = Arc::new(Mutex::new(Balancer::new(vec![backend_addr], None)));
    let task = tokio::spawn(listen(
        front_addr,
        Binding::Exclusive,
        "t".into(),
        balancer.clone(),
    ));
    let read = || async {
        for _ in 0..100 {
            if let Ok(mut c) = TcpStream::connect(front_addr).await {
                let mut buf = Vec::new();
                let _ = c.read_to_end(&mut buf).await;
                return buf;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("listener never came up");
    };
    assert_eq!(read().await, b"hello");
    balancer.lock().unwrap().update(vec![], None);
    assert_eq!(read().await, b"");
    task.abort();
}

#[tokio::test]
async fn a_port_in_use_is_bound_once_freed() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap();
    let balancer = Arc::new(Mutex::new(Balancer::new(vec![], None)));
    let task = tokio::spawn(listen(addr, Binding::Exclusive, "t".into(), balancer));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished());
    drop(squatter);
    let mut bound = false;
    for _ in 0..100 {
        if std::net::TcpListener::bind(addr).is_err() {
            bound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bound, "the proxy never took the freed port");
    task.abort();
}

#[test]
fn cluster_ip_rules_cover_every_tcp_port_of_services_with_a_cluster_ip() {
    let svc = |name: &str, spec: Value| -> (String, Service) {
        let obj = json!({"metadata": {"namespace": "ns", "name": name}, "spec": spec});
        (format!("ns/{name}"), serde_json::from_value(obj).unwrap())
    };
    let services: BTreeMap<String, Service> = [
        svc(
            "web",
            json!({"clusterIP": "10.96.0.5", "ports": [
                {"name": "http", "port": 80},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ], "sessionAffinity": "ClientIP"}),
        ),
        svc(
            "np",
            json!({"type": "NodePort", "clusterIP": "10.96.0.6",
                   "ports": [{"port": 81, "nodePort": 30081}]}),
        ),
        svc(
            "headless",
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        ),
        svc(
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ),
    ]
    .into();
    let endpoints: HashMap<String, Endpoints> = [(
        "ns/web".to_string(),
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "subsets": [{"addresses": [{"ip": "127.1.0.1"}],
                         "ports": [{"name": "http", "port": 8080}]}],
        }))
        .unwrap(),
    )]
    .into();
    let rules = cluster_ip_rules(&services, &endpoints);
    assert_eq!(
        rules.keys().copied().collect::<Vec<_>>(),
        [addr("10.96.0.5:80"), addr("10.96.0.6:81")]
    );
    let web = &rules[&addr("10.96.0.5:80")];
    assert_eq!(web.backends, [addr("127.1.0.1:8080")]);
    assert_eq!(web.affinity, Some(DEFAULT_AFFINITY_TIMEOUT));
    assert!(rules[&addr("10.96.0.6:81")].backends.is_empty());

    let options = ProxyOptions {
        node_port_address: "127.0.0.1".parse().unwrap(),
        cluster_ip: true,
    };
    let all = all_rules(&services, &endpoints, options);
    assert_eq!(all.len(), 3);
    assert_eq!(all[&addr("127.0.0.1:30081")].1, Binding::Exclusive);
    assert_eq!(all[&addr("10.96.0.5:80")].1, Binding::Shared);
    let without = all_rules(
        &services,
        &endpoints,
        ProxyOptions {
            cluster_ip: false,
            ..options
        },
    );
    assert_eq!(
        without.keys().collect::<Vec<_>>(),
        [&addr("127.0.0.1:30081")]
    );
}

#[tokio::test]
async fn shared_listeners_bind_one_address_twice_and_exclusive_ones_do_not() {
    let first = bind_tcp(addr("127.0.0.1:0"), Binding::Shared).unwrap();
    let bound = first.local_addr().unwrap();
    let second = bind_tcp(bound, Binding::Shared).expect("a second shared bind");
    assert_eq!(second.local_addr().unwrap(), bound);
    assert!(bind_tcp(bound, Binding::Exclusive).is_err());
}
