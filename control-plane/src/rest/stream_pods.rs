//! The pods' streaming subresources over REST, on the node tunnels the gRPC `skiff logs` and
//! `skiff exec` use ([`TunnelService`]): `pods/log` (plain text, streamed while following),
//! `pods/exec` and `pods/attach` (a WebSocket speaking [`super::stream_channel`]'s protocol).
//!
//! - `log`: `container`, `follow`, `previous`, `tailLines`, `sinceSeconds`, `sinceTime`,
//!   `timestamps`, `limitBytes`, as Kubernetes reads them.
//! - `exec`: `command` (repeated), `container`, `stdin`, `stdout`, `stderr`, `tty`. skiff's exec has
//!   no terminal: `tty` is accepted and the command runs without one (kubectl then sends
//!   resize messages, which are dropped).
//! - `attach`: the container's output from now on, until it stops. Its stdin is not offered
//!   (skiff starts containers with stdin closed), so `stdin=true` ends the session with a reason.
//! - Once a WebSocket is agreed, every failure (no such pod, not allowed, the container not
//!   running) is reported on the error channel rather than as an HTTP error: kubectl falls back to
//!   SPDY on any failed upgrade, and would print the SPDY refusal instead of the reason.
//! - SPDY (kubectl before 1.30) is refused with a 400 naming what is served; `portforward`
//!   (kubectl's SPDY streams, tunnelled in a WebSocket or not) with a 400 naming `skiff
//!   port-forward`.
//!
//! Must not: authorize beyond naming the verb (the tunnel service and the chain decide), or reach
//! a node other than through the tunnels.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use skiff_api::v1::{
    Pod, PodExecOutput, PodExecStart, PodLogChunk, PodLogRequest, pod_exec_output,
};
use tonic::Code;

use super::status::RestError;
use super::stream_channel::Protocol;
use super::stream_session::{self as session, Failure, Output, Streams};
use super::{Body, Context, Request, Response, Subresource};
use crate::auth::{Attributes, Verb};
use crate::server::limits::object_ref;

/// Registers `pods/log`, `pods/exec` and `pods/attach`.
pub fn register(routes: &mut super::Routes, context: &Context) {
    let pods = Arc::new(PodStreams {
        context: context.clone(),
    });
    routes.subresource("", "v1", "pods", "log", Arc::new(Log(pods.clone())));
    routes.subresource("", "v1", "pods", "exec", Arc::new(Exec(pods.clone())));
    routes.subresource("", "v1", "pods", "attach", Arc::new(Attach(pods.clone())));
    routes.subresource("", "v1", "pods", "portforward", Arc::new(PortForward(pods)));
}

struct PodStreams {
    context: Context,
}

struct Log(Arc<PodStreams>);
struct Exec(Arc<PodStreams>);
struct Attach(Arc<PodStreams>);
struct PortForward(Arc<PodStreams>);

/// A tunnel's refusal as Kubernetes words it: a container not running or not scheduled is the
/// client's 400 (as kubelet answers), a node not connected the server's 503.
fn tunnel_error(status: &tonic::Status) -> RestError {
    match status.code() {
        Code::FailedPrecondition => RestError::bad_request(status.message()),
        Code::Unavailable => RestError::new(503, "ServiceUnavailable", status.message()),
        _ => RestError::from_grpc(status),
    }
}

fn failure(e: &RestError) -> Failure {
    Failure {
        message: e.message.clone(),
        reason: e.reason,
        code: e.code,
    }
}

