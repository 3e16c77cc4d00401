//! Where a function's outgoing requests may go: [`Outbound`], the wasi:http hooks that enforce
//! a function's [`AllowedHosts`] (Spin's `allowed_outbound_hosts` syntax, parsed by the
//! `skiff-outbound-hosts` crate, the same parser the API validates with).
//!
//! A denied request gets `HttpRequestDenied` (its future resolves to that error code), and a
//! line naming its scheme and authority (never its path or query, which may hold a token) goes to the guest's stderr log. An allowed one is sent
//! from inside the function's network namespace (its connection made on the namespace's
//! thread), in tasks that end when wasmtime drops the request (a guest past its timeout,
//! trapped or killed leaves no request running), and waits for its connection and its
//! response's first byte no longer than the function's timeout.
//!
//! Must not: parse allowlist entries itself, look names up or connect itself beyond handing the
//! request to wasmtime-wasi-http's `default_send_request`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use skiff_outbound_hosts::{AllowedHosts, OutboundError};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// What a denial is reported through (the guest's stderr log).
pub(crate) type DenialLog = Arc<dyn Fn(&str) + Send + Sync>;

/// The wasi:http hooks of one store: the allowlist, and where allowed requests connect from.
#[derive(Clone)]
pub(crate) struct Outbound {
    allowed: Arc<AllowedHosts>,
    /// The runtime of the thread inside the function's network namespace; `None`: the caller's.
    connect_on: Option<tokio::runtime::Handle>,
    denied: Option<DenialLog>,
    /// The function's timeout: the longest an outgoing request waits to connect or for its
    /// first byte (zero: wasmtime-wasi-http's defaults).
    limit: Duration,
}

impl Default for Outbound {
    /// Nothing allowed (a command's, which has no allowlist).
    fn default() -> Self {
        Outbound {
            allowed: Arc::default(),
            connect_on: None,
            denied: None,
            limit: Duration::ZERO,
        }
    }
}

impl Outbound {
    pub(crate) fn new(
        allowed: Arc<AllowedHosts>,
        connect_on: Option<tokio::runtime::Handle>,
        denied: Option<DenialLog>,
        limit: Duration,
    ) -> Self {
        Outbound {
            allowed,
            connect_on,
            denied,
            limit,
        }
    }

    /// `options` with its connect and first-byte timeouts no longer than the function's.
    fn capped(&self, options: Option<RequestOptions>) -> Option<RequestOptions> {
        if self.limit.is_zero() {
            return options;
        }
        let mut options = options.unwrap_or_default();
        let cap = |t: Option<Duration>| Some(t.map_or(self.limit, |t| t.min(self.limit)));
        options.connect_timeout = cap(options.connect_timeout);
        options.first_byte_timeout = cap(options.first_byte_timeout);
        Some(options)
    }
}

/// A task on another runtime, aborted when dropped (as wasmtime's own handles are): an outgoing
/// request's send or connection task goes with the guest's request.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if !self.allowed.permits(request.uri()) {
            // Scheme and authority only: a path or query may hold a token.
            let uri = request.uri();
            let target = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.as_str())
            );
            let line = format!(
                "outgoing request to {target} denied: not in the function's allowed outbound hosts\n"
            );
            tracing::info!(%target, "outgoing request denied");
            if let Some(log) = &self.denied {
                log(&line);
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.capped(options);
        let send = async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok::<_, HttpError>((response.map(BodyExt::boxed_unsync), io))
        };
        match self.connect_on.clone() {
            None => Box::new(async move {
                let (response, io) = send.await?;
                Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
            }),
            // The connection (and its name lookup, on a blocking thread started from there) is
            // made in the namespace; the connection's task runs there too.
            Some(runtime) => Box::new(async move {
                let (response, io) = AbortOnDrop(runtime.spawn(send))
                    .await
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))??;
                let io = AbortOnDrop(runtime.spawn(io));
                let io = async move {
                    io.await
                        .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
                };
                Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_timeouts_are_capped_at_the_functions() {
        let limited = Outbound::new(Arc::default(), None, None, Duration::from_secs(2));
        let o = limited.capped(None).unwrap();
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.between_bytes_timeout, None);
        let shorter = RequestOptions {
            connect_timeout: Some(Duration::from_millis(100)),
            first_byte_timeout: Some(Duration::from_secs(60)),
            between_bytes_timeout: None,
        };
        let o = limited.capped(Some(shorter)).unwrap();
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(2)));
        assert_eq!(Outbound::default().capped(None), None);
    }

    #[test]
    fn a_dropped_outgoing_task_is_aborted() {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = AbortOnDrop(other.spawn(async move {
            // Holds `tx` until aborted: the receiver sees it dropped only then.
            std::future::pending::<()>().await;
            drop(tx);
        }));
        let runs = std::thread::spawn(move || {
            other.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx).await })
        });
        drop(task);
        let ended = runs.join().unwrap().expect("the task still runs");
        assert!(ended.is_err(), "the task was aborted, dropping its sender");
    }
}
