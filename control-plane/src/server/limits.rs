//! API limits and the per-request context: the [`Gate`] every call passes after authentication.
//!
//! - Per-identity rate limits: a token bucket per user name (`--max-requests-per-identity-qps`,
//!   `--max-requests-per-identity-burst`); a call beyond it is `ResourceExhausted` (Kubernetes'
//!   429) with a retry hint in the `retry-after` (seconds) and `grpc-retry-pushback-ms`
//!   metadata. Callers in `system:masters` are exempt, as Kubernetes' API Priority and Fairness
//!   exempts them, so the admin can always repair a cluster a flood is hitting. Nodes
//!   (`system:nodes`) have buckets of their own that grow with the pods bound to them
//!   (`--max-requests-per-node-qps`/`-burst` plus [`PER_POD_QPS`]/[`PER_POD_BURST`] a pod): an
//!   agent's calls grow with its pods (status, events, the wasi:keyvalue calls it relays, held to
//!   200/s per pod by the agent), so a healthy agent is never slowed, while a node whose key was
//!   stolen cannot flood the server beyond what its pods could ask.
//! - Failed authentications per source address ([`FailedAuthentications`]): past
//!   `--max-failed-authentications-burst` (refilled at `--failed-authentications-qps`), every
//!   request from that address but a node's (a certificate the handshake verified) is
//!   `ResourceExhausted` until the bucket refills, whatever its credentials: a token guesser
//!   learns nothing more while it is held.
//! - A cap on concurrent watches per identity (`--max-watches-per-identity`): a watch beyond it is
//!   `ResourceExhausted`; the count drops as watches end ([`WatchPermit`]).
//! - Request deadlines are tonic's: a client's `grpc-timeout` is honoured, and the server applies
//!   its `--request-timeout` (Kubernetes' default, 60 s) to calls that send none; a stream's
//!   deadline covers its start, not its life.
//! - Each authenticated call gets a [`CallContext`] (audit id, source, user agent, path) that the
//!   handlers use for the audit log and the request metrics (`crate::metrics::api`); calls
//!   refused here are audited and counted here.
//!
//! Must not: authenticate (the wrapped interceptor does), authorize, or read request bodies.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::audit::{AuditLog, ObjectRef, Outcome, RequestInfo};
use crate::auth::{Identity, MASTERS};

/// The server's limits (flags of `skiff server`).
#[derive(Debug, Clone, Copy)]
pub struct LimitOptions {
    /// Sustained requests per second per identity (0: unlimited).
    pub qps: f64,
    /// Requests an identity may send at once above the rate.
    pub burst: u32,
    /// Watches open at once per identity (0: unlimited).
    pub max_watches: usize,
    /// Deadline of a call that sends no `grpc-timeout`.
    pub request_timeout: Duration,
    /// Sustained requests per second of a node with no pods (0: nodes are not limited); each
    /// pod bound to it adds [`PER_POD_QPS`].
    pub node_qps: f64,
    /// A node's burst with no pods; each pod adds [`PER_POD_BURST`].
    pub node_burst: u32,
    /// Failed authentications a source address may make at once before it is held (0: never).
    pub failed_auth_burst: u32,
    /// Failed authentications a second a held source earns back.
    pub failed_auth_qps: f64,
}

/// What each pod bound to a node adds to its rate: the 200 wasi:keyvalue calls a second the
/// agent relays for it at most, and its status writes, Events and token and Secret reads.
pub const PER_POD_QPS: f64 = 210.0;
/// What each pod adds to its node's burst (the agent's keyvalue burst is 400).
pub const PER_POD_BURST: u32 = 420;

impl Default for LimitOptions {
    /// Generous enough for a node agent's start (a list and a watch per kind, pod status
    /// updates) and the benches; a client past it is misbehaving.
    fn default() -> Self {
        Self {
            qps: 100.0,
            burst: 200,
            max_watches: 100,
            request_timeout: Duration::from_secs(60),
            node_qps: 50.0,
            node_burst: 200,
            failed_auth_burst: 20,
            failed_auth_qps: 1.0,
        }
    }
}