/// Every value of a repeated query parameter (`command=sh&command=-c`), in order.
fn all_values(req: &Request, name: &str) -> Vec<String> {
    form_urlencoded::parse(req.http.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// A boolean parameter that defaults to `default` when absent.
fn flag_or(req: &Request, name: &str, default: bool) -> bool {
    if req.query.has(name) {
        req.query.flag(name)
    } else {
        default
    }
}

/// The log request of a `pods/log` query, checked as Kubernetes' validation checks it.
fn log_request(req: &Request, now: time::OffsetDateTime) -> Result<PodLogRequest, RestError> {
    let q = &req.query;
    let tail_lines = match q.int("tailLines")? {
        Some(n) if n < 0 => {
            return Err(RestError::bad_request(format!(
                "tailLines: Invalid value: {n}: must be greater than or equal to 0"
            )));
        }
        Some(n) => Some(i32::try_from(n).unwrap_or(i32::MAX)),
        None => None,
    };
    let since_seconds = q.int("sinceSeconds")?;
    let since_time = q.get("sinceTime");
    let since = match (since_seconds, since_time.is_empty()) {
        (Some(_), false) => {
            return Err(RestError::bad_request(
                "sinceTime: at most one of sinceTime or sinceSeconds may be specified",
            ));
        }
        (Some(s), true) if s < 1 => {
            return Err(RestError::bad_request(format!(
                "sinceSeconds: Invalid value: {s}: must be greater than 0"
            )));
        }
        (Some(s), true) => Some(now - time::Duration::seconds(s)),
        (None, false) => Some(
            time::OffsetDateTime::parse(since_time, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    RestError::bad_request(format!(
                        "sinceTime: {since_time:?} is not an RFC 3339 time: {e}"
                    ))
                })?,
        ),
        (None, true) => None,
    };
    if let Some(n) = q.int("limitBytes")?
        && n < 1
    {
        return Err(RestError::bad_request(format!(
            "limitBytes: Invalid value: {n}: must be greater than 0"
        )));
    }
    Ok(PodLogRequest {
        namespace: req.target.namespace.clone(),
        name: req.target.name.clone(),
        container: q.get("container").to_string(),
        follow: q.flag("follow"),
        previous: q.flag("previous"),
        tail_lines,
        since_time: since.map(|t| skiff_api::Timestamp {
            seconds: t.unix_timestamp(),
            nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
        }),
        timestamps: q.flag("timestamps"),
    })
}

/// A log's bytes for the response body: both streams interleaved as written (kubelet's
/// plain-text log), at most `limit` bytes (then the body ends, following or not); an error
/// mid-stream (the node went away) ends the body.
fn log_bytes<S>(chunks: S, limit: Option<usize>) -> impl futures::Stream<Item = Bytes> + Send
where
    S: futures::Stream<Item = Result<PodLogChunk, tonic::Status>> + Send + Unpin,
{
    let left = limit.unwrap_or(usize::MAX);
    futures::stream::unfold((chunks, left), |(mut chunks, left)| async move {
        if left == 0 {
            return None;
        }
        match chunks.next().await {
            Some(Ok(chunk)) => {
                let mut data = chunk.data;
                data.truncate(left);
                let left = left - data.len();
                Some((Bytes::from(data), (chunks, left)))
            }
            _ => None,
        }
    })
}

#[async_trait::async_trait]
impl Subresource for Log {
    async fn serve(&self, req: Request) -> Response {
        if req.http.method() != http::Method::GET {
            return RestError::method_not_allowed(format!(
                "pods/log is read with GET, not {}",
                req.http.method()
            ))
            .into_response();
        }
        let request = match log_request(&req, time::OffsetDateTime::now_utc()) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        let limit = req
            .query
            .int("limitBytes")
            .ok()
            .flatten()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let object = object_ref::<Pod>(&request.namespace, &request.name, "log", false);
        let opened = self.0.context.tunnels.logs_for(&req.who, request).await;
        req.call.done(&req.who, "get", object, &opened);
        let chunks = match opened {
            Ok(s) => s,
            Err(status) => return tunnel_error(&status).into_response(),
        };
        let body = log_bytes(chunks, limit)
            .map(|data| Ok::<_, std::io::Error>(hyper::body::Frame::data(data)));
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .header(http::header::CACHE_CONTROL, "no-cache, private")
            .body(Body::new(http_body_util::StreamBody::new(body)))
            .unwrap_or_else(|_| http::Response::new(Body::empty()))
    }
}

/// What a streaming request asked for, once it is known to be a WebSocket.
struct Upgrade {
    protocol: Protocol,
    accept: String,
}

/// The WebSocket a request opens, or the answer that refuses it.
fn websocket(req: &Request, what: &str) -> Result<Upgrade, RestError> {
    let upgrade = req.header("upgrade").to_ascii_lowercase();
    if upgrade != "websocket" {
        let asked = if upgrade.is_empty() {
            "no upgrade".to_string()
        } else {
            format!("an upgrade to {upgrade:?}")
        };
        return Err(RestError::bad_request(format!(
            "{what} is served over WebSocket only (v5.channel.k8s.io or v4.channel.k8s.io, \
             kubectl 1.30 and newer); this request asked for {asked}: SPDY is not supported"
        )));
    }
    let offered: Vec<&str> = req
        .http
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let protocol = Protocol::negotiate(offered.iter().copied()).ok_or_else(|| {
        RestError::bad_request(format!(
            "{what}: none of the offered WebSocket subprotocols {offered:?} is served; \
             skiff speaks v5.channel.k8s.io and v4.channel.k8s.io"
        ))
    })?;
    let key = req.header("sec-websocket-key");
    if key.is_empty() {
        return Err(RestError::bad_request(format!(
            "{what}: a WebSocket upgrade needs a Sec-WebSocket-Key header"
        )));
    }
    Ok(Upgrade {
        protocol,
        accept: super::stream_ws::accept_key(key),
    })
}

/// `101 Switching Protocols` for `upgrade`.
fn switching(upgrade: &Upgrade) -> Response {
    http::Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", &upgrade.accept)
        .header("sec-websocket-protocol", upgrade.protocol.name())
        .body(Body::empty())
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

/// The pod a streaming request names, for a request refused before any session (SPDY): so
/// that a missing pod or a missing permission is reported as such.
async fn check_pod(
    streams: &PodStreams,
    req: &Request,
    subresource: &str,
) -> Result<(), RestError> {
    let t = &req.target;
    let attrs = Attributes::new(Verb::Create, "Pod", &t.namespace)
        .name(&t.name)
        .subresource(subresource);
    streams
        .context
        .authz
        .check(&req.who, &attrs)
        .map_err(|e| RestError::from_api(e, "", "Pod", &t.name))?;
    crate::registry::Registry::<Pod>::new(streams.context.store.clone())
        .get(&t.namespace, &t.name)
        .await
        .map(|_| ())
        .map_err(|e| RestError::from_api(e, "", "Pod", &t.name))
}

/// Upgrades `req` and runs `session` on the connection; answers 101, or why not.
async fn serve_session<F, Fut>(
    streams: &PodStreams,
    mut req: Request,
    subresource: &'static str,
    run: F,
) -> Response
where
    F: FnOnce(Request, tokio::io::ReadHalf<Io>, tokio::io::WriteHalf<Io>, Protocol) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let what = format!("pods/{subresource}");
    let upgrade = match websocket(&req, &what) {
        Ok(u) => u,
        Err(refused) => {
            // The pod and the permission first: their errors say more than the protocol's.
            return match check_pod(streams, &req, subresource).await {
                Err(e) => e.into_response(),
                Ok(()) => refused.into_response(),
            };
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req.http);
    let protocol = upgrade.protocol;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (read, write) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
                run(req, read, write, protocol).await;
            }
            Err(e) => tracing::debug!(error = %e, "{what}: the WebSocket upgrade failed"),
        }
    });
    switching(&upgrade)
}

