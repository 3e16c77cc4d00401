//! WASI 0.3 functions: components exporting `wasi:http/handler@0.3.x` (the `wasi:http/service`
//! world of wasmtime-wasi-http 48), served at the [`super::handler::Handler`] seam as 0.2 ones
//! are: the server's admission, limits, timeout, store and counters apply unchanged.
//!
//! Owns [`P3_EXPORT`], linking ([`service_pre`]), [`Workers`] and [`run`].
//!
//! A 0.3 handler may take several requests at once in one instance: `handle` is an `async func`,
//! and a component that lifts it with the async ABI lets the host start another call while one
//! waits. Whether it does is the component's decision, read at run time: an instance takes
//! another request only while wasmtime reports it ready for a concurrent call
//! (`Accessor::poll_ready_for_concurrent_call`: no backpressure from the guest and no
//! synchronously lifted call in progress). So:
//!
//! - [`run`] of a request first offers it to a *worker* of the same function (an instance
//!   already serving, registered in [`Workers`]); a worker takes it only if its instance is ready
//!   for a concurrent call, else hands it straight back;
//! - a request no worker takes starts one: a task of its own that instantiates in the request's
//!   fresh store (the server's, with its limits; its CPU time counted to the function) and
//!   serves that request and, while it serves, any request offered to it; it ends (dropping the
//!   store) as soon as it has no request left and the guest no task, or a second after (a
//!   sync-lifted handler is therefore one request per instance, exactly as a 0.2 one; no
//!   instance outlives its requests by more than that, so an idle function still costs nothing);
//! - a request is done when its response body has ended (or hyper dropped it), or the guest
//!   returned an error code; its `run` returns then, so the server's timeout and counters see
//!   each request as its own. A request that the server gives up on (timeout, kill) stops its
//!   worker from taking more; the worker ends when its other requests are done, and dropping
//!   its store stops the abandoned guest task (wasmtime 48 cannot cancel one task alone).
//!   A trap ends every request of that instance (each gets the error: 500).
//! - a guest that computes without waiting keeps wasmtime 48's event loop (and the thread under
//!   it) to itself: an epoch yield inside `run_concurrent` does not reach tokio. So the worker's
//!   store traps the guest itself at an epoch tick (`Interrupt`) once its oldest live request is
//!   past the function's timeout, or every request it holds was abandoned (their `run` dropped:
//!   a kill); every request of that instance then ends (504 for the late one, 500 for others).
//!
//! The worker runs the guest inside the store's event loop (`run_concurrent`): a 0.3 guest
//! writes the response body after returning the response, so the loop must outlive the call.
//! Must not: apply limits or count (that is `server`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::Store;
use wasmtime::component::{Accessor, InstancePre};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use super::super::state::{ComponentState, Guarded};
use super::super::usage::{Usage, accounted};
use super::handler::Respond;
use super::stats::Counters;

/// The export prefix of a WASI 0.3 HTTP handler.
pub(crate) const P3_EXPORT: &str = "wasi:http/handler@0.3.";

/// The interface, for messages.
pub(crate) const INTERFACE: &str = "wasi:http/handler@0.3";

/// How long a worker lets the guest's tasks run on after its last request is done (work a
/// guest does after its response, such as a log line), before it drops the instance.
const POST_RESPONSE_GRACE: Duration = Duration::from_secs(1);

/// Links the `handle` export of a component that exports [`P3_EXPORT`].
pub(crate) fn service_pre(
    pre: &InstancePre<ComponentState>,
) -> wasmtime::Result<ServicePre<ComponentState>> {
    ServicePre::new(pre.clone())
}

/// The instances of one function that serve now and may take another request: one per
/// function instance (pod container), never shared across functions.
pub(crate) struct Workers {
    open: Mutex<Vec<mpsc::Sender<Job>>>,
    /// The function's figures, where its workers' CPU time is counted.
    usage: Arc<Usage>,
    /// The function's counters: the server counts an instantiation per admitted request; a
    /// request that joins an instance already serving takes its count back.
    counters: Arc<Counters>,
    /// The function's request timeout (zero: none), which the worker enforces on its guest too.
    timeout: Duration,
}

