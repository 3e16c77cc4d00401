//! The protobuf field numbers of the Kubernetes objects skiff reads in protobuf: those kubectl's
//! generators build and send that way (`kubectl create deployment|configmap|secret|namespace|
//! service|serviceaccount|role|clusterrole|rolebinding|clusterrolebinding|ingress|
//! poddisruptionbudget`), each message with the fields those generators and typed Go clients
//! fill. Numbers are Kubernetes' (k8s.io/api's generated.proto); JSON names are the ones
//! skiff's JSON reader takes. A field not listed is refused when it holds a value
//! ([`super::wire`]), so a missing entry shows as a clear 415 naming it, never as a dropped
//! field.
//!
//! Status fields are skipped: a create or update of the object itself ignores status in
//! Kubernetes (and in skiff's strategies), and kubectl sends an empty one.
//!
//! Must not: decode (wire.rs does) or hold anything but tables.

/// A field's type on the wire and in JSON.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    I32,
    I64,
    Bool,
    Msg(&'static Message),
    /// A Go struct embedded inline (its fields appear in the parent's JSON).
    Inline(&'static Message),
    MapStr,
    /// A map of Go's `[]byte` (base64 in JSON).
    MapBytes,
    /// A map of `resource.Quantity` (`{1: string}`) values.
    MapQuantity,
    IntOrString,
    Time,
    /// Read and ignored (status).
    Skip,
}

/// One field: its number, JSON name, type; `repeated` for lists, `pointer` when Go's field
/// is a pointer (a zero value is then a value, not an absence).
#[derive(Debug)]
pub struct Field {
    pub number: u32,
    pub name: &'static str,
    pub ty: Ty,
    pub repeated: bool,
    pub pointer: bool,
}

/// A message: its Go name (for errors) and fields.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

const fn f(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        number,
        name,
        ty,
        repeated: false,
        pointer: false,
    }
}

/// A repeated field.
const fn list(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        repeated: true,
        ..f(number, name, ty)
    }
}

/// A pointer field.
const fn opt(number: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        pointer: true,
        ..f(number, name, ty)
    }
}

const fn s(number: u32, name: &'static str) -> Field {
    f(number, name, Ty::Str)
}

const fn m(number: u32, name: &'static str, message: &'static Message) -> Field {
    f(number, name, Ty::Msg(message))
}

use Ty::*;

/// The message of a top-level kind (the `runtime.Unknown`'s raw bytes), by `apiVersion` and
/// `kind`.
pub fn kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("v1", "Pod") => &POD,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("rbac.authorization.k8s.io/v1", "Role") => &ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("networking.k8s.io/v1", "Ingress") => &INGRESS,
        ("policy/v1", "PodDisruptionBudget") => &POD_DISRUPTION_BUDGET,
        ("authentication.k8s.io/v1", "TokenRequest") => &TOKEN_REQUEST,
        _ => return None,
    })
}

// meta/v1

pub static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        s(1, "name"),
        s(2, "generateName"),
        s(3, "namespace"),
        s(4, "selfLink"),
        s(5, "uid"),
        s(6, "resourceVersion"),
        f(7, "generation", I64),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        opt(10, "deletionGracePeriodSeconds", I64),
        f(11, "labels", MapStr),
        f(12, "annotations", MapStr),
        list(13, "ownerReferences", Msg(&OWNER_REFERENCE)),
        list(14, "finalizers", Str),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        s(1, "kind"),
        s(3, "name"),
        s(4, "uid"),
        s(5, "apiVersion"),
        opt(6, "controller", Bool),
        opt(7, "blockOwnerDeletion", Bool),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", MapStr),
        list(2, "matchExpressions", Msg(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[s(1, "key"), s(2, "operator"), list(3, "values", Str)],
};

// core/v1

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &NAMESPACE_SPEC),
        f(3, "status", Skip),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[list(1, "finalizers", Str)],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        f(2, "data", MapStr),
        f(3, "binaryData", MapBytes),
        opt(4, "immutable", Bool),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        f(2, "data", MapBytes),
        s(3, "type"),
        f(4, "stringData", MapStr),
        opt(5, "immutable", Bool),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        list(2, "secrets", Msg(&OBJECT_REFERENCE)),
        opt(3, "automountServiceAccountToken", Bool),
        list(4, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
    ],
};

// authentication/v1: what `kubectl create token` sends.