type Io = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// A session that ends at once with `e` on the error channel.
async fn refuse(
    read: tokio::io::ReadHalf<Io>,
    write: tokio::io::WriteHalf<Io>,
    protocol: Protocol,
    e: RestError,
) {
    let output = futures::stream::iter([Err(failure(&e))]);
    session::run(read, write, protocol, Streams::default(), output, None).await;
}

fn exec_output(item: Result<PodExecOutput, tonic::Status>) -> Result<Output, Failure> {
    match item {
        Ok(PodExecOutput {
            message: Some(pod_exec_output::Message::Stdout(d)),
        }) => Ok(Output::Stdout(d)),
        Ok(PodExecOutput {
            message: Some(pod_exec_output::Message::Stderr(d)),
        }) => Ok(Output::Stderr(d)),
        Ok(PodExecOutput {
            message: Some(pod_exec_output::Message::ExitCode(code)),
        }) => Ok(Output::Exit(code)),
        Ok(PodExecOutput { message: None }) => Ok(Output::Stdout(Vec::new())),
        Err(status) => Err(failure(&tunnel_error(&status))),
    }
}

#[async_trait::async_trait]
impl Subresource for Exec {
    async fn serve(&self, req: Request) -> Response {
        if !matches!(*req.http.method(), http::Method::GET | http::Method::POST) {
            return RestError::method_not_allowed("pods/exec takes GET (WebSocket) or POST")
                .into_response();
        }
        let command = all_values(&req, "command");
        if command.first().is_none_or(String::is_empty) {
            return RestError::bad_request("command: Required value: you must specify a command")
                .into_response();
        }
        let stdin = flag_or(&req, "stdin", false);
        let stdout = flag_or(&req, "stdout", true);
        let stderr = flag_or(&req, "stderr", true);
        if !stdin && !stdout && !stderr {
            return RestError::bad_request("you must specify at least 1 of stdin, stdout, stderr")
                .into_response();
        }
        let tunnels = self.0.context.tunnels.clone();
        serve_session(
            &self.0,
            req,
            "exec",
            move |req, read, write, protocol| async move {
                let start = PodExecStart {
                    namespace: req.target.namespace.clone(),
                    name: req.target.name.clone(),
                    container: req.query.get("container").to_string(),
                    command: command.clone(),
                    stdin,
                };
                let (stdin_tx, stdin_rx) = tokio::sync::mpsc::channel(16);
                let input = tokio_stream::wrappers::ReceiverStream::new(stdin_rx).map(Ok);
                let object = object_ref::<Pod>(&start.namespace, &start.name, "exec", false);
                let opened = tunnels.exec_for(&req.who, start, input).await;
                req.call.done(&req.who, "create", object, &opened);
                match opened {
                    Ok(output) => {
                        let streams = Streams {
                            stdout,
                            stderr,
                            command,
                        };
                        let stdin = stdin.then_some(stdin_tx);
                        session::run(
                            read,
                            write,
                            protocol,
                            streams,
                            output.map(exec_output),
                            stdin,
                        )
                        .await;
                    }
                    Err(status) => refuse(read, write, protocol, tunnel_error(&status)).await,
                }
            },
        )
        .await
    }
}