impl Workers {
    pub(crate) fn new(usage: Arc<Usage>, counters: Arc<Counters>, timeout: Duration) -> Self {
        Workers {
            open: Mutex::default(),
            usage,
            counters,
            timeout,
        }
    }

    /// Offers `job` to each open worker in turn; the job back if none took it.
    async fn offer(&self, mut job: Job) -> Result<(oneshot::Receiver<Finished>, Arc<Fate>), Job> {
        let senders: Vec<mpsc::Sender<Job>> = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.retain(|tx| !tx.is_closed());
            open.clone()
        };
        for tx in senders {
            let (taken_tx, taken_rx) = oneshot::channel();
            job.taken = Some(taken_tx);
            match tx.try_send(job) {
                Ok(()) => match taken_rx.await {
                    Ok(Taken::Yes(done, fate)) => return Ok((done, fate)),
                    Ok(Taken::No(back)) => job = *back,
                    // The worker is gone with the job in its queue (it panicked).
                    Err(_) => return Ok((lost(), Arc::default())),
                },
                Err(
                    mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back),
                ) => {
                    job = back;
                }
            }
        }
        Err(job)
    }

    fn register(&self, tx: mpsc::Sender<Job>) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
    }
}

/// The end of a request whose worker is gone without a word (it panicked).
fn lost() -> oneshot::Receiver<Finished> {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(Err(wasmtime::format_err!(
        "the instance serving this request ended"
    )));
    rx
}

/// A request, offered to a worker.
struct Job {
    request: http::Request<WasiBody>,
    respond: Respond,
    /// The worker's answer to the offer.
    taken: Option<oneshot::Sender<Taken>>,
    /// Set when the request's `run` is dropped before its end (read by the worker's [`Clock`]).
    abandoned: Arc<AtomicBool>,
}

/// Marks its job abandoned when dropped before [`Abandon::finished`].
struct Abandon(Option<Arc<AtomicBool>>);

impl Abandon {
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

enum Taken {
    /// Taken: the request's end arrives here (or, if not, the worker's fate says why).
    Yes(oneshot::Receiver<Finished>, Arc<Fate>),
    /// Not ready for a concurrent call: the job back.
    No(Box<Job>),
}

/// How a request ended in its worker: `Err` when the instance trapped or failed.
type Finished = wasmtime::Result<()>;

/// Why a worker ended, for the requests it leaves without a word (a trap ends every request
/// of the instance at once, and they learn of it before the worker has the error).
struct Fate {
    error: Mutex<Option<String>>,
    /// Set once the worker has ended (dropped with it, if it panicked).
    ended: watch::Sender<bool>,
}

impl Default for Fate {
    fn default() -> Self {
        Fate {
            error: Mutex::default(),
            ended: watch::Sender::new(false),
        }
    }
}

impl Fate {
    /// The worker ended, with `result`.
    fn end(&self, result: &wasmtime::Result<()>) {
        if let Err(e) = result {
            *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!("{e:?}"));
        }
        self.ended.send_replace(true);
    }

    /// The worker's error, once it has ended.
    async fn error(&self) -> wasmtime::Error {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
        match &*self.error.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => wasmtime::format_err!("{e}"),
            None => wasmtime::format_err!("the instance serving this request ended"),
        }
    }
}

