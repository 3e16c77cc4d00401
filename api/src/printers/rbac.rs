//! rbac.authorization.k8s.io/v1 kinds' columns.

use serde_json::Value;

use super::{Column, Printer, created, created_at, text};
use crate::resource::ResourceExt;
use crate::v1::*;

fn created_at_column() -> Column {
    Column::new("Created At", "CreationTimestamp is a timestamp representing the server time when this object was created.").date()
}

impl Printer for Role {
    fn columns() -> Vec<Column> {
        vec![Column::name(), created_at_column()]
    }
    fn cells(&self) -> Vec<Value> {
        vec![text(self.name()), created_at(self)]
    }
}

impl Printer for ClusterRole {
    fn columns() -> Vec<Column> {
        vec![Column::name(), created_at_column()]
    }
    fn cells(&self) -> Vec<Value> {
        vec![text(self.name()), created_at(self)]
    }
}

fn binding_columns() -> Vec<Column> {
    vec![
        Column::name(),
        Column::new(
            "Role",
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        ),
        Column::age(),
        Column::new("Users", "Users in the roleBinding").wide(),
        Column::new("Groups", "Groups in the roleBinding").wide(),
        Column::new("ServiceAccounts", "ServiceAccounts in the roleBinding").wide(),
    ]
}

/// Name, `ClusterRole/view`, Age, then users, groups and service accounts (`ns/name`).
fn binding_cells<K: crate::Resource>(
    obj: &K,
    role_ref: Option<&RoleRef>,
    subjects: &[Subject],
) -> Vec<Value> {
    let role = role_ref.map_or(String::new(), |r| format!("{}/{}", r.kind, r.name));
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
        text(names.join(", "))
    };
    vec![
        text(obj.name()),
        text(role),
        created(obj),
        of("User"),
        of("Group"),
        of("ServiceAccount"),
    ]
}

impl Printer for RoleBinding {
    fn columns() -> Vec<Column> {
        binding_columns()
    }
    fn cells(&self) -> Vec<Value> {
        binding_cells(self, self.role_ref.as_ref(), &self.subjects)
    }
}

impl Printer for ClusterRoleBinding {
    fn columns() -> Vec<Column> {
        binding_columns()
    }
    fn cells(&self) -> Vec<Value> {
        binding_cells(self, self.role_ref.as_ref(), &self.subjects)
    }
}
