//! The `pods/binding` subresource (Kubernetes' `BindingREST`): the one way a pending pod gets its
//! node. A bind names the pod version it was decided on; it is refused if the pod changed since
//! (a spec update raced the scheduler), if the pod is already bound, or if it is being deleted.
//!
//! Two ways in, one set of rules ([`refusal`]) and one write (a compare-and-swap on the version):
//! - [`Registry::bind`] takes a [`Binding`] (names and preconditions, as an API client sends
//!   it), reads the pod, checks it and writes.
//! - [`Registry::bind_known`] takes the pod as the caller holds it (the scheduler's cache, fed by
//!   the store's watch) and writes on that version without reading first: if the
//!   compare-and-swap succeeds, the stored pod *was* that version, so the rules checked against
//!   the caller's copy held for it. Only a failed compare-and-swap reads the pod, to say why.
//!
//! Must not: place pods (the scheduler decides; this only records the decision).

use skiff_api::v1::{Condition, Pod};
use skiff_api::{Resource, ResourceExt};

use super::admission::{Attributes, Operation};
use super::{Registry, encode};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::{Revision, StoreError};

/// A request to bind a pod to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    pub namespace: String,
    pub name: String,
    /// The node the pod goes to.
    pub node: String,
    /// Precondition: the pod's resourceVersion the decision was made on (empty: any).
    pub resource_version: String,
    /// Precondition: the pod's uid (empty: any), so a re-created pod is not bound by mistake.
    pub uid: String,
}

impl Binding {
    /// The binding of `pod` (its uid and resourceVersion as preconditions) to `node`.
    pub fn of(pod: &Pod, node: &str) -> Self {
        Self {
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            node: node.to_string(),
            resource_version: pod.meta().resource_version.clone(),
            uid: pod.meta().uid.clone(),
        }
    }
}

fn conflict(binding: &Binding, reason: String) -> ApiError {
    ApiError::BindConflict {
        name: binding.name.clone(),
        reason,
    }
}

/// Why the Binding rules refuse to bind `pod`, stored at `revision`, as `binding` asks; None if
/// they allow it.
fn refusal(binding: &Binding, pod: &Pod, revision: Revision) -> Option<ApiError> {
    if !binding.uid.is_empty() && binding.uid != pod.meta().uid {
        return Some(conflict(
            binding,
            format!("the pod's uid is {}, not {}", pod.meta().uid, binding.uid),
        ));
    }
    let bound = pod
        .spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("");
    if !bound.is_empty() {
        return Some(conflict(
            binding,
            format!("pod is already assigned to node {bound:?}"),
        ));
    }
    if pod.meta().deletion_timestamp.is_some() {
        return Some(conflict(binding, "pod is being deleted".into()));
    }
    if !binding.resource_version.is_empty() && binding.resource_version != revision.to_string() {
        return Some(conflict(
            binding,
            format!(
                "pod was modified (resourceVersion {revision} is not {})",
                binding.resource_version
            ),
        ));
    }
    None
}

impl Registry<Pod> {
    /// Sets `spec.nodeName` and `PodScheduled=True` in one compare-and-swap on the version the
    /// binding names (on the version read, if it names none).
    pub async fn bind(&self, who: &Identity, binding: &Binding) -> Result<Pod, ApiError> {
        let ns = Self::namespace_of(&binding.namespace);
        check_target(binding)?;
        let (current, kv) = self.current(&ns, &binding.name).await?;
        if let Some(refused) = refusal(binding, &current, kv.mod_revision) {
            return Err(refused);
        }
        self.admit_binding(who, &ns, binding).await?;
        self.write_binding(&ns, binding, current, kv.mod_revision)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => {
                    conflict(binding, "pod was modified while binding".into())
                }
                e => ApiError::from_store(e, "pods", &binding.name),
            })
    }

    /// Binds `pod` — the caller's copy of a stored version, its resourceVersion set — to
    /// `node`, as [`Registry::bind`] with that version and uid as preconditions, but without
    /// reading the pod first: the rules are checked against the caller's copy and the write is a
    /// compare-and-swap on its version. Only when that fails (the pod changed or went) is the
    /// stored pod read, to refuse with the same reason [`Registry::bind`] would give.
    pub async fn bind_known(&self, who: &Identity, pod: &Pod, node: &str) -> Result<Pod, ApiError> {
        let binding = Binding::of(pod, node);
        let Ok(revision) = binding.resource_version.parse::<Revision>() else {
            return self.bind(who, &binding).await; // not a stored version: read it
        };
        let ns = Self::namespace_of(&binding.namespace);
        check_target(&binding)?;
        if let Some(refused) = refusal(&binding, pod, revision) {
            return Err(refused);
        }
        self.admit_binding(who, &ns, &binding).await?;
        match self
            .write_binding(&ns, &binding, pod.clone(), revision)
            .await
        {
            Ok(bound) => Ok(bound),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                let (current, kv) = self.current(&ns, &binding.name).await?;
                Err(refusal(&binding, &current, kv.mod_revision)
                    .unwrap_or_else(|| conflict(&binding, "pod was modified while binding".into())))
            }
            Err(e) => Err(ApiError::from_store(e, "pods", &binding.name)),
        }
    }

    /// The admission chain's verdict on a bind.
    async fn admit_binding(
        &self,
        who: &Identity,
        ns: &str,
        binding: &Binding,
    ) -> Result<(), ApiError> {
        let attrs = Attributes::new::<Pod>(Operation::Bind, ns, &binding.name, who);
        self.admission_chain().validate_attributes(&attrs).await
    }

    /// Writes `pod` (the version stored at `revision`) bound to the binding's node, with a
    /// compare-and-swap on `revision`.
    async fn write_binding(
        &self,
        ns: &str,
        binding: &Binding,
        mut pod: Pod,
        revision: Revision,
    ) -> Result<Pod, StoreError> {
        pod.spec.get_or_insert_with(Default::default).node_name = binding.node.clone();
        if let Some(status) = pod.status.as_mut() {
            status.nominated_node_name.clear();
        }
        set_condition(
            &mut pod,
            Condition {
                r#type: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(skiff_api::time::now()),
                ..Default::default()
            },
        );
        let key = super::key::<Pod>(ns, &binding.name);
        let written = self
            .store
            .update(&key, encode(&mut pod), Some(revision))
            .await?;
        pod.metadata_mut().resource_version = written.mod_revision.to_string();
        Ok(pod)
    }
}

/// A binding must name its node.
fn check_target(binding: &Binding) -> Result<(), ApiError> {
    if binding.node.is_empty() {
        let mut errors = skiff_api::validation::FieldErrors::default();
        errors.add("target.name", "required");
        return Err(ApiError::Invalid {
            kind: "Binding",
            name: binding.name.clone(),
            errors,
        });
    }
    Ok(())
}

/// Replaces (or adds) the condition of the same type, keeping its transition time when the
/// status did not change.
pub fn set_condition(pod: &mut Pod, condition: Condition) {
    let conditions = &mut pod.status.get_or_insert_with(Default::default).conditions;
    match conditions.iter_mut().find(|c| c.r#type == condition.r#type) {
        Some(existing) => {
            let keep = existing.status == condition.status;
            let transition = existing.last_transition_time;
            *existing = condition;
            if keep {
                existing.last_transition_time = transition;
            }
        }
        None => conditions.push(condition),
    }
}