/// Serves one request: see the module doc. `store` is the request's fresh store, used only if
/// the request becomes a worker. An error is a trap or an instantiation failure; an error code
/// the guest returns instead of a response goes to `respond`.
pub(crate) async fn run<B>(
    pre: &ServicePre<ComponentState>,
    workers: &Arc<Workers>,
    store: Store<ComponentState>,
    request: http::Request<B>,
    respond: Respond,
) -> wasmtime::Result<()>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
{
    let began = Instant::now();
    let abandoned = Arc::new(AtomicBool::new(false));
    let guard = Abandon(Some(abandoned.clone()));
    let job = Job {
        request: request.map(|body| body.boxed_unsync()),
        respond,
        taken: None,
        abandoned,
    };
    let (done, fate) = match workers.offer(job).await {
        Ok(done) => {
            workers
                .counters
                .instantiations
                .fetch_sub(1, Ordering::Relaxed);
            (done.0, done.1)
        }
        Err(job) => {
            let (tx, rx) = mpsc::channel(1);
            workers.register(tx);
            let (done_tx, done_rx) = oneshot::channel();
            let fate = Arc::new(Fate::default());
            let worker = serve(
                pre.clone(),
                store,
                job,
                done_tx,
                rx,
                fate.clone(),
                workers.timeout,
            );
            let usage = workers.usage.clone();
            tokio::spawn(async move { accounted(worker, &usage).await });
            (done_rx, fate)
        }
    };
    // Dropped (the server's timeout, a kill), `done` tells the worker this request is
    // abandoned.
    let finished = done.await;
    guard.finished();
    let finished = match finished {
        Ok(finished) => finished,
        Err(_) => Err(fate.error().await),
    };
    // Past its timeout, the worker stopped the guest: the server's own timeout (the same
    // length, started before this) answers, with a 504 rather than the trap's 500.
    if finished.is_err() && !workers.timeout.is_zero() && began.elapsed() >= workers.timeout {
        std::future::pending::<()>().await;
    }
    finished
}

/// One instance serving `first`, then whatever it takes from `offers`, until it has nothing.
async fn serve(
    pre: ServicePre<ComponentState>,
    mut store: Store<ComponentState>,
    first: Job,
    first_done: oneshot::Sender<Finished>,
    mut offers: mpsc::Receiver<Job>,
    fate: Arc<Fate>,
    timeout: Duration,
) {
    let clock = Arc::new(Clock::new(timeout));
    {
        let clock = clock.clone();
        store.epoch_deadline_callback(move |mut cx| {
            if clock.expired() {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(cx.data_mut().limits().on_epoch())
        });
    }
    let service = match pre.instantiate_async(&mut store).await {
        Ok(service) => service,
        Err(e) => {
            // The error itself (a full instance pool is a 503, not a 500).
            let _ = first_done.send(Err(e));
            stop_taking(&mut offers);
            fate.end(&Ok(()));
            return;
        }
    };
    let func = *service.wasi_http_handler().func_handle().func();
    let ended = store
        .run_concurrent(async |accessor| {
            let mut running = FuturesUnordered::new();
            running.push(one(&service, accessor, first, first_done, &clock));
            let mut taking = true;
            let mut abandoned = false;
            let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
            std::future::poll_fn(|cx| {
                loop {
                    match running.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ended::Done)) => continue,
                        // The server gave up on a request: take no more.
                        Poll::Ready(Some(Ended::Abandoned)) => {
                            abandoned = true;
                            if taking {
                                taking = false;
                                stop_taking(&mut offers);
                            }
                            continue;
                        }
                        Poll::Ready(None) | Poll::Pending => {}
                    }
                    if taking && let Poll::Ready(Some(mut job)) = offers.poll_recv(cx) {
                        let taken = job.taken.take();
                        let ready = accessor.poll_ready_for_concurrent_call(func, cx).is_ready();
                        if ready {
                            let (done_tx, done_rx) = oneshot::channel();
                            if let Some(t) = taken {
                                let _ = t.send(Taken::Yes(done_rx, fate.clone()));
                            }
                            running.push(one(&service, accessor, job, done_tx, &clock));
                            grace = None;
                        } else if let Some(t) = taken {
                            let _ = t.send(Taken::No(Box::new(job)));
                        }
                        continue;
                    }
                    if !running.is_empty() {
                        return Poll::Pending;
                    }
                    // No request left: take no more, and give the guest's own tasks a little
                    // time to finish before the instance goes (none if a request was abandoned:
                    // its guest task may never end).
                    if taking {
                        taking = false;
                        stop_taking(&mut offers);
                    }
                    if abandoned || accessor.poll_no_interesting_tasks(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    let sleep = grace
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(POST_RESPONSE_GRACE)));
                    return sleep.as_mut().poll(cx);
                }
            })
            .await;
        })
        .await;
    stop_taking(&mut offers);
    fate.end(&ended);
}