/// The security settings of a server beyond authentication: limits, the audit log, Event TTL.
#[derive(Debug, Clone)]
pub struct SecurityOptions {
    pub limits: LimitOptions,
    /// `--audit-log-path` (default `DIR/audit.log`; `-` is standard output).
    pub audit_log_path: Option<std::path::PathBuf>,
    /// `--audit-log-maxsize` in megabytes (0: never rotate).
    pub audit_log_max_size_mb: u64,
    /// `--audit-log-maxbackup` (0: keep all).
    pub audit_log_max_backups: usize,
    /// `--event-ttl`.
    pub event_ttl: Duration,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        Self {
            limits: LimitOptions::default(),
            audit_log_path: None,
            audit_log_max_size_mb: 100,
            audit_log_max_backups: 10,
            event_ttl: crate::controllers::event_ttl::DEFAULT_EVENT_TTL,
        }
    }
}

impl SecurityOptions {
    /// The audit log's options for a server whose data dir is `dir`.
    pub fn audit(&self, dir: &std::path::Path) -> crate::audit::AuditOptions {
        crate::audit::AuditOptions {
            path: self
                .audit_log_path
                .clone()
                .unwrap_or_else(|| dir.join("audit.log")),
            max_size_mb: self.audit_log_max_size_mb,
            max_backups: self.audit_log_max_backups,
        }
    }
}

/// Identities tracked before idle ones are forgotten.
const MAX_TRACKED: usize = 10_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// How many pods are bound to a node (the node authorizer's graph answers).
pub type PodsOnNode = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// The shared state of the limits.
pub struct Limits {
    options: LimitOptions,
    buckets: DashMap<String, Bucket>,
    watches: DashMap<String, Arc<AtomicUsize>>,
    pods_on: Option<PodsOnNode>,
    failures: FailedAuthentications,
}

fn exempt(who: &Identity) -> bool {
    who.in_group(MASTERS)
}

impl Limits {
    pub fn new(options: LimitOptions) -> Arc<Self> {
        Self::with_pods(options, None)
    }

    /// Limits whose node buckets grow with the pods `pods_on` counts on each node.
    pub fn with_pods(options: LimitOptions, pods_on: Option<PodsOnNode>) -> Arc<Self> {
        Arc::new(Self {
            options,
            buckets: DashMap::new(),
            watches: DashMap::new(),
            pods_on,
            failures: FailedAuthentications::new(
                options.failed_auth_burst,
                options.failed_auth_qps,
            ),
        })
    }

    /// `who`'s rate (per second) and burst; `None`: not limited.
    pub fn rate_of(&self, who: &Identity) -> Option<(f64, u32)> {
        if exempt(who) {
            return None;
        }
        if let Some(node) = who.node_name() {
            if self.options.node_qps <= 0.0 {
                return None;
            }
            let pods = self.pods_on.as_ref().map_or(0, |count| count(node));
            let pods_u32 = u32::try_from(pods).unwrap_or(u32::MAX);
            return Some((
                self.options.node_qps + PER_POD_QPS * pods as f64,
                self.options
                    .node_burst
                    .saturating_add(PER_POD_BURST.saturating_mul(pods_u32)),
            ));
        }
        (self.options.qps > 0.0).then_some((self.options.qps, self.options.burst))
    }

    /// Whether requests from `source` are held for failed authentications: how long until not.
    pub fn authentication_held(&self, source: Option<IpAddr>, now: Instant) -> Option<Duration> {
        self.failures.held(source?, now)
    }

    /// Counts a failed authentication from `source`.
    pub fn authentication_failed(&self, source: Option<IpAddr>, now: Instant) {
        if let Some(source) = source {
            self.failures.failed(source, now);
        }
    }

    pub fn options(&self) -> LimitOptions {
        self.options
    }

