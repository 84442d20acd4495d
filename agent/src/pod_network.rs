//! A pod network for agents on different hosts (the compose deployment's containers), in the
//! manner of flannel's host-gw backend: with `--pod-cidr`, each node's pods get addresses from
//! its own range instead of loopback ones, the range is made local on the node (a `local` route
//! on `lo`, as for the service range, so pods bind their addresses without per-pod setup) and
//! published as the Node's `spec.podCIDR`; every agent then routes the other nodes' ranges via
//! their InternalIP ([`sync_routes`]), so a node port or cluster IP on any node reaches pods on
//! every node. All of it needs `CAP_NET_ADMIN`, and the nodes one layer-2 network (one Docker
//! network, one LAN).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use rkube_client::{Client, ListParams};
use rtnetlink::RouteMessageBuilder;

use crate::service_cidr::{RouteError, ServiceCidr};

/// How often the routes to other nodes' pod ranges are reconciled with the Nodes.
pub const ROUTE_SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Make this node's pod range local (see the module docs).
pub async fn setup(cidr: ServiceCidr) -> Result<(), RouteError> {
    crate::service_cidr::make_local(cidr).await
}

/// The routes this node needs: each other node's pod range, via its InternalIP. Nodes without
/// a range or an address, and ranges that overlap `own`, are left out.
pub fn desired_routes(nodes: &[Node], me: &str, own: ServiceCidr) -> BTreeMap<String, Ipv4Addr> {
    let mut routes = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse::<ServiceCidr>().ok())
        else {
            continue;
        };
        if own.contains(cidr.network.into()) || cidr.contains(own.network.into()) {
            continue;
        }
        let gateway = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        if let Some(gateway) = gateway.filter(|g| !g.is_loopback()) {
            routes.insert(cidr.to_string(), gateway);
        }
    }
    routes
}

/// Keep the routes to the other nodes' pod ranges in line with the Nodes, forever: add and
/// replace what [`desired_routes`] asks for, delete what it no longer lists.
pub async fn sync_routes(client: Client, me: String, own: ServiceCidr) {
    let mut installed: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    loop {
        match client.list_typed::<Node>(&ListParams::default()).await {
            Ok((nodes, _)) => {
                let desired = desired_routes(&nodes, &me, own);
                if let Err(e) = apply(&mut installed, &desired).await {
                    tracing::warn!(error = %e, "pod network: routes to other nodes not updated");
                }
            }
            Err(e) => tracing::debug!(error = %e, "pod network: cannot list nodes"),
        }
        tokio::time::sleep(ROUTE_SYNC_INTERVAL).await;
    }
}

/// Bring the kernel's routes from `installed` to `desired` over netlink.
async fn apply(
    installed: &mut BTreeMap<String, Ipv4Addr>,
    desired: &BTreeMap<String, Ipv4Addr>,
) -> Result<(), String> {
    if installed == desired {
        return Ok(());
    }
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let route = |cidr: &str, gateway: Ipv4Addr| {
        let c: ServiceCidr = cidr.parse().expect("parsed before");
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(c.network, c.prefix)
            .gateway(gateway)
            .build()
    };
    let outcome = async {
        for (cidr, gateway) in installed.clone() {
            if desired.get(&cidr) != Some(&gateway) {
                // Gone, or moved to another gateway (replaced below).
                let _ = handle.route().del(route(&cidr, gateway)).execute().await;
                installed.remove(&cidr);
                tracing::info!(%cidr, %gateway, "pod network: route removed");
            }
        }
        for (cidr, &gateway) in desired {
            if installed.get(cidr) == Some(&gateway) {
                continue;
            }
            handle
                .route()
                .add(route(cidr, gateway))
                .replace()
                .execute()
                .await
                .map_err(|e| format!("route {cidr} via {gateway}: {e}"))?;
            installed.insert(cidr.clone(), gateway);
            tracing::info!(%cidr, %gateway, "pod network: route to a node's pods installed");
        }
        Ok(())
    }
    .await;
    connection.abort();
    outcome
}

/// The addresses pods get from a pod range, as numbers: the range without its network address,
/// the first host address (kept for the node, as CNI bridges keep `.1`) and the broadcast
/// address.
pub fn host_range(cidr: ServiceCidr) -> std::ops::Range<u32> {
    let first = u32::from(cidr.network);
    let size = 1u32 << (32 - u32::from(cidr.prefix));
    first + 2..first + size - 1
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: ip.map(|ip| {
                    vec![
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: name.into(),
                        },
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: ip.into(),
                        },
                    ]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn routes_go_to_other_nodes_ranges_via_their_internal_ip() {
        let own: ServiceCidr = "10.244.1.0/24".parse().unwrap();
        let nodes = vec![
            node("a", Some("10.244.1.0/24"), Some("172.18.0.5")),
            node("b", Some("10.244.2.0/24"), Some("172.18.0.6")),
            node("c", Some("10.244.3.0/24"), Some("172.18.0.7")),
            // No range, no address, a loopback address, an overlapping or invalid range.
            node("d", None, Some("172.18.0.8")),
            node("e", Some("10.244.5.0/24"), None),
            node("f", Some("10.244.6.0/24"), Some("127.0.0.1")),
            node("g", Some("10.244.0.0/16"), Some("172.18.0.9")),
            node("h", Some("not-a-cidr"), Some("172.18.0.10")),
        ];
        let routes = desired_routes(&nodes, "a", own);
        let want: BTreeMap<String, Ipv4Addr> = [
            ("10.244.2.0/24".to_string(), Ipv4Addr::new(172, 18, 0, 6)),
            ("10.244.3.0/24".to_string(), Ipv4Addr::new(172, 18, 0, 7)),
        ]
        .into();
        assert_eq!(routes, want);
    }

    #[test]
    fn pods_get_the_host_addresses_after_the_first() {
        let cidr: ServiceCidr = "10.244.2.0/29".parse().unwrap();
        let all: Vec<String> = host_range(cidr)
            .map(|a| Ipv4Addr::from(a).to_string())
            .collect();
        assert_eq!(
            all,
            [
                "10.244.2.2",
                "10.244.2.3",
                "10.244.2.4",
                "10.244.2.5",
                "10.244.2.6"
            ]
        );
    }
}
