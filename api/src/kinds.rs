//! The registry of kinds: one line per kind wires it to [`Resource`], to its gRPC client and to
//! its validation. Adding a kind means a proto message, a service block and a line here.

use crate::client::{ResourceClient, Transport, WatchEvent};
use crate::resource::Resource;
use crate::v1::*;
use crate::validation::{self, FieldErrors};

/// What the CLI needs to resolve a kind from a word the user typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Nodes register themselves; users do not write them with `apply`.
    pub read_only: bool,
}

impl KindInfo {
    /// Resolves `pods`, `pod`, `po`, `Pod`, `deployments.apps`, `deploy`, ...
    pub fn lookup(word: &str) -> Option<&'static KindInfo> {
        let word = word.to_ascii_lowercase();
        let word = word.split_once('.').map_or(word.as_str(), |(w, _)| w);
        KINDS.iter().find(|k| {
            k.plural == word || k.kind.eq_ignore_ascii_case(word) || k.short_names.contains(&word)
        })
    }

    /// By `kind:` as written in a manifest (case-sensitive, as Kubernetes).
    pub fn by_kind(kind: &str) -> Option<&'static KindInfo> {
        KINDS.iter().find(|k| k.kind == kind)
    }
}

macro_rules! status_ops {
    (yes) => {
        fn set_status_from(&mut self, other: &Self) {
            self.status = other.status.clone();
        }
        fn clear_status(&mut self) {
            self.status = None;
        }
    };
    (no) => {
        fn set_status_from(&mut self, _other: &Self) {}
        fn clear_status(&mut self) {}
    };
}

macro_rules! has_status {
    (yes) => {
        true
    };
    (no) => {
        false
    };
}

