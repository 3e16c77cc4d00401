//! The HTTP/1.1 server of one function instance: listeners, connections, per-request limits,
//! counters, and stopping (see the parent module's doc for the order of the checks).
//!
//! Owns [`start`] and the request path. Per request it allocates what it must (a store and its
//! WASI context, the guest's task) and takes no lock: the counters are atomics, the phase a
//! `watch`. Must not: know the handler's ABI (that is `handler`) or pods.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use wasmtime::Store;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::io::TokioIo;

use super::super::engine::WasmEngine;
use super::super::error::{WasmError, chain};
use super::super::exit::ExitStatus;
use super::super::instance::{Instance, Output, component_state};
use super::super::netns::NetnsThread;
use super::super::prepare::{Pre, Prepared};
use super::super::spec::{Network, WasmSpec};
use super::super::state::ComponentState;
use super::super::usage::{Usage, accounted};
use super::super::wasi_ctx;
use super::body::Limited;
use super::handler::Handler;
use super::outbound::{AllowedHosts, Outbound};
use super::stats::Counters;

/// How long a 503 asks the client to wait.
const RETRY_AFTER: &str = "1";

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Stop accepting; finish what is in flight.
    Draining,
    /// Drop everything now.
    Killed,
}

/// What every request of one function shares.
struct Function {
    engine: WasmEngine,
    prepared: Prepared,
    /// The spec, its sockets cleared: a function's guest reaches out through wasi:http only.
    spec: WasmSpec,
    output: Arc<Output>,
    timeout: Duration,
    max_body_bytes: u64,
    concurrency: u64,
    /// Requests admitted and not yet done, probes' included: what the cap counts (a client
    /// that calls itself a probe is still held to it).
    admitted: AtomicU64,
    /// One permit per open client connection ([`super::HttpOptions::max_connections`]).
    connections: Arc<Semaphore>,
    outbound: Outbound,
    counters: Arc<Counters>,
    /// This function's WASI 0.3 instances that may take another request ([`super::p3`]).
    p3: Arc<super::p3::Workers>,
    usage: Arc<Usage>,
    phase: watch::Receiver<Phase>,
    /// Held by every task of the server; the stop waits until all are gone.
    _alive: mpsc::Sender<()>,
}

/// Binds the spec's ports (in its network namespace) and serves `prepared`'s handler there.
pub(crate) async fn start(
    engine: &WasmEngine,
    prepared: &Prepared,
    spec: WasmSpec,
) -> Result<Instance, WasmError> {
    let options = spec.http.clone();
    let allowed = AllowedHosts::parse(&options.allowed_outbound_hosts)
        .map_err(|e| WasmError::InvalidSpec(e.to_string()))?;
    if let Some(component) = prepared.component() {
        super::super::host::check_imports(
            engine.wasmtime(),
            component,
            &spec.host,
            &spec.module_path,
        )?;
    }
    let inner = engine.clone();
    let (spec, output, netns) = tokio::task::spawn_blocking(move || {
        let netns = match &spec.netns {
            Some(path) => Some(inner.inner.netns.enter(path)?),
            None => None,
        };
        let output = Output::open(&spec)?;
        // The spec is usable (preopens open): a bad one fails the start, not every request.
        let mut spec = spec;
        spec.network = Network::default();
        wasi_ctx::builder(&spec, output.log())?;
        Ok::<_, WasmError>((spec, output, netns))
    })
    .await
    .map_err(|e| WasmError::Engine(format!("start task: {e}")))??;
    let listeners = bind(&options.effective_ports(), netns.as_deref()).await?;
    if let Pre::Function(handler) = prepared.pre() {
        tracing::info!(id = %spec.id, handler = handler.interface(), ports = ?options.effective_ports(), "serving a function");
    }

    let output = Arc::new(output);
    let denied_log = {
        let output = output.clone();
        Arc::new(move |line: &str| output.stderr(line)) as super::outbound::DenialLog
    };
    let counters = Arc::new(Counters::default());
    let usage = Arc::new(Usage::default());
    let (instance, controls) =
        Instance::with_controls(&spec.id, prepared, usage.clone(), Some(counters.clone()));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let function = Arc::new(Function {
        engine: engine.clone(),
        prepared: prepared.clone(),
        timeout: options.timeout,
        max_body_bytes: options.max_body_bytes,
        concurrency: u64::from(options.concurrency),
        admitted: AtomicU64::new(0),
        connections: Arc::new(Semaphore::new(match options.max_connections {
            0 => super::HttpOptions::DEFAULT_MAX_CONNECTIONS,
            n => n,
        } as usize)),
        outbound: Outbound::new(
            Arc::new(allowed),
            netns.as_ref().map(|t| t.runtime().clone()),
            Some(denied_log),
            options.timeout,
        ),
        p3: Arc::new(super::p3::Workers::new(
            usage.clone(),
            counters.clone(),
            options.timeout,
        )),
        counters,
        usage: usage.clone(),
        phase: phase_rx,
        _alive: alive_tx,
        spec,
        output: output.clone(),
    });
    for listener in listeners {
        tokio::spawn(accept(function.clone(), listener));
    }
    drop(function);

    let super::super::instance::Controls {
        mut kill,
        mut stop,
        exit,
    } = controls;
    tokio::spawn(async move {
        let graceful = tokio::select! {
            biased;
            _ = kill.wait_for(|k| *k) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let mut status = ExitStatus::killed();
        if graceful {
            phase_tx.send_replace(Phase::Draining);
            tokio::select! {
                biased;
                _ = alive_rx.recv() => status = ExitStatus::completed(),
                _ = kill.wait_for(|k| *k) => {}
            }
        }
        // Every task ends at once now (a guest at its next epoch tick); its store goes with it.
        phase_tx.send_replace(Phase::Killed);
        while alive_rx.recv().await.is_some() {}
        usage.released();
        output.finish();
        exit.send_replace(Some(status));
        // The last instance in a namespace ends its thread.
        drop(netns);
    });
    Ok(instance)
}

/// Listeners on `ports` of every IPv4 address, made in `netns` (on its thread) if given.
async fn bind(ports: &[u16], netns: Option<&NetnsThread>) -> Result<Vec<TcpListener>, WasmError> {
    let ports = ports.to_vec();
    let make = move || {
        ports
            .iter()
            .map(|port| {
                let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port));
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| {
                        WasmError::InvalidSpec(format!("listening on port {port}: {e}"))
                    })?;
                Ok(listener)
            })
            .collect::<Result<Vec<_>, WasmError>>()
    };
    let std_listeners = match netns {
        Some(thread) => thread
            .runtime()
            .spawn(async move { make() })
            .await
            .map_err(|e| WasmError::Engine(format!("bind task: {e}")))??,
        None => make()?,
    };
    std_listeners
        .into_iter()
        .map(|l| TcpListener::from_std(l).map_err(|e| WasmError::Engine(format!("listener: {e}"))))
        .collect()
}

