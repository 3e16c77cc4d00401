//! core/v1 kinds' columns (Pods' are in `pod.rs`) and coordination.k8s.io's Lease, as Kubernetes'
//! printers define them.

use serde_json::{Value, json};

use super::pod::age_of;
use super::{Column, Printer, created, created_at, map_selector_text, or_none, text};
use crate::resource::ResourceExt;
use crate::v1::*;

impl Printer for Namespace {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Status",
                "The status of the namespace: Active or Terminating.",
            ),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let phase = self
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default();
        vec![text(self.name()), text(phase), created(self)]
    }
}

/// `80:30080/TCP,53/UDP`, or `<none>`.
fn service_ports(ports: &[ServicePort]) -> Value {
    let all: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = if p.protocol.is_empty() {
                "TCP"
            } else {
                &p.protocol
            };
            if p.node_port > 0 {
                format!("{}:{}/{proto}", p.port, p.node_port)
            } else {
                format!("{}/{proto}", p.port)
            }
        })
        .collect();
    or_none(&all.join(","))
}

/// A load balancer's ingress points `(ip, hostname)`: each one's IP, else its hostname, joined.
pub(super) fn load_balancer_text<'a>(points: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    points
        .map(|(ip, hostname)| if ip.is_empty() { hostname } else { ip })
        .collect::<Vec<_>>()
        .join(",")
}

impl Printer for Service {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Type",
                "The type of the service: ClusterIP, NodePort, LoadBalancer or ExternalName.",
            ),
            Column::new(
                "Cluster-IP",
                "The IP address allocated to the service within the cluster.",
            ),
            Column::new(
                "External-IP",
                "The addresses the service answers on outside the cluster: externalIPs, a load balancer's ingress points, or an ExternalName.",
            ),
            Column::new(
                "Port(s)",
                "The ports the service exposes (port:nodePort/protocol).",
            ),
            Column::age(),
            Column::new(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            )
            .wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let external = spec.external_ips.join(",");
        // kubectl's getServiceExternalIP.
        let external = match spec.r#type.as_str() {
            "ClusterIP" | "NodePort" | "" => or_none(&external),
            "LoadBalancer" => {
                let lb = load_balancer_text(
                    self.status
                        .iter()
                        .flat_map(|s| &s.load_balancer)
                        .flat_map(|lb| &lb.ingress)
                        .map(|i| (i.ip.as_str(), i.hostname.as_str())),
                );
                let all: Vec<&str> = [lb.as_str(), external.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect();
                if all.is_empty() {
                    text("<pending>")
                } else {
                    text(all.join(","))
                }
            }
            "ExternalName" => text(spec.external_name.clone()),
            _ => text("<unknown>"),
        };
        vec![
            text(self.name()),
            text(spec.r#type.clone()),
            or_none(&spec.cluster_ip),
            external,
            service_ports(&spec.ports),
            created(self),
            map_selector_text(&spec.selector),
        ]
    }
}

impl Printer for Endpoints {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Endpoints",
                "Endpoints of the service (the first three, then how many more).",
            ),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        // kubectl's formatEndpoints: subsets, then ports, then addresses; three shown at most.
        let mut list = Vec::new();
        let mut count = 0usize;
        for s in &self.subsets {
            let ports: Vec<Option<i32>> = if s.ports.is_empty() {
                vec![None]
            } else {
                s.ports.iter().map(|p| Some(p.port)).collect()
            };
            for port in ports {
                for a in &s.addresses {
                    if list.len() < 3 {
                        list.push(match port {
                            Some(p) => format!("{}:{p}", a.ip),
                            None => a.ip.clone(),
                        });
                    }
                    count += 1;
                }
            }
        }
        let mut shown = list.join(",");
        if count > list.len() {
            shown = format!("{shown} + {} more...", count - list.len());
        }
        vec![text(self.name()), or_none(&shown), created(self)]
    }
}

impl Printer for Secret {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Type", "The type of secret"),
            Column::new("Data", "The number of data items in the secret").integer(),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        vec![
            text(self.name()),
            text(self.r#type.clone()),
            json!(self.data.len()),
            created(self),
        ]
    }
}

impl Printer for ConfigMap {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Data", "The number of data items in the config map").integer(),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        vec![
            text(self.name()),
            json!(self.data.len() + self.binary_data.len()),
            created(self),
        ]
    }
}

