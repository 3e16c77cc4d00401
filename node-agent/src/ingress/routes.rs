//! The routing table: which backend a request's host and path reach, built from the Ingresses the
//! router serves. Pure data and functions: no I/O, no clock.
//!
//! Precedence, as Kubernetes defines it for Ingress (and ingress-nginx behaves):
//! - **Host**: an exact host first, then a wildcard `*.example.com` (one label in place of `*`:
//!   `a.example.com`, not `example.com` or `a.b.example.com`), then the rules with no host. The
//!   first of these that has any rule decides; a request it has no path for goes to the default
//!   backend (not on to a less specific host).
//! - **Path**: an `Exact` path equal to the request's path, then the longest matching `Prefix`
//!   (`ImplementationSpecific` is `Prefix` here), matched element by element: `/foo` matches
//!   `/foo`, `/foo/` and `/foo/bar`, never `/foobar`; a trailing `/` in either is ignored.
//! - **Conflicts** between Ingresses (the same host, path and type, or two default backends): the
//!   oldest Ingress wins (by creation time, then namespace and name), so adding an Ingress never
//!   takes a route from an existing one.
//!
//! Must not: look at Services or endpoints (the backends are resolved per request).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use skiff_api::ResourceExt;
use skiff_api::v1::{Ingress, IngressBackend};

/// A Service port as an Ingress backend names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

/// Where a route leads: a Service port of the Ingress's namespace, and where it was declared.
#[derive(Debug)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
    /// `default/web`: the Ingress that declared the route.
    pub ingress: String,
    /// The round robin's next turn (a new table starts again at the first endpoint).
    pub next: AtomicUsize,
}

impl Backend {
    fn from_spec(ingress: &Ingress, backend: &IngressBackend) -> Option<Self> {
        let service = backend.service.as_ref()?;
        let port = service.port.as_ref()?;
        let port = if port.name.is_empty() {
            PortRef::Number(port.number)
        } else {
            PortRef::Name(port.name.clone())
        };
        Some(Self {
            namespace: ingress.namespace().to_string(),
            service: service.name.clone(),
            port,
            ingress: format!("{}/{}", ingress.namespace(), ingress.name()),
            next: AtomicUsize::new(0),
        })
    }
}

/// The routes of one host (or of the wildcard, or of no host).
#[derive(Debug, Default)]
struct HostRoutes {
    exact: HashMap<String, Arc<Backend>>,
    /// (path elements, backend), longest first; among equals, the oldest Ingress's first.
    prefixes: Vec<(Vec<String>, Arc<Backend>)>,
}

impl HostRoutes {
    fn add(&mut self, path: &str, path_type: &str, backend: Arc<Backend>) {
        if path_type == "Exact" {
            self.exact.entry(path.to_string()).or_insert(backend);
        } else {
            let elements = elements(path);
            if !self.prefixes.iter().any(|(p, _)| *p == elements) {
                self.prefixes.push((elements, backend));
            }
        }
    }

    /// Orders the prefixes longest first, keeping the insertion (age) order among equals.
    fn seal(&mut self) {
        self.prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    fn find(&self, path: &str) -> Option<&Arc<Backend>> {
        if let Some(b) = self.exact.get(path) {
            return Some(b);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                let mut request = path.split('/').filter(|e| !e.is_empty());
                prefix.iter().all(|p| request.next() == Some(p.as_str()))
            })
            .map(|(_, b)| b)
    }
}

/// `/foo//bar/` → `[foo, bar]`.
fn elements(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every route of the Ingresses a router serves.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: HashMap<String, HostRoutes>,
    /// By the part after `*.`: `example.com` for `*.example.com`.
    wildcards: HashMap<String, HostRoutes>,
    any_host: HostRoutes,
    default_backend: Option<Arc<Backend>>,
}

/// The oldest first: creation time, then namespace and name.
pub fn by_age<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> Vec<&'a Ingress> {
    let mut sorted: Vec<&Ingress> = ingresses.into_iter().collect();
    sorted.sort_by_key(|i| {
        let at = i
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| (t.seconds, t.nanos))
            .unwrap_or_default();
        (at, i.namespace().to_string(), i.name().to_string())
    });
    sorted
}