static TOKEN_REQUEST: Message = Message {
    name: "TokenRequest",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &TOKEN_REQUEST_SPEC),
        f(3, "status", Skip),
    ],
};

static TOKEN_REQUEST_SPEC: Message = Message {
    name: "TokenRequestSpec",
    fields: &[
        list(1, "audiences", Str),
        m(3, "boundObjectRef", &BOUND_OBJECT_REFERENCE),
        opt(4, "expirationSeconds", I64),
    ],
};

static BOUND_OBJECT_REFERENCE: Message = Message {
    name: "BoundObjectReference",
    fields: &[s(1, "kind"), s(2, "apiVersion"), s(3, "name"), s(4, "uid")],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        s(1, "kind"),
        s(2, "namespace"),
        s(3, "name"),
        s(4, "uid"),
        s(5, "apiVersion"),
        s(6, "resourceVersion"),
        s(7, "fieldPath"),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[s(1, "name")],
};

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &SERVICE_SPEC),
        f(3, "status", Skip),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        list(1, "ports", Msg(&SERVICE_PORT)),
        f(2, "selector", MapStr),
        s(3, "clusterIP"),
        s(4, "type"),
        list(5, "externalIPs", Str),
        s(7, "sessionAffinity"),
        s(8, "loadBalancerIP"),
        list(9, "loadBalancerSourceRanges", Str),
        s(10, "externalName"),
        s(11, "externalTrafficPolicy"),
        f(12, "healthCheckNodePort", I32),
        f(13, "publishNotReadyAddresses", Bool),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        s(1, "name"),
        s(2, "protocol"),
        f(3, "port", I32),
        f(4, "targetPort", IntOrString),
        f(5, "nodePort", I32),
        opt(6, "appProtocol", Str),
    ],
};

static POD: Message = Message {
    name: "Pod",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &POD_SPEC),
        f(3, "status", Skip),
    ],
};

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[m(1, "metadata", &OBJECT_META), m(2, "spec", &POD_SPEC)],
};

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        list(2, "containers", Msg(&CONTAINER)),
        s(3, "restartPolicy"),
        opt(4, "terminationGracePeriodSeconds", I64),
        s(6, "dnsPolicy"),
        f(7, "nodeSelector", MapStr),
        s(8, "serviceAccountName"),
        s(9, "serviceAccount"),
        s(10, "nodeName"),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        list(15, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        s(16, "hostname"),
        s(17, "subdomain"),
        s(19, "schedulerName"),
        list(20, "initContainers", Msg(&CONTAINER)),
        opt(21, "automountServiceAccountToken", Bool),
        s(24, "priorityClassName"),
        opt(29, "runtimeClassName", Str),
    ],
};

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        s(1, "name"),
        s(2, "image"),
        list(3, "command", Str),
        list(4, "args", Str),
        s(5, "workingDir"),
        list(6, "ports", Msg(&CONTAINER_PORT)),
        list(7, "env", Msg(&ENV_VAR)),
        m(8, "resources", &RESOURCE_REQUIREMENTS),
        s(13, "terminationMessagePath"),
        s(14, "imagePullPolicy"),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        s(20, "terminationMessagePolicy"),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        s(1, "name"),
        f(2, "hostPort", I32),
        f(3, "containerPort", I32),
        s(4, "protocol"),
        s(5, "hostIP"),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[s(1, "name"), s(2, "value")],
};

static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)],
};

// apps/v1

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &DEPLOYMENT_SPEC),
        f(3, "status", Skip),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        opt(1, "replicas", I32),
        m(2, "selector", &LABEL_SELECTOR),
        m(3, "template", &POD_TEMPLATE_SPEC),
        m(4, "strategy", &DEPLOYMENT_STRATEGY),
        f(5, "minReadySeconds", I32),
        opt(6, "revisionHistoryLimit", I32),
        f(7, "paused", Bool),
        opt(9, "progressDeadlineSeconds", I32),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        s(1, "type"),
        opt(2, "rollingUpdate", Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        opt(1, "maxUnavailable", IntOrString),
        opt(2, "maxSurge", IntOrString),
    ],
};

// rbac.authorization.k8s.io/v1

static ROLE: Message = Message {
    name: "Role",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        list(2, "rules", Msg(&POLICY_RULE)),
    ],
};

static CLUSTER_ROLE: Message = Message {
    name: "ClusterRole",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        list(2, "rules", Msg(&POLICY_RULE)),
        opt(3, "aggregationRule", Msg(&AGGREGATION_RULE)),
    ],
};

