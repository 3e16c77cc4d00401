//! The repair loop, as Kubernetes' cluster IP and node port repair controllers: it makes the
//! claims in the store agree with the Services again after what the write path cannot undo (a
//! server killed between taking a value and writing the Service, a release that failed, a store
//! restored from a backup).
//!
//! One pass ([`repair_once`]), at server start and every [`PERIOD`]:
//! - a Service that needs a cluster IP or node ports and has none (stored before allocation
//!   existed) gets them, through the registry's own update;
//! - a value a Service holds with no claim is claimed for it again (re-taken);
//! - a claim whose holder is gone, or no longer holds the value, is freed — or handed to the
//!   Service that does hold it — once older than [`GRACE`] (younger ones may belong to a write in
//!   flight);
//! - a value two Services hold, or one outside the configured ranges, gets a warning event on
//!   the Service (`ClusterIPAlreadyAllocated`, `ClusterIPOutOfRange`, `NodePortAlreadyAllocated`,
//!   `NodePortOutOfRange`), as Kubernetes reports them; the user recreates the Service.
//!
//! Every change is a compare-and-swap, so several API servers may repair at once.
//!
//! Must not: change a Service's cluster IP or node ports (it only fills empty ones through the
//! registry), or free a claim younger than the grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use skiff_api::ResourceExt;
use skiff_api::v1::Service;

use super::pool::{Claim, Pool, unix_now};
use super::ranges::ServiceRanges;
use super::service::{Held, allocates_node_ports, held, needs_cluster_ip, owner, pools};
use crate::auth::Identity;
use crate::controllers::recorder::Recorder;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::{KeyValue, Store, StoreError};

/// Time between passes.
pub const PERIOD: Duration = Duration::from_secs(60);

/// Seconds a claim with no holder is left alone: a create or update takes its values a moment
/// before it writes the Service.
pub const GRACE: i64 = 60;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Services given the cluster IP or node ports they lacked.
    pub assigned: usize,
    /// Values claimed again for the Service holding them.
    pub retaken: usize,
    /// Claims handed to the Service holding the value.
    pub handed_over: usize,
    /// Claims freed (no Service holds the value).
    pub freed: usize,
    /// Values held by more than one Service, or outside the ranges.
    pub warnings: usize,
}

/// Runs a pass every [`PERIOD`] until aborted (the first one is the server's, at start).
pub async fn run(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(PERIOD).await;
        match repair_once(&store, unix_now()).await {
            Ok(report) if report != Report::default() => {
                tracing::info!(?report, "service allocation repaired");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "service allocation repair"),
        }
    }
}

