//! OpenAPI documents of the served kinds, what kubectl reads before it writes or explains:
//! `/openapi/v3` (an index of group-versions, each `/openapi/v3/apis/<group>/<version>?hash=…`
//! a 3.0 document) and `/openapi/v2` (one Swagger 2.0 document, JSON).
//!
//! kubectl 1.32 needs v3 for three things: `kubectl explain` walks its schemas (found by
//! `x-kubernetes-group-version-kind`); `kubectl apply`/`create` look for a PATCH operation of
//! the kind that takes `fieldValidation` and, finding one, leave validation to the server (its
//! strict field validation names an unknown field); and client-side apply computes its strategic
//! merge patch from the schemas' `x-kubernetes-patch-merge-key`/`-strategy`
//! ([`super::openapi_schema::merge_key`]). v2 is served as JSON only: kubectl asks for v2 in
//! gnostic protobuf, which is answered 406 (it reads v3 first; the v2 fallback is for servers
//! without v3).
//!
//! The documents are built once, at start, from the proto descriptors and the route table, so
//! a kind added to the kinds table is described with no edit here.
//!
//! Owns: the documents (schemas from [`super::openapi_schema`], paths from
//! [`super::openapi_paths`]), the v3 index and its hashes, serving them.
//! Must not: describe a verb or subresource the router does not serve.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::openapi_paths::{kind_paths, list_definition, meta_definitions, scale_definition};
use super::openapi_schema::{Flavor, Gvk, Messages, Root, SchemaError};
use super::status::RestError;
use super::{Body, Response};

pub(super) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
pub(super) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
/// What kubectl sends for v2 (gnostic's protobuf), which is not served.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2";

/// A kind as the documents describe it.
#[derive(Debug, Clone)]
pub struct ServedKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    pub status: bool,
    pub scale: bool,
}

impl ServedKind {
    /// Every kind of the route table.
    pub fn of_routes(routes: &super::Routes) -> Vec<ServedKind> {
        let mut kinds: Vec<ServedKind> = routes
            .kinds()
            .map(|api| {
                let info = api.info();
                let (group, version) = super::group_version(info);
                ServedKind {
                    group,
                    version,
                    kind: info.kind,
                    plural: info.plural,
                    namespaced: info.namespaced,
                    status: skiff_api::with_kind!(info, K => <K as skiff_api::Resource>::HAS_STATUS),
                    scale: api.has_scale(),
                }
            })
            .collect();
        kinds.sort_by_key(|k| (k.group, k.version, k.kind));
        kinds
    }

    pub(super) fn gvk(&self) -> Gvk {
        Gvk::new(self.group, self.version, self.kind)
    }

    /// `api/v1` or `apis/apps/v1`, as the v3 index names its group-versions.
    fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    /// Its definition's name (`io.k8s.api.apps.v1.Deployment`).
    fn definition(&self, messages: &Messages) -> Result<String, SchemaError> {
        let proto = format!(".skiff.v1.{}", self.kind);
        messages
            .definition_of(&proto)
            .ok_or(SchemaError::Missing(proto))
    }

    /// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: the operation ids' group part.
    pub(super) fn operation_group(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group.strip_suffix(".k8s.io").unwrap_or(self.group)
        };
        let mut out: String = group.split('.').map(capitalize).collect();
        out.push_str(&capitalize(self.version));
        out
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The built documents, served as they are.
pub struct OpenApi {
    v2: Bytes,
    v3_index: Bytes,
    /// `apis/apps/v1` → (hash, document).
    v3: BTreeMap<String, (String, Bytes)>,
}

impl OpenApi {
    /// Builds every document for `kinds`.
    pub fn build(kinds: &[ServedKind]) -> Result<Self, SchemaError> {
        let messages = Messages::load()?;
        let mut by_gv: BTreeMap<String, Vec<&ServedKind>> = BTreeMap::new();
        for kind in kinds {
            by_gv.entry(kind.gv_path()).or_default().push(kind);
        }
        let mut v3 = BTreeMap::new();
        for (gv, kinds) in &by_gv {
            let doc = document(&messages, kinds, Flavor::V3)?;
            let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
            let hash = hex_upper(&sha2::Sha512::digest(&bytes));
            v3.insert(gv.clone(), (hash, bytes));
        }
        let index = json!({
            "paths": v3.iter().map(|(gv, (hash, _))| {
                (gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}))
            }).collect::<Map<String, Value>>(),
        });
        let all: Vec<&ServedKind> = kinds.iter().collect();
        let v2 = document(&messages, &all, Flavor::V2)?;
        Ok(Self {
            v2: Bytes::from(serde_json::to_vec(&v2).unwrap_or_default()),
            v3_index: Bytes::from(serde_json::to_vec(&index).unwrap_or_default()),
            v3,
        })
    }

    /// Whether the router should hand `path` here.
    pub fn serves(path: &str) -> bool {
        path == "/openapi/v2" || path == "/openapi/v3" || path.starts_with("/openapi/v3/")
    }

    /// Answers a GET of `path` (without its query) for a client that accepts `accept`.
    pub fn respond(&self, path: &str, accept: &str) -> Result<Response, RestError> {
        let path = path.trim_end_matches('/');
        if path == "/openapi/v2" {
            if accept.contains(V2_PROTOBUF) && !accepts_json(accept) {
                return Err(RestError::new(
                    406,
                    "NotAcceptable",
                    "only application/json is served at /openapi/v2 (skiff does not write the \
                     protobuf form); /openapi/v3 has the same schemas",
                ));
            }
            return Ok(document_response(self.v2.clone(), false));
        }
        if path == "/openapi/v3" {
            return Ok(document_response(self.v3_index.clone(), false));
        }
        let gv = path.strip_prefix("/openapi/v3/").unwrap_or_default();
        match self.v3.get(gv) {
            Some((_, doc)) => Ok(document_response(doc.clone(), true)),
            None => Err(RestError::not_found(format!(
                "the server could not find the requested resource: no OpenAPI v3 document for {gv:?}"
            ))),
        }
    }

    /// The v3 document of a group-version (`apis/apps/v1`), for tests.
    pub fn v3(&self, gv: &str) -> Option<Value> {
        self.v3
            .get(gv)
            .and_then(|(_, d)| serde_json::from_slice(d).ok())
    }

    pub fn v2(&self) -> Value {
        serde_json::from_slice(&self.v2).unwrap_or_default()
    }

    pub fn v3_index(&self) -> Value {
        serde_json::from_slice(&self.v3_index).unwrap_or_default()
    }
}

