//! Admission as a chain on the write path, as Kubernetes' admission plugins: after the kind's
//! strategy has prepared an object, every mutating link may change it, then (after validation)
//! every validating link may refuse it. Quotas, pod security, service-IP allocation and node
//! restriction are links to add here, not special cases in the registry.
//!
//! Links today:
//! - [`Priority`] (mutating): a pod's `spec.priority` from its built-in `priorityClassName`.
//! - [`ServiceAccountAdmission`](super::service_account::ServiceAccountAdmission) (mutating):
//!   a new pod's ServiceAccount (`default` if unnamed, else it must exist) and its token volume.
//! - [`DefaultIngressClass`] (mutating): a new Ingress that names no class gets the default one.
//! - [`NamespaceLifecycle`] (validating): namespaced objects are created only in a namespace that
//!   exists and is not being deleted.
//! - [`RbacEscalation`](super::rbac_escalation::RbacEscalation) (validating): a Role or binding
//!   grants only what its author holds (or may `escalate`/`bind`).
//! - [`ScaleToZero`](super::scale_to_zero::ScaleToZero) (validating): `minReplicas: 0` only for
//!   a HorizontalPodAutoscaler whose Deployment's pod template is Wasm.
//! - [`LimitRanger`](super::limit_ranger::LimitRanger) (mutating, then validating): a new pod's
//!   containers get its namespace's LimitRange defaults, then are held to their bounds.
//! - [`PodSecurity`](super::pod_security::PodSecurity) (validating): a new pod is refused, or
//!   warned about, by the Pod Security Standard its namespace's labels choose.
//! - [`NodeRestriction`](super::node_restriction::NodeRestriction) (validating): a node sets
//!   only kubelets' labels on its Node, removes none of its taints, and records Events only
//!   about itself and its pods.
//!
//! Must not: write to the store; links read what they need and answer yes, no, or a change.

use std::sync::Arc;

use skiff_api::v1::{Deployment, HorizontalPodAutoscaler, Ingress, IngressClass, Namespace, Pod};
use skiff_api::{Resource, ResourceExt};

use super::{Strategy, decode, key};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::Store;

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    UpdateStatus,
    Delete,
    /// The `pods/binding` subresource.
    Bind,
}

/// Who writes what, for the links to judge by.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub operation: Operation,
    pub kind: &'static str,
    pub namespaced: bool,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: &'a Identity,
}

impl<'a> Attributes<'a> {
    pub fn new<K: Resource>(
        operation: Operation,
        namespace: &'a str,
        name: &'a str,
        user: &'a Identity,
    ) -> Self {
        Self {
            operation,
            kind: K::KIND,
            namespaced: K::NAMESPACED,
            namespace,
            name,
            user,
        }
    }
}

