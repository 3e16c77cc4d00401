//! Following the Node objects: this node's podCIDR (which brings the bridge up) and, host-gw
//! style, one route per other Ready node with a podCIDR: `<its podCIDR> via <its InternalIP>`,
//! in the agent's own network namespace.
//!
//! Level-triggered: the routes this task owns carry their own protocol number
//! ([`ROUTE_PROTOCOL`]), so each pass lists them and makes them exactly what the Nodes say (a
//! restarted agent removes routes of nodes that went away while it was down). A route is not
//! made when it would break what already works: a block that is directly connected here (several
//! agents sharing one network namespace have all their bridges local) or a node whose address is
//! a loopback one (the 127.0.0.x test and demo setup). Every pass is repeated every
//! [`RESYNC`], repairing routes removed by hand.
//!
//! Must not: touch routes it did not make (other protocols), or write to the API.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::cidr::Ipv4Cidr;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::Node;
use tokio_stream::StreamExt;

use super::iproute::ip;
use super::{NetworkError, PodNetwork, blocking};

/// The `proto` of the routes this agent makes (iproute2 prints it as a number).
pub const ROUTE_PROTOCOL: &str = "77";

/// How often the routes and the bridge are checked even without a Node change.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Runs until aborted: list + watch of the Nodes, relisting after any error.
pub async fn run(transport: Transport, network: PodNetwork, node: String) {
    if !network.enabled() {
        return;
    }
    loop {
        if let Err(e) = follow(&transport, &network, &node).await {
            tracing::warn!(error = %e, "pod network: following nodes; relisting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(
    transport: &Transport,
    network: &PodNetwork,
    me: &str,
) -> Result<(), tonic::Status> {
    let api: Api<Node> = Api::new(transport.clone(), "");
    let (nodes, meta) = api.list(ListParams::default()).await?;
    let mut cache: HashMap<String, Node> = nodes
        .into_iter()
        .map(|n| (n.name().to_string(), n))
        .collect();
    let mut routed = None;
    apply(network, me, &cache, &mut routed, true).await;
    let mut watch = api
        .watch(ListParams::default(), &meta.resource_version)
        .await?;
    let mut tick = tokio::time::interval(RESYNC);
    tick.tick().await;
    loop {
        tokio::select! {
            event = watch.next() => match event {
                Some(Ok(event)) => {
                    let name = event.object.name().to_string();
                    if event.kind == "DELETED" {
                        cache.remove(&name);
                    } else {
                        cache.insert(name, event.object);
                    }
                    apply(network, me, &cache, &mut routed, false).await;
                }
                Some(Err(status)) => return Err(status),
                None => return Ok(()),
            },
            _ = tick.tick() => apply(network, me, &cache, &mut routed, true).await,
        }
    }
}

/// Deletes every route this agent made (its protocol's), in its network namespace.
pub fn remove_all() -> Result<(), NetworkError> {
    ip(&["route", "flush", "proto", ROUTE_PROTOCOL]).map(|_| ())
}

/// The node's own block, if it has a valid one.
fn block_of(node: &Node) -> Option<Ipv4Cidr> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.parse().ok())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.r#type == "Ready" && c.status == "True")
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .iter()
        .flat_map(|s| &s.addresses)
        .find(|a| a.r#type == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// The routes the Nodes ask for on node `me`: every other Ready node's block via its address.
/// Nodes on loopback addresses share this host: they need no route.
pub fn wanted(me: &str, nodes: &HashMap<String, Node>) -> BTreeMap<Ipv4Cidr, Ipv4Addr> {
    nodes
        .values()
        .filter(|n| n.name() != me && is_ready(n))
        .filter_map(|n| Some((block_of(n)?, internal_ip(n)?)))
        .filter(|(_, via)| !via.is_loopback() && !via.is_unspecified())
        .collect()
}

/// One pass: the bridge, then the routes. Between resyncs (`repair` false) the routes are only
/// looked at when what the Nodes ask for changed since `routed` (heartbeats change nothing).
async fn apply(
    network: &PodNetwork,
    me: &str,
    nodes: &HashMap<String, Node>,
    routed: &mut Option<(BTreeMap<Ipv4Cidr, Ipv4Addr>, Option<Ipv4Cidr>)>,
    repair: bool,
) {
    if let Some(block) = nodes.get(me).and_then(block_of)
        && (repair || network.block() != Some(block))
        && let Err(e) = network.set_block(block).await
    {
        tracing::warn!(pod_cidr = %block, error = %e, "setting up the node bridge");
    }
    let wanted = (wanted(me, nodes), network.block());
    if !repair && routed.as_ref() == Some(&wanted) {
        return;
    }
    let (routes, own) = wanted.clone();
    match blocking(move || sync(&routes, own)).await {
        Ok(()) => *routed = Some(wanted),
        Err(e) => {
            *routed = None;
            tracing::warn!(error = %e, "pod network routes");
        }
    }
}

/// The routes of [`ROUTE_PROTOCOL`] present now: destination → gateway.
fn present() -> Result<BTreeMap<Ipv4Cidr, Ipv4Addr>, NetworkError> {
    let out = ip(&["-4", "-o", "route", "show", "proto", ROUTE_PROTOCOL])?;
    Ok(out.lines().filter_map(parse_route).collect())
}

/// `10.244.1.0/24 via 10.250.0.2 dev eth0 ...` → (block, gateway).
fn parse_route(line: &str) -> Option<(Ipv4Cidr, Ipv4Addr)> {
    let mut words = line.split_whitespace();
    let dst = words.next()?.parse().ok()?;
    let via = words.skip_while(|w| *w != "via").nth(1)?.parse().ok()?;
    Some((dst, via))
}

/// Is `block` reachable on a link here (a bridge of this or another agent)?
fn directly_connected(block: Ipv4Cidr) -> bool {
    let dst = block.to_string();
    ip(&["-4", "-o", "route", "show", "exact", &dst, "scope", "link"])
        .is_ok_and(|out| !out.trim().is_empty())
}

/// Makes the routes of [`ROUTE_PROTOCOL`] exactly `wanted`, minus what is local.
fn sync(wanted: &BTreeMap<Ipv4Cidr, Ipv4Addr>, own: Option<Ipv4Cidr>) -> Result<(), NetworkError> {
    let local = |b: &Ipv4Cidr| own.is_some_and(|o| o.overlaps(b)) || directly_connected(*b);
    let wanted: BTreeMap<Ipv4Cidr, Ipv4Addr> = wanted
        .iter()
        .filter(|(b, _)| !local(b))
        .map(|(b, v)| (*b, *v))
        .collect();
    let present = present()?;
    for (dst, via) in &present {
        if wanted.get(dst) != Some(via) {
            ip(&["route", "delete", &dst.to_string(), "proto", ROUTE_PROTOCOL])?;
            tracing::info!(%dst, %via, "removed a pod network route");
        }
    }
    for (dst, via) in &wanted {
        if present.get(dst) == Some(via) {
            continue;
        }
        let (dst, via) = (dst.to_string(), via.to_string());
        ip(&[
            "route",
            "replace",
            &dst,
            "via",
            &via,
            "proto",
            ROUTE_PROTOCOL,
        ])?;
        tracing::info!(%dst, %via, "added a pod network route");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use skiff_api::v1::{Condition, NodeAddress, NodeSpec, NodeStatus, ObjectMeta};

    fn node(name: &str, block: &str, ip: &str, ready: bool) -> (String, Node) {
        let n = Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: block.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "Unknown" }.into(),
                    ..Default::default()
                }],
                addresses: vec![NodeAddress {
                    r#type: "InternalIP".into(),
                    address: ip.into(),
                }],
                ..Default::default()
            }),
        };
        (name.to_string(), n)
    }

    #[test]
    fn other_ready_nodes_with_a_block_off_loopback_are_routed() {
        let nodes = HashMap::from([
            node("me", "10.244.0.0/24", "10.250.0.1", true),
            node("b", "10.244.1.0/24", "10.250.0.2", true),
            node("down", "10.244.2.0/24", "10.250.0.3", false),
            node("local", "10.244.3.0/24", "127.0.0.3", true),
            node("none", "", "10.250.0.5", true),
        ]);
        let got = wanted("me", &nodes);
        assert_eq!(
            got,
            BTreeMap::from([(
                "10.244.1.0/24".parse().unwrap(),
                Ipv4Addr::new(10, 250, 0, 2)
            )])
        );
    }

    #[test]
    fn route_lines_parse() {
        assert_eq!(
            parse_route("10.244.1.0/24 via 10.250.0.2 dev veth0 proto 77 "),
            Some((
                "10.244.1.0/24".parse().unwrap(),
                Ipv4Addr::new(10, 250, 0, 2)
            ))
        );
        assert_eq!(parse_route("10.244.1.0/24 dev br0 scope link"), None);
    }
}
