//! The agent's side of `wasi:keyvalue`: a unix socket per pod granted `keyvalue`
//! (`DATA_DIR/keyvalue/<pod uid>.sock`, in a directory only root may enter), which the pod's
//! Wasm tasks reach from their shim (named in the bundle), relayed to the control plane's
//! `KeyValueApi` with the agent's credentials and the pod's identity.
//!
//! The pod is known by the socket a connection came to, never by what the shim says: a shim
//! serving several pods' tasks cannot reach one pod's buckets through another's socket. The
//! control plane then checks that the pod runs on this node and is granted `keyvalue`. Batch
//! operations are relayed one key at a time (not atomic, as `wasi:keyvalue/batch` allows).
//! Sockets are served again when a restarted agent sees its pods (every sync asks [`Gateway::serve`],
//! which is idempotent), and removed with the pod. Each pod's control-plane calls are rate
//! limited here ([`RATE_PER_SECOND`], [`BURST`]; a batch takes one per key): past it, the guest
//! gets `error.other` saying so, and the control plane is not called. Must not: keep or cache any
//! value.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use dashmap::DashMap;
use skiff_api::client::Transport;
use skiff_api::v1::key_value_api_client::KeyValueApiClient;
use skiff_api::v1::{KeyValueCaller, KeyValueOp, KeyValueRequest, KeyValueResponse};
use skiff_runtime::wasm::host::keyvalue::wire::{
    Failure, Op, Reply, Request, Value, read_frame, write_frame,
};
use tokio::net::{UnixListener, UnixStream};

/// A pod's control-plane calls per second, sustained.
pub const RATE_PER_SECOND: f64 = 200.0;
/// A pod's control-plane calls at once after a quiet spell.
pub const BURST: f64 = 400.0;

/// A token bucket: `burst` tokens, refilled at `rate` per second, one taken per call.
struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Tokens left, as of the instant.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    /// Takes a token at `now`, if one is left.
    fn take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, since) = *state;
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let tokens = (tokens + elapsed * self.rate).min(self.burst);
        let taken = tokens >= 1.0;
        *state = (if taken { tokens - 1.0 } else { tokens }, now.max(since));
        taken
    }
}

/// A pod as its socket knows it: who it is to the control plane, and its calls' budget.
struct Pod {
    caller: KeyValueCaller,
    limit: TokenBucket,
}

/// One served socket.
struct Served {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The node's keyvalue sockets, one per pod.
#[derive(Clone)]
pub struct Gateway {
    dir: PathBuf,
    transport: Transport,
    node: String,
    served: Arc<DashMap<String, Served>>,
}

impl Gateway {
    pub fn new(data_dir: &Path, transport: Transport, node: &str) -> Self {
        Gateway {
            dir: data_dir.join("keyvalue"),
            transport,
            node: node.to_string(),
            served: Arc::default(),
        }
    }

