//! A Service's share of the pools, as Kubernetes' Service REST storage takes it (`alloc.go`):
//! before a create or update is written, the cluster IP and node ports it asks for are taken (a
//! requested value if free and in range, a free one for a field left empty) and written into the
//! object; once the write is done, [`Claims::commit`] gives back what the old object held and the
//! new one does not, and if it failed, [`Claims::revert`] gives back what was taken for it. A
//! deleted Service's values are given back by [`release`].
//!
//! - `clusterIP` empty → a free address; an address → that one (Invalid if outside the range or
//!   the reserved first one, Taken if another Service holds it); `None` → headless, nothing
//!   taken; ExternalName → none. `clusterIPs` is set to `[clusterIP]`.
//! - `type: NodePort` or `LoadBalancer` → each port's `nodePort`, requested or free; ports with
//!   the same port number (TCP and UDP of one service port) share one. A LoadBalancer Service
//!   with `allocateLoadBalancerNodePorts: false` gets only the ones it asks for (the field
//!   defaults to true on LoadBalancer Services and is dropped from other types).
//!
//! Must not: write the Service (the registry does), or give back a value another object holds.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use skiff_api::ResourceExt;
use skiff_api::v1::Service;
use skiff_api::validation::FieldErrors;

use super::ip::IpPool;
use super::pool::{Allocator, Claim, PoolError, unix_now};
use super::port::PortPool;
use super::ranges::ServiceRanges;
use crate::error::ApiError;
use crate::store::Store;

/// One value a Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    Ip(Ipv4Addr),
    Port(u16),
}

/// Does a Service of this type get a cluster IP? (All but ExternalName.)
pub fn needs_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.r#type != "ExternalName")
}

/// Does a Service of this type get node ports? (NodePort and LoadBalancer.)
pub fn needs_node_ports(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| matches!(s.r#type.as_str(), "NodePort" | "LoadBalancer"))
}

/// Does the Service get node ports for the ports that name none? Not a LoadBalancer Service with
/// `allocateLoadBalancerNodePorts: false` (ports it names are still taken).
pub fn allocates_node_ports(svc: &Service) -> bool {
    needs_node_ports(svc)
        && !svc.spec.as_ref().is_some_and(|s| {
            s.r#type == "LoadBalancer" && s.allocate_load_balancer_node_ports == Some(false)
        })
}

/// What a Service holds: its cluster IP (an IPv4 address; not `None`) and its node ports.
pub fn held(svc: &Service) -> HashSet<Held> {
    let Some(spec) = &svc.spec else {
        return HashSet::new();
    };
    let ip = spec.cluster_ip.parse().ok().map(Held::Ip);
    let ports = spec
        .ports
        .iter()
        .filter_map(|p| u16::try_from(p.node_port).ok().filter(|p| *p != 0))
        .map(Held::Port);
    ip.into_iter().chain(ports).collect()
}

/// The claim a Service puts on the values it takes.
pub fn owner(svc: &Service) -> Claim {
    Claim {
        resource: "services".into(),
        namespace: svc.namespace().to_string(),
        name: svc.name().to_string(),
        uid: svc.meta().uid.clone(),
        created: unix_now(),
    }
}

/// Gives `value` back if the Service `uid` holds it; a failure is logged (the repair loop frees
/// what is left behind). A claim is found by its value alone, so the ranges do not matter here.
async fn give_back(store: &dyn Store, value: Held, uid: &str) {
    let ranges = ServiceRanges::default();
    let done = match value {
        Held::Ip(ip) => {
            Allocator::new(store, IpPool::new(ranges.cidr()))
                .release(ip, uid)
                .await
        }
        Held::Port(port) => {
            Allocator::new(store, PortPool::new(ranges.node_ports()))
                .release(port, uid)
                .await
        }
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, ?value, "giving back a Service's value (the repair loop will)");
    }
}

/// What one write took from the pools and what it gives back once written.
#[derive(Debug, Default)]
#[must_use = "claims are committed once the write is done, or reverted if it failed"]
pub struct Claims {
    uid: String,
    taken: Vec<Held>,
    freed: Vec<Held>,
}

impl Claims {
    /// Nothing taken, nothing to give back.
    pub fn none() -> Self {
        Self::default()
    }

    /// The write is done: gives back what the old object held and the new one does not.
    pub async fn commit(self, store: &dyn Store) {
        for value in self.freed {
            give_back(store, value, &self.uid).await;
        }
    }

    /// The write failed: gives back what was taken for it.
    pub async fn revert(self, store: &dyn Store) {
        for value in self.taken {
            give_back(store, value, &self.uid).await;
        }
    }
}

/// Gives back everything a deleted Service held.
pub async fn release(store: &dyn Store, svc: &Service) {
    let uid = &svc.meta().uid;
    for value in held(svc) {
        give_back(store, value, uid).await;
    }
}

/// Takes what `svc` asks for and `old` (the stored Service, on an update) does not hold, and
/// fills in the fields left empty. On an error nothing stays taken.
pub async fn claim(
    store: &dyn Store,
    svc: &mut Service,
    old: Option<&Service>,
) -> Result<Claims, ApiError> {
    let old_held = old.map(held).unwrap_or_default();
    let mut claims = Claims {
        uid: svc.meta().uid.clone(),
        ..Default::default()
    };
    if needs_cluster_ip(svc) || needs_node_ports(svc) {
        let ranges = ServiceRanges::load(store).await?;
        if let Err(e) = take(store, ranges, svc, &old_held, &mut claims.taken).await {
            claims.revert(store).await;
            return Err(e);
        }
    }
    let now = held(svc);
    claims.freed = old_held.difference(&now).copied().collect();
    Ok(claims)
}

