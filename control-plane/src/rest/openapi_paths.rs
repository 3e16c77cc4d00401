//! The paths and operations of the OpenAPI documents ([`super::openapi`]) and the definitions
//! that are not protos (Status, DeleteOptions, Patch, WatchEvent, a kind's List, autoscaling/v1
//! Scale): per kind its collection, its objects, and `status` and `scale` where it has them, each
//! operation tagged with `x-kubernetes-action` and `x-kubernetes-group-version-kind`, every write
//! taking `fieldValidation`.
//!
//! Must not: describe a verb the router does not serve (no watch paths: `?watch=1` on a list).

use serde_json::{Map, Value, json};

use super::openapi::{META, SCALE, ServedKind};
use super::openapi_schema::{Flavor, Gvk};

pub(super) fn reference(flavor: Flavor, name: &str) -> Value {
    json!({"$ref": flavor.reference(name)})
}

/// Status, DeleteOptions, Patch and WatchEvent, written by hand (they are not protos here).
pub(super) fn meta_definitions(flavor: Flavor) -> Vec<(String, Value)> {
    let string = json!({"type": "string"});
    let list_meta = reference(flavor, &format!("{META}.ListMeta"));
    vec![
        (
            format!("{META}.Status"),
            json!({
                "description": "The result of a call that returns no object (or failed).",
                "type": "object",
                "properties": {
                    "apiVersion": string, "kind": string, "metadata": list_meta,
                    "status": {"description": "Success or Failure.", "type": "string"},
                    "message": {"description": "What happened, for people.", "type": "string"},
                    "reason": {"description": "Why it failed, for programs (NotFound, Conflict, Invalid, ...).", "type": "string"},
                    "details": reference(flavor, &format!("{META}.StatusDetails")),
                    "code": {"description": "The HTTP status code.", "type": "integer", "format": "int32"},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}],
            }),
        ),
        (
            format!("{META}.StatusDetails"),
            json!({
                "type": "object",
                "properties": {
                    "name": string, "group": string, "kind": string, "uid": string,
                    "causes": {"type": "array", "items": reference(flavor, &format!("{META}.StatusCause"))},
                    "retryAfterSeconds": {"type": "integer", "format": "int32"},
                },
            }),
        ),
        (
            format!("{META}.StatusCause"),
            json!({
                "type": "object",
                "properties": {
                    "reason": string,
                    "message": string,
                    "field": {"description": "The path of the field at fault (spec.containers[0].image).", "type": "string"},
                },
            }),
        ),
        (
            format!("{META}.DeleteOptions"),
            json!({
                "description": "Options of a delete.",
                "type": "object",
                "properties": {
                    "apiVersion": string, "kind": string,
                    "gracePeriodSeconds": {"description": "Seconds a pod gets to stop; 0 deletes at once.", "type": "integer", "format": "int64"},
                    "propagationPolicy": {"description": "Orphan, Background or Foreground: what happens to the object's dependents.", "type": "string"},
                    "preconditions": reference(flavor, &format!("{META}.Preconditions")),
                    "dryRun": {"type": "array", "items": string},
                },
            }),
        ),
        (
            format!("{META}.Preconditions"),
            json!({
                "type": "object",
                "properties": {
                    "resourceVersion": {"description": "Delete only at this resourceVersion.", "type": "string"},
                    "uid": {"description": "Delete only the object with this uid.", "type": "string"},
                },
            }),
        ),
        (
            format!("{META}.Patch"),
            json!({"description": "A JSON patch, merge patch or strategic merge patch document.", "type": "object"}),
        ),
        (
            format!("{META}.WatchEvent"),
            json!({
                "type": "object",
                "properties": {
                    "type": {"description": "ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.", "type": "string"},
                    "object": {"description": "The object (a Status for ERROR).", "type": "object"},
                },
            }),
        ),
    ]
}

pub(super) fn list_definition(kind: &ServedKind, definition: &str, flavor: Flavor) -> Value {
    let list_kind = format!("{}List", kind.kind);
    json!({
        "description": format!("A list of {}.", kind.plural),
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"description": format!("The {}.", kind.plural), "type": "array", "items": reference(flavor, definition)},
            "metadata": reference(flavor, &format!("{META}.ListMeta")),
        },
        "x-kubernetes-group-version-kind": Gvk::new(kind.group, kind.version, &list_kind).extension(),
    })
}