#[async_trait::async_trait]
impl Subresource for Attach {
    async fn serve(&self, req: Request) -> Response {
        if !matches!(*req.http.method(), http::Method::GET | http::Method::POST) {
            return RestError::method_not_allowed("pods/attach takes GET (WebSocket) or POST")
                .into_response();
        }
        let stdin = flag_or(&req, "stdin", false);
        let stdout = flag_or(&req, "stdout", true);
        let stderr = flag_or(&req, "stderr", true);
        let context = self.0.context.clone();
        serve_session(
            &self.0,
            req,
            "attach",
            move |req, read, write, protocol| async move {
                let t = &req.target;
                let attrs = Attributes::new(Verb::Create, "Pod", &t.namespace)
                    .name(&t.name)
                    .subresource("attach");
                let object = object_ref::<Pod>(&t.namespace, &t.name, "attach", false);
                let allowed = context.authz.check(&req.who, &attrs);
                if let Err(e) = allowed {
                    let e = RestError::from_api(e, "", "Pod", &t.name);
                    req.call
                        .done(&req.who, "create", object, &Err::<(), _>(e.to_grpc()));
                    return refuse(read, write, protocol, e).await;
                }
                if stdin {
                    let e = RestError::bad_request(format!(
                        "pods/attach of {:?}: attaching to a container's stdin is not supported by \
                     skiff (containers start with stdin closed); use exec -i to feed a command",
                        t.name
                    ));
                    req.call
                        .done(&req.who, "create", object, &Err::<(), _>(e.to_grpc()));
                    return refuse(read, write, protocol, e).await;
                }
                // The output from now on: a followed log from its end.
                let follow = PodLogRequest {
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    container: req.query.get("container").to_string(),
                    follow: true,
                    tail_lines: Some(0),
                    ..Default::default()
                };
                let opened = context.tunnels.open_log(follow).await;
                req.call.done(&req.who, "create", object, &opened);
                match opened {
                    Ok(chunks) => {
                        let output = chunks.map(|c| match c {
                            Ok(c) if c.stream == "stderr" => Ok(Output::Stderr(c.data)),
                            Ok(c) => Ok(Output::Stdout(c.data)),
                            Err(status) => Err(failure(&tunnel_error(&status))),
                        });
                        let streams = Streams {
                            stdout,
                            stderr,
                            command: Vec::new(),
                        };
                        session::run(read, write, protocol, streams, output, None).await;
                    }
                    Err(status) => refuse(read, write, protocol, tunnel_error(&status)).await,
                }
            },
        )
        .await
    }
}