macro_rules! kinds {
    ($(
        $ty:ident {
            api_version: $av:literal, plural: $plural:literal, short: [$($short:literal),*],
            namespaced: $ns:literal, status: $status:tt, read_only: $ro:literal,
            client: $client:path, event: $event:ident,
            fields: |$obj:ident, $path:ident| $fields:expr,
            validate: $validate:path $(,)?
        }
    )*) => {
        /// Every kind the API serves.
        pub const KINDS: &[KindInfo] = &[$(
            KindInfo {
                kind: stringify!($ty), api_version: $av, plural: $plural, short_names: &[$($short),*],
                namespaced: $ns, read_only: $ro,
            },
        )*];

        $(
        impl Resource for $ty {
            const KIND: &'static str = stringify!($ty);
            const API_VERSION: &'static str = $av;
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $ns;
            const HAS_STATUS: bool = has_status!($status);

            fn metadata_opt(&self) -> Option<&ObjectMeta> {
                self.metadata.as_ref()
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                self.metadata.get_or_insert_with(ObjectMeta::default)
            }
            status_ops!($status);
            #[allow(unused_variables)]
            fn kind_field(&self, $path: &str) -> Option<String> {
                let $obj = self;
                $fields
            }
            fn validate_kind(&self, errors: &mut FieldErrors) {
                $validate(self, errors)
            }
        }

        impl ResourceClient for $ty {
            async fn create(t: &Transport, obj: Self) -> Result<Self, tonic::Status> {
                Ok(crate::client::with_warnings(<$client>::new(t.clone()).create(obj).await?))
            }
            async fn get(t: &Transport, req: GetRequest) -> Result<Self, tonic::Status> {
                Ok(<$client>::new(t.clone()).get(req).await?.into_inner())
            }
            async fn list(t: &Transport, req: ListRequest) -> Result<(Vec<Self>, ListMeta), tonic::Status> {
                let list = <$client>::new(t.clone()).list(req).await?.into_inner();
                Ok((list.items, list.metadata.unwrap_or_default()))
            }
            async fn update(t: &Transport, obj: Self) -> Result<Self, tonic::Status> {
                Ok(crate::client::with_warnings(<$client>::new(t.clone()).update(obj).await?))
            }
            async fn update_status(t: &Transport, obj: Self) -> Result<Self, tonic::Status> {
                Ok(<$client>::new(t.clone()).update_status(obj).await?.into_inner())
            }
            async fn delete(t: &Transport, req: DeleteRequest) -> Result<Self, tonic::Status> {
                Ok(<$client>::new(t.clone()).delete(req).await?.into_inner())
            }
            async fn watch(
                t: &Transport,
                req: WatchRequest,
            ) -> Result<crate::client::WatchStream<Self>, tonic::Status> {
                use tokio_stream::StreamExt;
                let stream = <$client>::new(t.clone()).watch(req).await?.into_inner();
                Ok(Box::pin(stream.map(|r| r.map(|e: $event| WatchEvent {
                    kind: e.r#type,
                    object: e.object.unwrap_or_default(),
                }))))
            }
        }

        impl crate::client::WatchEventMessage<$ty> for $event {
            fn new(kind: &str, object: $ty) -> Self {
                $event { r#type: kind.to_string(), object: Some(object) }
            }
        }
        )*

        /// Runs `$body` with `$k` bound to the type of the kind named by `$info` (a [`KindInfo`]).
        #[macro_export]
        macro_rules! with_kind {
            ($info:expr, $k:ident => $body:expr) => {
                match $info.kind {
                    $( stringify!($ty) => { type $k = $crate::v1::$ty; $body } )*
                    other => unreachable!("kind {other} is not in the registry"),
                }
            };
        }
    };
}

kinds! {
    Namespace {
        api_version: "v1", plural: "namespaces", short: ["ns"], namespaced: false, status: yes, read_only: false,
        client: namespace_api_client::NamespaceApiClient<Transport>, event: NamespaceWatchEvent,
        fields: |o, p| match p {
            "status.phase" => Some(o.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default()),
            _ => None,
        },
        validate: validation::validate_namespace,
    }
    Pod {
        api_version: "v1", plural: "pods", short: ["po"], namespaced: true, status: yes, read_only: false,
        client: pod_api_client::PodApiClient<Transport>, event: PodWatchEvent,
        fields: |o, p| {
            let spec = o.spec.as_ref();
            let status = o.status.as_ref();
            match p {
                "spec.nodeName" => Some(spec.map(|s| s.node_name.clone()).unwrap_or_default()),
                "spec.restartPolicy" => Some(spec.map(|s| s.restart_policy.clone()).unwrap_or_default()),
                "spec.schedulerName" => Some(spec.map(|s| s.scheduler_name.clone()).unwrap_or_default()),
                "spec.runtimeClassName" => Some(spec.map(|s| s.runtime_class_name.clone()).unwrap_or_default()),
                "status.phase" => Some(status.map(|s| s.phase.clone()).unwrap_or_default()),
                "status.podIP" => Some(status.map(|s| s.pod_ip.clone()).unwrap_or_default()),
                _ => None,
            }
        },
        validate: validation::validate_pod,
    }
    Deployment {
        api_version: "apps/v1", plural: "deployments", short: ["deploy"], namespaced: true, status: yes, read_only: false,
        client: deployment_api_client::DeploymentApiClient<Transport>, event: DeploymentWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_deployment,
    }
    ReplicaSet {
        api_version: "apps/v1", plural: "replicasets", short: ["rs"], namespaced: true, status: yes, read_only: false,
        client: replica_set_api_client::ReplicaSetApiClient<Transport>, event: ReplicaSetWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_replica_set,
    }
    Service {
        api_version: "v1", plural: "services", short: ["svc"], namespaced: true, status: yes, read_only: false,
        client: service_api_client::ServiceApiClient<Transport>, event: ServiceWatchEvent,
        fields: |o, p| match p {
            "spec.type" => Some(o.spec.as_ref().map(|s| s.r#type.clone()).unwrap_or_default()),
            "spec.clusterIP" => Some(o.spec.as_ref().map(|s| s.cluster_ip.clone()).unwrap_or_default()),
            _ => None,
        },
        validate: validation::validate_service,
    }
    Endpoints {
        api_version: "v1", plural: "endpoints", short: ["ep"], namespaced: true, status: no, read_only: false,
        client: endpoints_api_client::EndpointsApiClient<Transport>, event: EndpointsWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_endpoints,
    }
    Secret {
        api_version: "v1", plural: "secrets", short: [], namespaced: true, status: no, read_only: false,
        client: secret_api_client::SecretApiClient<Transport>, event: SecretWatchEvent,
        fields: |o, p| match p {
            "type" => Some(o.r#type.clone()),
            _ => None,
        },
        validate: validation::validate_secret,
    }
    ConfigMap {
        api_version: "v1", plural: "configmaps", short: ["cm"], namespaced: true, status: no, read_only: false,
        client: config_map_api_client::ConfigMapApiClient<Transport>, event: ConfigMapWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_config_map,
    }
    PersistentVolumeClaim {
        api_version: "v1", plural: "persistentvolumeclaims", short: ["pvc"], namespaced: true, status: yes, read_only: false,
        client: persistent_volume_claim_api_client::PersistentVolumeClaimApiClient<Transport>,
        event: PersistentVolumeClaimWatchEvent,
        fields: |o, p| match p {
            "status.phase" => Some(o.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default()),
            _ => None,
        },
        validate: validation::validate_pvc,
    }
    Node {
        api_version: "v1", plural: "nodes", short: ["no"], namespaced: false, status: yes, read_only: true,
        client: node_api_client::NodeApiClient<Transport>, event: NodeWatchEvent,
        fields: |o, p| match p {
            "spec.unschedulable" => Some(o.spec.as_ref().is_some_and(|s| s.unschedulable).to_string()),
            _ => None,
        },
        validate: validation::validate_node,
    }
    Event {
        api_version: "v1", plural: "events", short: ["ev"], namespaced: true, status: no, read_only: false,
        client: event_api_client::EventApiClient<Transport>, event: EventWatchEvent,
        fields: |o, p| {
            let io = o.involved_object.as_ref();
            let get = |f: fn(&ObjectReference) -> &String| io.map(|r| f(r).clone()).unwrap_or_default();
            match p {
                "involvedObject.kind" => Some(get(|r| &r.kind)),
                "involvedObject.name" => Some(get(|r| &r.name)),
                "involvedObject.namespace" => Some(get(|r| &r.namespace)),
                "involvedObject.uid" => Some(get(|r| &r.uid)),
                "reason" => Some(o.reason.clone()),
                "type" => Some(o.r#type.clone()),
                _ => None,
            }
        },
        validate: validation::validate_event,
    }
    Lease {
        api_version: "coordination.k8s.io/v1", plural: "leases", short: [], namespaced: true, status: no, read_only: false,
        client: lease_api_client::LeaseApiClient<Transport>, event: LeaseWatchEvent,
        fields: |o, p| match p {
            "spec.holderIdentity" => Some(o.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default()),
            _ => None,
        },
        validate: validation::validate_lease,
    }
    Ingress {
        api_version: "networking.k8s.io/v1", plural: "ingresses", short: ["ing"], namespaced: true, status: yes, read_only: false,
        client: ingress_api_client::IngressApiClient<Transport>, event: IngressWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_ingress,
    }
    IngressClass {
        api_version: "networking.k8s.io/v1", plural: "ingressclasses", short: [], namespaced: false, status: no, read_only: false,
        client: ingress_class_api_client::IngressClassApiClient<Transport>, event: IngressClassWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_ingress_class,
    }
    HorizontalPodAutoscaler {
        api_version: "autoscaling/v2", plural: "horizontalpodautoscalers", short: ["hpa"], namespaced: true, status: yes, read_only: false,
        client: horizontal_pod_autoscaler_api_client::HorizontalPodAutoscalerApiClient<Transport>,
        event: HorizontalPodAutoscalerWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_hpa,
    }
    LimitRange {
        api_version: "v1", plural: "limitranges", short: ["limits"], namespaced: true, status: no, read_only: false,
        client: limit_range_api_client::LimitRangeApiClient<Transport>, event: LimitRangeWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_limit_range,
    }
    ServiceAccount {
        api_version: "v1", plural: "serviceaccounts", short: ["sa"], namespaced: true, status: no, read_only: false,
        client: service_account_api_client::ServiceAccountApiClient<Transport>, event: ServiceAccountWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_service_account,
    }
    Role {
        api_version: "rbac.authorization.k8s.io/v1", plural: "roles", short: [], namespaced: true, status: no, read_only: false,
        client: role_api_client::RoleApiClient<Transport>, event: RoleWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_role,
    }
    ClusterRole {
        api_version: "rbac.authorization.k8s.io/v1", plural: "clusterroles", short: [], namespaced: false, status: no, read_only: false,
        client: cluster_role_api_client::ClusterRoleApiClient<Transport>, event: ClusterRoleWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_cluster_role,
    }
    RoleBinding {
        api_version: "rbac.authorization.k8s.io/v1", plural: "rolebindings", short: [], namespaced: true, status: no, read_only: false,
        client: role_binding_api_client::RoleBindingApiClient<Transport>, event: RoleBindingWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_role_binding,
    }
    ClusterRoleBinding {
        api_version: "rbac.authorization.k8s.io/v1", plural: "clusterrolebindings", short: [], namespaced: false, status: no, read_only: false,
        client: cluster_role_binding_api_client::ClusterRoleBindingApiClient<Transport>, event: ClusterRoleBindingWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_cluster_role_binding,
    }
    PodDisruptionBudget {
        api_version: "policy/v1", plural: "poddisruptionbudgets", short: ["pdb"], namespaced: true, status: yes, read_only: false,
        client: pod_disruption_budget_api_client::PodDisruptionBudgetApiClient<Transport>,
        event: PodDisruptionBudgetWatchEvent,
        fields: |o, p| None,
        validate: validation::validate_pdb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_any_name() {
        for word in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(
                KindInfo::lookup(word).map(|k| k.kind),
                Some("Pod"),
                "{word}"
            );
        }
        assert_eq!(
            KindInfo::lookup("deployments.apps").map(|k| k.kind),
            Some("Deployment")
        );
        assert_eq!(
            KindInfo::lookup("deploy").map(|k| k.kind),
            Some("Deployment")
        );
        assert_eq!(
            KindInfo::lookup("pvc").map(|k| k.kind),
            Some("PersistentVolumeClaim")
        );
        assert_eq!(
            KindInfo::lookup("leases.coordination.k8s.io").map(|k| k.kind),
            Some("Lease")
        );
        assert_eq!(KindInfo::lookup("ing").map(|k| k.kind), Some("Ingress"));
        assert_eq!(
            KindInfo::lookup("ingressclasses.networking.k8s.io").map(|k| k.kind),
            Some("IngressClass")
        );
        assert_eq!(
            KindInfo::lookup("hpa").map(|k| k.kind),
            Some("HorizontalPodAutoscaler")
        );
        assert!(KindInfo::lookup("widgets").is_none());
    }

    #[test]
    fn status_subresource_flags() {
        let flags = [
            <Pod as Resource>::HAS_STATUS,
            <Secret as Resource>::HAS_STATUS,
        ];
        assert_eq!(flags, [true, false]);
        assert_eq!(KINDS.len(), 22);
    }
}
