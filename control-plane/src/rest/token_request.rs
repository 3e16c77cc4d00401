//! `serviceaccounts/token` over REST (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`
//! with an `authentication.k8s.io/v1` TokenRequest: what `kubectl create token` sends, in
//! protobuf): the same [`TokenService`] as the gRPC `ServiceAccountTokenApi`, so the signer,
//! the lifetimes (an hour by default, at least 10 minutes, at most 48 hours), the bound pod and
//! authorization (`create` on `serviceaccounts/token`) are one. Answers 201 with the
//! TokenRequest, its `status.token` and `status.expirationTimestamp` filled.
//!
//! Must not: sign or check tokens (the service does), or store anything.

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::v1::{BoundObjectReference, ServiceAccount, TokenRequest, TokenRequestSpec};
use skiff_api::validation::MIN_TOKEN_EXPIRATION_SECONDS;

use super::status::{RestError, json_response};
use super::{Context, Request, Response, Subresource, discovery};
use crate::server::limits::object_ref;
use crate::server::tokens::{MAX_TOKEN_EXPIRATION_SECONDS, TokenService};

/// Registers `serviceaccounts/token`.
pub fn register(routes: &mut super::Routes, context: &Context) {
    let service = TokenService {
        tokens: context.tokens.clone(),
        authz: context.authz.clone(),
    };
    routes.subresource(
        "",
        "v1",
        "serviceaccounts",
        "token",
        Arc::new(TokenRoute(service)),
    );
}

struct TokenRoute(TokenService);

fn invalid(name: &str, field: &str, message: String) -> RestError {
    RestError::new(
        422,
        "Invalid",
        format!("TokenRequest.authentication.k8s.io {name:?} is invalid: {field}: {message}"),
    )
    .with_details(json!({
        "name": name,
        "group": "authentication.k8s.io",
        "kind": "TokenRequest",
        "causes": [{ "reason": "FieldValueInvalid", "message": message, "field": field }],
    }))
}

/// The spec of a TokenRequest body (JSON, or what [`super::protobuf`] made of protobuf);
/// `name` is the ServiceAccount's, for errors. A field skiff does not know is refused.
pub fn decode(body: &[u8], name: &str) -> Result<TokenRequestSpec, RestError> {
    let value = super::codec::parse_body(body)?;
    let Value::Object(map) = value else {
        return Err(RestError::bad_request(
            "the body must be a TokenRequest object",
        ));
    };
    for (key, v) in &map {
        match (key.as_str(), v) {
            ("kind", Value::String(k)) if k == "TokenRequest" => {}
            ("apiVersion", Value::String(v)) if v == "authentication.k8s.io/v1" => {}
            ("metadata" | "status", _) => {}
            ("spec", Value::Object(_)) => {}
            (key, v) => {
                return Err(RestError::bad_request(format!(
                    "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: unexpected {key}: {v}"
                )));
            }
        }
    }
    let empty = serde_json::Map::new();
    let spec = map.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let mut out = TokenRequestSpec::default();
    for (key, v) in spec {
        match key.as_str() {
            "audiences" => {
                let list = v.as_array().filter(|l| l.iter().all(Value::is_string));
                let Some(list) = list.or_else(|| v.is_null().then_some(&EMPTY)) else {
                    return Err(invalid(
                        name,
                        "spec.audiences",
                        format!("Invalid value: {v}: must be a list of strings"),
                    ));
                };
                out.audiences = list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
            }
            "expirationSeconds" if v.is_null() => {}
            "expirationSeconds" => {
                let Some(seconds) = v.as_i64() else {
                    return Err(invalid(
                        name,
                        "spec.expirationSeconds",
                        format!("Invalid value: {v}: must be an integer"),
                    ));
                };
                if seconds < i64::from(MIN_TOKEN_EXPIRATION_SECONDS) {
                    return Err(invalid(
                        name,
                        "spec.expirationSeconds",
                        format!(
                            "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                        ),
                    ));
                }
                if seconds > 1 << 32 {
                    return Err(invalid(
                        name,
                        "spec.expirationSeconds",
                        format!(
                            "Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"
                        ),
                    ));
                }
                // Longer than the server grants: cut to its longest, as the service does.
                let seconds = seconds.min(i64::from(MAX_TOKEN_EXPIRATION_SECONDS));
                out.expiration_seconds = i32::try_from(seconds).ok();
            }
            "boundObjectRef" if v.is_null() => {}
            "boundObjectRef" => {
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                out.bound_object_ref = Some(BoundObjectReference {
                    kind: s("kind"),
                    api_version: s("apiVersion"),
                    name: s("name"),
                    uid: s("uid"),
                });
            }
            other => {
                return Err(RestError::bad_request(format!(
                    "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: strict decoding error: unknown field \"spec.{other}\""
                )));
            }
        }
    }
    Ok(out)
}

static EMPTY: Vec<Value> = Vec::new();

/// Kubernetes' JSON of an issued TokenRequest.
fn encode(namespace: &str, name: &str, issued: &TokenRequest) -> Value {
    let spec = issued.spec.clone().unwrap_or_default();
    let status = issued.status.clone().unwrap_or_default();
    let expires = status
        .expiration_timestamp
        .map(|t| skiff_api::join::rfc3339(t.seconds))
        .unwrap_or_default();
    let bound = spec.bound_object_ref.map(
        |b| json!({ "kind": b.kind, "apiVersion": b.api_version, "name": b.name, "uid": b.uid }),
    );
    json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": skiff_api::join::rfc3339(skiff_api::time::now().seconds),
        },
        "spec": {
            "audiences": spec.audiences,
            "expirationSeconds": spec.expiration_seconds,
            "boundObjectRef": bound,
        },
        "status": { "token": status.token, "expirationTimestamp": expires },
    })
}