/// kubectl's port-forward tunnels SPDY streams (inside a WebSocket since kubectl 1.31): not
/// served. The pod and the permission are checked first, so that their errors come first.
#[async_trait::async_trait]
impl Subresource for PortForward {
    async fn serve(&self, req: Request) -> Response {
        if let Err(e) = check_pod(&self.0, &req, "portforward").await {
            return e.into_response();
        }
        RestError::bad_request(PORT_FORWARD_REFUSED).into_response()
    }
}

const PORT_FORWARD_REFUSED: &str = "pods/portforward is not served by skiff: kubectl port-forward \
    speaks SPDY (inside a WebSocket since kubectl 1.31), which skiff does not implement; \
    `skiff port-forward POD [LOCAL:]REMOTE` forwards a pod's port through skiff's API";

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path_and_query: &str, headers: &[(&str, &str)]) -> Request {
        let mut http = http::Request::builder().uri(path_and_query);
        for (k, v) in headers {
            http = http.header(*k, *v);
        }
        let http = http.body(Body::empty()).unwrap();
        let path = http.uri().path().to_string();
        let target = match super::super::router::parse(&path) {
            super::super::router::Route::Resource(t) => t,
            other => panic!("{other:?}"),
        };
        let query = super::super::query::Query::parse(http.uri().query());
        Request::new(
            crate::auth::Identity::Admin,
            Default::default(),
            target,
            query,
            http,
        )
    }

    #[test]
    fn log_queries_read_as_kubernetes_reads_them() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let req = request(
            "/api/v1/namespaces/shop/pods/web/log?container=app&follow=true&tailLines=10&sinceSeconds=60&timestamps=1",
            &[],
        );
        let r = log_request(&req, now).unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str(), r.container.as_str()),
            ("shop", "web", "app")
        );
        assert!(r.follow && r.timestamps && !r.previous);
        assert_eq!(r.tail_lines, Some(10));
        assert_eq!(r.since_time.map(|t| t.seconds), Some(1_000_000 - 60));
        let at = request(
            "/api/v1/namespaces/shop/pods/web/log?sinceTime=2026-01-01T00:00:01Z",
            &[],
        );
        assert_eq!(
            log_request(&at, now).unwrap().since_time.map(|t| t.seconds),
            Some(1_767_225_601)
        );
        for (query, want) in [
            ("tailLines=-1", "tailLines"),
            ("sinceSeconds=0", "sinceSeconds"),
            (
                "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z",
                "at most one",
            ),
            ("sinceTime=yesterday", "RFC 3339"),
            ("limitBytes=0", "limitBytes"),
            ("tailLines=x", "tailLines"),
        ] {
            let req = request(&format!("/api/v1/namespaces/a/pods/b/log?{query}"), &[]);
            let e = log_request(&req, now).unwrap_err();
            assert_eq!(e.code, 400);
            assert!(e.message.contains(want), "{query}: {}", e.message);
        }
    }

    #[test]
    fn exec_takes_every_command_word_and_a_websocket_of_a_served_protocol() {
        let req = request(
            "/api/v1/namespaces/a/pods/b/exec?command=sh&command=-c&command=echo+hi%3B+exit+3&stdin=true",
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                (
                    "sec-websocket-protocol",
                    "v4.channel.k8s.io, v5.channel.k8s.io",
                ),
            ],
        );
        assert_eq!(all_values(&req, "command"), ["sh", "-c", "echo hi; exit 3"]);
        assert!(flag_or(&req, "stdin", false) && flag_or(&req, "stdout", true));
        let upgrade = websocket(&req, "pods/exec").unwrap();
        assert_eq!(upgrade.protocol, Protocol::V5);
        let answer = switching(&upgrade);
        assert_eq!(answer.status(), 101);
        assert_eq!(
            answer.headers()["sec-websocket-protocol"],
            "v5.channel.k8s.io"
        );
        assert_eq!(
            answer.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );

        let spdy = request(
            "/api/v1/namespaces/a/pods/b/exec?command=ls",
            &[("upgrade", "SPDY/3.1"), ("connection", "Upgrade")],
        );
        let e = websocket(&spdy, "pods/exec").err().unwrap();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("SPDY is not supported"), "{}", e.message);
        let old = request(
            "/api/v1/namespaces/a/pods/b/exec?command=ls",
            &[
                ("upgrade", "websocket"),
                ("sec-websocket-key", "x"),
                ("sec-websocket-protocol", "channel.k8s.io"),
            ],
        );
        assert!(
            websocket(&old, "pods/exec")
                .err()
                .unwrap()
                .message
                .contains("v5.channel.k8s.io")
        );
    }

    #[tokio::test]
    async fn a_log_body_stops_at_its_byte_limit_or_at_an_error() {
        let chunk = |s: &str| {
            Ok(PodLogChunk {
                stream: "stdout".into(),
                data: s.as_bytes().to_vec(),
            })
        };
        // The limit ends the body even while the log would go on (a follow that waits).
        let endless = futures::stream::iter([chunk("hello\n"), chunk("world\n")])
            .chain(futures::stream::pending());
        let got: Vec<Bytes> = log_bytes(Box::pin(endless), Some(8)).collect().await;
        assert_eq!(got, [Bytes::from("hello\n"), Bytes::from("wo")]);
        let broken = futures::stream::iter([
            chunk("a\n"),
            Err(tonic::Status::unavailable("node gone")),
            chunk("never\n"),
        ]);
        let got: Vec<Bytes> = log_bytes(broken, None).collect().await;
        assert_eq!(got, [Bytes::from("a\n")]);
    }

    #[test]
    fn tunnel_refusals_get_kubernetes_codes() {
        let e = tunnel_error(&tonic::Status::failed_precondition(
            "container \"app\" in pod \"web\" has not started yet",
        ));
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        let e = tunnel_error(&tonic::Status::unavailable("node \"n1\" is not connected"));
        assert_eq!(e.code, 503);
        let e = tunnel_error(&tonic::Status::not_found("pods \"web\" not found"));
        assert_eq!(e.code, 404);
        assert_eq!(
            exec_output(Ok(PodExecOutput {
                message: Some(pod_exec_output::Message::ExitCode(7))
            })),
            Ok(Output::Exit(7))
        );
    }
}
