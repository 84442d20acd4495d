//! Tests of the cluster DNS answers from a synthetic view of Services and Endpoints, and of a
//! query over UDP and TCP to a running responder.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::json;

use super::answer::respond;
use super::*;
use crate::services::ServiceSnapshot;

fn snapshot() -> ServiceSnapshot {
    let svc = |name: &str, spec: serde_json::Value| {
        let obj = json!({"metadata": {"namespace": "ns", "name": name}, "spec": spec});
        (format!("ns/{name}"), serde_json::from_value(obj).unwrap())
    };
    let ep = |name: &str, subsets: serde_json::Value| {
        let obj = json!({"metadata": {"namespace": "ns", "name": name}, "subsets": subsets});
        (format!("ns/{name}"), serde_json::from_value(obj).unwrap())
    };
    ServiceSnapshot {
        synced: true,
        services: [
            svc(
                "web",
                json!({"clusterIP": "10.96.1.2", "ports": [{"name": "http", "port": 80}]}),
            ),
            svc(
                "db",
                json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
            ),
            svc(
                "ext",
                json!({"type": "ExternalName", "externalName": "api.example.com"}),
            ),
        ]
        .into(),
        endpoints: [
            ep(
                "web",
                json!([{"addresses": [{"ip": "127.1.0.9"}], "ports": [{"name": "http", "port": 8080}]}]),
            ),
            ep(
                "db",
                json!([{
                    "addresses": [{"ip": "127.1.0.6", "hostname": "db-1"},
                                  {"ip": "127.1.0.5", "hostname": "db-0"}],
                    "notReadyAddresses": [{"ip": "127.1.0.7", "hostname": "db-2"}],
                    "ports": [{"name": "pg", "port": 5433}],
                }]),
            ),
        ]
        .into(),
    }
}

fn domain() -> Name {
    Name::from_ascii("cluster.local.").unwrap()
}

fn ask_with(name: &str, qtype: RecordType, snap: &ServiceSnapshot) -> Message {
    let mut request = Message::query();
    request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    respond(&request, snap, &domain())
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_with(name, qtype, &snapshot())
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn cluster_ip_headless_and_external_name() {
    let web = ask("web.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(web.metadata.response_code, ResponseCode::NoError);
    assert!(web.metadata.authoritative);
    assert_eq!(a_records(&web), [ip("10.96.1.2")]);
    // Names are case-insensitive; the answer echoes the question.
    let upper = ask("WEB.NS.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&upper), [ip("10.96.1.2")]);
    assert_eq!(
        upper.answers[0].name.to_ascii(),
        "WEB.NS.svc.cluster.local."
    );

    // Headless: the ready endpoints only.
    let db = ask("db.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&db), [ip("127.1.0.5"), ip("127.1.0.6")]);

    // ExternalName: a CNAME whatever the type asked.
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let ext = ask("ext.ns.svc.cluster.local.", qtype);
        assert_eq!(ext.metadata.response_code, ResponseCode::NoError);
        match &ext.answers[..] {
            [r] => match &r.data {
                RData::CNAME(c) => assert_eq!(c.0.to_ascii(), "api.example.com."),
                other => panic!("expected a CNAME, got {other:?}"),
            },
            other => panic!("expected one answer, got {other:?}"),
        }
    }
}

#[test]
fn stable_identities_of_headless_endpoints() {
    let db0 = ask("db-0.db.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&db0), [ip("127.1.0.5")]);
    let dashed = ask("127-1-0-6.db.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&dashed), [ip("127.1.0.6")]);
    // Not ready: no identity yet.
    let db2 = ask("db-2.db.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(db2.metadata.response_code, ResponseCode::NXDomain);
    // Only headless Services have endpoint names.
    let web = ask("127-1-0-9.web.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(web.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn srv_for_named_ports() {
    let web = ask("_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV);
    assert_eq!(web.metadata.response_code, ResponseCode::NoError);
    let srv: Vec<(u16, String)> = web
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(srv, [(80, "web.ns.svc.cluster.local.".to_string())]);
    assert_eq!(
        web.additionals[0].name.to_ascii(),
        "web.ns.svc.cluster.local."
    );

    let db = ask("_pg._tcp.db.ns.svc.cluster.local.", RecordType::SRV);
    let srv: Vec<(u16, String)> = db
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(
        srv,
        [
            (5433, "db-0.db.ns.svc.cluster.local.".to_string()),
            (5433, "db-1.db.ns.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(db.additionals.len(), 2);

    let unknown = ask("_nope._tcp.web.ns.svc.cluster.local.", RecordType::SRV);
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    let udp = ask("_http._udp.web.ns.svc.cluster.local.", RecordType::SRV);
    assert_eq!(udp.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn unknown_names_other_types_and_other_zones() {
    let missing = ask("nope.ns.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(missing.authorities[0].data, RData::SOA(_)));
    let ns = ask("ns.svc.cluster.local.", RecordType::A);
    assert_eq!(ns.metadata.response_code, ResponseCode::NoError);
    assert!(ns.answers.is_empty());
    let other_ns = ask("web.other.svc.cluster.local.", RecordType::A);
    assert_eq!(other_ns.metadata.response_code, ResponseCode::NXDomain);
    // The name exists, without AAAA records.
    let aaaa = ask("web.ns.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    // Outside the cluster domain: refused, not forwarded.
    let outside = ask("example.com.", RecordType::A);
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    assert!(!outside.metadata.authoritative);
    // Before the first list: a server failure, not a denial.
    let early = ask_with(
        "web.ns.svc.cluster.local.",
        RecordType::A,
        &ServiceSnapshot::default(),
    );
    assert_eq!(early.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let (udp, tcp) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = tcp.local_addr().unwrap();
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(snapshot()));
    let server = tokio::spawn(serve(udp, tcp, view, domain()));

    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(
        Name::from_ascii("web.ns.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let bytes = request.to_vec().unwrap();

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("a UDP answer")
        .unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, request.metadata.id);
    assert_eq!(a_records(&answer), [ip("10.96.1.2")]);

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_u16(bytes.len() as u16).await.unwrap();
    conn.write_all(&bytes).await.unwrap();
    let len = conn.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    conn.read_exact(&mut buf).await.unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(a_records(&answer), [ip("10.96.1.2")]);
    server.abort();
}