    /// The socket of pod `namespace/name` (uid `uid`), served from now on if it was not.
    pub fn serve(&self, namespace: &str, name: &str, uid: &str) -> Result<PathBuf, String> {
        if let Some(served) = self.served.get(uid) {
            return Ok(served.path.clone());
        }
        // The filesystem work first, holding no lock of the map: the socket is bound under a
        // name of its own and renamed into place only by the call that gets the map's entry
        // (a concurrent call for the same pod drops its own), replacing any socket a previous
        // agent left (nobody listens on it any more).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("keyvalue socket directory {}: {e}", self.dir.display()))?;
        let path = self.dir.join(format!("{uid}.sock"));
        static BINDS: AtomicU64 = AtomicU64::new(0);
        let bind = BINDS.fetch_add(1, Ordering::Relaxed);
        let fresh = self
            .dir
            .join(format!(".bind-{}-{bind}.sock", std::process::id()));
        let listener = UnixListener::bind(&fresh)
            .map_err(|e| format!("keyvalue socket {}: {e}", fresh.display()))?;
        let caller = KeyValueCaller {
            namespace: namespace.to_string(),
            pod: name.to_string(),
            pod_uid: uid.to_string(),
            node: self.node.clone(),
        };
        let pod = Pod {
            caller,
            limit: TokenBucket::new(RATE_PER_SECOND, BURST, Instant::now()),
        };
        let client = KeyValueApiClient::new(self.transport.clone());
        match self.served.entry(uid.to_string()) {
            dashmap::Entry::Occupied(_) => {
                drop(listener);
                let _ = std::fs::remove_file(&fresh);
                return Ok(path);
            }
            dashmap::Entry::Vacant(v) => {
                let task = tokio::spawn(accept(listener, Arc::new(pod), client));
                v.insert(Served {
                    path: path.clone(),
                    task,
                });
            }
        }
        if let Err(e) = std::fs::rename(&fresh, &path) {
            let _ = std::fs::remove_file(&fresh);
            self.served.remove(uid);
            return Err(format!("keyvalue socket {}: {e}", path.display()));
        }
        Ok(path)
    }

    /// The pod `uid` is gone: its socket goes.
    pub fn release(&self, uid: &str) {
        self.served.remove(uid);
    }
}

async fn accept(listener: UnixListener, caller: Arc<Pod>, client: KeyValueApiClient<Transport>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, caller.clone(), client.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, pod = %caller.caller.pod, "keyvalue socket: accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers a connection's requests, one at a time, until it closes.
async fn connection(
    mut stream: UnixStream,
    caller: Arc<Pod>,
    client: KeyValueApiClient<Transport>,
) {
    loop {
        let request: Request = match read_frame(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, pod = %caller.caller.pod, "keyvalue socket: bad request");
                let failure = Failure::Other(format!("bad request: {e}"));
                let _ = write_frame(&mut stream, &Reply::Failed { failure }).await;
                return;
            }
        };
        let reply = match answer(&caller, client.clone(), request).await {
            Ok(reply) => reply,
            Err(failure) => Reply::Failed { failure },
        };
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// The failure of a call past the pod's rate limit.
fn rate_limited(caller: &KeyValueCaller) -> Failure {
    Failure::Other(format!(
        "rate limited: pod {}/{} made more than {RATE_PER_SECOND} keyvalue operations per second (burst {BURST}); try again later",
        caller.namespace, caller.pod
    ))
}

/// One control-plane call, if the pod's rate limit allows it.
async fn call(
    pod: &Pod,
    client: &mut KeyValueApiClient<Transport>,
    bucket: &str,
    op: KeyValueOp,
    key: String,
    fill: impl FnOnce(&mut KeyValueRequest),
) -> Result<KeyValueResponse, Failure> {
    if !pod.limit.take(Instant::now()) {
        return Err(rate_limited(&pod.caller));
    }
    let mut request = KeyValueRequest {
        caller: Some(pod.caller.clone()),
        bucket: bucket.to_string(),
        op: op.into(),
        key,
        ..Default::default()
    };
    fill(&mut request);
    client
        .call(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => Failure::AccessDenied,
            // The control plane's only NotFound here: the bucket was never opened.
            tonic::Code::NotFound => Failure::NoSuchStore,
            _ => Failure::Other(status.message().to_string()),
        })
}

async fn answer(
    caller: &Pod,
    mut client: KeyValueApiClient<Transport>,
    request: Request,
) -> Result<Reply, Failure> {
    let bucket = request.bucket.as_str();
    let c = &mut client;
    let none = |_: &mut KeyValueRequest| {};
    Ok(match request.op {
        Op::Open => {
            call(caller, c, bucket, KeyValueOp::Open, String::new(), none).await?;
            Reply::Done
        }
        Op::Get { key } => {
            let r = call(caller, c, bucket, KeyValueOp::Get, key, none).await?;
            Reply::Value {
                value: r.found.then_some(Value(r.value)),
            }
        }
        Op::Set { key, value } => {
            call(caller, c, bucket, KeyValueOp::Set, key, |r| {
                r.value = value.0
            })
            .await?;
            Reply::Done
        }
        Op::Delete { key } => {
            call(caller, c, bucket, KeyValueOp::Delete, key, none).await?;
            Reply::Done
        }
        Op::Exists { key } => {
            let r = call(caller, c, bucket, KeyValueOp::Exists, key, none).await?;
            Reply::Exists { exists: r.exists }
        }
        Op::ListKeys { cursor } => {
            let op = KeyValueOp::ListKeys;
            let r = call(caller, c, bucket, op, String::new(), |r| r.cursor = cursor).await?;
            Reply::Keys {
                keys: r.keys,
                cursor: r.cursor,
            }
        }
        Op::Increment { key, delta } => {
            let op = KeyValueOp::Increment;
            let r = call(caller, c, bucket, op, key, |r| r.delta = delta).await?;
            Reply::Number { number: r.number }
        }
        Op::GetMany { keys } => {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                let r = call(caller, c, bucket, KeyValueOp::Get, key.clone(), none).await?;
                values.push(r.found.then_some((key, Value(r.value))));
            }
            Reply::Values { values }
        }
        Op::SetMany { entries } => {
            for (key, value) in entries {
                call(caller, c, bucket, KeyValueOp::Set, key, |r| {
                    r.value = value.0
                })
                .await?;
            }
            Reply::Done
        }
        Op::DeleteMany { keys } => {
            for key in keys {
                call(caller, c, bucket, KeyValueOp::Delete, key, none).await?;
            }
            Reply::Done
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gateway(data_dir: &Path) -> Gateway {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let auth = skiff_api::client::BearerAuth::new("t").unwrap();
        let transport = tonic::service::interceptor::InterceptedService::new(channel, auth);
        Gateway::new(data_dir, transport, "n1")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_is_served_once_on_one_socket_replacing_a_stale_one() {
        let data = tempfile::tempdir().unwrap();
        let g = gateway(data.path());
        // A socket file left by an agent before this one.
        let stale = data.path().join("keyvalue/u1.sock");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.serve("ns", "web", "u1") })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), stale);
        }
        assert_eq!(g.served.len(), 1);
        // The one socket in place is listened on; no call's own bind is left behind.
        UnixStream::connect(&stale).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(data.path().join("keyvalue"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["u1.sock"]);
        g.release("u1");
        assert!(!stale.exists());
    }

