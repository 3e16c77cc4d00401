//! networking.k8s.io/v1 kinds' columns: Ingresses and IngressClasses.

use serde_json::Value;

use super::core::load_balancer_text;
use super::{Column, Printer, created, or_none, text};
use crate::resource::ResourceExt;
use crate::v1::{Ingress, IngressClass};

impl Printer for Ingress {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Class", "The name of the IngressClass resource."),
            Column::new(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            Column::new(
                "Address",
                "Address is a list containing ingress points for the load-balancer",
            ),
            Column::new("Ports", "Ports of TLS configurations that open"),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
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
        let address = load_balancer_text(
            self.status
                .iter()
                .flat_map(|s| &s.load_balancer)
                .flat_map(|lb| &lb.ingress)
                .map(|i| (i.ip.as_str(), i.hostname.as_str())),
        );
        let ports = if spec.tls.is_empty() { "80" } else { "80, 443" };
        vec![
            text(self.name()),
            class,
            text(hosts),
            text(address),
            text(ports),
            created(self),
        ]
    }
}

impl Printer for IngressClass {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Controller",
                "Controller that is responsible for handling this class",
            ),
            Column::new(
                "Parameters",
                "A reference to a resource with additional parameters",
            ),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let parameters = match &spec.parameters {
            None => "<none>".to_string(),
            Some(p) => match p.api_group.as_deref() {
                Some(group) if !group.is_empty() => format!("{}.{group}/{}", p.kind, p.name),
                _ => format!("{}/{}", p.kind, p.name),
            },
        };
        vec![
            text(self.name()),
            text(spec.controller),
            text(parameters),
            created(self),
        ]
    }
}
