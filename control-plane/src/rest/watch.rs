//! Watches over REST: `?watch=1` on a collection (or `fieldSelector=metadata.name=x` for one
//! object) streams `{"type": ..., "object": ...}` lines from the kind's handler, as Kubernetes'
//! watch JSON does: `resourceVersion` unset or `0` starts with an ADDED event per object, any
//! other version resumes after it (`410 Expired` as an ERROR event when it is too old),
//! `allowWatchBookmarks` adds BOOKMARK events, `timeoutSeconds` ends the stream.
//!
//! Plain (non-Table) event lines are encoded once per event for all watchers (`lines`).
//!
//! Must not: read the store (the handler's watch does).

mod lines;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde_json::{Value, json};
use skiff_api::ResourceExt;
use skiff_api::v1::WatchRequest;
use tokio::sync::mpsc;

use super::status::RestError;
use super::{Body, Request, Response, codec};
use crate::registry::Strategy;
use crate::server::handler::Handler;
use crate::server::limits::object_ref;
use skiff_api::printers::Printer;

/// How often a watch that asked for bookmarks gets one (Kubernetes' cacher: about once a
/// minute; clients take any interval).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// One line of a watch stream.
fn line(kind: &str, object: Value) -> Bytes {
    let mut text =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// Serves a watch of `K` through `handler`.
pub async fn serve<K: Strategy + Printer>(
    handler: &Handler<K>,
    req: Request,
) -> Result<Response, RestError> {
    let rv = req.query.get("resourceVersion");
    let resource_version = if rv == "0" {
        String::new()
    } else {
        rv.to_string()
    };
    let watch = WatchRequest {
        namespace: req.target.namespace.clone(),
        label_selector: req.query.get("labelSelector").to_string(),
        field_selector: req.query.get("fieldSelector").to_string(),
        resource_version: resource_version.clone(),
    };
    let timeout = req
        .query
        .int("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.unsigned_abs()));
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let table = super::table::wants_table(&req);
    let object = object_ref::<K>(&req.target.namespace, "", "", true);
    let permit = req
        .call
        .watch(&req.who)
        .map_err(|s| RestError::from_grpc(&s))?;
    let started = handler.watch(&req.who, &watch).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(64);
    let mut events = match started {
        Ok(events) => {
            req.call
                .done(&req.who, "watch", object, &Ok::<(), tonic::Status>(()));
            events
        }
        Err(crate::error::ApiError::Expired(v)) => {
            // As Kubernetes: the watch starts, and its one event is a 410 Status.
            let e = RestError::from_api(crate::error::ApiError::Expired(v), "", K::KIND, "");
            req.call
                .done(&req.who, "watch", object, &Err::<(), _>(e.to_grpc()));
            let _ = tx.try_send(Ok(Frame::data(line("ERROR", e.to_status()))));
            drop(tx);
            return Ok(stream_response(rx));
        }
        Err(e) => {
            let e = RestError::from_api(e, super::group_of::<K>(), K::KIND, "");
            req.call
                .done(&req.who, "watch", object, &Err::<(), _>(e.to_grpc()));
            return Err(e);
        }
    };
    let mut last_version: u64 = resource_version.parse().unwrap_or(0);
    if last_version == 0 && bookmarks {
        // Bookmarks before the first event name the collection's version when the watch began.
        let list = skiff_api::v1::ListRequest {
            namespace: req.target.namespace.clone(),
            label_selector: watch.label_selector.clone(),
            field_selector: watch.field_selector.clone(),
            limit: 1,
            ..Default::default()
        };
        if let Ok((_, meta)) = handler.list(&req.who, &list).await {
            last_version = meta.resource_version.parse().unwrap_or(0);
        }
    }
    let mut table_req = if table {
        Some(TableOptions::of(&req)?)
    } else {
        None
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut last_version = last_version;
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
        tick.tick().await;
        loop {
            let out = tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if last_version == 0 {
                        continue;
                    }
                    let object = json!({
                        "apiVersion": K::API_VERSION,
                        "kind": K::KIND,
                        "metadata": { "resourceVersion": last_version.to_string() },
                    });
                    line("BOOKMARK", object)
                }
                event = events.recv() => match event {
                    None => return,
                    Some(Ok((kind, obj))) => {
                        last_version = last_version.max(obj.revision());
                        match &mut table_req {
                            Some(t) => line(kind, t.row_table(&obj)),
                            // Encoded once for all watchers of this event.
                            None => lines::line(kind, &obj, || line(kind, codec::to_value(&obj))),
                        }
                    }
                    Some(Err(e)) => {
                        let e = RestError::from_api(e, super::group_of::<K>(), K::KIND, "");
                        let _ = tx.send(Ok(Frame::data(line("ERROR", e.to_status())))).await;
                        return;
                    }
                },
            };
            if tx.send(Ok(Frame::data(out))).await.is_err() {
                return;
            }
        }
    });
    Ok(stream_response(rx))
}

/// What a Table watch needs of its request, kept past it.
struct TableOptions {
    include_object: String,
    /// The column definitions go with the first event only, as Kubernetes sends them.
    first: bool,
}

impl TableOptions {
    fn of(req: &Request) -> Result<Self, RestError> {
        let include_object = req.query.get("includeObject").to_string();
        skiff_api::printers::IncludeObject::parse(&include_object)
            .map_err(RestError::bad_request)?;
        Ok(Self {
            include_object,
            first: true,
        })
    }

    fn row_table<K: Printer>(&mut self, obj: &K) -> Value {
        let mut table = super::table::table_with::<K>(
            &self.include_object,
            std::slice::from_ref(obj),
            &obj.meta().resource_version,
            "",
        )
        .unwrap_or(Value::Null);
        if !std::mem::take(&mut self.first)
            && let Some(t) = table.as_object_mut()
        {
            t.remove("columnDefinitions");
        }
        table
    }
}

fn stream_response(rx: mpsc::Receiver<Result<Frame<Bytes>, std::convert::Infallible>>) -> Response {
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::new(body))
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}