    /// Takes one token of `who`'s bucket, or says how long until one is there.
    pub fn admit(&self, who: &Identity, now: Instant) -> Result<(), Duration> {
        let Some((qps, burst)) = self.rate_of(who) else {
            return Ok(());
        };
        let burst = f64::from(burst.max(1));
        if self.buckets.len() >= MAX_TRACKED {
            self.forget_idle(now);
        }
        let mut bucket = self
            .buckets
            .entry(who.name().into_owned())
            .or_insert(Bucket {
                tokens: burst,
                last: now,
            });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * qps).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / qps))
        }
    }

    /// Forgets the buckets that have refilled (one made afresh is the same) and the watch counts
    /// at zero, so that many short-lived identities (ServiceAccount tokens) do not grow the maps
    /// without end.
    fn forget_idle(&self, now: Instant) {
        // The longest any bucket takes to fill (a node's pods add burst and rate alike).
        let o = &self.options;
        let full_after = [
            (f64::from(o.burst), o.qps),
            (f64::from(o.node_burst), o.node_qps),
            (f64::from(PER_POD_BURST), PER_POD_QPS),
        ]
        .into_iter()
        .filter(|(_, qps)| *qps > 0.0)
        .map(|(burst, qps)| burst / qps)
        .fold(0.0, f64::max);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full_after);
        self.watches
            .retain(|_, count| count.load(Ordering::Acquire) > 0);
    }

    /// A place among `who`'s concurrent watches, held until the permit drops.
    pub fn watch(self: &Arc<Self>, who: &Identity) -> Result<WatchPermit, Status> {
        let count = self
            .watches
            .entry(who.name().into_owned())
            .or_default()
            .clone();
        let max = self.options.max_watches;
        let now = count.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = WatchPermit { count };
        if max > 0 && now > max && !exempt(who) {
            drop(permit);
            return Err(exhausted(
                format!(
                    "too many watches from user {:?}: at most {max} at once; close some or retry later",
                    who.name()
                ),
                Duration::from_secs(1),
            ));
        }
        Ok(permit)
    }

    /// Watches `who` holds open now.
    pub fn open_watches(&self, who: &Identity) -> usize {
        self.watches
            .get(who.name().as_ref())
            .map(|c| c.load(Ordering::Acquire))
            .unwrap_or(0)
    }
}

/// Failed authentications per source address: a token bucket each, taken from by every failure;
/// an empty one holds the address until it has a token again.
pub struct FailedAuthentications {
    burst: f64,
    qps: f64,
    buckets: DashMap<IpAddr, Bucket>,
}

impl FailedAuthentications {
    /// `burst` 0: never held.
    pub fn new(burst: u32, qps: f64) -> Self {
        Self {
            burst: f64::from(burst),
            qps: if qps.is_finite() { qps.max(0.0) } else { 0.0 },
            buckets: DashMap::new(),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.qps).min(self.burst);
        bucket.last = now;
    }

    /// How long `source` stays held, if it is.
    pub fn held(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        if self.burst <= 0.0 {
            return None;
        }
        let mut bucket = self.buckets.get_mut(&source)?;
        self.refill(&mut bucket, now);
        if bucket.tokens >= 1.0 {
            return None;
        }
        let wait = if self.qps > 0.0 {
            (1.0 - bucket.tokens) / self.qps
        } else {
            3600.0
        };
        Some(Duration::from_secs_f64(wait))
    }

    /// Counts one failure from `source`.
    pub fn failed(&self, source: IpAddr, now: Instant) {
        if self.burst <= 0.0 {
            return;
        }
        if self.buckets.len() >= MAX_TRACKED {
            // Forget the addresses that have earned everything back.
            let full_after = if self.qps > 0.0 {
                self.burst / self.qps
            } else {
                f64::MAX
            };
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < full_after);
        }
        let mut bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        self.refill(&mut bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

/// One open watch; dropping it frees its place.
pub struct WatchPermit {
    count: Arc<AtomicUsize>,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `ResourceExhausted` with the retry hint Kubernetes gives in `Retry-After`.
fn exhausted(message: String, retry: Duration) -> Status {
    let seconds = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    let mut status = Status::resource_exhausted(message);
    let metadata = status.metadata_mut();
    metadata.insert("retry-after", MetadataValue::from(seconds.max(1)));
    metadata.insert(
        "grpc-retry-pushback-ms",
        MetadataValue::from(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX).max(1)),
    );
    status
}

/// The gRPC path of a request, put in its extensions by [`RecordPath`].
#[derive(Debug, Clone)]
pub struct RequestPath(pub String);

/// A tower layer that records each request's path for the [`Gate`] (interceptors see no URI).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordPath;

impl<S> tower::Layer<S> for RecordPath {
    type Service = RecordPathService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordPathService(inner)
    }
}

#[derive(Debug, Clone)]
pub struct RecordPathService<S>(S);

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for RecordPathService<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: tonic::codegen::http::Request<B>) -> Self::Future {
        let path = RequestPath(req.uri().path().to_string());
        req.extensions_mut().insert(path);
        self.0.call(req)
    }
}

