//! The `pods/binding` subresource (Kubernetes' `BindingREST`): the one way a pending pod gets its
//! node. A bind names the pod version it was decided on; it is refused if the pod changed since
//! (a spec update raced the scheduler), if the pod is already bound, or if it is being deleted.
//!
//! Must not: place pods (the scheduler decides; this only records the decision).

use skiff_api::v1::{Condition, Pod};
use skiff_api::{Resource, ResourceExt};

use super::admission::{Attributes, Operation};
use super::{Registry, encode};
use crate::auth::Identity;
use crate::error::ApiError;

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

impl Registry<Pod> {
    /// Sets `spec.nodeName` and `PodScheduled=True` in one compare-and-swap on the version the
    /// binding names.
    pub async fn bind(&self, who: &Identity, binding: &Binding) -> Result<Pod, ApiError> {
        let ns = Self::namespace_of(&binding.namespace);
        if binding.node.is_empty() {
            return Err(ApiError::Invalid {
                kind: "Binding",
                name: binding.name.clone(),
                errors: {
                    let mut e = skiff_api::validation::FieldErrors::default();
                    e.add("target.name", "required");
                    e
                },
            });
        }
        let (current, kv) = self.current(&ns, &binding.name).await?;
        let conflict = |why: String| ApiError::BindConflict {
            name: binding.name.clone(),
            reason: why,
        };
        if !binding.uid.is_empty() && binding.uid != current.meta().uid {
            return Err(conflict(format!(
                "the pod's uid is {}, not {}",
                current.meta().uid,
                binding.uid
            )));
        }
        let bound = current
            .spec
            .as_ref()
            .map(|s| s.node_name.as_str())
            .unwrap_or("");
        if !bound.is_empty() {
            return Err(conflict(format!(
                "pod is already assigned to node {bound:?}"
            )));
        }
        if current.meta().deletion_timestamp.is_some() {
            return Err(conflict("pod is being deleted".into()));
        }
        if !binding.resource_version.is_empty()
            && binding.resource_version != kv.mod_revision.to_string()
        {
            return Err(conflict(format!(
                "pod was modified (resourceVersion {} is not {})",
                kv.mod_revision, binding.resource_version
            )));
        }
        let attrs = Attributes::new::<Pod>(Operation::Bind, &ns, &binding.name, who);
        self.admission_chain().validate(&attrs).await?;
        let mut pod = current;
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
        let written = self
            .store
            .update(&kv.key, encode(&pod), Some(kv.mod_revision))
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict { .. } => {
                    conflict("pod was modified while binding".into())
                }
                e => ApiError::from_store(e, "pods", &binding.name),
            })?;
        pod.metadata_mut().resource_version = written.mod_revision.to_string();
        Ok(pod)
    }
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