/// Serves `/openapi/v2` and `/openapi/v3[/...]` for the kinds of `routes` (built now, once).
pub fn register(routes: &mut super::Routes) {
    let kinds = ServedKind::of_routes(routes);
    let built = OpenApi::build(&kinds).map_err(|e| {
        tracing::error!(error = %e, "the OpenAPI documents could not be built");
        e.to_string()
    });
    routes.path("/openapi/", std::sync::Arc::new(Documents(built)));
}

struct Documents(Result<OpenApi, String>);

#[async_trait::async_trait]
impl super::Subresource for Documents {
    async fn serve(&self, req: super::Request) -> Response {
        let path = req.http.uri().path();
        let answer = match (&self.0, req.http.method()) {
            (_, m) if m != http::Method::GET && m != http::Method::HEAD => Err(
                RestError::method_not_allowed(format!("{path} is read with GET")),
            ),
            (_, _) if !OpenApi::serves(path.trim_end_matches('/')) => Err(RestError::not_found(
                format!("the server could not find the requested resource ({path})"),
            )),
            (Ok(api), _) => api.respond(path, req.header("accept")),
            (Err(e), _) => Err(RestError::internal(format!("OpenAPI documents: {e}"))),
        };
        answer.unwrap_or_else(RestError::into_response)
    }
}

fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t == "application/json" || t == "*/*" || t == "application/*"
    })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn document_response(body: Bytes, immutable: bool) -> Response {
    let cache = if immutable {
        // Addressed by its hash: the same URL always holds the same document.
        "public, immutable"
    } else {
        "no-cache, private"
    };
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, cache)
        .body(Body::new(http_body_util::Full::new(body)))
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