/// One pass at time `now` (unix seconds).
pub async fn repair_once(store: &Arc<dyn Store>, now: i64) -> Result<Report, ApiError> {
    let mut report = Report::default();
    let ranges = ServiceRanges::load(store.as_ref()).await?;
    let registry = Registry::<Service>::new(store.clone());
    let events = Recorder::new(store.clone(), "service-allocator-repair");
    let mut services = registry.list_all("").await?;
    for svc in &mut services {
        if lacks_values(svc) && svc.meta().deletion_timestamp.is_none() {
            match registry.update(&Identity::Admin, svc.clone()).await {
                Ok(updated) => {
                    report.assigned += 1;
                    *svc = updated;
                }
                Err(e) => {
                    tracing::warn!(service = %svc.name(), error = %e, "assigning a cluster IP or node ports")
                }
            }
        }
    }

    let mut holders: HashMap<Held, Vec<&Service>> = HashMap::new();
    for svc in &services {
        for value in held(svc) {
            holders.entry(value).or_default().push(svc);
        }
    }
    let (ips, ports) = pools(store.as_ref(), ranges);
    let mut claims: HashMap<Held, (Claim, KeyValue)> = HashMap::new();
    let io = |e: StoreError| ApiError::Internal(format!("service allocation repair: {e}"));
    for (ip, claim, kv) in ips.claims().await.map_err(io)? {
        claims.insert(Held::Ip(ip), (claim, kv));
    }
    for (port, claim, kv) in ports.claims().await.map_err(io)? {
        claims.insert(Held::Port(port), (claim, kv));
    }

    for (value, svcs) in &holders {
        let claim = claims.get(value);
        let rightful = claim
            .and_then(|(c, _)| svcs.iter().find(|s| s.meta().uid == c.uid))
            .or_else(|| svcs.first())
            .copied();
        let Some(rightful) = rightful else { continue };
        for other in svcs.iter().filter(|s| s.meta().uid != rightful.meta().uid) {
            report.warnings += 1;
            let (reason, message) = match value {
                Held::Ip(ip) => (
                    "ClusterIPAlreadyAllocated",
                    format!(
                        "Cluster IP {ip} was assigned to multiple services ({} too); please recreate service",
                        holder_of(rightful)
                    ),
                ),
                Held::Port(p) => (
                    "NodePortAlreadyAllocated",
                    format!(
                        "Port {p} was assigned to multiple services ({} too); please recreate service",
                        holder_of(rightful)
                    ),
                ),
            };
            tracing::warn!(service = %holder_of(other), reason, "{message}");
            events.warning(*other, reason, message).await;
        }
        let out_of_range = match value {
            Held::Ip(ip) => ips.pool().offset(*ip).is_none().then(|| {
                (
                    "ClusterIPOutOfRange",
                    format!("Cluster IP {ip} is not within the configured service CIDR {}; please recreate service", ranges.cidr()),
                )
            }),
            Held::Port(p) => ports.pool().offset(*p).is_none().then(|| {
                (
                    "NodePortOutOfRange",
                    format!("Port {p} is not within the port range {}; please recreate service", ranges.node_ports()),
                )
            }),
        };
        if let Some((reason, message)) = out_of_range {
            report.warnings += 1;
            tracing::warn!(service = %holder_of(rightful), reason, "{message}");
            events.warning(rightful, reason, message).await;
        }
        let want = owner(rightful);
        match claim {
            None => {
                let taken = match value {
                    Held::Ip(ip) => ips.take(*ip, &want).await,
                    Held::Port(p) => ports.take(*p, &want).await,
                };
                if taken.is_ok() {
                    tracing::info!(service = %holder_of(rightful), ?value, "re-took a value the allocator had lost");
                    report.retaken += 1;
                }
            }
            Some((c, _)) if c.uid == want.uid => {}
            Some((c, kv)) => {
                if now - c.created >= GRACE && swap(store.as_ref(), kv, Some(&want)).await? {
                    tracing::info!(service = %holder_of(rightful), from = %c.holder(), ?value, "handed a claim to the Service holding the value");
                    report.handed_over += 1;
                }
            }
        }
    }

    for (value, (c, kv)) in &claims {
        if holders.contains_key(value) || now - c.created < GRACE {
            continue;
        }
        if swap(store.as_ref(), kv, None).await? {
            tracing::info!(holder = %c.holder(), ?value, "freed a value no Service holds");
            report.freed += 1;
        }
    }
    Ok(report)
}

/// Does the Service lack a cluster IP or node ports its type needs?
fn lacks_values(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    (needs_cluster_ip(svc) && spec.cluster_ip.is_empty())
        || (allocates_node_ports(svc) && spec.ports.iter().any(|p| p.node_port == 0))
}

fn holder_of(svc: &Service) -> String {
    format!("{}/{}", svc.namespace(), svc.name())
}

/// Replaces the claim at `kv` by `to` (or deletes it), if unchanged since read.
async fn swap(store: &dyn Store, kv: &KeyValue, to: Option<&Claim>) -> Result<bool, ApiError> {
    let done = match to {
        Some(c) => store
            .update(
                &kv.key,
                Bytes::from(c.encode_to_vec()),
                Some(kv.mod_revision),
            )
            .await
            .map(|_| ()),
        None => store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map(|_| ()),
    };
    match done {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(ApiError::Internal(format!(
            "service allocation repair: {}: {e}",
            kv.key
        ))),
    }
}
