//! `--metrics-addr ADDR` of `up`, `server` and `agent`: the process's Prometheus metrics at
//! `GET /metrics`, plain HTTP/1.1 on the address given (off by default).
//!
//! kube-apiserver and the kubelet serve `/metrics` on their authenticated TLS port; skiff serves
//! it on a port of its own, unauthenticated, like kube-scheduler's and kube-controller-manager's
//! `--bind-address` before they moved to TLS, and like node exporters: bind it to loopback or a
//! management network (docs/metrics.md). It shows no secret: label values are verbs, kinds,
//! codes, controller names and the names of pods and nodes.
//!
//! The text format follows the scraper's `Accept` header: OpenMetrics 1.0 when it names
//! `application/openmetrics-text` (Prometheus does), else Prometheus' text format 0.0.4.
//! `skiff up` serves the server's and its agent's families on one endpoint.
//!
//! A scrape is encoded on a thread of its own, 10 nicer than the process, not on the async
//! runtime: encoding a server's ~1,250 lines takes about a millisecond of CPU, which on a runtime
//! worker would delay the requests queued behind it, and on a busy 2-core node would take a core
//! from them. Scrapes are encoded one at a time; a scraper that finds [`PENDING`] scrapes waiting
//! is answered 503.
//!
//! Must not: hold metrics itself (the library crates do), or serve anything but `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{CliError, Result};

/// Where a process's families come from: appends them in OpenMetrics text (`true`, no `# EOF`)
/// or Prometheus' text format 0.0.4.
pub type Source = fn(bool, &mut String) -> std::result::Result<(), std::fmt::Error>;

/// How much nicer the encoder thread is than the process (whose threads serve the API).
const ENCODER_NICE: i32 = 10;
/// Scrapes that may wait for the encoder.
const PENDING: usize = 4;

/// One scrape for the encoder: the format, the families, where the text goes.
type Job = (
    bool,
    &'static [Source],
    tokio::sync::oneshot::Sender<std::result::Result<String, std::fmt::Error>>,
);

/// The encoder thread's queue, started with the first scrape.
fn encoder() -> &'static SyncSender<Job> {
    static QUEUE: OnceLock<SyncSender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(PENDING);
        let spawned = std::thread::Builder::new()
            .name("metrics-encoder".into())
            .spawn(move || {
                lower_priority();
                for (openmetrics, sources, reply) in rx {
                    let _ = reply.send(encode(openmetrics, sources));
                }
            });
        if let Err(e) = spawned {
            // The queue's receiver is gone with the closure: every scrape is answered 503.
            tracing::warn!(error = %e, "metrics: cannot start the encoder thread");
        }
        tx
    })
}

/// Lowers this thread's CPU priority by [`ENCODER_NICE`] below the process's (Linux:
/// `setpriority` on a thread id is that thread's). The one unsafe call of the CLI: nix does not
/// wrap setpriority.
#[allow(unsafe_code)]
fn lower_priority() {
    let nice = (nice_of("/proc/self/stat").unwrap_or(0) + ENCODER_NICE).min(19);
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority only reads its three integer arguments.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "metrics: the encoder runs at the API's priority");
    }
}

/// The nice value in a `/proc/.../stat` file (its 19th field).
fn nice_of(stat: impl AsRef<std::path::Path>) -> Option<i32> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The command (field 2) may hold spaces: count from the ")" that ends it.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

/// Binds `--metrics-addr` (bad or unbindable: exit 2, naming the flag).
/// `:PORT` is on loopback, as `--dashboard-addr`'s.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let full = match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    };
    let parsed: SocketAddr = full.parse().map_err(|_| {
        CliError::usage(format!(
            "error: --metrics-addr {addr:?}: not an IP:PORT address (127.0.0.1:9090, :9090, [::1]:9090)"
        ))
    })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|e| CliError::usage(format!("error: --metrics-addr {addr}: {e}")))
}

/// Serves `sources` on `listener` until the process ends; `who` names the process in the line
/// that says where (`skiff server: metrics at http://127.0.0.1:9090/metrics`).
pub fn serve(listener: TcpListener, sources: &'static [Source], who: &str) {
    if let Ok(addr) = listener.local_addr() {
        eprintln!("{who}: metrics at http://{addr}/metrics");
    }
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(
                        move |req| async move { answer(&req, sources).await },
                    );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

async fn answer(
    req: &Request<Incoming>,
    sources: &'static [Source],
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let reply = |code: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Ok(r)
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found: metrics are at /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n".into(),
        );
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let openmetrics = accept.contains("application/openmetrics-text");
    let (tx, rx) = tokio::sync::oneshot::channel();
    match encoder().try_send((openmetrics, sources, tx)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("503 busy: {PENDING} scrapes are waiting already\n"),
            );
        }
        Err(TrySendError::Disconnected(_)) => {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "503 the metrics encoder is not running\n".into(),
            );
        }
    }
    let body = rx.await.unwrap_or(Err(std::fmt::Error));
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    match body {
        Ok(text) => reply(StatusCode::OK, content_type, text),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "encoding the metrics failed\n".into(),
        ),
    }
}

/// The families of `sources` in OpenMetrics text (`openmetrics`, ending `# EOF`) or text 0.0.4.
fn encode(openmetrics: bool, sources: &[Source]) -> std::result::Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    sources.iter().try_for_each(|s| s(openmetrics, &mut out))?;
    if openmetrics {
        prometheus_client::encoding::text::encode_eof(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(openmetrics: bool, out: &mut String) -> std::result::Result<(), std::fmt::Error> {
        out.push_str(if openmetrics { "# om\n" } else { "# text\n" });
        Ok(())
    }

    #[test]
    fn openmetrics_ends_once_and_text_has_no_end() {
        let sources: &[Source] = &[one, one];
        assert_eq!(encode(true, sources).unwrap(), "# om\n# om\n# EOF\n");
        assert_eq!(encode(false, sources).unwrap(), "# text\n# text\n");
    }

    #[tokio::test]
    async fn the_encoder_thread_answers_and_runs_below_the_apis_priority() {
        static SOURCES: &[Source] = &[one];
        let (tx, rx) = tokio::sync::oneshot::channel();
        encoder().try_send((true, SOURCES, tx)).unwrap();
        assert_eq!(rx.await.unwrap().unwrap(), "# om\n# EOF\n");
        let thread = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| t.ok())
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "metrics-encoder")
            })
            .expect("the encoder thread");
        let process = nice_of("/proc/self/stat").unwrap();
        assert_eq!(
            nice_of(thread.path().join("stat")),
            Some((process + ENCODER_NICE).min(19))
        );
    }

    #[tokio::test]
    async fn a_bad_address_names_the_flag() {
        for bad in ["localhost", "9090", "1.2.3.4.5:80", ":http"] {
            let e = bind(bad).await.unwrap_err();
            assert!(e.to_string().contains("--metrics-addr"), "{e}");
        }
    }
}
