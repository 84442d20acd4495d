//! The service IP range on this host: [`ServiceCidr`] (the `--service-cidr` flag, the same
//! range the API server allocates cluster IPs from) and [`make_local`], which installs a Linux
//! `local` route for the whole range on `lo` in the `local` table over netlink — the equivalent
//! of `ip route replace local 10.96.0.0/16 dev lo table local`, like the kernel's own route for
//! 127.0.0.0/8. Afterwards every address in the range is a local address: the service proxy
//! and the DNS responder bind cluster IPs without per-address setup.
//!
//! The route is left in place when the agent stops: other agents on the same host may rely on
//! it, and installing it again is idempotent (`replace`). It needs `CAP_NET_ADMIN`; without it
//! [`make_local`] fails and the agent serves node ports only, saying so in its log and in a
//! Warning Event on its Node.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rkube_client::Client;
use rtnetlink::packet_route::route::{RouteScope, RouteType};
use rtnetlink::RouteMessageBuilder;

/// The API server's default service range (`rkube server --service-cidr`).
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/16";
/// The kernel's `local` routing table.
const LOCAL_TABLE: u32 = 255;

/// Why the service range could not be made local.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot find the loopback interface \"lo\": {0}")]
    NoLoopback(String),
    #[error("cannot install the local route for {cidr} on lo (this needs root or CAP_NET_ADMIN): {error}")]
    Route { cidr: ServiceCidr, error: String },
}

/// An IPv4 network like `10.96.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl ServiceCidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for ServiceCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR {s:?}: expected an IPv4 network like 10.96.0.0/16");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "invalid CIDR {s:?}: the prefix length must be between 8 and 30"
            ));
        }
        let cidr = ServiceCidr {
            network: ip,
            prefix,
        };
        if !cidr.contains(IpAddr::V4(ip)) {
            let mask = u32::MAX << (32 - u32::from(prefix));
            return Err(format!(
                "invalid CIDR {s:?}: host bits are set (did you mean {}/{prefix}?)",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(cidr)
    }
}

/// Make every address of `cidr` local on this host: `local <cidr> dev lo table local`.
pub async fn make_local(cidr: ServiceCidr) -> Result<(), RouteError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(RouteError::Socket)?;
    let connection = tokio::spawn(connection);
    let outcome = async {
        let lo = handle
            .link()
            .get()
            .match_name("lo".to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| RouteError::NoLoopback(e.to_string()))?
            .ok_or_else(|| RouteError::NoLoopback("no such link".into()))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network, cidr.prefix)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .table_id(LOCAL_TABLE)
            .output_interface(lo.header.index)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| RouteError::Route {
                cidr,
                error: e.to_string(),
            })
    }
    .await;
    connection.abort();
    outcome
}

/// Record a Warning Event on Node `node` (best effort, in the background): cluster IPs are not
/// served on it, and why.
pub fn report_unavailable(client: &Client, node: &str, message: String) {
    let now = jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{node}.{:016x}", now.as_nanosecond() as u64)),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
        reason: Some("ClusterIPUnavailable".into()),
        message: Some(message),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("kube-proxy".into()),
            host: Some(node.into()),
        }),
        reporting_component: Some("kube-proxy".into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    };
    let client = client.clone();
    tokio::spawn(async move {
        let outcome = match serde_json::to_value(&event) {
            Ok(mut v) => {
                v["apiVersion"] = "v1".into();
                v["kind"] = "Event".into();
                client.create(&v, "default").await.map(|_| ())
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot encode an event");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::debug!(error = %e, "ClusterIPUnavailable event not recorded");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let cidr: ServiceCidr = "10.96.0.0/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/16");
        assert!(cidr.contains("10.96.0.10".parse().unwrap()));
        assert!(cidr.contains("10.96.255.255".parse().unwrap()));
        assert!(!cidr.contains("10.97.0.1".parse().unwrap()));
        assert!(!cidr.contains("::1".parse().unwrap()));
        let wide: ServiceCidr = "10.96.0.0/12".parse().unwrap();
        assert!(wide.contains("10.111.1.1".parse().unwrap()));
        assert_eq!(
            "10.96.0.1/16".parse::<ServiceCidr>().unwrap_err(),
            "invalid CIDR \"10.96.0.1/16\": host bits are set (did you mean 10.96.0.0/16?)"
        );
        assert!("10.96.0.0".parse::<ServiceCidr>().is_err());
        assert!("10.96.0.0/4".parse::<ServiceCidr>().is_err());
        assert!("fd00::/108".parse::<ServiceCidr>().is_err());
    }
}