static POLICY_RULE: Message = Message {
    name: "PolicyRule",
    fields: &[
        list(1, "verbs", Str),
        list(2, "apiGroups", Str),
        list(3, "resources", Str),
        list(4, "resourceNames", Str),
        list(5, "nonResourceURLs", Str),
    ],
};

static AGGREGATION_RULE: Message = Message {
    name: "AggregationRule",
    fields: &[list(1, "clusterRoleSelectors", Msg(&LABEL_SELECTOR))],
};

static ROLE_BINDING: Message = Message {
    name: "RoleBinding",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        list(2, "subjects", Msg(&SUBJECT)),
        m(3, "roleRef", &ROLE_REF),
    ],
};

static CLUSTER_ROLE_BINDING: Message = Message {
    name: "ClusterRoleBinding",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        list(2, "subjects", Msg(&SUBJECT)),
        m(3, "roleRef", &ROLE_REF),
    ],
};

static SUBJECT: Message = Message {
    name: "Subject",
    fields: &[
        s(1, "kind"),
        s(2, "apiGroup"),
        s(3, "name"),
        s(4, "namespace"),
    ],
};

static ROLE_REF: Message = Message {
    name: "RoleRef",
    fields: &[s(1, "apiGroup"), s(2, "kind"), s(3, "name")],
};

// networking.k8s.io/v1

static INGRESS: Message = Message {
    name: "Ingress",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &INGRESS_SPEC),
        f(3, "status", Skip),
    ],
};

static INGRESS_SPEC: Message = Message {
    name: "IngressSpec",
    fields: &[
        opt(1, "defaultBackend", Msg(&INGRESS_BACKEND)),
        list(2, "tls", Msg(&INGRESS_TLS)),
        list(3, "rules", Msg(&INGRESS_RULE)),
        opt(4, "ingressClassName", Str),
    ],
};

static INGRESS_TLS: Message = Message {
    name: "IngressTLS",
    fields: &[list(1, "hosts", Str), s(2, "secretName")],
};

static INGRESS_RULE: Message = Message {
    name: "IngressRule",
    fields: &[
        s(1, "host"),
        f(2, "ingressRuleValue", Inline(&INGRESS_RULE_VALUE)),
    ],
};

static INGRESS_RULE_VALUE: Message = Message {
    name: "IngressRuleValue",
    fields: &[opt(1, "http", Msg(&HTTP_INGRESS_RULE_VALUE))],
};

static HTTP_INGRESS_RULE_VALUE: Message = Message {
    name: "HTTPIngressRuleValue",
    fields: &[list(1, "paths", Msg(&HTTP_INGRESS_PATH))],
};

static HTTP_INGRESS_PATH: Message = Message {
    name: "HTTPIngressPath",
    fields: &[
        s(1, "path"),
        m(2, "backend", &INGRESS_BACKEND),
        opt(3, "pathType", Str),
    ],
};

static INGRESS_BACKEND: Message = Message {
    name: "IngressBackend",
    fields: &[
        opt(1, "resource", Msg(&TYPED_LOCAL_OBJECT_REFERENCE)),
        opt(4, "service", Msg(&INGRESS_SERVICE_BACKEND)),
    ],
};

static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "TypedLocalObjectReference",
    fields: &[opt(1, "apiGroup", Str), s(2, "kind"), s(3, "name")],
};

static INGRESS_SERVICE_BACKEND: Message = Message {
    name: "IngressServiceBackend",
    fields: &[s(1, "name"), m(2, "port", &SERVICE_BACKEND_PORT)],
};

static SERVICE_BACKEND_PORT: Message = Message {
    name: "ServiceBackendPort",
    fields: &[s(1, "name"), f(2, "number", I32)],
};

// policy/v1

static POD_DISRUPTION_BUDGET: Message = Message {
    name: "PodDisruptionBudget",
    fields: &[
        m(1, "metadata", &OBJECT_META),
        m(2, "spec", &POD_DISRUPTION_BUDGET_SPEC),
        f(3, "status", Skip),
    ],
};

static POD_DISRUPTION_BUDGET_SPEC: Message = Message {
    name: "PodDisruptionBudgetSpec",
    fields: &[
        opt(1, "minAvailable", IntOrString),
        opt(2, "selector", Msg(&LABEL_SELECTOR)),
        opt(3, "maxUnavailable", IntOrString),
        opt(4, "unhealthyPodEvictionPolicy", Str),
    ],
};
