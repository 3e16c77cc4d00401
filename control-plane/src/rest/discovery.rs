//! Discovery: `/version`, `/api` (APIVersions), `/apis` (APIGroupList), `/apis/<group>`
//! (APIGroup), `/api/v1` and `/apis/<group>/<version>` (APIResourceList), and aggregated
//! discovery (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList, what kubectl 1.32 asks for first
//! on `/api` and `/apis`), all built from the route table.
//!
//! Must not: list anything the router does not serve.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use skiff_api::kinds::KindInfo;

use super::status::json_response;
use super::{Response, Routes, group_version};

/// The Kubernetes version skiff's API answers as (kubectl warns past one minor version of skew).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "32";

/// The media type of aggregated discovery.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether `accept` asks for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let params: Vec<&str> = t.split(';').map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
    })
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// One served resource, as discovery lists it.
struct Entry {
    plural: String,
    singular: String,
    kind: &'static str,
    namespaced: bool,
    verbs: Vec<&'static str>,
    short_names: Vec<&'static str>,
    categories: Vec<&'static str>,
    /// (name, group, version, kind, verbs).
    subresources: Vec<Sub>,
}

type Sub = (
    String,
    &'static str,
    &'static str,
    &'static str,
    Vec<&'static str>,
);

type Groups = BTreeMap<String, BTreeMap<String, Vec<Entry>>>;

/// The served group versions: group → versions → resources.
fn groups(routes: &Routes) -> Groups {
    let mut out: Groups = BTreeMap::new();
    for api in routes.kinds() {
        let info = api.info();
        let (g, v) = group_version(info);
        out.entry(g.to_string())
            .or_default()
            .entry(v.to_string())
            .or_default()
            .push(Entry {
                plural: info.plural.to_string(),
                singular: info.kind.to_ascii_lowercase(),
                kind: info.kind,
                namespaced: info.namespaced,
                verbs: VERBS.to_vec(),
                short_names: info.short_names.to_vec(),
                categories: categories(info),
                subresources: subresources(routes, info),
            });
    }
    for ((g, v, r), handler) in routes.other_resources() {
        let d = handler.discovery();
        let entries = out
            .entry(g.clone())
            .or_default()
            .entry(v.clone())
            .or_default();
        for name in handler.discovery_names(r) {
            entries.push(Entry {
                // `pods/METRIC` has no singular name, as Kubernetes lists subresources.
                singular: if name.contains('/') {
                    String::new()
                } else {
                    d.kind.to_ascii_lowercase()
                },
                plural: name,
                kind: d.kind,
                namespaced: handler.namespaced(),
                verbs: d.verbs.to_vec(),
                short_names: Vec::new(),
                categories: Vec::new(),
                subresources: Vec::new(),
            });
        }
    }
    for versions in out.values_mut() {
        for entries in versions.values_mut() {
            entries.sort_by(|a, b| a.plural.cmp(&b.plural));
        }
    }
    out
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn categories(info: &KindInfo) -> Vec<&'static str> {
    match info.kind {
        "Pod"
        | "Service"
        | "Deployment"
        | "ReplicaSet"
        | "HorizontalPodAutoscaler"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "CronJob" => vec!["all"],
        _ => vec![],
    }
}

/// Subresources of a kind.
fn subresources(routes: &Routes, info: &KindInfo) -> Vec<Sub> {
    let (g, v) = group_version(info);
    let mut out = Vec::new();
    let has_status = skiff_api::with_kind!(info, K => <K as skiff_api::Resource>::HAS_STATUS);
    if has_status {
        out.push((
            "status".to_string(),
            g,
            v,
            info.kind,
            vec!["get", "patch", "update"],
        ));
    }
    if routes
        .kind_of(g, v, info.plural)
        .is_some_and(|k| k.has_scale())
    {
        out.push((
            "scale".to_string(),
            "autoscaling",
            "v1",
            "Scale",
            vec!["get", "patch", "update"],
        ));
    }
    for (name, sub) in routes.subresources_with_handlers(g, v, info.plural) {
        let d = sub.discovery();
        out.push((
            name.to_string(),
            d.group,
            d.version,
            d.kind,
            d.verbs.to_vec(),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `/api/v1` or `/apis/<group>/<version>`; None when not served.
pub fn resource_list(routes: &Routes, group: &str, version: &str) -> Option<Value> {
    let all = groups(routes);
    let entries = all.get(group)?.get(version)?;
    let mut resources = Vec::new();
    for e in entries {
        let mut r = json!({
            "name": e.plural,
            "singularName": e.singular,
            "namespaced": e.namespaced,
            "kind": e.kind,
            "verbs": e.verbs,
        });
        if !e.short_names.is_empty() {
            r["shortNames"] = json!(e.short_names);
        }
        if !e.categories.is_empty() {
            r["categories"] = json!(e.categories);
        }
        resources.push(r);
        for (name, g, v, kind, verbs) in &e.subresources {
            let mut s = json!({
                "name": format!("{}/{name}", e.plural),
                "singularName": "",
                "namespaced": e.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (*g, *v) != (group, version) {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// `/api`: the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_json(name: &str, versions: &BTreeMap<String, Vec<Entry>>) -> Value {
    let vs: Vec<Value> = versions
        .keys()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({ "name": name, "versions": vs, "preferredVersion": preferred })
}

/// `/apis`.
pub fn group_list(routes: &Routes) -> Value {
    let groups: Vec<Value> = groups(routes)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_json(g, versions))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/<group>`; None when not served.
pub fn group(routes: &Routes, name: &str) -> Option<Value> {
    let all = groups(routes);
    let versions = all.get(name).filter(|_| !name.is_empty())?;
    let mut g = group_json(name, versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// Aggregated discovery of the core group (`legacy`: `/api`) or of every other group (`/apis`).
pub fn aggregated(routes: &Routes, legacy: bool) -> Value {
    let items: Vec<Value> = groups(routes)
        .iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|(v, entries)| {
                    let resources: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            let subs: Vec<Value> = e
                                .subresources
                                .iter()
                                .map(|(name, g, v, kind, verbs)| {
                                    json!({
                                        "subresource": name,
                                        "responseKind": { "group": g, "version": v, "kind": kind },
                                        "verbs": verbs,
                                    })
                                })
                                .collect();
                            let mut r = json!({
                                "resource": e.plural,
                                "responseKind": { "group": g, "version": v, "kind": e.kind },
                                "scope": if e.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": e.singular,
                                "verbs": e.verbs,
                            });
                            if !e.short_names.is_empty() {
                                r["shortNames"] = json!(e.short_names);
                            }
                            if !e.categories.is_empty() {
                                r["categories"] = json!(e.categories);
                            }
                            if !subs.is_empty() {
                                r["subresources"] = json!(subs);
                            }
                            r
                        })
                        .collect();
                    json!({ "version": v, "resources": resources, "freshness": "Current" })
                })
                .collect();
            let mut meta = json!({});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({ "metadata": meta, "versions": vs })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// An aggregated discovery response (its own media type, as kubectl checks).
pub fn aggregated_response(routes: &Routes, legacy: bool) -> Response {
    let mut r = json_response(200, &aggregated(routes, legacy));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(AGGREGATED),
    );
    r
}

/// What discovery says of a registered subresource.
#[derive(Debug, Clone, Copy)]
pub struct SubresourceDiscovery {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_is_recognised() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn version_is_kubernetes_shaped() {
        let v = version();
        assert_eq!(v["major"], "1");
        assert!(
            v["gitVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.32.0-skiff.")
        );
    }
}