/// What the handlers know of a call beyond its message: put in its extensions by the [`Gate`].
#[derive(Clone)]
pub struct CallContext {
    pub info: RequestInfo,
    pub audit: Option<Arc<AuditLog>>,
    pub limits: Arc<Limits>,
    /// The authenticated caller when the call acts as someone else (impersonation): the audit
    /// log names both.
    pub impersonator: std::sync::OnceLock<Identity>,
}

/// A call's context, if it came through a [`Gate`].
#[derive(Clone, Default)]
pub struct Call(Option<Arc<CallContext>>);

impl Call {
    /// The call of a context the [`Gate`] made (REST requests carry it themselves).
    pub fn from_context(context: Arc<CallContext>) -> Self {
        Self(Some(context))
    }

    pub fn of<T>(req: &Request<T>) -> Self {
        Self(req.extensions().get::<Arc<CallContext>>().cloned())
    }

    /// Marks the call as made by `caller` acting as another identity (the one its handlers
    /// are given), for the audit log.
    pub fn impersonated_by(&self, caller: &Identity) {
        if let Some(ctx) = &self.0 {
            let _ = ctx.impersonator.set(caller.clone());
        }
    }

    /// Writes the audit event of a finished call on `object`.
    pub fn done<T>(
        &self,
        who: &Identity,
        verb: &str,
        object: ObjectRef,
        result: &Result<T, Status>,
    ) {
        crate::telemetry::request_object(&object.namespace, &object.name);
        let Some(ctx) = &self.0 else { return };
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        crate::metrics::api::request_done(
            verb,
            Some(&object),
            crate::audit::http_code(code),
            elapsed_since(ctx.info.received),
        );
        let Some(audit) = &ctx.audit else { return };
        let outcome = match result {
            Ok(_) => Outcome::OK,
            Err(status) => Outcome {
                code: status.code(),
                message: status.message(),
            },
        };
        let (caller, acting_as) = match ctx.impersonator.get() {
            Some(caller) => (caller, Some(who)),
            None => (who, None),
        };
        audit.record_impersonated(
            &ctx.info,
            Some(caller),
            acting_as,
            verb,
            Some(&object),
            "ResponseComplete",
            outcome,
        );
    }

    /// A place among the caller's watches (none needed outside a [`Gate`]).
    pub fn watch(&self, who: &Identity) -> Result<Option<WatchPermit>, Status> {
        match &self.0 {
            Some(ctx) => ctx.limits.watch(who).map(Some),
            None => Ok(None),
        }
    }
}

/// The object a call on kind `K` acts on, for the audit log. An empty namespace is `default` for
/// a call on one object, and stays empty (all namespaces) for a list or watch (`many`).
pub fn object_ref<K: skiff_api::Resource>(
    namespace: &str,
    name: &str,
    subresource: &str,
    many: bool,
) -> ObjectRef {
    let (group, version) = match K::API_VERSION.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", K::API_VERSION),
    };
    ObjectRef {
        resource: K::PLURAL.to_string(),
        namespace: match (K::NAMESPACED, namespace) {
            (false, _) => String::new(),
            // The registry's default for a namespaced object written without one.
            (true, "") if !many => "default".to_string(),
            (true, ns) => ns.to_string(),
        },
        name: name.to_string(),
        api_group: group.to_string(),
        api_version: version.to_string(),
        subresource: subresource.to_string(),
    }
}

/// The time since a request was received (zero if the clock stepped back).
fn elapsed_since(received: time::OffsetDateTime) -> Duration {
    Duration::try_from(time::OffsetDateTime::now_utc() - received).unwrap_or_default()
}