/// One document over `kinds`: v3 per group-version, v2 for all.
fn document(
    messages: &Messages,
    kinds: &[&ServedKind],
    flavor: Flavor,
) -> Result<Value, SchemaError> {
    let mut roots: Vec<Root> = kinds
        .iter()
        .map(|k| Root {
            proto: format!(".skiff.v1.{}", k.kind),
            gvk: Some(k.gvk()),
        })
        .collect();
    roots.push(Root {
        proto: ".skiff.v1.ListMeta".into(),
        gvk: None,
    });
    roots.push(Root {
        proto: ".skiff.v1.ObjectMeta".into(),
        gvk: None,
    });
    let mut definitions = messages.definitions(&roots, flavor)?;
    for (name, definition) in meta_definitions(flavor) {
        definitions.entry(name).or_insert(definition);
    }
    let mut paths = Map::new();
    for kind in kinds {
        let definition = kind.definition(messages)?;
        let list = format!("{definition}List");
        definitions.insert(list.clone(), list_definition(kind, &definition, flavor));
        if kind.scale {
            definitions.insert(SCALE.into(), scale_definition(flavor));
        }
        kind_paths(&mut paths, kind, &definition, &list, flavor);
    }
    let security = json!([{"BearerToken": []}]);
    let bearer = json!({
        "description": "Bearer token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    });
    let info =
        json!({"title": "Kubernetes", "version": concat!("skiff-", env!("CARGO_PKG_VERSION"))});
    Ok(match flavor {
        Flavor::V2 => json!({
            "swagger": "2.0",
            "info": info,
            "paths": paths,
            "definitions": definitions,
            "securityDefinitions": {"BearerToken": bearer},
            "security": security,
        }),
        Flavor::V3 => json!({
            "openapi": "3.0.0",
            "info": info,
            "paths": paths,
            "components": {"schemas": definitions, "securitySchemes": {"BearerToken": bearer}},
            "security": security,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Vec<ServedKind> {
        let mut out: Vec<ServedKind> = skiff_api::kinds::KINDS
            .iter()
            .map(|info| {
                let (group, version) = super::super::group_version(info);
                ServedKind {
                    group,
                    version,
                    kind: info.kind,
                    plural: info.plural,
                    namespaced: info.namespaced,
                    status: skiff_api::with_kind!(info, K => <K as skiff_api::Resource>::HAS_STATUS),
                    scale: matches!(info.kind, "Deployment" | "ReplicaSet"),
                }
            })
            .collect();
        out.sort_by_key(|k| (k.group, k.version, k.kind));
        out
    }

    #[test]
    fn the_v3_index_names_every_group_version_by_hash() {
        let api = OpenApi::build(&kinds()).unwrap();
        let index = api.v3_index();
        let apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(apps.starts_with("/openapi/v3/apis/apps/v1?hash="), "{apps}");
        assert!(index["paths"]["api/v1"].is_object());
        assert!(index["paths"]["apis/rbac.authorization.k8s.io/v1"].is_object());
        assert!(api.v3("apis/apps/v1").is_some());
        assert!(
            api.respond("/openapi/v3/apis/nope/v1", "application/json")
                .is_err()
        );
        assert!(
            api.respond("/openapi/v3/apis/apps/v1", "application/json")
                .is_ok()
        );
        let protobuf = api
            .respond(
                "/openapi/v2",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
            .err()
            .unwrap();
        assert_eq!(protobuf.code, 406);
    }

    /// What kubectl's field-validation check looks for: a PATCH of the kind, tagged with its
    /// group-version-kind, taking `fieldValidation` in the query.
    #[test]
    fn every_kind_has_a_patch_that_takes_field_validation() {
        let kinds = kinds();
        let api = OpenApi::build(&kinds).unwrap();
        for kind in &kinds {
            let doc = api.v3(&kind.gv_path()).unwrap();
            let found = doc["paths"].as_object().unwrap().values().any(|item| {
                let op = &item["patch"];
                op["x-kubernetes-group-version-kind"] == kind.gvk().object()
                    && op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter()
                            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
                    })
            });
            assert!(found, "{} has no PATCH with fieldValidation", kind.kind);
            // And explain finds its schema by the same extension.
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            assert!(
                schemas
                    .values()
                    .any(|s| s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|g| g.contains(&kind.gvk().object()))),
                "{} has no schema",
                kind.kind
            );
        }
        let core = api.v3("api/v1").unwrap();
        let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pods["get"]["operationId"], "readCoreV1NamespacedPod");
        assert!(core["paths"]["/api/v1/pods"]["get"].is_object());
        assert!(core["paths"]["/api/v1/nodes/{name}/status"]["patch"].is_object());
        let apps = api.v3("apis/apps/v1").unwrap();
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"]["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );
        assert!(apps["components"]["schemas"][SCALE].is_object());
        let rbac = api.v3("apis/rbac.authorization.k8s.io/v1").unwrap();
        assert!(
            rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"]
                == "patchRbacAuthorizationV1ClusterRole"
        );
    }

    #[test]
    fn v2_is_one_swagger_document_with_body_parameters() {
        let api = OpenApi::build(&kinds()).unwrap();
        let v2 = api.v2();
        assert_eq!(v2["swagger"], "2.0");
        let create = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(create["parameters"][0]["in"], "body");
        assert_eq!(
            create["parameters"][0]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert!(v2["definitions"]["io.k8s.api.core.v1.PodList"].is_object());
        assert!(v2["definitions"][format!("{META}.Status")].is_object());
        // No v3 references in a v2 document, and the reverse.
        assert!(!v2.to_string().contains("#/components/"));
        let v3 = api.v3("api/v1").unwrap();
        assert!(!v3.to_string().contains("#/definitions/"));
        // Every reference resolves.
        for (doc, prefix, defs) in [
            (&v2, "#/definitions/", &v2["definitions"]),
            (&v3, "#/components/schemas/", &v3["components"]["schemas"]),
        ] {
            let text = doc.to_string();
            for part in text.split("\"$ref\":\"").skip(1) {
                let target = part.split('"').next().unwrap();
                let name = target.strip_prefix(prefix).unwrap();
                assert!(defs.get(name).is_some(), "{target} is not defined");
            }
        }
    }
}
