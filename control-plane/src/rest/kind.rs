//! One kind over REST: the [`KindApi`] trait object the router holds per (group, version,
//! resource), and [`KindRoutes<K>`], its implementation over the kind's
//! [`Handler<K>`](crate::server::handler::Handler), the one the gRPC service calls.
//!
//! get, list, watch, create, update (PUT), patch, delete, deletecollection, the `status`
//! subresource (the object, written with `update_status`) and `scale` (autoscaling/v1 Scale over
//! `spec.replicas`, for kinds that have it). Each call is audited as the gRPC ones are.
//!
//! Must not: validate objects, touch the store, or authorize on its own: the handler does.

use serde_json::{Value, json};
use skiff_api::ResourceExt;
use skiff_api::kinds::KindInfo;
use skiff_api::printers::Printer;
use skiff_api::v1::{DeleteRequest, ListRequest};

use super::codec::{self, FieldValidation};
use super::status::{RestError, json_response};
use super::{Request, Response, group_version};
use crate::auth::{Chain, Verb};
use crate::registry::{Strategy, warnings};
use crate::server::handler::Handler;
use crate::server::limits::object_ref;
use crate::store::Store;

/// The REST verbs of one kind. Each method answers a routed, authenticated request.
#[async_trait::async_trait]
pub trait KindApi: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    /// Whether the kind has a `scale` subresource (`spec.replicas`).
    fn has_scale(&self) -> bool;
    /// GET of one object (or its `status` or `scale`).
    async fn get(&self, req: Request) -> Result<Response, RestError>;
    /// GET of a collection.
    async fn list(&self, req: Request) -> Result<Response, RestError>;
    /// GET of a collection with `watch=1`.
    async fn watch(&self, req: Request) -> Result<Response, RestError>;
    /// POST to a collection.
    async fn create(&self, req: Request) -> Result<Response, RestError>;
    /// PUT of one object (or its `status` or `scale`).
    async fn update(&self, req: Request) -> Result<Response, RestError>;
    /// PATCH of one object (or its `status` or `scale`).
    async fn patch(&self, req: Request) -> Result<Response, RestError>;
    /// DELETE of one object.
    async fn delete(&self, req: Request) -> Result<Response, RestError>;
    /// DELETE of a collection.
    async fn delete_collection(&self, req: Request) -> Result<Response, RestError>;
}

/// [`KindApi`] over `Handler<K>`.
pub struct KindRoutes<K> {
    info: &'static KindInfo,
    handler: Handler<K>,
}

impl<K: Strategy + Printer> KindRoutes<K> {
    pub fn new(info: &'static KindInfo, store: std::sync::Arc<dyn Store>, authz: Chain) -> Self {
        Self {
            info,
            handler: Handler::with_chain(store, authz),
        }
    }