/// Whether the kinds' handlers audit calls to `path` themselves (`/skiff.v1.PodApi/Get`).
fn audited_by_handler(path: &str) -> bool {
    let Some(service) = path
        .strip_prefix("/skiff.v1.")
        .and_then(|p| p.split('/').next())
        .and_then(|s| s.strip_suffix("Api"))
    else {
        return false;
    };
    skiff_api::kinds::KINDS.iter().any(|k| k.kind == service)
}

/// The verb of a call outside the kinds' APIs, from its method (`/skiff.v1.PodExecApi/Exec` →
/// `exec`).
fn verb_of_path(path: &str) -> String {
    path.rsplit('/').next().unwrap_or("").to_ascii_lowercase()
}

/// The interceptor of every service: authenticates with the wrapped interceptor, then applies
/// the rate limit and attaches the [`CallContext`]; refusals are audited here.
#[derive(Clone)]
pub struct Gate<A> {
    auth: A,
    limits: Arc<Limits>,
    audit: Option<Arc<AuditLog>>,
}

impl<A> Gate<A> {
    pub fn new(auth: A, limits: Arc<Limits>, audit: Option<Arc<AuditLog>>) -> Self {
        Self {
            auth,
            limits,
            audit,
        }
    }
}

impl<A> Gate<A> {
    /// What follows authentication, for both front ends (gRPC here, REST in `crate::rest`): the
    /// rate limit, the audit of refusals (and of calls no handler audits: `handler_audits`
    /// false), and the call's context. `guessable`: the caller sent no client certificate (its
    /// credentials were a bearer token or nothing). Only such failures count toward holding the
    /// source, and only such callers are held: a certificate the handshake verified is not a
    /// guess, and a revoked or expired node retrying must not lock out the admin beside it.
    pub fn admit_as(
        &self,
        info: RequestInfo,
        verb: &str,
        authenticated: Result<Identity, Status>,
        handler_audits: bool,
        guessable: bool,
    ) -> Result<(Identity, Arc<CallContext>), Status> {
        let now = Instant::now();
        // A source held for failed authentications is refused whatever it sent (a guess that
        // happens to be right included), but for certificates and nodes: they are not guessed.
        let held = match guessable {
            true => self.limits.authentication_held(info.source_ip, now),
            false => None,
        };
        let authenticated = match held {
            Some(wait) if !matches!(authenticated, Ok(Identity::Node(_))) => {
                let source = info.source_ip.map(|ip| ip.to_string()).unwrap_or_default();
                Err(exhausted(
                    format!(
                        "too many failed authentications from {source}: retry after {} ms",
                        wait.as_millis().max(1)
                    ),
                    wait,
                ))
            }
            _ => {
                if authenticated.is_err() && guessable {
                    self.limits.authentication_failed(info.source_ip, now);
                }
                authenticated
            }
        };
        let who = match authenticated {
            Ok(who) => who,
            Err(status) => {
                crate::metrics::api::request_done(
                    verb,
                    None,
                    crate::audit::http_code(status.code()),
                    elapsed_since(info.received),
                );
                if let Some(audit) = &self.audit {
                    audit.record(
                        &info,
                        None,
                        verb,
                        None,
                        "ResponseComplete",
                        Outcome {
                            code: status.code(),
                            message: status.message(),
                        },
                    );
                }
                return Err(status);
            }
        };
        if let Err(wait) = self.limits.admit(&who, now) {
            let (qps, burst) = self.limits.rate_of(&who).unwrap_or_default();
            let status = exhausted(
                format!(
                    "too many requests from user {:?}: at most {qps} a second, bursts of {burst}; retry after {} ms",
                    who.name(),
                    wait.as_millis().max(1)
                ),
                wait,
            );
            crate::metrics::api::request_done(
                verb,
                None,
                crate::audit::http_code(status.code()),
                elapsed_since(info.received),
            );
            if let Some(audit) = &self.audit {
                audit.record(
                    &info,
                    Some(&who),
                    verb,
                    None,
                    "ResponseComplete",
                    Outcome {
                        code: status.code(),
                        message: status.message(),
                    },
                );
            }
            return Err(status);
        }
        if !handler_audits {
            // Calls no handler finishes through `Call::done` count as they are let in.
            crate::metrics::api::request_done(verb, None, 200, elapsed_since(info.received));
        }
        if let Some(audit) = &self.audit
            && !handler_audits
        {
            // Logs, exec, port-forward, tunnels, metrics: audited as they are let in.
            audit.record(
                &info,
                Some(&who),
                verb,
                None,
                "RequestReceived",
                Outcome::OK,
            );
        }
        let context = Arc::new(CallContext {
            info,
            audit: self.audit.clone(),
            limits: self.limits.clone(),
            impersonator: std::sync::OnceLock::new(),
        });
        Ok((who, context))
    }

