//! `skiff get` tables: the columns kubectl shows for each kind.

use skiff_api::time::age;
use skiff_api::v1::*;
use skiff_api::{Resource, ResourceExt};

/// Columns and a row per object.
pub trait TableRow: Resource {
    fn headers(wide: bool) -> Vec<&'static str>;
    fn row(&self, wide: bool) -> Vec<String>;
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

fn created<K: Resource>(obj: &K) -> String {
    age(obj.meta().creation_timestamp.as_ref())
}

/// Prints rows aligned in columns separated by three spaces, as kubectl does.
pub fn render(headers: &[&str], rows: &[Vec<String>], with_headers: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    if with_headers {
        line(headers.to_vec());
    }
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

impl TableRow for Namespace {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "STATUS", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let phase = self
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default();
        vec![self.name().into(), phase, created(self)]
    }
}

/// The STATUS column of a pod: a container's waiting/terminated reason, else the phase.
pub fn pod_status(pod: &Pod) -> String {
    if pod.meta().deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = pod.status.clone().unwrap_or_default();
    for cs in &status.container_statuses {
        let state = cs.state.clone().unwrap_or_default();
        if let Some(w) = state.waiting.filter(|w| !w.reason.is_empty()) {
            return w.reason;
        }
        if let Some(t) = state.terminated.filter(|t| !t.reason.is_empty()) {
            return t.reason;
        }
    }
    if !status.reason.is_empty() {
        return status.reason;
    }
    if status.phase.is_empty() {
        "Pending".into()
    } else {
        status.phase
    }
}

impl TableRow for Pod {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
        if wide {
            h.extend(["IP", "NODE", "RUNTIME"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let ready = status.container_statuses.iter().filter(|c| c.ready).count();
        let restarts: i32 = status
            .container_statuses
            .iter()
            .map(|c| c.restart_count)
            .sum();
        let mut r = vec![
            self.name().into(),
            format!("{ready}/{}", spec.containers.len()),
            pod_status(self),
            restarts.to_string(),
            created(self),
        ];
        if wide {
            let runtime = if spec.runtime_class_name.is_empty() {
                "oci".to_string()
            } else {
                spec.runtime_class_name
            };
            r.extend([or_none(&status.pod_ip), or_none(&spec.node_name), runtime]);
        }
        r
    }
}

impl TableRow for Deployment {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"];
        if wide {
            h.extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut r = vec![
            self.name().into(),
            format!("{}/{}", status.ready_replicas, spec.replicas.unwrap_or(1)),
            status.updated_replicas.to_string(),
            status.available_replicas.to_string(),
            created(self),
        ];
        if wide {
            let containers = spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            let selector = spec
                .selector
                .map(|s| {
                    s.match_labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            r.extend([
                containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                containers
                    .iter()
                    .map(|c| c.image.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                or_none(&selector),
            ]);
        }
        r
    }
}

impl TableRow for ReplicaSet {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"];
        if wide {
            h.extend(["CONTAINERS", "IMAGES"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut r = vec![
            self.name().into(),
            spec.replicas.unwrap_or(1).to_string(),
            status.replicas.to_string(),
            status.ready_replicas.to_string(),
            created(self),
        ];
        if wide {
            let containers = spec
                .template
                .and_then(|t| t.spec)
                .map(|s| s.containers)
                .unwrap_or_default();
            let join = |f: fn(&Container) -> &String| {
                containers
                    .iter()
                    .map(|c| f(c).as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            r.extend([join(|c| &c.name), join(|c| &c.image)]);
        }
        r
    }
}

impl TableRow for Service {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ];
        if wide {
            h.push("SELECTOR");
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let ports = spec
            .ports
            .iter()
            .map(|p| {
                let proto = if p.protocol.is_empty() {
                    "TCP"
                } else {
                    &p.protocol
                };
                if p.node_port != 0 {
                    format!("{}:{}/{proto}", p.port, p.node_port)
                } else {
                    format!("{}/{proto}", p.port)
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        // kubectl's: the name of an ExternalName Service, a LoadBalancer's ingress addresses
        // (`<pending>` until it has one), else the externalIPs.
        let mut external: Vec<String> = spec.external_ips.clone();
        let external = match spec.r#type.as_str() {
            "ExternalName" => spec.external_name.clone(),
            "LoadBalancer" => {
                let ingress = self
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .map(|lb| lb.ingress.as_slice())
                    .unwrap_or_default();
                let mut all: Vec<String> = ingress
                    .iter()
                    .map(|i| {
                        if i.ip.is_empty() {
                            i.hostname.clone()
                        } else {
                            i.ip.clone()
                        }
                    })
                    .collect();
                all.append(&mut external);
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            _ => external.join(","),
        };
        let mut r = vec![
            self.name().into(),
            spec.r#type.clone(),
            or_none(&spec.cluster_ip),
            or_none(&external),
            or_none(&ports),
            created(self),
        ];
        if wide {
            r.push(or_none(
                &spec
                    .selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        r
    }
}

impl TableRow for Endpoints {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "ENDPOINTS", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let eps: Vec<String> = self
            .subsets
            .iter()
            .flat_map(|s| {
                s.addresses
                    .iter()
                    .flat_map(move |a| s.ports.iter().map(move |p| format!("{}:{}", a.ip, p.port)))
            })
            .collect();
        vec![self.name().into(), or_none(&eps.join(",")), created(self)]
    }
}

impl TableRow for Secret {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "TYPE", "DATA", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        vec![
            self.name().into(),
            self.r#type.clone(),
            self.data.len().to_string(),
            created(self),
        ]
    }
}

impl TableRow for ConfigMap {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "DATA", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        vec![
            self.name().into(),
            (self.data.len() + self.binary_data.len()).to_string(),
            created(self),
        ]
    }
}

impl TableRow for PersistentVolumeClaim {
    fn headers(_: bool) -> Vec<&'static str> {
        vec![
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "AGE",
        ]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let modes = spec
            .access_modes
            .iter()
            .map(|m| match m.as_str() {
                "ReadWriteOnce" => "RWO",
                "ReadOnlyMany" => "ROX",
                "ReadWriteMany" => "RWX",
                "ReadWriteOncePod" => "RWOP",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(",");
        vec![
            self.name().into(),
            status.phase,
            spec.volume_name,
            status.capacity.get("storage").cloned().unwrap_or_default(),
            modes,
            spec.storage_class_name.unwrap_or_default(),
            created(self),
        ]
    }
}

/// Ready, NotReady or Unknown, plus SchedulingDisabled when cordoned.
pub fn node_status(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"))
        .map(|c| match c.status.as_str() {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    if node.spec.as_ref().is_some_and(|s| s.unschedulable) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.into()
    }
}

impl TableRow for Node {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
        if wide {
            h.extend(["INTERNAL-IP", "RUNTIMES", "KERNEL-VERSION"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let status = self.status.clone().unwrap_or_default();
        let info = status.node_info.clone().unwrap_or_default();
        let roles: Vec<&str> = self
            .meta()
            .labels
            .keys()
            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        let mut r = vec![
            self.name().into(),
            node_status(self),
            or_none(&roles.join(",")),
            created(self),
            info.kubelet_version.clone(),
        ];
        if wide {
            let ip = status
                .addresses
                .iter()
                .find(|a| a.r#type == "InternalIP")
                .map(|a| a.address.clone())
                .unwrap_or_default();
            let runtimes = status
                .runtime_handlers
                .iter()
                .map(|h| h.name.clone())
                .collect::<Vec<_>>()
                .join(",");
            r.extend([or_none(&ip), or_none(&runtimes), info.kernel_version]);
        }
        r
    }
}

impl TableRow for Event {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let obj = self.involved_object.clone().unwrap_or_default();
        let last = self
            .last_timestamp
            .as_ref()
            .or(self.meta().creation_timestamp.as_ref());
        vec![
            age(last),
            self.r#type.clone(),
            self.reason.clone(),
            format!("{}/{}", obj.kind.to_ascii_lowercase(), obj.name),
            self.message.clone(),
        ]
    }
}

impl TableRow for Lease {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "HOLDER", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let holder = self
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        vec![self.name().into(), holder, created(self)]
    }
}

impl TableRow for Ingress {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let class = or_none(spec.ingress_class_name.as_deref().unwrap_or_default());
        // kubectl's: the first three hosts, `+ N more...`, `*` when no rule names one.
        let mut named: Vec<&str> = Vec::new();
        let mut more = false;
        for rule in &spec.rules {
            more |= named.len() == 3;
            if !more && !rule.host.is_empty() {
                named.push(&rule.host);
            }
        }
        let mut hosts = if named.is_empty() {
            "*".to_string()
        } else {
            named.join(",")
        };
        if more {
            hosts = format!("{hosts} + {} more...", spec.rules.len() - 3);
        }
        let address = self
            .status
            .iter()
            .flat_map(|s| &s.load_balancer)
            .flat_map(|lb| &lb.ingress)
            .map(|i| {
                if i.ip.is_empty() {
                    i.hostname.clone()
                } else {
                    i.ip.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let ports = if spec.tls.is_empty() { "80" } else { "80, 443" };
        vec![
            self.name().into(),
            class,
            hosts,
            address,
            ports.into(),
            created(self),
        ]
    }
}

impl TableRow for IngressClass {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let parameters = match &spec.parameters {
            None => "<none>".to_string(),
            Some(p) => match p.api_group.as_deref() {
                Some(group) if !group.is_empty() => format!("{}.{group}/{}", p.kind, p.name),
                _ => format!("{}/{}", p.kind, p.name),
            },
        };
        vec![
            self.name().into(),
            spec.controller,
            parameters,
            created(self),
        ]
    }
}

/// One metric of an HPA as kubectl's TARGETS column shows it: `cpu: 20%/50%`,
/// `requests_in_flight: 3/10` (`<unknown>` before the controller has read it).
fn hpa_target(spec: &MetricSpec, current: &[MetricStatus]) -> String {
    let unknown = || "<unknown>".to_string();
    let value = |target: &MetricTarget, current: Option<&MetricValueStatus>| {
        if target.r#type == "Utilization" {
            let now = current
                .and_then(|c| c.average_utilization)
                .map_or_else(unknown, |u| format!("{u}%"));
            format!("{now}/{}%", target.average_utilization.unwrap_or(0))
        } else {
            let now = current
                .map(|c| c.average_value.clone())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(unknown);
            format!("{now}/{}", target.average_value)
        }
    };
    match (spec.resource.as_ref(), spec.pods.as_ref()) {
        (Some(r), _) => {
            let now = current
                .iter()
                .filter_map(|c| c.resource.as_ref())
                .find(|c| c.name == r.name)
                .and_then(|c| c.current.as_ref());
            format!(
                "{}: {}",
                r.name,
                value(&r.target.clone().unwrap_or_default(), now)
            )
        }
        (_, Some(p)) => {
            let name = p
                .metric
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let now = current
                .iter()
                .filter_map(|c| c.pods.as_ref())
                .find(|c| c.metric.as_ref().is_some_and(|m| m.name == name))
                .and_then(|c| c.current.as_ref());
            format!(
                "{name}: {}",
                value(&p.target.clone().unwrap_or_default(), now)
            )
        }
        _ => unknown(),
    }
}

impl TableRow for HorizontalPodAutoscaler {
    fn headers(_: bool) -> Vec<&'static str> {
        vec![
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let reference = spec
            .scale_target_ref
            .as_ref()
            .map(|t| format!("{}/{}", t.kind, t.name))
            .unwrap_or_default();
        let default_metric = [MetricSpec {
            r#type: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: Some(MetricTarget {
                    r#type: "Utilization".into(),
                    average_utilization: Some(80),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }];
        let metrics: &[MetricSpec] = if spec.metrics.is_empty() {
            &default_metric
        } else {
            &spec.metrics
        };
        let mut targets: Vec<String> = metrics
            .iter()
            .take(2)
            .map(|m| hpa_target(m, &status.current_metrics))
            .collect();
        if metrics.len() > 2 {
            targets.push(format!("+ {} more...", metrics.len() - 2));
        }
        vec![
            self.name().into(),
            reference,
            targets.join(", "),
            spec.min_replicas.unwrap_or(1).to_string(),
            spec.max_replicas.to_string(),
            status.current_replicas.to_string(),
            created(self),
        ]
    }
}

impl TableRow for LimitRange {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "CREATED AT"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let at = self
            .meta()
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        vec![self.name().into(), at]
    }
}

impl TableRow for ServiceAccount {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "SECRETS", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        vec![
            self.name().into(),
            self.secrets.len().to_string(),
            created(self),
        ]
    }
}

impl TableRow for Role {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        vec![self.name().into(), created(self)]
    }
}

impl TableRow for ClusterRole {
    fn headers(_: bool) -> Vec<&'static str> {
        vec!["NAME", "AGE"]
    }
    fn row(&self, _: bool) -> Vec<String> {
        vec![self.name().into(), created(self)]
    }
}

/// `ClusterRole/view`, and the wide columns' users, groups and service accounts.
fn binding_cells(role_ref: Option<&RoleRef>, subjects: &[Subject], wide: bool) -> Vec<String> {
    let role = role_ref.map_or(String::new(), |r| format!("{}/{}", r.kind, r.name));
    let mut cells = vec![role];
    if wide {
        let of = |kind: &str| {
            let names: Vec<String> = subjects
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| {
                    if kind == "ServiceAccount" {
                        format!("{}/{}", s.namespace, s.name)
                    } else {
                        s.name.clone()
                    }
                })
                .collect();
            names.join(", ")
        };
        cells.extend([of("User"), of("Group"), of("ServiceAccount")]);
    }
    cells
}

impl TableRow for RoleBinding {
    fn headers(wide: bool) -> Vec<&'static str> {
        let mut h = vec!["NAME", "ROLE", "AGE"];
        if wide {
            h.extend(["USERS", "GROUPS", "SERVICEACCOUNTS"]);
        }
        h
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let mut cells = binding_cells(self.role_ref.as_ref(), &self.subjects, wide);
        let rest = cells.split_off(1);
        let mut row = vec![self.name().to_string()];
        row.extend(cells);
        row.push(created(self));
        row.extend(rest);
        row
    }
}

impl TableRow for ClusterRoleBinding {
    fn headers(wide: bool) -> Vec<&'static str> {
        <RoleBinding as TableRow>::headers(wide)
    }
    fn row(&self, wide: bool) -> Vec<String> {
        let mut cells = binding_cells(self.role_ref.as_ref(), &self.subjects, wide);
        let rest = cells.split_off(1);
        let mut row = vec![self.name().to_string()];
        row.extend(cells);
        row.push(created(self));
        row.extend(rest);
        row
    }
}

/// kubectl's columns: `N/A` for the one of minAvailable/maxUnavailable left unset.
impl TableRow for PodDisruptionBudget {
    fn headers(_: bool) -> Vec<&'static str> {
        vec![
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ]
    }
    fn row(&self, _: bool) -> Vec<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let or_na =
            |v: Option<skiff_api::IntOrString>| v.map_or("N/A".to_string(), |v| v.to_string());
        vec![
            self.name().into(),
            or_na(spec.min_available),
            or_na(spec.max_unavailable),
            self.status
                .as_ref()
                .map_or(0, |s| s.disruptions_allowed)
                .to_string(),
            created(self),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let out = render(
            &["NAME", "AGE"],
            &[
                vec!["a-long-name".into(), "5s".into()],
                vec!["b".into(), "1m".into()],
            ],
            true,
        );
        assert_eq!(
            out,
            "NAME          AGE\na-long-name   5s\nb             1m\n"
        );
    }

    #[test]
    fn services_show_their_addresses_and_node_ports_as_kubectl() {
        let svc = |r#type: &str, ip: &str, ports: Vec<ServicePort>| Service {
            metadata: Some(ObjectMeta {
                name: "s".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                r#type: r#type.into(),
                cluster_ip: ip.into(),
                ports,
                external_name: "db.example.com".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let port = |port, node_port, protocol: &str| ServicePort {
            port,
            node_port,
            protocol: protocol.into(),
            ..Default::default()
        };
        let cells = |s: Service| s.row(false)[1..5].join(" ");
        assert_eq!(
            cells(svc(
                "NodePort",
                "10.96.0.10",
                vec![port(80, 30080, "TCP"), port(53, 30053, "UDP")]
            )),
            "NodePort 10.96.0.10 <none> 80:30080/TCP,53:30053/UDP"
        );
        assert_eq!(
            cells(svc("ClusterIP", "None", vec![port(5432, 0, "")])),
            "ClusterIP None <none> 5432/TCP"
        );
        assert_eq!(
            cells(svc("ExternalName", "", vec![])),
            "ExternalName <none> db.example.com <none>"
        );
        assert_eq!(
            cells(svc(
                "LoadBalancer",
                "10.96.0.11",
                vec![port(80, 31000, "TCP")]
            )),
            "LoadBalancer 10.96.0.11 <pending> 80:31000/TCP"
        );
    }
}