/// The object under admission, typed for the kinds some link acts on (no downcasting).
pub enum ObjectMut<'a> {
    Pod(&'a mut Pod),
    Ingress(&'a mut Ingress),
    Deployment(&'a mut Deployment),
    HorizontalPodAutoscaler(&'a mut HorizontalPodAutoscaler),
    Role(&'a mut skiff_api::v1::Role),
    ClusterRole(&'a mut skiff_api::v1::ClusterRole),
    RoleBinding(&'a mut skiff_api::v1::RoleBinding),
    ClusterRoleBinding(&'a mut skiff_api::v1::ClusterRoleBinding),
    Node(&'a mut skiff_api::v1::Node),
    Event(&'a mut skiff_api::v1::Event),
    Other,
}

/// A link that may change the object.
#[async_trait::async_trait]
pub trait Mutating: Send + Sync {
    fn name(&self) -> &'static str;
    async fn admit(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError>;
}

/// A link that may refuse the write (it sees the object as written, when there is one: a bind
/// through the binding subresource shows `ObjectMut::Other`).
#[async_trait::async_trait]
pub trait Validating: Send + Sync {
    fn name(&self) -> &'static str;
    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError>;
}

/// The mutating links, then the validating ones, each in order.
#[derive(Default)]
pub struct Chain {
    mutating: Vec<Box<dyn Mutating>>,
    validating: Vec<Box<dyn Validating>>,
}

impl Chain {
    /// The chain every registry runs.
    pub fn standard(store: Arc<dyn Store>) -> Self {
        Self::default()
            .mutating(Priority)
            .mutating(super::service_account::ServiceAccountAdmission {
                store: store.clone(),
            })
            .mutating(DefaultIngressClass {
                store: store.clone(),
            })
            .mutating(super::limit_ranger::LimitRanger {
                store: store.clone(),
            })
            .validating(NamespaceLifecycle {
                store: store.clone(),
            })
            .validating(super::pod_security::PodSecurity {
                store: store.clone(),
            })
            .validating(super::limit_ranger::LimitRanger {
                store: store.clone(),
            })
            .validating(super::rbac_escalation::RbacEscalation {
                store: store.clone(),
            })
            .validating(super::node_restriction::NodeRestriction {
                store: store.clone(),
            })
            .validating(super::scale_to_zero::ScaleToZero { store })
    }

    pub fn mutating(mut self, link: impl Mutating + 'static) -> Self {
        self.mutating.push(Box::new(link));
        self
    }

    pub fn validating(mut self, link: impl Validating + 'static) -> Self {
        self.validating.push(Box::new(link));
        self
    }

    pub async fn mutate<K: Strategy>(
        &self,
        attrs: &Attributes<'_>,
        obj: &mut K,
    ) -> Result<(), ApiError> {
        for link in &self.mutating {
            link.admit(attrs, obj.admission_view()).await?;
        }
        Ok(())
    }

    pub async fn validate<K: Strategy>(
        &self,
        attrs: &Attributes<'_>,
        obj: &mut K,
    ) -> Result<(), ApiError> {
        for link in &self.validating {
            link.validate(attrs, obj.admission_view()).await?;
        }
        Ok(())
    }

    /// The validating links on a write that carries no object (a bind).
    pub async fn validate_attributes(&self, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        for link in &self.validating {
            link.validate(attrs, ObjectMut::Other).await?;
        }
        Ok(())
    }

    /// The names of the links, in the order they run.
    pub fn names(&self) -> Vec<&'static str> {
        self.mutating
            .iter()
            .map(|l| l.name())
            .chain(self.validating.iter().map(|l| l.name()))
            .collect()
    }
}

/// A pod's priority from its built-in priority class (Kubernetes' `Priority` plugin); an unknown
/// class fails validation.
pub struct Priority;

#[async_trait::async_trait]
impl Mutating for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    async fn admit(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        if let ObjectMut::Pod(pod) = obj
            && let Some(spec) = pod.spec.as_mut()
            && spec.priority.is_none()
        {
            spec.priority = skiff_api::validation::priority_of_class(&spec.priority_class_name);
        }
        Ok(())
    }
}

/// New content only in a namespace that exists and is not terminating (Kubernetes'
/// `NamespaceLifecycle` plugin).
pub struct NamespaceLifecycle {
    store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl Validating for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, attrs: &Attributes<'_>, _obj: ObjectMut<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || !attrs.namespaced {
            return Ok(());
        }
        let namespace = attrs.namespace;
        let kv = self
            .store
            .get(&key::<Namespace>("", namespace))
            .await
            .map_err(|e| ApiError::from_store(e, Namespace::PLURAL, namespace))?
            .ok_or_else(|| ApiError::NotFound {
                plural: Namespace::PLURAL,
                name: namespace.to_string(),
            })?;
        let ns: Namespace = decode(&kv)?;
        if ns.meta().deletion_timestamp.is_some() {
            return Err(ApiError::Precondition(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }
}

/// A new Ingress that names no class (neither `spec.ingressClassName` nor the legacy annotation)
/// gets the default IngressClass's name, as Kubernetes' `DefaultIngressClass` plugin: the class
/// marked `ingressclass.kubernetes.io/is-default-class: "true"`, the newest if several are.
pub struct DefaultIngressClass {
    store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl Mutating for DefaultIngressClass {
    fn name(&self) -> &'static str {
        "DefaultIngressClass"
    }

    async fn admit(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        let ObjectMut::Ingress(ingress) = obj else {
            return Ok(());
        };
        if attrs.operation != Operation::Create
            || skiff_api::validation::class_of(ingress).is_some()
        {
            return Ok(());
        }
        let prefix = super::prefix::<IngressClass>("");
        let page = self
            .store
            .list(&prefix, None, 0)
            .await
            .map_err(|e| ApiError::from_store(e, IngressClass::PLURAL, ""))?;
        let mut default: Option<IngressClass> = None;
        for kv in &page.items {
            let class: IngressClass = decode(kv)?;
            let newer = |d: &IngressClass| {
                let at = |c: &IngressClass| {
                    c.meta()
                        .creation_timestamp
                        .as_ref()
                        .map(|t| (t.seconds, t.nanos))
                };
                at(&class) > at(d)
            };
            if skiff_api::validation::is_default_class(&class) && default.as_ref().is_none_or(newer)
            {
                default = Some(class);
            }
        }
        if let Some(class) = default {
            ingress
                .spec
                .get_or_insert_with(Default::default)
                .ingress_class_name = Some(class.name().to_string());
        }
        Ok(())
    }
}
