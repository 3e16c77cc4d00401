//! `pods/eviction` over REST (`POST /api/v1/namespaces/NS/pods/NAME/eviction` with a policy/v1
//! Eviction, what `kubectl drain` sends): the same [`EvictionService`] as the gRPC
//! `PodEvictionApi`, so the rules (the pod's PodDisruptionBudget) and authorization (`create` on
//! `pods/eviction`) are one. Answers 201 with a `Success` Status, as Kubernetes; a budget that
//! allows no disruption is a 429 TooManyRequests with a `DisruptionBudget` cause.
//!
//! Must not: decide anything about the eviction (the registry does).

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::v1::{Eviction, Pod};

use super::status::{RestError, json_response, success};
use super::{Context, Request, Response, Subresource, discovery};
use crate::server::eviction::EvictionService;
use crate::server::limits::object_ref;

/// Registers `pods/eviction` (served as policy/v1 Eviction).
pub fn register(routes: &mut super::Routes, context: &Context) {
    let service = EvictionService::new(context.store.clone(), context.authz.clone());
    routes.subresource(
        "",
        "v1",
        "pods",
        "eviction",
        Arc::new(EvictionRoute(service)),
    );
}

struct EvictionRoute(EvictionService);

/// The Eviction of a request body: policy/v1 (or v1beta1, the same fields), its `kind` checked.
pub fn decode(body: &[u8]) -> Result<Eviction, RestError> {
    let mut value = super::codec::parse_body(body)?;
    let Value::Object(map) = &mut value else {
        return Err(RestError::bad_request(
            "the body must be an Eviction object",
        ));
    };
    match map.remove("kind") {
        None => {}
        Some(Value::String(k)) if k == "Eviction" => {}
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "expected an Eviction, got kind {other}"
            )));
        }
    }
    match map.remove("apiVersion") {
        None => {}
        Some(Value::String(v)) if v == "policy/v1" || v == "policy/v1beta1" => {}
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "Eviction: unsupported apiVersion {other} (policy/v1 is served)"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        RestError::bad_request(format!(
            "Eviction in version \"v1\" cannot be handled as a Eviction: {e}"
        ))
    })
}

impl EvictionRoute {
    async fn evict(&self, req: &mut Request) -> Result<Value, RestError> {
        if req.http.method() != http::Method::POST {
            return Err(RestError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: pods/eviction takes POST, not {}",
                req.http.method()
            )));
        }
        let body = req.body().await?;
        let eviction = decode(&body)?;
        let (namespace, name) = (req.target.namespace.clone(), req.target.name.clone());
        self.0
            .evict(&req.who, &namespace, &name, &eviction)
            .await
            .map_err(|e| RestError::from_api(e, "", "Pod", &name))?;
        Ok(success(json!({"name": name, "kind": "pods"})))
    }
}

#[async_trait::async_trait]
impl Subresource for EvictionRoute {
    async fn serve(&self, mut req: Request) -> Response {
        let result = self.evict(&mut req).await;
        let object = object_ref::<Pod>(&req.target.namespace, &req.target.name, "eviction", false);
        let audited = result.as_ref().map(|_| ()).map_err(RestError::to_grpc);
        req.call.done(&req.who, "create", object, &audited);
        match result {
            Ok(status) => json_response(201, &status),
            Err(e) => e.into_response(),
        }
    }

    fn discovery(&self) -> discovery::SubresourceDiscovery {
        discovery::SubresourceDiscovery {
            group: "policy",
            version: "v1",
            kind: "Eviction",
            verbs: &["create"],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kubectls_eviction_body_decodes() {
        let body = br#"{"kind":"Eviction","apiVersion":"policy/v1","metadata":{"name":"web-1","namespace":"default","creationTimestamp":null},"deleteOptions":{"gracePeriodSeconds":5,"dryRun":["All"]}}"#;
        let e = decode(body).unwrap();
        assert_eq!(e.metadata.as_ref().unwrap().name, "web-1");
        let options = e.delete_options.unwrap();
        assert_eq!(options.grace_period_seconds, Some(5));
        assert_eq!(options.dry_run, ["All"]);
        assert!(decode(br#"{"kind":"Pod","metadata":{"name":"x"}}"#).is_err());
        assert!(decode(br#"{"kind":"Eviction","metadata":{"name":"x"},"color":"red"}"#).is_err());
    }
}
