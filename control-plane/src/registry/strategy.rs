//! Per-kind rules of the write path, as Kubernetes' `RESTCreateStrategy`, `RESTUpdateStrategy`
//! and `RESTDeleteStrategy`: what the server sets on create, what an update may change, which
//! fields the server owns, how a status update differs from a spec update, and how an object
//! is deleted. The defaults suit a kind with no special rules; each kind overrides only what it
//! needs, here, in one place.
//!
//! Must not: read or write the store (the [`Registry`](super::Registry) does) or authorize.

use skiff_api::Resource;
use skiff_api::v1::*;
use skiff_api::validation::{self, FieldErrors};

use super::admission::ObjectMut;
use super::allocator::Pooled;

/// A graceful deletion: the object gets a deletionTimestamp and waits `seconds` for `node` to
/// stop it. If `node` no longer exists there is nobody to wait for and it goes at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulDelete {
    pub seconds: i32,
    pub node: String,
}

/// One kind's rules. Implemented for every kind of [`skiff_api::kinds::KINDS`].
pub trait Strategy: Resource {
    /// Does `propagationPolicy` `Orphan`/`Foreground` put a garbage-collector finalizer on it?
    const GC_FINALIZERS: bool = true;

    /// Is every deletion a two-step one (a deletionTimestamp first, removal by a controller)?
    const ALWAYS_GRACEFUL: bool = false;

    /// Defaults and server-owned fields of a new object (Kubernetes' `PrepareForCreate`).
    fn prepare_for_create(&mut self) {}

    /// The object as a create must leave it (Kubernetes' `Validate`).
    fn validate(&self) -> Result<(), FieldErrors> {
        validation::validate(self)
    }

    /// Carries the server-owned fields of `old` over an update that leaves them out
    /// (Kubernetes' `PrepareForUpdate`). Status is kept by the registry for kinds with one.
    fn prepare_for_update(&mut self, _old: &Self) {}

    /// What an update may not change (Kubernetes' `ValidateUpdate`); the object is valid.
    fn validate_update(&self, _old: &Self, _errors: &mut FieldErrors) {}

    /// `self` is the stored object; take the status of `new` (a status update changes nothing else).
    fn prepare_for_status_update(&mut self, new: &Self) {
        self.set_status_from(new);
    }

    /// Whether a delete is graceful, and for how long (Kubernetes' `CheckGracefulDelete`).
    fn graceful_delete(&self, _requested: Option<i32>) -> Option<GracefulDelete> {
        None
    }

    /// An object whose deletion has begun and whose finalizers are gone still waits: a pod for
    /// its node to report it stopped, a namespace for its controller to empty and finalize it.
    fn awaits_finalization(&self) -> bool {
        false
    }

    /// Marks the object as being deleted, where its status shows it.
    fn mark_terminating(&mut self) {}

    /// The object as admission links see it: a typed view of the kinds some link acts on.
    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Other
    }

    /// The object as the allocators see it: a Service takes a cluster IP and node ports from the
    /// cluster's pools on the write path ([`super::allocator`]); other kinds take nothing.
    fn pooled(&mut self) -> Pooled<'_> {
        Pooled::Nothing
    }
}

impl Strategy for Namespace {
    const GC_FINALIZERS: bool = false;
    const ALWAYS_GRACEFUL: bool = true;

    fn prepare_for_create(&mut self) {
        self.status = Some(NamespaceStatus {
            phase: "Active".into(),
        });
    }

    fn mark_terminating(&mut self) {
        self.status.get_or_insert_with(Default::default).phase = "Terminating".into();
    }

    fn awaits_finalization(&self) -> bool {
        true
    }
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("")
}

impl Strategy for Pod {
    const GC_FINALIZERS: bool = false;

    fn prepare_for_create(&mut self) {
        self.status = Some(PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
        crate::telemetry::stamp_pod(self.metadata_mut());
    }

    fn prepare_for_update(&mut self, old: &Self) {
        super::service_account::keep_injected(self, old);
        // nodeName is the scheduler's (or the creator's): an update that leaves it out keeps it.
        let bound = node_name(old);
        if !bound.is_empty()
            && let Some(spec) = self.spec.as_mut()
            && spec.node_name.is_empty()
        {
            spec.node_name = bound.to_string();
        }
    }

    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        let bound = node_name(old);
        let wanted = node_name(self);
        if bound.is_empty() && !wanted.is_empty() {
            errors.add(
                "spec.nodeName",
                "an existing pod is bound through its binding subresource, not by an update",
            );
        } else if !bound.is_empty() && wanted != bound {
            errors.add(
                "spec.nodeName",
                format!("field is immutable once the pod is bound (to {bound})"),
            );
        }
    }