/// Field errors of a claim: bad input (Invalid) and values held by others (Taken).
#[derive(Default)]
struct Refusals {
    invalid: FieldErrors,
    taken: FieldErrors,
}

fn internal(what: &str, e: PoolError) -> ApiError {
    ApiError::Internal(format!("failed to allocate {what}: {e}"))
}

async fn take(
    store: &dyn Store,
    ranges: ServiceRanges,
    svc: &mut Service,
    old_held: &HashSet<Held>,
    taken: &mut Vec<Held>,
) -> Result<(), ApiError> {
    let owner = owner(svc);
    let ips = Allocator::new(store, IpPool::new(ranges.cidr()));
    let ports = Allocator::new(store, PortPool::new(ranges.node_ports()));
    let needs_ip = needs_cluster_ip(svc);
    let needs_ports = needs_node_ports(svc);
    let allocate_free = allocates_node_ports(svc);
    let (namespace, name) = (owner.namespace.clone(), owner.name.clone());
    let spec = svc.spec.get_or_insert_with(Default::default);
    // Kubernetes' default for a LoadBalancer Service; other types have no such field.
    if spec.r#type == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    } else {
        spec.allocate_load_balancer_node_ports = None;
    }
    let mut refusals = Refusals::default();

    if needs_ip {
        if spec.cluster_ip.is_empty()
            && let Some(first) = spec.cluster_ips.first()
        {
            spec.cluster_ip = first.clone();
        }
        match spec.cluster_ip.as_str() {
            "None" => {}
            "" => match ips.take_next(&owner).await {
                Ok(ip) => {
                    taken.push(Held::Ip(ip));
                    spec.cluster_ip = ip.to_string();
                }
                Err(PoolError::Full) => {
                    return Err(ApiError::Exhausted(format!(
                        "Service {name:?}: failed to allocate a serviceIP: range is full (--service-cidr {})",
                        ranges.cidr()
                    )));
                }
                Err(e) => return Err(internal("a serviceIP", e)),
            },
            text => {
                let invalid = |reason: String| format!("Invalid value: {text:?}: {reason}");
                match text.parse::<Ipv4Addr>() {
                    Err(_) => refusals
                        .invalid
                        .add("spec.clusterIP", invalid("not an IPv4 address".into())),
                    Ok(ip) if old_held.contains(&Held::Ip(ip)) => {}
                    Ok(ip) => {
                        let failed =
                            |reason: &str| invalid(format!("failed to allocate IP {ip}: {reason}"));
                        if let Some(reason) = ips.pool().refuse_request(ip, &namespace, &name) {
                            refusals.invalid.add("spec.clusterIP", failed(&reason));
                        } else {
                            match ips.take(ip, &owner).await {
                                Ok(()) => taken.push(Held::Ip(ip)),
                                Err(PoolError::Allocated(_)) => refusals.taken.add(
                                    "spec.clusterIP",
                                    failed("provided IP is already allocated"),
                                ),
                                Err(e) => return Err(internal("a serviceIP", e)),
                            }
                        }
                    }
                }
            }
        }
        spec.cluster_ips = vec![spec.cluster_ip.clone()];
    }

    if needs_ports {
        // Requested ports first, so that a free one handed out below never takes one asked for.
        let mut mine: HashSet<u16> = HashSet::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let Ok(port) = u16::try_from(p.node_port) else {
                continue; // validation refuses it
            };
            if port == 0 || old_held.contains(&Held::Port(port)) || !mine.insert(port) {
                continue;
            }
            let path = format!("spec.ports[{i}].nodePort");
            if let Some(reason) = ports.pool().refuse_request(port) {
                refusals
                    .invalid
                    .add(path, format!("Invalid value: {port}: {reason}"));
                continue;
            }
            match ports.take(port, &owner).await {
                Ok(()) => taken.push(Held::Port(port)),
                Err(PoolError::Allocated(_)) => refusals.taken.add(
                    path,
                    format!("Invalid value: {port}: provided port is already allocated"),
                ),
                Err(e) => return Err(internal("a nodePort", e)),
            }
        }
        if allocate_free && refusals.invalid.is_empty() && refusals.taken.is_empty() {
            let mut by_port: HashMap<i32, i32> = HashMap::new();
            for p in spec.ports.iter_mut().filter(|p| p.node_port == 0) {
                if let Some(shared) = by_port.get(&p.port) {
                    p.node_port = *shared;
                    continue;
                }
                match ports.take_next(&owner).await {
                    Ok(port) => {
                        taken.push(Held::Port(port));
                        p.node_port = i32::from(port);
                        by_port.insert(p.port, p.node_port);
                    }
                    Err(PoolError::Full) => {
                        return Err(ApiError::Exhausted(format!(
                            "Service {name:?}: failed to allocate a nodePort: range is full (--service-node-port-range {})",
                            ranges.node_ports()
                        )));
                    }
                    Err(e) => return Err(internal("a nodePort", e)),
                }
            }
        }
    }

    let kind = "Service";
    if !refusals.invalid.is_empty() {
        // Bad input wins: the request could not succeed whatever other Services hold.
        for e in refusals.taken.0 {
            refusals.invalid.0.push(e);
        }
        return Err(ApiError::Invalid {
            kind,
            name,
            errors: refusals.invalid,
        });
    }
    if !refusals.taken.is_empty() {
        return Err(ApiError::Taken {
            kind,
            name,
            errors: refusals.taken,
        });
    }
    Ok(())
}

/// The pools of `ranges` over `store`, for the repair loop.
pub fn pools(
    store: &dyn Store,
    ranges: ServiceRanges,
) -> (Allocator<'_, IpPool>, Allocator<'_, PortPool>) {
    (
        Allocator::new(store, IpPool::new(ranges.cidr())),
        Allocator::new(store, PortPool::new(ranges.node_ports())),
    )
}