    fn group(&self) -> &'static str {
        group_version(self.info).0
    }

    fn error(&self, e: crate::error::ApiError, name: &str) -> RestError {
        RestError::from_api(e, self.group(), K::KIND, name)
    }

    /// Audits a finished call and turns its error into a REST one.
    fn audited<T>(
        &self,
        req: &Request,
        verb: &str,
        name: &str,
        many: bool,
        result: Result<T, crate::error::ApiError>,
    ) -> Result<T, RestError> {
        let result = result.map_err(|e| self.error(e, name));
        let object = object_ref::<K>(&req.target.namespace, name, &req.target.subresource, many);
        req.call.done(
            &req.who,
            verb,
            object,
            &result.as_ref().map(|_| ()).map_err(RestError::to_grpc),
        );
        result
    }

    fn decode(&self, req: &Request, body: &[u8]) -> Result<(K, Vec<String>), RestError> {
        let validation = FieldValidation::parse(req.query.get("fieldValidation"))?;
        reject_dry_run(req)?;
        let value = codec::parse_body(body)?;
        codec::from_value::<K>(value, &req.target.namespace, validation)
    }

    async fn current(&self, req: &Request) -> Result<K, RestError> {
        let got = self
            .handler
            .get(&req.who, &req.target.namespace, &req.target.name)
            .await;
        self.audited(req, "get", &req.target.name, false, got)
    }

    /// Writes `obj` as the request's verb: an update of the object, of its status, or of its
    /// scale (`spec.replicas`, through an update of the object).
    async fn write(
        &self,
        req: &Request,
        verb: &str,
        obj: K,
    ) -> Result<(K, Vec<String>), RestError> {
        if obj.name() != req.target.name {
            return Err(RestError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                obj.name(),
                req.target.name
            )));
        }
        let as_verb = if verb == "patch" {
            Verb::Patch
        } else {
            Verb::Update
        };
        let (written, warned) = warnings::collect(self.handler.update_as(
            &req.who,
            obj,
            as_verb,
            &req.target.subresource,
        ))
        .await;
        let written = self.audited(req, verb, &req.target.name, false, written)?;
        Ok((written, warned))
    }

    /// The object as this request's subresource shows it (the object, or its Scale).
    fn shown(&self, req: &Request, obj: &K) -> Result<Value, RestError> {
        match req.target.subresource.as_str() {
            "" | "status" => Ok(codec::to_value(obj)),
            "scale" if self.has_scale() => Ok(scale_of(&codec::to_value(obj))),
            other => Err(RestError::not_found(format!(
                "the server could not find the requested resource ({}/{other})",
                K::PLURAL
            ))),
        }
    }

    fn check_subresource(&self, req: &Request) -> Result<(), RestError> {
        match req.target.subresource.as_str() {
            "" => Ok(()),
            "status" if K::HAS_STATUS => Ok(()),
            "scale" if self.has_scale() => Ok(()),
            other => Err(RestError::not_found(format!(
                "the server could not find the requested resource ({}/{other})",
                K::PLURAL
            ))),
        }
    }

    /// An update from a whole new object (PUT) or from the patched current one (PATCH, where
    /// `patched` holds the JSON to write). For `scale`, the JSON is a Scale whose
    /// `spec.replicas` goes into the object.
    fn object_from(
        &self,
        req: &Request,
        current: Option<&K>,
        value: Value,
    ) -> Result<(K, Vec<String>), RestError> {
        let validation = FieldValidation::parse(req.query.get("fieldValidation"))?;
        if req.target.subresource == "scale" {
            let replicas = value
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let Some(current) = current else {
                return Err(RestError::internal("scale without the current object"));
            };
            if let Some(rv) = value
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && !rv.is_empty()
                && rv != current.meta().resource_version
            {
                return Err(self.error(
                    crate::error::ApiError::Conflict {
                        plural: K::PLURAL,
                        name: req.target.name.clone(),
                    },
                    &req.target.name,
                ));
            }
            let mut obj = codec::to_value(current);
            obj["spec"]["replicas"] = json!(replicas);
            return codec::from_value::<K>(obj, &req.target.namespace, FieldValidation::Strict);
        }
        codec::from_value::<K>(value, &req.target.namespace, validation)
    }
}

/// `dryRun` is later work: refused rather than applied for real.
fn reject_dry_run(req: &Request) -> Result<(), RestError> {
    if req.query.has("dryRun") {
        return Err(RestError::bad_request(
            "dryRun is not supported by skiff yet (docs/kubernetes-api.md); send the request without it",
        ));
    }
    Ok(())
}

