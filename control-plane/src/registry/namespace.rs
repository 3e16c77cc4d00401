//! The namespace's `finalize` step (Kubernetes' `namespaces/{name}/finalize`): a terminating
//! namespace that the namespace controller has emptied is removed.
//!
//! Must not: remove a namespace that is not terminating or still has finalizers.

use skiff_api::v1::Namespace;
use skiff_api::{Resource, ResourceExt};

use super::Registry;
use crate::error::ApiError;

impl Registry<Namespace> {
    /// Removes the terminating namespace `name` (its contents are gone).
    pub async fn finalize(&self, name: &str) -> Result<Namespace, ApiError> {
        let (mut ns, kv) = self.current("", name).await?;
        if ns.meta().deletion_timestamp.is_none() {
            return Err(ApiError::Precondition(format!(
                "namespace {name} is not being deleted"
            )));
        }
        if !ns.meta().finalizers.is_empty() {
            return Err(ApiError::Precondition(format!(
                "namespace {name} still has finalizers: {}",
                ns.meta().finalizers.join(", ")
            )));
        }
        let deleted = self
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, "namespaces", name))?;
        ns.metadata_mut().resource_version = deleted.mod_revision.to_string();
        Ok(ns)
    }
}
