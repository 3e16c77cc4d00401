//! Cluster IP and NodePort allocation (Kubernetes' `pkg/registry/core/service/ipallocator` and
//! `portallocator`), on the registry's write path: a Service's create, update and delete take
//! and give back its `clusterIP` and `nodePort`s here, and nowhere else.
//!
//! **Design: one store key per value taken, created with create-if-absent.** The address
//! `10.96.0.10` is taken by creating `/ipaddresses/10.96.0.10` (the key of Kubernetes 1.27+'s
//! IPAddress objects), the port 30080 by creating `/nodeports/30080`; the value of the key is
//! the [`Claim`] of the Service holding it (namespace, name, uid, when). Kubernetes' older design
//! keeps one bitmap per range in one etcd key and rewrites it with a compare-and-swap on every
//! allocation; for the default `/12` that is a 128 KiB value written on every Service create,
//! and every concurrent create contends for the one key. A key per value needs no
//! read-modify-write at all: the store's own create is the compare-and-swap (it refuses an
//! existing key), so two API servers sharing one store can never hand out one address twice,
//! concurrent creates on different values never conflict, nothing lives only in memory (a
//! restarted or second server sees every claim), a claim names its holder (so the repair loop
//! can tell a leak from a value in use, as Kubernetes' IPAddress `parentRef`), and giving a value
//! back is one delete. Finding a free value probes a few random offsets (one create each) before
//! it lists the claims — see [`pool`].
//!
//! The ranges (`--service-cidr`, `--service-node-port-range`) are kept in the store too
//! ([`ServiceRanges`]), so every registry on a store — the API server's, the garbage collector's,
//! the namespace controller's — allocates from the same ranges without being handed them.
//!
//! A write that fails after its values were taken gives them back ([`Claims::revert`]); values
//! an update or delete no longer holds are given back after the write ([`Claims::commit`],
//! [`release_held`]); what a crash leaves behind is repaired by [`repair`] at server start and
//! every minute.
//!
//! Must not: be bypassed — nothing outside the registry takes or gives back a value — or give
//! back a value whose claim names another holder.

mod ip;
mod pool;
mod port;
pub mod ranges;
pub mod repair;
mod service;

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

pub use ip::KUBERNETES_SERVICE;
pub use pool::Claim;
pub use ranges::{HostNetworks, PortRange, RangeError, ServiceRanges};
pub use service::{Claims, needs_cluster_ip, needs_node_ports};

use super::Strategy;
use crate::error::ApiError;
use crate::store::Store;

/// What the allocators act on: a Service takes from the cluster's pools; other kinds hold
/// nothing (typed, as admission's `ObjectMut`, without downcasting).
pub enum Pooled<'a> {
    Service(&'a mut skiff_api::v1::Service),
    Nothing,
}

/// Takes what `obj` asks for and `old` (on an update) does not hold, filling in the values left
/// empty. Nothing for kinds that hold nothing.
pub(super) async fn claim<K: Strategy>(
    store: &dyn Store,
    obj: &mut K,
    old: Option<&mut K>,
) -> Result<Claims, ApiError> {
    let Pooled::Service(svc) = obj.pooled() else {
        return Ok(Claims::none());
    };
    let old = match old.map(|o| o.pooled()) {
        Some(Pooled::Service(o)) => Some(&*o),
        _ => None,
    };
    service::claim(store, svc, old).await
}

/// Gives back everything a deleted object held.
pub(super) async fn release_held<K: Strategy>(store: &dyn Store, obj: &mut K) {
    if let Pooled::Service(svc) = obj.pooled() {
        service::release(store, svc).await;
    }
}