pub(super) fn scale_definition(flavor: Flavor) -> Value {
    json!({
        "description": "The replicas of a scalable object (its scale subresource).",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": reference(flavor, &format!("{META}.ObjectMeta")),
            "spec": {"type": "object", "properties": {"replicas": {"description": "The desired replicas.", "type": "integer", "format": "int32"}}},
            "status": {"type": "object", "properties": {
                "replicas": {"description": "The observed replicas.", "type": "integer", "format": "int32"},
                "selector": {"description": "The label selector of the pods, as a string.", "type": "string"},
            }},
        },
        "x-kubernetes-group-version-kind": Gvk::new("autoscaling", "v1", "Scale").extension(),
    })
}

/// A query or path parameter.
fn parameter(flavor: Flavor, name: &str, place: &str, kind: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": place, "description": description});
    if place == "path" {
        p["required"] = true.into();
    }
    match flavor {
        Flavor::V2 => p["type"] = kind.into(),
        Flavor::V3 => p["schema"] = json!({"type": kind, "uniqueItems": true}),
    }
    p
}

fn query_parameters(flavor: Flavor, names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| {
            let (kind, description) = match *name {
                "dryRun" => ("string", "All: do everything but persist the change."),
                "fieldManager" => ("string", "The name of the actor making the change."),
                "fieldValidation" => (
                    "string",
                    "Ignore, Warn or Strict (skiff's default): what happens to unknown or duplicate fields.",
                ),
                "force" => ("boolean", "Server-side apply only (not served by skiff)."),
                "gracePeriodSeconds" => ("integer", "Seconds a pod gets to stop; 0 deletes at once."),
                "propagationPolicy" => ("string", "Orphan, Background or Foreground."),
                "labelSelector" => ("string", "Only objects whose labels match."),
                "fieldSelector" => ("string", "Only objects whose fields match."),
                "limit" => ("integer", "At most this many items; continue with `continue`."),
                "continue" => ("string", "The token of the previous page's metadata.continue."),
                "resourceVersion" => ("string", "The resourceVersion to list or watch from."),
                "watch" => ("boolean", "Stream changes instead of listing."),
                "allowWatchBookmarks" => ("boolean", "Send BOOKMARK events."),
                "timeoutSeconds" => ("integer", "End the list or watch after this many seconds."),
                _ => ("string", ""),
            };
            parameter(flavor, name, "query", kind, description)
        })
        .collect()
}

/// One operation; `body` is the request's schema (PATCH takes the patch types).
#[allow(clippy::too_many_arguments)]
fn operation(
    flavor: Flavor,
    action: &str,
    id: String,
    description: String,
    gvk: &Gvk,
    body: Option<&str>,
    response: &str,
    query: &[&str],
) -> Value {
    let mut op = json!({
        "description": description,
        "operationId": id,
        "parameters": query_parameters(flavor, query),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk.object(),
    });
    let body_types: Vec<&str> = if action == "patch" {
        vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ]
    } else {
        vec!["*/*"]
    };
    let produces = ["application/json", "application/yaml"];
    match flavor {
        Flavor::V2 => {
            op["consumes"] = json!(body_types);
            op["produces"] = json!(produces);
            op["responses"] = json!({
                "200": {"description": "OK", "schema": reference(flavor, response)},
                "401": {"description": "Unauthorized"},
            });
            if let Some(body) = body
                && let Some(params) = op["parameters"].as_array_mut()
            {
                params.insert(
                    0,
                    json!({"name": "body", "in": "body", "required": action != "delete", "schema": reference(flavor, body)}),
                );
            }
        }
        Flavor::V3 => {
            let content: Map<String, Value> = produces
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        json!({"schema": reference(flavor, response)}),
                    )
                })
                .collect();
            op["responses"] = json!({
                "200": {"description": "OK", "content": content},
                "401": {"description": "Unauthorized"},
            });
            if let Some(body) = body {
                let content: Map<String, Value> = body_types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": reference(flavor, body)})))
                    .collect();
                op["requestBody"] = json!({"content": content, "required": action != "delete"});
            }
        }
    }
    op
}

