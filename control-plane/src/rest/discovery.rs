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

/// The served group versions: group → versions → kinds.
fn groups(
    routes: &Routes,
) -> BTreeMap<&'static str, BTreeMap<&'static str, Vec<&'static KindInfo>>> {
    let mut out: BTreeMap<_, BTreeMap<_, Vec<_>>> = BTreeMap::new();
    for api in routes.kinds() {
        let info = api.info();
        let (g, v) = group_version(info);
        out.entry(g).or_default().entry(v).or_default().push(info);
    }
    for versions in out.values_mut() {
        for kinds in versions.values_mut() {
            kinds.sort_by_key(|k| k.plural);
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

fn singular(info: &KindInfo) -> String {
    info.kind.to_ascii_lowercase()
}

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

/// Subresources of a kind: (name, group, version, kind, verbs).
fn subresources(
    routes: &Routes,
    info: &KindInfo,
) -> Vec<(
    String,
    &'static str,
    &'static str,
    &'static str,
    Vec<&'static str>,
)> {
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
    let kinds = all.get(group)?.get(version)?;
    let mut resources = Vec::new();
    for info in kinds {
        let mut r = json!({
            "name": info.plural,
            "singularName": singular(info),
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": VERBS,
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        let c = categories(info);
        if !c.is_empty() {
            r["categories"] = json!(c);
        }
        resources.push(r);
        for (name, g, v, kind, verbs) in subresources(routes, info) {
            let mut s = json!({
                "name": format!("{}/{name}", info.plural),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (g, v) != group_version(info) {
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

fn group_json(name: &str, versions: &BTreeMap<&'static str, Vec<&'static KindInfo>>) -> Value {
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
                .map(|(v, kinds)| {
                    let resources: Vec<Value> =
                        kinds
                            .iter()
                            .map(|info| {
                                let subs: Vec<Value> = subresources(routes, info)
                                .into_iter()
                                .map(|(name, g, v, kind, verbs)| json!({
                                    "subresource": name,
                                    "responseKind": { "group": g, "version": v, "kind": kind },
                                    "verbs": verbs,
                                }))
                                .collect();
                                let mut r = json!({
                                    "resource": info.plural,
                                    "responseKind": { "group": g, "version": v, "kind": info.kind },
                                    "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": singular(info),
                                    "verbs": VERBS,
                                });
                                if !info.short_names.is_empty() {
                                    r["shortNames"] = json!(info.short_names);
                                }
                                let c = categories(info);
                                if !c.is_empty() {
                                    r["categories"] = json!(c);
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