impl TokenRoute {
    async fn create(&self, req: &mut Request) -> Result<Value, RestError> {
        if req.http.method() != http::Method::POST {
            return Err(RestError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: serviceaccounts/token takes POST, not {}",
                req.http.method()
            )));
        }
        let (namespace, name) = (req.target.namespace.clone(), req.target.name.clone());
        let body = req.body().await?;
        let spec = decode(&body, &name)?;
        let request = TokenRequest {
            spec: Some(spec),
            ..Default::default()
        };
        let issued = self
            .0
            .issue(&req.who, &namespace, &name, request)
            .map_err(|status| {
                let mut e = RestError::from_grpc(&status);
                if e.code == 403 {
                    e.message = format!("serviceaccounts {name:?} is forbidden: {}", e.message);
                    e = e.with_details(
                        json!({ "name": name, "group": "", "kind": "serviceaccounts" }),
                    );
                }
                e
            })?;
        Ok(encode(&namespace, &name, &issued))
    }
}

#[async_trait::async_trait]
impl Subresource for TokenRoute {
    async fn serve(&self, mut req: Request) -> Response {
        let result = self.create(&mut req).await;
        let object =
            object_ref::<ServiceAccount>(&req.target.namespace, &req.target.name, "token", false);
        let audited = result.as_ref().map(|_| ()).map_err(RestError::to_grpc);
        req.call.done(&req.who, "create", object, &audited);
        match result {
            Ok(v) => json_response(201, &v),
            Err(e) => e.into_response(),
        }
    }

    fn discovery(&self) -> discovery::SubresourceDiscovery {
        discovery::SubresourceDiscovery {
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kubectls_token_request_decodes() {
        let body = br#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":["vault"],"expirationSeconds":600,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}}"#;
        let spec = decode(body, "web").unwrap();
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.expiration_seconds, Some(600));
        assert_eq!(spec.bound_object_ref, None);
        // No lifetime: the service's default applies.
        let spec = decode(br#"{"spec":{"audiences":null}}"#, "web").unwrap();
        assert_eq!(spec.expiration_seconds, None);
        // Too short: Kubernetes' 422 naming the field.
        let e = decode(br#"{"spec":{"expirationSeconds":60}}"#, "web").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"web\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        // Longer than 48 hours: cut.
        let spec = decode(br#"{"spec":{"expirationSeconds":900000}}"#, "web").unwrap();
        assert_eq!(spec.expiration_seconds, Some(MAX_TOKEN_EXPIRATION_SECONDS));
        // Unknown fields are refused, never dropped.
        assert_eq!(
            decode(br#"{"spec":{"color":"red"}}"#, "web")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(decode(br#"{"kind":"Pod"}"#, "web").unwrap_err().code, 400);
        let bound = decode(
            br#"{"spec":{"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"web-1","uid":"u"}}}"#,
            "web",
        )
        .unwrap();
        assert_eq!(bound.bound_object_ref.unwrap().name, "web-1");
    }

    /// What kubectl 1.32 sent for `kubectl create token bot --duration 10m --audience vault
    /// --bound-object-kind Secret --bound-object-name nope` (protobuf, captured with `-v=9`).
    #[test]
    fn kubectls_protobuf_token_request_decodes() {
        let path = format!(
            "{}/src/rest/protobuf/kubectl-1.32/create-token.pb",
            env!("CARGO_MANIFEST_DIR")
        );
        let spec = decode(&std::fs::read(&path).unwrap(), "bot").unwrap();
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.expiration_seconds, Some(600));
        let bound = spec.bound_object_ref.unwrap();
        assert_eq!(
            (
                bound.kind.as_str(),
                bound.api_version.as_str(),
                bound.name.as_str()
            ),
            ("Secret", "v1", "nope")
        );
    }
}