/// An autoscaling/v1 Scale of an object with `spec.replicas` (JSON of the object).
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector")
        .map(selector_text)
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0)) },
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A LabelSelector's JSON as selector text (`app=web,tier in (a,b)`).
fn selector_text(selector: &Value) -> String {
    let mut terms = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            terms.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or("") {
                "In" => terms.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => terms.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => terms.push(key.to_string()),
                "DoesNotExist" => terms.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    terms.join(",")
}

/// A response with the object and the registry's warnings as `Warning` headers.
pub fn object_response(code: u16, value: &Value, warned: &[String]) -> Response {
    let mut response = json_response(code, value);
    for w in warned {
        if let Ok(v) = http::HeaderValue::from_str(&warning_header(w)) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// A `Warning` header's value (RFC 7234: `299 - "text"`, quotes and backslashes escaped, as
/// Kubernetes sends them; other characters outside printable ASCII written `\u{..}`).
pub fn warning_header(text: &str) -> String {
    let mut out = String::from("299 - \"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => out.push_str(&c.escape_unicode().to_string()),
        }
    }
    out.push('"');
    out
}

#[async_trait::async_trait]
impl<K: Strategy + Printer> KindApi for KindRoutes<K> {
    fn info(&self) -> &'static KindInfo {
        self.info
    }

    fn has_scale(&self) -> bool {
        matches!(K::KIND, "Deployment" | "ReplicaSet" | "StatefulSet")
    }

    async fn get(&self, req: Request) -> Result<Response, RestError> {
        self.check_subresource(&req)?;
        let obj = self.current(&req).await?;
        let shown = self.shown(&req, &obj)?;
        if req.target.subresource.is_empty() && super::table::wants_table(&req) {
            let table = super::table::table::<K>(&req, std::slice::from_ref(&obj), "", "")?;
            return Ok(json_response(200, &table));
        }
        Ok(json_response(200, &shown))
    }

    async fn list(&self, req: Request) -> Result<Response, RestError> {
        let limit = req.query.int("limit")?.unwrap_or(0);
        let list = ListRequest {
            namespace: req.target.namespace.clone(),
            label_selector: req.query.get("labelSelector").to_string(),
            field_selector: req.query.get("fieldSelector").to_string(),
            limit: i32::try_from(limit.max(0)).unwrap_or(i32::MAX),
            r#continue: req.query.get("continue").to_string(),
            resource_version: req.query.get("resourceVersion").to_string(),
            resource_version_match: req.query.get("resourceVersionMatch").to_string(),
        };
        let listed = self.handler.list(&req.who, &list).await;
        let (items, meta) = self.audited(&req, "list", "", true, listed)?;
        if super::table::wants_table(&req) {
            let table =
                super::table::table::<K>(&req, &items, &meta.resource_version, &meta.r#continue)?;
            return Ok(json_response(200, &table));
        }
        let mut metadata = json!({ "resourceVersion": meta.resource_version });
        if !meta.r#continue.is_empty() {
            metadata["continue"] = json!(meta.r#continue);
        }
        let body = json!({
            "apiVersion": K::API_VERSION,
            "kind": format!("{}List", K::KIND),
            "metadata": metadata,
            "items": items.iter().map(codec::to_value).collect::<Vec<_>>(),
        });
        Ok(json_response(200, &body))
    }

    async fn watch(&self, req: Request) -> Result<Response, RestError> {
        super::watch::serve(&self.handler, req).await
    }

    async fn create(&self, mut req: Request) -> Result<Response, RestError> {
        if !req.target.subresource.is_empty() || !req.target.name.is_empty() {
            return Err(RestError::method_not_allowed(format!(
                "POST is not allowed on a named {} (create in the collection)",
                K::KIND
            )));
        }
        let body = req.body().await?;
        let (obj, mut warned) = self.decode(&req, &body)?;
        let name = obj.name().to_string();
        let (created, w) = warnings::collect(self.handler.create(&req.who, obj)).await;
        warned.extend(w);
        let name = created
            .as_ref()
            .map(|o| o.name().to_string())
            .unwrap_or(name);
        let created = self.audited(&req, "create", &name, false, created)?;
        Ok(object_response(201, &codec::to_value(&created), &warned))
    }

    async fn update(&self, mut req: Request) -> Result<Response, RestError> {
        self.check_subresource(&req)?;
        reject_dry_run(&req)?;
        let body = req.body().await?;
        let value = codec::parse_body(&body)?;
        let current = if req.target.subresource == "scale" {
            Some(self.current(&req).await?)
        } else {
            None
        };
        let (obj, mut warned) = self.object_from(&req, current.as_ref(), value)?;
        let (written, w) = self.write(&req, "update", obj).await?;
        warned.extend(w);
        Ok(object_response(200, &self.shown(&req, &written)?, &warned))
    }

    async fn patch(&self, mut req: Request) -> Result<Response, RestError> {
        self.check_subresource(&req)?;
        reject_dry_run(&req)?;
        let content_type = req.header("content-type").to_string();
        let kind = super::patch::PatchKind::of(&content_type)?;
        let body = req.body().await?;
        // Without a resourceVersion in the patch, a conflict with a concurrent write is retried
        // on the new version, as Kubernetes does.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.current(&req).await?;
            let shown = self.shown(&req, &current)?;
            let patched = super::patch::apply(kind, K::KIND, &shown, &body)?;
            let pinned = patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|rv| rv != current.meta().resource_version);
            let (obj, mut warned) = self.object_from(&req, Some(&current), patched)?;
            match self.write(&req, "patch", obj).await {
                Ok((written, w)) => {
                    warned.extend(w);
                    return Ok(object_response(200, &self.shown(&req, &written)?, &warned));
                }
                Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned && attempts < 5 => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn delete(&self, mut req: Request) -> Result<Response, RestError> {
        if !req.target.subresource.is_empty() {
            return Err(RestError::method_not_allowed(format!(
                "DELETE is not allowed on {}/{}",
                K::PLURAL,
                req.target.subresource
            )));
        }
        reject_dry_run(&req)?;
        let body = req.body().await?;
        let options = DeleteOptions::read(&req, &body)?;
        let mut delete = DeleteRequest {
            namespace: req.target.namespace.clone(),
            name: req.target.name.clone(),
            resource_version: options.resource_version.clone(),
            propagation_policy: options.propagation_policy.clone(),
            grace_period_seconds: options.grace_period_seconds,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            // A uid precondition is checked on a read, and the delete made conditional on the
            // version read, so that nothing slips in between.
            if let Some(uid) = &options.uid {
                let current = self.current(&req).await?;
                if &current.meta().uid != uid {
                    return Err(RestError::new(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            current.meta().uid
                        ),
                    ));
                }
                if options.resource_version.is_empty() {
                    delete.resource_version = current.meta().resource_version.clone();
                }
            }
            let deleted = self.handler.delete(&req.who, &delete).await;
            match self.audited(&req, "delete", &req.target.name, false, deleted) {
                Ok(obj) => return Ok(json_response(200, &codec::to_value(&obj))),
                Err(e)
                    if e.code == 409
                        && options.uid.is_some()
                        && options.resource_version.is_empty()
                        && attempts < 5 =>
                {
                    continue;
                }
                Err(e) if e.code == 409 && !options.resource_version.is_empty() => {
                    return Err(RestError::new(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta differs",
                            options.resource_version
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn delete_collection(&self, mut req: Request) -> Result<Response, RestError> {
        reject_dry_run(&req)?;
        let body = req.body().await?;
        let options = DeleteOptions::read(&req, &body)?;
        let list = ListRequest {
            namespace: req.target.namespace.clone(),
            label_selector: req.query.get("labelSelector").to_string(),
            field_selector: req.query.get("fieldSelector").to_string(),
            ..Default::default()
        };
        let listed = self.handler.list(&req.who, &list).await;
        let (items, _) = self.audited(&req, "list", "", true, listed)?;
        let mut deleted = Vec::new();
        for item in items {
            let delete = DeleteRequest {
                namespace: item.namespace().to_string(),
                name: item.name().to_string(),
                resource_version: String::new(),
                propagation_policy: options.propagation_policy.clone(),
                grace_period_seconds: options.grace_period_seconds,
            };
            let result = self.handler.delete(&req.who, &delete).await;
            match self.audited(&req, "delete", item.name(), false, result) {
                Ok(obj) => deleted.push(codec::to_value(&obj)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let body = json!({
            "apiVersion": K::API_VERSION,
            "kind": format!("{}List", K::KIND),
            "metadata": {},
            "items": deleted,
        });
        Ok(json_response(200, &body))
    }
}

/// `metav1.DeleteOptions`, from the body and the query (the query wins, as in Kubernetes).
#[derive(Debug, Default)]
pub struct DeleteOptions {
    pub propagation_policy: String,
    pub grace_period_seconds: Option<i32>,
    pub uid: Option<String>,
    pub resource_version: String,
}

impl DeleteOptions {
    pub fn read(req: &Request, body: &[u8]) -> Result<Self, RestError> {
        let mut options = Self::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v = codec::parse_body(body)?;
            if let Some(kind) = v.get("kind").and_then(Value::as_str)
                && kind != "DeleteOptions"
            {
                return Err(RestError::bad_request(format!(
                    "the body of a delete must be DeleteOptions, not {kind}"
                )));
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                options.propagation_policy = p.to_string();
            }
            if let Some(o) = v.get("orphanDependents").and_then(Value::as_bool) {
                options.propagation_policy = if o { "Orphan" } else { "Background" }.into();
            }
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                options.grace_period_seconds = Some(clamp(g));
            }
            if let Some(uid) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
                options.uid = Some(uid.to_string());
            }
            if let Some(rv) = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
            {
                options.resource_version = rv.to_string();
            }
            if v.get("dryRun")
                .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()))
            {
                return Err(RestError::bad_request(
                    "dryRun is not supported by skiff yet (docs/kubernetes-api.md)",
                ));
            }
        }
        if req.query.has("propagationPolicy") {
            options.propagation_policy = req.query.get("propagationPolicy").to_string();
        }
        if let Some(g) = req.query.int("gracePeriodSeconds")? {
            options.grace_period_seconds = Some(clamp(g));
        }
        if req.query.has("orphanDependents") {
            options.propagation_policy = if req.query.flag("orphanDependents") {
                "Orphan"
            } else {
                "Background"
            }
            .into();
        }
        Ok(options)
    }
}

/// A grace period as the API's int32 (negative means "now", as 0).
fn clamp(seconds: i64) -> i32 {
    i32::try_from(seconds.max(0)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_quoted_strings() {
        assert_eq!(
            warning_header("unknown field \"spec.x\""),
            "299 - \"unknown field \\\"spec.x\\\"\""
        );
        assert_eq!(warning_header("a\\b"), "299 - \"a\\\\b\"");
    }

    #[test]
    fn a_scale_shows_replicas_and_the_selector_text() {
        let d = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}
        });
        let s = scale_of(&d);
        assert_eq!(s["kind"], "Scale");
        assert_eq!(s["apiVersion"], "autoscaling/v1");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