    /// The authenticator the gate wraps.
    pub fn authenticator(&self) -> &A {
        &self.auth
    }
}

impl<A: tonic::service::Interceptor> tonic::service::Interceptor for Gate<A> {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let info = RequestInfo {
            audit_id: uuid::Uuid::new_v4().to_string(),
            uri: request
                .extensions()
                .get::<RequestPath>()
                .map(|p| p.0.clone())
                .unwrap_or_default(),
            source_ip: request.remote_addr().map(|a| a.ip()),
            user_agent: request
                .metadata()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            received: time::OffsetDateTime::now_utc(),
        };
        let verb = verb_of_path(&info.uri);
        let handler_audits = audited_by_handler(&info.uri);
        let guessable = request.peer_certs().is_none();
        let (mut request, authenticated) = match self.auth.call(request) {
            Ok(request) => {
                let who = request
                    .extensions()
                    .get::<Identity>()
                    .cloned()
                    .ok_or_else(|| Status::unauthenticated("unauthenticated request"));
                (Some(request), who)
            }
            Err(status) => (None, Err(status)),
        };
        let (_, context) = self.admit_as(info, &verb, authenticated, handler_audits, guessable)?;
        let mut request = request
            .take()
            .ok_or_else(|| Status::unauthenticated("unauthenticated request"))?;
        request.extensions_mut().insert(context);
        Ok(request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(name: &str) -> Identity {
        Identity::User {
            name: name.into(),
            groups: vec![],
        }
    }

    fn limits(qps: f64, burst: u32, max_watches: usize) -> Arc<Limits> {
        Limits::new(LimitOptions {
            qps,
            burst,
            max_watches,
            request_timeout: Duration::from_secs(60),
            node_qps: 0.0,
            node_burst: 0,
            failed_auth_burst: 0,
            failed_auth_qps: 0.0,
        })
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate_per_identity() {
        let l = limits(10.0, 5, 0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.admit(&user("a"), t0).is_ok());
        }
        let wait = l.admit(&user("a"), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another identity has its own bucket.
        assert!(l.admit(&user("b"), t0).is_ok());
        // A tenth of a second later one more token is there, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.admit(&user("a"), t1).is_ok());
        assert!(l.admit(&user("a"), t1).is_err());
    }

    #[test]
    fn idle_identities_are_forgotten_once_many_are_tracked() {
        let l = limits(10.0, 10, 0);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            l.admit(&user(&format!("u{i}")), t0).unwrap();
        }
        // Two seconds on, every bucket has refilled: the next new identity clears them.
        assert!(l.admit(&user("busy"), t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(l.buckets.len(), 1);
        // A bucket still refilling is kept, with its tokens.
        let l = limits(1.0, 2, 0);
        for _ in 0..2 {
            l.admit(&user("spent"), t0).unwrap();
        }
        l.forget_idle(t0 + Duration::from_millis(500));
        assert!(
            l.admit(&user("spent"), t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn system_masters_are_exempt() {
        let l = limits(1.0, 1, 1);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(l.admit(&Identity::Admin, t0).is_ok());
        }
        let permits: Vec<_> = (0..10)
            .map(|_| l.watch(&Identity::Admin).unwrap())
            .collect();
        assert_eq!(permits.len(), 10);
    }

    #[test]
    fn a_node_s_bucket_grows_with_its_pods() {
        let t0 = Instant::now();
        let (n1, n2) = (Identity::Node("n1".into()), Identity::Node("n2".into()));
        // node_qps 0: nodes are not limited.
        let l = limits(1.0, 1, 0);
        assert!((0..10).all(|_| l.admit(&n1, t0).is_ok()));
        let pods: PodsOnNode = Arc::new(|node: &str| if node == "n2" { 2 } else { 0 });
        let l = Limits::with_pods(
            LimitOptions {
                node_qps: 10.0,
                node_burst: 5,
                ..l.options()
            },
            Some(pods),
        );
        assert_eq!(l.rate_of(&n1), Some((10.0, 5)));
        assert_eq!(
            l.rate_of(&n2),
            Some((10.0 + 2.0 * PER_POD_QPS, 5 + 2 * PER_POD_BURST))
        );
        assert!((0..5).all(|_| l.admit(&n1, t0).is_ok()));
        let wait = l.admit(&n1, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // A node with two pods gets what a keyvalue-heavy pair of pods may ask for.
        let burst = 5 + 2 * PER_POD_BURST;
        assert!((0..burst).all(|_| l.admit(&n2, t0).is_ok()));
        assert!(l.admit(&n2, t0).is_err());
        let later = t0 + Duration::from_secs(1);
        let refilled = (0..2000)
            .take_while(|_| l.admit(&n2, later).is_ok())
            .count();
        assert_eq!(refilled as f64, 10.0 + 2.0 * PER_POD_QPS);
        // The users' limit is theirs alone.
        assert!(l.admit(&user("u"), t0).is_ok());
        assert!(l.admit(&user("u"), t0).is_err());
    }

    #[test]
    fn a_source_failing_to_authenticate_is_held_then_let_go() {
        let f = FailedAuthentications::new(3, 2.0);
        let (a, b): (IpAddr, IpAddr) = ("10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(f.held(a, t0), None);
        for _ in 0..3 {
            f.failed(a, t0);
        }
        let wait = f.held(a, t0).unwrap();
        assert_eq!(wait, Duration::from_millis(500));
        // Another address is not held.
        assert_eq!(f.held(b, t0), None);
        // Half a second on, one more try is allowed; failing it holds the address again.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(f.held(a, t1), None);
        f.failed(a, t1);
        assert!(f.held(a, t1).is_some());
        // Off when the burst is 0.
        let off = FailedAuthentications::new(0, 1.0);
        for _ in 0..100 {
            off.failed(a, t0);
        }
        assert_eq!(off.held(a, t0), None);
    }

    #[test]
    fn watches_are_capped_per_identity_and_freed_on_drop() {
        let l = limits(0.0, 0, 2);
        let n = Identity::Node("n1".into());
        let a = l.watch(&n).unwrap();
        let _b = l.watch(&n).unwrap();
        let refused = l.watch(&n).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("system:node:n1"),
            "{}",
            refused.message()
        );
        assert_eq!(refused.metadata().get("retry-after").unwrap(), "1");
        assert_eq!(l.open_watches(&n), 2);
        assert!(l.watch(&Identity::Node("n2".into())).is_ok());
        drop(a);
        assert!(l.watch(&n).is_ok());
    }

    #[test]
    fn the_retry_hint_rounds_up_to_whole_seconds() {
        let s = exhausted("x".into(), Duration::from_millis(1500));
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        assert_eq!(s.metadata().get("grpc-retry-pushback-ms").unwrap(), "1500");
        let s = exhausted("x".into(), Duration::from_millis(3));
        assert_eq!(s.metadata().get("retry-after").unwrap(), "1");
    }

    #[test]
    fn kind_paths_are_told_from_other_services() {
        assert!(audited_by_handler("/skiff.v1.SecretApi/Get"));
        assert!(audited_by_handler(
            "/skiff.v1.HorizontalPodAutoscalerApi/List"
        ));
        assert!(!audited_by_handler("/skiff.v1.PodExecApi/Exec"));
        assert!(!audited_by_handler("/other.v1.PodApi/Get"));
        assert_eq!(verb_of_path("/skiff.v1.PodExecApi/Exec"), "exec");
    }
}