/// Closes `offers` and hands every job still in it back to its request.
fn stop_taking(offers: &mut mpsc::Receiver<Job>) {
    offers.close();
    bounce_all(offers);
}

fn bounce_all(offers: &mut mpsc::Receiver<Job>) {
    while let Ok(mut job) = offers.try_recv() {
        if let Some(t) = job.taken.take() {
            let _ = t.send(Taken::No(Box::new(job)));
        }
    }
}

/// How one request ended in its worker.
enum Ended {
    Done,
    /// Its `run` was dropped (timeout, kill) before it was done.
    Abandoned,
}

/// One request in the worker's event loop: the guest's `handle`, the response to `respond`,
/// then its body to its end.
async fn one(
    service: &Service,
    accessor: &Accessor<ComponentState>,
    job: Job,
    mut done: oneshot::Sender<Finished>,
    clock: &Clock,
) -> Ended {
    let started = clock.start(job.abandoned.clone());
    let Job {
        request, respond, ..
    } = job;
    let work = async {
        // The default hooks strip the forbidden headers, as the function's own (outbound-only)
        // hooks would.
        let (request, request_io) = wasmtime_wasi_http::p3::Request::from_http(
            wasmtime_wasi_http::default_hooks(),
            request,
        );
        match service.handle(accessor, request).await? {
            Ok(response) => {
                // The request's I/O result travels with the response's body (as
                // wasmtime-wasi-http's own handler does it).
                let response =
                    accessor.with(|mut store| response.into_http(&mut store, request_io))?;
                let (ended_tx, ended_rx) = oneshot::channel::<()>();
                let response = response.map(|body| {
                    Watched {
                        inner: body,
                        ended: Some(ended_tx),
                    }
                    .boxed_unsync()
                });
                let _ = respond.send(Ok(response));
                let _ = ended_rx.await;
            }
            Err(code) => {
                let _ = respond.send(Err(format!("{code:?}")));
            }
        }
        wasmtime::Result::<()>::Ok(())
    };
    let ended = tokio::select! {
        biased;
        () = done.closed() => Ended::Abandoned,
        result = work => {
            let _ = done.send(result);
            Ended::Done
        }
    };
    clock.end(started);
    ended
}

/// When a worker's guest must be stopped: its live requests (each with its start and its
/// abandoned flag). Read at every epoch tick by the store's callback, on the guest's thread.
struct Clock {
    timeout: Duration,
    running: Mutex<Vec<(u64, Instant, Arc<AtomicBool>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Clock {
    fn new(timeout: Duration) -> Self {
        Clock {
            timeout,
            running: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A request begins; its id for [`Clock::end`].
    fn start(&self, abandoned: Arc<AtomicBool>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, Instant::now(), abandoned));
        id
    }

    fn end(&self, id: u64) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(i, _, _)| *i != id);
    }

    /// The oldest request not abandoned is past the timeout, or every request was abandoned.
    fn expired(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut live = running
            .iter()
            .filter(|(_, _, abandoned)| !abandoned.load(Ordering::Relaxed));
        match live.next() {
            None => !running.is_empty(),
            Some((_, oldest, _)) => !self.timeout.is_zero() && oldest.elapsed() > self.timeout,
        }
    }
}

/// A response body that drops `_ended` at its end (or when hyper drops it).
struct Watched {
    inner: WasiBody,
    ended: Option<oneshot::Sender<()>>,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