impl Printer for PersistentVolumeClaim {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Status", "The phase of the claim: Pending, Bound or Lost."),
            Column::new(
                "Volume",
                "The binding reference to the PersistentVolume backing this claim.",
            ),
            Column::new("Capacity", "The actual resources of the underlying volume."),
            Column::new(
                "Access Modes",
                "The actual access modes the volume backing the PVC has.",
            ),
            Column::new(
                "StorageClass",
                "The name of the StorageClass required by the claim.",
            ),
            Column::new(
                "VolumeAttributesClass",
                "The name of the VolumeAttributesClass the claim uses.",
            ),
            Column::age(),
            Column::new(
                "VolumeMode",
                "What type of volume is required by the claim.",
            )
            .wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let phase = if self.meta().deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            status.phase.clone()
        };
        // kubectl shows capacity and access modes of a bound claim only.
        let (capacity, modes) = if spec.volume_name.is_empty() {
            (String::new(), String::new())
        } else {
            let order = [
                ("ReadWriteOnce", "RWO"),
                ("ReadOnlyMany", "ROX"),
                ("ReadWriteMany", "RWX"),
                ("ReadWriteOncePod", "RWOP"),
            ];
            let modes: Vec<&str> = order
                .iter()
                .filter(|(long, _)| status.access_modes.iter().any(|m| m == long))
                .map(|(_, short)| *short)
                .collect();
            (
                status.capacity.get("storage").cloned().unwrap_or_default(),
                modes.join(","),
            )
        };
        let mode = if spec.volume_mode.is_empty() {
            "Filesystem".to_string()
        } else {
            spec.volume_mode.clone()
        };
        vec![
            text(self.name()),
            text(phase),
            text(spec.volume_name.clone()),
            text(capacity),
            text(modes),
            text(spec.storage_class_name.clone().unwrap_or_default()),
            text("<unset>"),
            created(self),
            text(mode),
        ]
    }
}

/// A node's STATUS as kubectl prints it: `Ready` when its Ready condition is True, `NotReady`
/// when it is False or Unknown (a lost node), `Unknown` without one; `,SchedulingDisabled`
/// when cordoned.
pub fn node_status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map_or("Unknown", |c| {
            if c.status == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        });
    if node.spec.as_ref().is_some_and(|s| s.unschedulable) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.into()
    }
}

impl Printer for Node {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Status", "The status of the node"),
            Column::new("Roles", "The roles of the node"),
            Column::age(),
            Column::new("Version", "Kubelet Version reported by the node."),
            Column::new("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.").wide(),
            Column::new("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.").wide(),
            Column::new("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
            Column::new("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
            Column::new("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        let info = status.node_info.clone().unwrap_or_default();
        let labels = &self.meta().labels;
        let mut roles: Vec<&str> = labels
            .keys()
            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
            .filter(|r| !r.is_empty())
            .collect();
        if let Some(role) = labels.get("kubernetes.io/role").filter(|r| !r.is_empty()) {
            roles.push(role);
        }
        roles.sort_unstable();
        roles.dedup();
        let address = |kind: &str| {
            status
                .addresses
                .iter()
                .find(|a| a.r#type == kind)
                .map(|a| a.address.clone())
                .unwrap_or_default()
        };
        let unknown = |s: &str| {
            if s.is_empty() {
                text("<unknown>")
            } else {
                text(s)
            }
        };
        vec![
            text(self.name()),
            text(node_status(self)),
            or_none(&roles.join(",")),
            created(self),
            text(info.kubelet_version.clone()),
            or_none(&address("InternalIP")),
            or_none(&address("ExternalIP")),
            unknown(&info.os_image),
            unknown(&info.kernel_version),
            unknown(&info.container_runtime_version),
        ]
    }
}

impl Printer for Event {
    fn columns() -> Vec<Column> {
        vec![
            Column::new("Last Seen", "The last time the event was seen"),
            Column::new("Type", "The type of the event: Normal or Warning"),
            Column::new(
                "Reason",
                "The short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            Column::new("Object", "The object that this event is about."),
            Column::new(
                "Subobject",
                "The field of the object the event is about (a container).",
            )
            .wide(),
            Column::new("Source", "The component reporting this event.").wide(),
            Column::new(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            Column::new("First Seen", "The first time the event was seen").wide(),
            Column::new("Count", "The number of times this event has occurred.")
                .integer()
                .wide(),
            Column::name().wide(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let obj = self.involved_object.clone().unwrap_or_default();
        let first = self
            .first_timestamp
            .as_ref()
            .or(self.meta().creation_timestamp.as_ref());
        let last = self.last_timestamp.as_ref().or(first);
        let target = if obj.name.is_empty() {
            obj.kind.to_ascii_lowercase()
        } else {
            format!("{}/{}", obj.kind.to_ascii_lowercase(), obj.name)
        };
        let source = self.source.clone().unwrap_or_default();
        let component = if source.component.is_empty() {
            self.reporting_component.clone()
        } else {
            source.component
        };
        let host = if source.host.is_empty() {
            self.reporting_instance.clone()
        } else {
            source.host
        };
        let source = match (component.is_empty(), host.is_empty()) {
            (true, _) => String::new(),
            (false, true) => component,
            (false, false) => format!("{component}, {host}"),
        };
        vec![
            age_of(last),
            text(self.r#type.clone()),
            text(self.reason.clone()),
            text(target),
            text(obj.field_path.clone()),
            text(source),
            text(self.message.trim()),
            age_of(first),
            json!(self.count.max(1)),
            text(self.name()),
        ]
    }
}

impl Printer for LimitRange {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Created At", "CreationTimestamp is a timestamp representing the server time when this object was created.").date(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        vec![text(self.name()), created_at(self)]
    }
}

impl Printer for ServiceAccount {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Secrets", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.").integer(),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        vec![text(self.name()), json!(self.secrets.len()), created(self)]
    }
}

impl Printer for Lease {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Holder", "The holder of the lease."),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let holder = self
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        vec![text(self.name()), text(holder), created(self)]
    }
}