    fn graceful_delete(&self, requested: Option<i32>) -> Option<GracefulDelete> {
        let spec = self.spec.as_ref()?;
        if spec.node_name.is_empty()
            || matches!(pod_phase(self), "Succeeded" | "Failed")
            || requested == Some(0)
        {
            return None;
        }
        Some(GracefulDelete {
            seconds: requested
                .or(spec.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(1),
            node: spec.node_name.clone(),
        })
    }

    fn awaits_finalization(&self) -> bool {
        !node_name(self).is_empty() && !matches!(pod_phase(self), "Succeeded" | "Failed")
    }

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Pod(self)
    }
}

impl Strategy for Deployment {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Deployment(self)
    }
}

impl Strategy for ReplicaSet {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }
}

impl Strategy for Service {
    fn prepare_for_create(&mut self) {
        self.status = None;
        if let Some(spec) = self.spec.as_mut() {
            if spec.r#type.is_empty() {
                spec.r#type = "ClusterIP".into();
            }
            if spec.cluster_ip.is_empty()
                && let Some(first) = spec.cluster_ips.first()
            {
                spec.cluster_ip = first.clone();
            }
        }
    }

    /// Kubernetes' `dropTypeDependentFields` and `patchAllocatedValues`: a cluster IP or node
    /// ports the new type has no use for, and the update did not change, go (the allocator gives
    /// them back once written); values the server allocated and an update leaves out (as `skiff
    /// apply` of a manifest without them does) are kept.
    fn prepare_for_update(&mut self, old: &Self) {
        use super::allocator::{needs_cluster_ip, needs_node_ports};
        let Some(cur) = old.spec.as_ref() else { return };
        if let Some(new) = self.spec.as_mut()
            && new.r#type.is_empty()
        {
            new.r#type = cur.r#type.clone();
        }
        let (ip_before, ports_before) = (needs_cluster_ip(old), needs_node_ports(old));
        let (ip_now, ports_now) = (needs_cluster_ip(self), needs_node_ports(self));
        let Some(new) = self.spec.as_mut() else {
            return;
        };
        if new.cluster_ip.is_empty()
            && let Some(first) = new.cluster_ips.first()
        {
            new.cluster_ip = first.clone();
        }
        let node_ports = |ports: &[ServicePort]| -> std::collections::BTreeSet<i32> {
            ports
                .iter()
                .map(|p| p.node_port)
                .filter(|p| *p != 0)
                .collect()
        };
        if ip_before && !ip_now && new.cluster_ip == cur.cluster_ip {
            new.cluster_ip.clear();
            new.cluster_ips.clear();
        }
        if ports_before && !ports_now && node_ports(&cur.ports).is_superset(&node_ports(&new.ports))
        {
            for p in &mut new.ports {
                p.node_port = 0;
            }
        }
        if ip_before && ip_now {
            if new.cluster_ip.is_empty() {
                new.cluster_ip = cur.cluster_ip.clone();
            }
            if new.cluster_ips.is_empty() {
                new.cluster_ips = cur.cluster_ips.clone();
            }
        }
        if ports_before && ports_now {
            // By port name: ports the update keeps get their node port back, unless another
            // port of the update names it.
            let used: std::collections::BTreeSet<i32> = node_ports(&cur.ports)
                .intersection(&node_ports(&new.ports))
                .copied()
                .collect();
            let by_name: std::collections::BTreeMap<&str, i32> = cur
                .ports
                .iter()
                .map(|p| (p.name.as_str(), p.node_port))
                .collect();
            for p in new.ports.iter_mut().filter(|p| p.node_port == 0) {
                if let Some(kept) = by_name.get(p.name.as_str())
                    && !used.contains(kept)
                {
                    p.node_port = *kept;
                }
            }
        }
    }

    /// `clusterIP` is immutable while the type has one (Kubernetes' wording); node ports may
    /// change (the allocator takes the new and gives back the old).
    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        use super::allocator::needs_cluster_ip;
        if !(needs_cluster_ip(old) && needs_cluster_ip(self)) {
            return;
        }
        let ip = |s: &Self| {
            s.spec
                .as_ref()
                .map_or(String::new(), |s| s.cluster_ip.clone())
        };
        let (before, now) = (ip(old), ip(self));
        // An old Service stored before allocation existed has none: its first update gets one.
        if !before.is_empty() && now != before {
            errors.add(
                "spec.clusterIP",
                format!("Invalid value: {now:?}: field is immutable"),
            );
        }
    }

    fn pooled(&mut self) -> Pooled<'_> {
        Pooled::Service(self)
    }
}

impl Strategy for Endpoints {}