async fn accept(function: Arc<Function>, listener: TcpListener) {
    let mut phase = function.phase.clone();
    loop {
        tokio::select! {
            biased;
            () = until(&mut phase, |p| p != Phase::Serving) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match function.connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(function.clone(), stream, permit));
                    }
                    // At the cap: closed at once, so idle or slow clients cannot pile up.
                    Err(_) => {
                        tracing::debug!(%peer, "a function's connection cap is reached: connection closed");
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// One client connection: HTTP/1.1 with keep-alive, closed after its current request once the
/// server drains, or when it sends no complete request head within
/// [`super::HttpOptions::HEADER_READ_TIMEOUT`] of the server waiting for one (new or idle).
/// `_permit`: its place under the function's connection cap, given back when it ends.
async fn connection(function: Arc<Function>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let mut phase = function.phase.clone();
    // The authority of a request that names none (HTTP/1.0 without Host): this listener.
    let local = stream
        .local_addr()
        .ok()
        .and_then(|a| HeaderValue::try_from(a.to_string()).ok())
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let service = {
        let function = function.clone();
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            if req.uri().authority().is_none() && !req.headers().contains_key(header::HOST) {
                req.headers_mut().insert(header::HOST, local.clone());
            }
            let function = function.clone();
            let span = super::trace::request_span(&req);
            async move {
                let response =
                    tracing::Instrument::instrument(function.handle(req), span.clone()).await;
                super::trace::record_status(&span, response.status());
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(super::HttpOptions::HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = until(&mut phase, |p| p != Phase::Serving) => {}
    }
    if *phase.borrow() == Phase::Killed {
        return;
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn => {}
        () = until(&mut phase, |p| p == Phase::Killed) => {}
    }
}

/// Waits until the phase is one `pred` accepts (or the server is gone).
async fn until(phase: &mut watch::Receiver<Phase>, pred: impl Fn(Phase) -> bool) {
    let _ = phase.wait_for(|p| pred(*p)).await;
}

/// How a guest's run ended.
enum Ended {
    Returned,
    Trapped(wasmtime::Error),
    TimedOut,
    /// No instance slot was free.
    Busy,
    Killed,
}

/// An admitted request: under the cap until dropped, and counted in flight unless it is a
/// probe's.
struct Admitted {
    function: Arc<Function>,
    counted: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.function.admitted.fetch_sub(1, Ordering::Relaxed);
        if self.counted {
            self.function
                .counters
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The `User-Agent` prefix of kubelet's probes (and skiff's agent's): `kube-probe/1.31`.
const PROBE_USER_AGENT: &[u8] = b"kube-probe/";

/// Whether `req` comes from a probe. As Knative's queue-proxy, a function serves probes like any
/// request but leaves them out of the figures autoscaling reads (requests, in flight,
/// durations), so that a function with an `httpGet` probe still scales to zero.
fn is_probe<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(header::USER_AGENT)
        .is_some_and(|ua| ua.as_bytes().starts_with(PROBE_USER_AGENT))
}

impl Function {
    async fn handle(self: Arc<Self>, req: http::Request<Incoming>) -> Response<WasiBody> {
        let began = Instant::now();
        let counters = &self.counters;
        let probe = is_probe(&req);
        if !probe {
            Counters::bump(&counters.requests_total);
        }
        if self.max_body_bytes > 0 && declared_length(&req).is_some_and(|n| n > self.max_body_bytes)
        {
            Counters::bump(&counters.rejected_too_large);
            return too_large();
        }
        let Some(admitted) = self.admit(!probe) else {
            Counters::bump(&counters.rejected_busy);
            return busy();
        };
        let (req, over) = {
            let (parts, body) = req.into_parts();
            let (body, over) = Limited::new(body, self.max_body_bytes);
            (http::Request::from_parts(parts, body), over)
        };
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "building a function's store");
                Counters::bump(&counters.errors);
                return status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
            }
        };
        let (respond, response) = oneshot::channel();
        Counters::bump(&counters.instantiations);
        let task = tokio::spawn(
            admitted
                .function
                .clone()
                .run(admitted, store, req, respond, began),
        );
        let too_big = || over.load(Ordering::Relaxed);
        match response.await {
            Ok(Ok(_)) if too_big() => {
                Counters::bump(&counters.rejected_too_large);
                too_large()
            }
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                Counters::bump(&counters.errors);
                tracing::debug!(code, "the guest answered with an error code");
                status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
            // The guest is gone without a response.
            Err(_) => match task.await.unwrap_or(Ended::Returned) {
                _ if too_big() => {
                    Counters::bump(&counters.rejected_too_large);
                    too_large()
                }
                Ended::TimedOut => status(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"),
                Ended::Busy | Ended::Killed => busy(),
                Ended::Returned => {
                    Counters::bump(&counters.errors);
                    self.output
                        .stderr("the function returned without setting a response\n");
                    status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
                }
                Ended::Trapped(_) => {
                    status(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
                }
            },
        }
    }

    /// Runs the guest for one request, under the timeout, until it is done or killed.
    async fn run(
        self: Arc<Self>,
        admitted: Admitted,
        store: Store<ComponentState>,
        req: http::Request<Limited<Incoming>>,
        respond: super::handler::Respond,
        began: Instant,
    ) -> Ended {
        let Pre::Function(handler) = self.prepared.pre() else {
            return Ended::Returned;
        };
        let guest = accounted(handler.run(store, req, respond, &self.p3), &self.usage);
        let limited = async {
            if self.timeout.is_zero() {
                Ok(guest.await)
            } else {
                tokio::time::timeout(self.timeout, guest).await
            }
        };
        let mut phase = self.phase.clone();
        let ended = tokio::select! {
            biased;
            () = until(&mut phase, |p| p == Phase::Killed) => Ended::Killed,
            r = limited => match r {
                Err(_) => Ended::TimedOut,
                Ok(Ok(())) => Ended::Returned,
                Ok(Err(e)) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => Ended::Busy,
                Ok(Err(e)) => Ended::Trapped(e),
            },
        };
        let counters = &self.counters;
        match &ended {
            Ended::TimedOut => {
                Counters::bump(&counters.timed_out);
                self.output.stderr(&format!(
                    "request timed out after {:?}: the guest was stopped\n",
                    self.timeout
                ));
            }
            Ended::Trapped(e) => {
                Counters::bump(&counters.errors);
                self.output.stderr(&format!("{e:?}\n"));
            }
            Ended::Busy => Counters::bump(&counters.rejected_busy),
            Ended::Returned | Ended::Killed => {}
        }
        if admitted.counted {
            counters.observe(began.elapsed());
        }
        drop(admitted);
        ended
    }

    /// Admits a request under the concurrency cap; `counted`: in the in-flight figure too.
    fn admit(self: &Arc<Self>, counted: bool) -> Option<Admitted> {
        let before = self.admitted.fetch_add(1, Ordering::Relaxed);
        if counted {
            self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let admitted = Admitted {
            function: self.clone(),
            counted,
        };
        (self.concurrency == 0 || before < self.concurrency).then_some(admitted)
    }

    /// A fresh store for one request.
    fn store(&self) -> Result<Store<ComponentState>, WasmError> {
        let builder = wasi_ctx::builder(&self.spec, self.output.log())?;
        let limits = self.engine.limits(&self.spec, self.usage.clone());
        let mut state = component_state(builder, limits, &self.spec, self.output.sink());
        state.outbound = self.outbound.clone();
        Ok(self.engine.store(state))
    }
}

/// The request's `Content-Length`, if it declares one.
fn declared_length<B>(req: &http::Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn status(code: StatusCode, text: &'static str) -> Response<WasiBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn busy() -> Response<WasiBody> {
    let mut response = status(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

fn too_large() -> Response<WasiBody> {
    status(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n")
}

impl Handler {
    /// For benchmarks: instantiates in `store` without serving.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<ComponentState>,
    ) -> Result<(), String> {
        match self {
            Handler::P2(pre) => pre
                .instantiate_async(store)
                .await
                .map(drop)
                .map_err(|e| chain(&e)),
            Handler::P3(pre) => pre
                .instantiate_async(store)
                .await
                .map(drop)
                .map_err(|e| chain(&e)),
        }
    }
}