    #[test]
    fn a_pod_gets_its_burst_then_its_rate() {
        let start = Instant::now();
        let limit = TokenBucket::new(RATE_PER_SECOND, BURST, start);
        let taken = (0..1000).filter(|_| limit.take(start)).count();
        assert_eq!(taken, BURST as usize);
        // Half a second later (on the bucket's clock): half a second's worth more.
        let later = start + Duration::from_millis(500);
        let taken = (0..1000).filter(|_| limit.take(later)).count();
        assert_eq!(taken, (RATE_PER_SECOND / 2.0) as usize);
        // A long quiet spell refills no more than the burst.
        let much_later = later + Duration::from_secs(3600);
        let taken = (0..1000).filter(|_| limit.take(much_later)).count();
        assert_eq!(taken, BURST as usize);
        // An instant out of order (another connection's) takes nothing back.
        assert!(!limit.take(later));
    }

    #[test]
    fn a_refusal_names_the_pod_and_the_limit() {
        let caller = KeyValueCaller {
            namespace: "shop".into(),
            pod: "web".into(),
            ..Default::default()
        };
        let Failure::Other(message) = rate_limited(&caller) else {
            panic!("not error.other");
        };
        assert!(message.contains("pod shop/web"), "{message}");
        assert!(
            message.contains("200 keyvalue operations per second"),
            "{message}"
        );
    }
}