pub(super) fn kind_paths(
    paths: &mut Map<String, Value>,
    kind: &ServedKind,
    definition: &str,
    list: &str,
    flavor: Flavor,
) {
    let prefix = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    let scope = if kind.namespaced { "Namespaced" } else { "" };
    let collection = if kind.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural)
    } else {
        format!("{prefix}/{}", kind.plural)
    };
    let group = kind.operation_group();
    let gvk = kind.gvk();
    let k = kind.kind;
    let path_params = |with_name: bool| {
        let mut p = Vec::new();
        if with_name {
            p.push(parameter(
                flavor,
                "name",
                "path",
                "string",
                &format!("The name of the {k}."),
            ));
        }
        if kind.namespaced {
            p.push(parameter(
                flavor,
                "namespace",
                "path",
                "string",
                "The namespace of the objects.",
            ));
        }
        Value::Array(p)
    };
    let list_query = [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "watch",
        "allowWatchBookmarks",
        "timeoutSeconds",
    ];
    let write_query = ["dryRun", "fieldManager", "fieldValidation"];
    let patch_query = ["dryRun", "fieldManager", "fieldValidation", "force"];
    let delete_query = ["dryRun", "gracePeriodSeconds", "propagationPolicy"];
    let status = format!("{META}.Status");
    let patch = format!("{META}.Patch");
    let delete_options = format!("{META}.DeleteOptions");

    paths.insert(
        collection.clone(),
        json!({
            "parameters": path_params(false),
            "get": operation(flavor, "list", format!("list{group}{scope}{k}"), format!("list or watch objects of kind {k}"), &gvk, None, list, &list_query),
            "post": operation(flavor, "post", format!("create{group}{scope}{k}"), format!("create a {k}"), &gvk, Some(definition), definition, &write_query),
            "delete": operation(flavor, "deletecollection", format!("deletecollection{group}{scope}{k}"), format!("delete a collection of {k}"), &gvk, Some(&delete_options), &status, &["labelSelector", "fieldSelector", "gracePeriodSeconds", "propagationPolicy"]),
        }),
    );
    if kind.namespaced {
        paths.insert(
            format!("{prefix}/{}", kind.plural),
            json!({
                "get": operation(flavor, "list", format!("list{group}{k}ForAllNamespaces"), format!("list or watch objects of kind {k} in every namespace"), &gvk, None, list, &list_query),
            }),
        );
    }
    let item = format!("{collection}/{{name}}");
    paths.insert(
        item.clone(),
        json!({
            "parameters": path_params(true),
            "get": operation(flavor, "get", format!("read{group}{scope}{k}"), format!("read the specified {k}"), &gvk, None, definition, &[]),
            "put": operation(flavor, "put", format!("replace{group}{scope}{k}"), format!("replace the specified {k}"), &gvk, Some(definition), definition, &write_query),
            "patch": operation(flavor, "patch", format!("patch{group}{scope}{k}"), format!("partially update the specified {k}"), &gvk, Some(&patch), definition, &patch_query),
            "delete": operation(flavor, "delete", format!("delete{group}{scope}{k}"), format!("delete a {k}"), &gvk, Some(&delete_options), &status, &delete_query),
        }),
    );
    if kind.status {
        paths.insert(
            format!("{item}/status"),
            json!({
                "parameters": path_params(true),
                "get": operation(flavor, "get", format!("read{group}{scope}{k}Status"), format!("read status of the specified {k}"), &gvk, None, definition, &[]),
                "put": operation(flavor, "put", format!("replace{group}{scope}{k}Status"), format!("replace status of the specified {k}"), &gvk, Some(definition), definition, &write_query),
                "patch": operation(flavor, "patch", format!("patch{group}{scope}{k}Status"), format!("partially update status of the specified {k}"), &gvk, Some(&patch), definition, &patch_query),
            }),
        );
    }
    if kind.scale {
        let scale = Gvk::new("autoscaling", "v1", "Scale");
        paths.insert(
            format!("{item}/scale"),
            json!({
                "parameters": path_params(true),
                "get": operation(flavor, "get", format!("read{group}{scope}{k}Scale"), format!("read scale of the specified {k}"), &scale, None, SCALE, &[]),
                "put": operation(flavor, "put", format!("replace{group}{scope}{k}Scale"), format!("replace scale of the specified {k}"), &scale, Some(SCALE), SCALE, &write_query),
                "patch": operation(flavor, "patch", format!("patch{group}{scope}{k}Scale"), format!("partially update scale of the specified {k}"), &scale, Some(&patch), SCALE, &patch_query),
            }),
        );
    }
}
