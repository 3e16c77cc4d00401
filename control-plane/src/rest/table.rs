//! `metav1.Table` responses, for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what
//! `kubectl get` asks for, so that it prints the server's columns). The columns are the kind's
//! printer's ([`skiff_api::printers`], the ones `skiff get` prints). Each row carries the object
//! as `includeObject` says: `Metadata` (the default: a PartialObjectMetadata), `Object`, `None`.
//!
//! Must not: decide columns of built-in kinds itself (the printers do).

use serde_json::Value;
use skiff_api::printers::{self, IncludeObject, Printer, TableOptions};

use super::{Request, RestError};

/// Whether the request asks for a Table (its Accept header names `as=Table`).
pub fn wants_table(req: &Request) -> bool {
    req.header("accept")
        .split(',')
        .any(|t| t.split(';').any(|p| p.trim() == "as=Table"))
}

/// The Table of `items` for this request (`includeObject`: `None`, `Metadata` (the default),
/// `Object`).
pub fn table<K: Printer>(
    req: &Request,
    items: &[K],
    resource_version: &str,
    continue_token: &str,
) -> Result<Value, RestError> {
    table_with(
        req.query.get("includeObject"),
        items,
        resource_version,
        continue_token,
    )
}

/// The Table of `items` with `include_object` (`None`, `Metadata`, `Object`), in the kind's
/// printer's columns ([`skiff_api::printers`], shared with `skiff get`).
pub fn table_with<K: Printer>(
    include_object: &str,
    items: &[K],
    resource_version: &str,
    continue_token: &str,
) -> Result<Value, RestError> {
    let include_object = IncludeObject::parse(include_object).map_err(RestError::bad_request)?;
    Ok(printers::table(
        items,
        &TableOptions {
            include_object,
            no_columns: false,
            resource_version: resource_version.to_string(),
            continue_token: continue_token.to_string(),
        },
    ))
}