/// `stringData` is write-only: folded into `data` (and winning over it), as Kubernetes does.
fn fold_string_data(secret: &mut Secret) {
    for (k, v) in std::mem::take(&mut secret.string_data) {
        secret.data.insert(k, v.into_bytes());
    }
}

impl Strategy for Secret {
    fn prepare_for_create(&mut self) {
        fold_string_data(self);
        if self.r#type.is_empty() {
            self.r#type = "Opaque".into();
        }
    }

    fn prepare_for_update(&mut self, old: &Self) {
        fold_string_data(self);
        if self.r#type.is_empty() {
            self.r#type = old.r#type.clone();
        }
    }

    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        if old.immutable == Some(true) && (self.data != old.data || self.immutable != old.immutable)
        {
            errors.add("data", "field is immutable when `immutable` is set");
        }
        if self.r#type != old.r#type {
            errors.add("type", "field is immutable");
        }
    }
}

impl Strategy for ConfigMap {
    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        if old.immutable == Some(true)
            && (self.data != old.data
                || self.binary_data != old.binary_data
                || self.immutable != old.immutable)
        {
            errors.add("data", "field is immutable when `immutable` is set");
        }
    }
}

impl Strategy for PersistentVolumeClaim {
    fn prepare_for_create(&mut self) {
        self.status = Some(PersistentVolumeClaimStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
    }
}

impl Strategy for Node {
    const GC_FINALIZERS: bool = false;

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Node(self)
    }

    fn prepare_for_update(&mut self, old: &Self) {
        // podCIDR is set once (by the node IPAM controller): an update that leaves it out keeps it.
        if let Some(cur) = old.spec.as_ref()
            && !cur.pod_cidr.is_empty()
        {
            let new = self.spec.get_or_insert_with(Default::default);
            if new.pod_cidr.is_empty() && new.pod_cidrs.is_empty() {
                new.pod_cidr = cur.pod_cidr.clone();
                new.pod_cidrs = cur.pod_cidrs.clone();
            }
        }
    }

    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        if let Some(cur) = old.spec.as_ref()
            && !cur.pod_cidr.is_empty()
        {
            let new = self.spec.clone().unwrap_or_default();
            if new.pod_cidr != cur.pod_cidr || new.pod_cidrs != cur.pod_cidrs {
                errors.add(
                    "spec.podCIDR",
                    format!("field is immutable once set (to {})", cur.pod_cidr),
                );
            }
        }
    }
}

impl Strategy for Event {
    const GC_FINALIZERS: bool = false;

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Event(self)
    }
}

impl Strategy for Lease {}

impl Strategy for Ingress {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Ingress(self)
    }
}

impl Strategy for IngressClass {
    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        let controller = |c: &IngressClass| c.spec.as_ref().map(|s| s.controller.clone());
        if controller(self) != controller(old) {
            errors.add("spec.controller", "field is immutable");
        }
    }
}

impl Strategy for HorizontalPodAutoscaler {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }

    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::HorizontalPodAutoscaler(self)
    }
}

impl Strategy for LimitRange {
    fn prepare_for_create(&mut self) {
        skiff_api::validation::limit_range::default_limit_range(self);
    }

    fn prepare_for_update(&mut self, _old: &Self) {
        skiff_api::validation::limit_range::default_limit_range(self);
    }
}

impl Strategy for ServiceAccount {}

impl Strategy for Role {
    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::Role(self)
    }
}

impl Strategy for ClusterRole {
    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::ClusterRole(self)
    }
}

/// Kubernetes' `ValidateRoleBindingUpdate`: a binding's role is fixed; to grant another role,
/// delete the binding and make a new one.
fn role_ref_unchanged(new: Option<&RoleRef>, old: Option<&RoleRef>, errors: &mut FieldErrors) {
    if new != old {
        errors.add("roleRef", "Invalid value: cannot change roleRef");
    }
}

impl Strategy for RoleBinding {
    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::RoleBinding(self)
    }

    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        role_ref_unchanged(self.role_ref.as_ref(), old.role_ref.as_ref(), errors);
    }
}

/// The disruption controller owns the status; a new budget has none until it syncs.
impl Strategy for PodDisruptionBudget {
    fn prepare_for_create(&mut self) {
        self.status = None;
    }
}

impl Strategy for ClusterRoleBinding {
    fn admission_view(&mut self) -> ObjectMut<'_> {
        ObjectMut::ClusterRoleBinding(self)
    }

    fn validate_update(&self, old: &Self, errors: &mut FieldErrors) {
        role_ref_unchanged(self.role_ref.as_ref(), old.role_ref.as_ref(), errors);
    }
}
