//! The [`Resource`] trait: what the server, the store and the CLI need to know about a kind,
//! so that each of them is written once, generically, instead of once per kind.

use std::sync::LazyLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::v1::ObjectMeta;
use crate::validation::FieldErrors;

/// A top-level object kind (Pod, Deployment, ...). Implemented for every kind in [`crate::kinds`].
pub trait Resource:
    prost::Message + Default + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// `Pod`
    const KIND: &'static str;
    /// `v1` or `apps/v1`
    const API_VERSION: &'static str;
    /// `pods`: the store key prefix and the CLI's canonical name.
    const PLURAL: &'static str;
    const NAMESPACED: bool;
    /// Kinds with a status subresource: `Update` keeps the stored status, `UpdateStatus` writes only it.
    const HAS_STATUS: bool;

    fn metadata_opt(&self) -> Option<&ObjectMeta>;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    /// Copies `other`'s status into `self` (nothing for kinds without status).
    fn set_status_from(&mut self, other: &Self);
    /// Clears the status (nothing for kinds without status).
    fn clear_status(&mut self);
    /// A field for field selectors, beyond `metadata.name` and `metadata.namespace`.
    fn kind_field(&self, path: &str) -> Option<String>;
    /// Kind-specific validation; metadata is validated by the caller.
    fn validate_kind(&self, errors: &mut FieldErrors);
}

static EMPTY_META: LazyLock<ObjectMeta> = LazyLock::new(ObjectMeta::default);

/// Conveniences over every [`Resource`].
pub trait ResourceExt: Resource {
    fn meta(&self) -> &ObjectMeta {
        self.metadata_opt().unwrap_or(&EMPTY_META)
    }

    fn name(&self) -> &str {
        &self.meta().name
    }

    fn namespace(&self) -> &str {
        &self.meta().namespace
    }

    /// `pod/web` or `deployment.apps/web`, as kubectl prints objects.
    fn display_ref(&self) -> String {
        format!("{}/{}", Self::KIND.to_ascii_lowercase(), self.name())
    }

    /// The value a field selector reads at `path`.
    fn field(&self, path: &str) -> Option<String> {
        match path {
            "metadata.name" => Some(self.name().to_string()),
            "metadata.namespace" => Some(self.namespace().to_string()),
            _ => self.kind_field(path),
        }
    }

    /// Everything but metadata and status, encoded: equal bytes mean an unchanged spec.
    fn spec_fingerprint(&self) -> Vec<u8> {
        let mut copy = self.clone();
        *copy.metadata_mut() = ObjectMeta::default();
        copy.clear_status();
        copy.encode_to_vec()
    }

    /// The resourceVersion as the store revision it encodes (0 if absent or malformed).
    fn revision(&self) -> u64 {
        self.meta().resource_version.parse().unwrap_or(0)
    }
}

impl<T: Resource> ResourceExt for T {}