/// A request's host as routes name hosts: lower case, without the port or a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        // `[::1]:80` or `a.com:80`; a bare IPv6 address has more than one colon.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl RouteTable {
    /// The table of `ingresses` (those of the router's class only).
    pub fn build<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> Self {
        let mut table = Self::default();
        for ingress in by_age(ingresses) {
            let Some(spec) = &ingress.spec else {
                continue;
            };
            if table.default_backend.is_none()
                && let Some(b) = spec.default_backend.as_ref()
            {
                table.default_backend = Backend::from_spec(ingress, b).map(Arc::new);
            }
            for rule in &spec.rules {
                let host = normalize_host(&rule.host);
                let routes = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(suffix) = host.strip_prefix("*.") {
                    table.wildcards.entry(suffix.to_string()).or_default()
                } else {
                    table.hosts.entry(host).or_default()
                };
                for p in rule.http.iter().flat_map(|h| &h.paths) {
                    let Some(backend) = p
                        .backend
                        .as_ref()
                        .and_then(|b| Backend::from_spec(ingress, b))
                    else {
                        continue;
                    };
                    let path = if p.path.is_empty() { "/" } else { &p.path };
                    routes.add(path, &p.path_type, Arc::new(backend));
                }
            }
        }
        for routes in table
            .hosts
            .values_mut()
            .chain(table.wildcards.values_mut())
            .chain(std::iter::once(&mut table.any_host))
        {
            routes.seal();
        }
        table
    }

    /// The backend of a request to `host` (as sent: a port and upper case are fine) and `path`
    /// (without the query); `None` means 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Backend>> {
        let host = normalize_host(host);
        let wildcard = host
            .split_once('.')
            .and_then(|(_, rest)| self.wildcards.get(rest));
        let routes = self
            .hosts
            .get(&host)
            .or(wildcard)
            .or_else(|| self.has_any_host().then_some(&self.any_host));
        routes
            .and_then(|r| r.find(path))
            .or(self.default_backend.as_ref())
    }

    /// No route at all (and no default backend).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.wildcards.is_empty()
            && !self.has_any_host()
            && self.default_backend.is_none()
    }

    fn has_any_host(&self) -> bool {
        !self.any_host.exact.is_empty() || !self.any_host.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{
        HttpIngressPath, HttpIngressRuleValue, IngressRule, IngressServiceBackend, IngressSpec,
        ObjectMeta, ServiceBackendPort,
    };

    fn backend(service: &str) -> IngressBackend {
        IngressBackend {
            service: Some(IngressServiceBackend {
                name: service.into(),
                port: Some(ServiceBackendPort {
                    number: 80,
                    ..Default::default()
                }),
            }),
            resource: None,
        }
    }

    /// `(host, [(path, type, service)])` per rule.
    type Rules<'a> = &'a [(&'a str, &'a [(&'a str, &'a str, &'a str)])];

    /// An Ingress created at `age` with `rules`.
    fn ingress(name: &str, age: i64, rules: Rules<'_>) -> Ingress {
        Ingress {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                creation_timestamp: Some(skiff_api::Timestamp {
                    seconds: age,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(IngressSpec {
                rules: rules
                    .iter()
                    .map(|(host, paths)| IngressRule {
                        host: host.to_string(),
                        http: Some(HttpIngressRuleValue {
                            paths: paths
                                .iter()
                                .map(|(path, t, svc)| HttpIngressPath {
                                    path: path.to_string(),
                                    path_type: t.to_string(),
                                    backend: Some(backend(svc)),
                                })
                                .collect(),
                        }),
                    })
                    .collect(),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn service<'a>(table: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        table.route(host, path).map(|b| b.service.as_str())
    }

    #[test]
    fn hosts_match_exactly_then_by_wildcard_then_any() {
        let table = RouteTable::build(&[ingress(
            "i",
            1,
            &[
                ("a.example.com", &[("/", "Prefix", "a")]),
                ("*.example.com", &[("/", "Prefix", "wild")]),
                ("", &[("/", "Prefix", "any")]),
            ],
        )]);
        assert_eq!(service(&table, "a.example.com", "/x"), Some("a"));
        assert_eq!(service(&table, "A.Example.COM:8080", "/x"), Some("a"));
        assert_eq!(service(&table, "a.example.com.", "/x"), Some("a"));
        assert_eq!(service(&table, "b.example.com", "/x"), Some("wild"));
        // A wildcard stands for exactly one label.
        assert_eq!(service(&table, "c.b.example.com", "/x"), Some("any"));
        assert_eq!(service(&table, "example.com", "/x"), Some("any"));
        assert_eq!(service(&table, "10.0.0.1:80", "/"), Some("any"));
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let table = RouteTable::build(&[ingress(
            "i",
            1,
            &[(
                "h",
                &[
                    ("/", "Prefix", "root"),
                    ("/api", "Prefix", "api"),
                    ("/api/v1", "ImplementationSpecific", "v1"),
                    ("/api/v1/health", "Exact", "health"),
                    ("/exact", "Exact", "exact"),
                ],
            )],
        )]);
        assert_eq!(service(&table, "h", "/api/v1/health"), Some("health"));
        assert_eq!(service(&table, "h", "/api/v1/health/x"), Some("v1"));
        assert_eq!(service(&table, "h", "/api/v1"), Some("v1"));
        assert_eq!(service(&table, "h", "/api/v2"), Some("api"));
        assert_eq!(service(&table, "h", "/api"), Some("api"));
        assert_eq!(service(&table, "h", "/api/"), Some("api"));
        // Element-wise: `/api` is not a prefix of `/apis`.
        assert_eq!(service(&table, "h", "/apis"), Some("root"));
        assert_eq!(service(&table, "h", "/exact"), Some("exact"));
        // Exact means exact: a trailing slash is another path.
        assert_eq!(service(&table, "h", "/exact/"), Some("root"));
    }

    #[test]
    fn no_rule_is_none_unless_a_default_backend_exists() {
        let mut i = ingress("i", 1, &[("h", &[("/only", "Exact", "only")])]);
        let table = RouteTable::build(std::slice::from_ref(&i));
        assert_eq!(service(&table, "h", "/only"), Some("only"));
        assert_eq!(service(&table, "h", "/other"), None);
        assert_eq!(service(&table, "other", "/only"), None);
        i.spec.as_mut().unwrap().default_backend = Some(backend("fallback"));
        let table = RouteTable::build(&[i]);
        assert_eq!(service(&table, "h", "/other"), Some("fallback"));
        assert_eq!(service(&table, "other", "/"), Some("fallback"));
    }

    #[test]
    fn a_more_specific_host_without_the_path_does_not_fall_back_to_a_general_one() {
        let table = RouteTable::build(&[ingress(
            "i",
            1,
            &[
                ("a.example.com", &[("/api", "Prefix", "a")]),
                ("", &[("/", "Prefix", "any")]),
            ],
        )]);
        assert_eq!(service(&table, "a.example.com", "/api/x"), Some("a"));
        assert_eq!(service(&table, "a.example.com", "/web"), None);
    }

    #[test]
    fn the_oldest_ingress_keeps_a_contested_route() {
        let newer = ingress("newer", 20, &[("h", &[("/", "Prefix", "new")])]);
        let older = ingress("older", 10, &[("h", &[("/", "Prefix", "old")])]);
        let table = RouteTable::build(&[newer.clone(), older.clone()]);
        assert_eq!(service(&table, "h", "/"), Some("old"));
        assert_eq!(table.route("h", "/").unwrap().ingress, "default/older");
        let table = RouteTable::build(&[older, newer]);
        assert_eq!(service(&table, "h", "/"), Some("old"));
    }

    #[test]
    fn routes_of_several_ingresses_for_one_host_merge() {
        let table = RouteTable::build(&[
            ingress("a", 1, &[("h", &[("/a", "Prefix", "a")])]),
            ingress("b", 2, &[("h", &[("/b", "Prefix", "b")])]),
        ]);
        assert_eq!(service(&table, "h", "/a/1"), Some("a"));
        assert_eq!(service(&table, "h", "/b/1"), Some("b"));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("A.com:443"), "a.com");
        assert_eq!(normalize_host("a.com."), "a.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a.com"), "a.com");
    }
}
