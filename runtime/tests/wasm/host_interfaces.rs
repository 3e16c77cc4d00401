//! The host interfaces of `wit/` with a real guest (`tests/guests/host.c`, built against `wit/`):
//! wasi:config from the spec's values (through wasmtime-wasi-config: the guest's WIT is
//! `wit/config`, so linking it proves the two agree), wasi:keyvalue over a unix socket served
//! here by a small agent (a map behind the wire protocol), wasi:logging into the log, and grants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use skiff_runtime::wasm::host::keyvalue::wire::{
    Failure, Op, Reply, Request, Value, read_frame, write_frame,
};
use skiff_runtime::wasm::{ConfigValues, ExitReason, HostGrants, WasmError, WasmSpec};

use crate::common::Executor;

fn spec(ex: &Executor, id: &str, args: &[&str], host: HostGrants) -> WasmSpec {
    WasmSpec {
        argv0: "host".into(),
        host,
        ..ex.spec(id, &skiff_tests::guests::host_component("host"), args)
    }
}

fn all_granted() -> HostGrants {
    HostGrants {
        config: true,
        keyvalue: true,
        logging: true,
        ..HostGrants::default()
    }
}

#[tokio::test]
async fn config_values_reach_the_guest_through_the_wit_config_bindings() {
    let ex = Executor::new();
    let host = HostGrants {
        config_values: ConfigValues(vec![
            ("greeting".into(), "hello".into()),
            ("db-password".into(), "s3cret".into()),
        ]),
        ..all_granted()
    };
    let status = ex
        .run(&spec(&ex, "config", &["config", "greeting"], host.clone()))
        .await;
    assert_eq!(status.code, 0, "{:?}", ex.output("config"));
    assert_eq!(ex.output("config").0, "greeting=hello\n");
    let status = ex
        .run(&spec(&ex, "missing", &["config", "nope"], host.clone()))
        .await;
    assert_eq!(status.code, 0);
    assert_eq!(ex.output("missing").0, "nope: not set\n");
    ex.run(&spec(&ex, "all", &["config-all"], host)).await;
    let mut lines: Vec<String> = ex.output("all").0.lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["db-password=s3cret", "greeting=hello"]);
}

#[tokio::test]
async fn an_import_the_spec_does_not_grant_fails_the_start_naming_it() {
    let ex = Executor::new();
    let host = HostGrants {
        keyvalue: false,
        ..all_granted()
    };
    let e = ex
        .engine
        .start(spec(&ex, "denied", &["config", "x"], host))
        .await
        .err()
        .expect("an ungranted import must not start");
    assert!(
        matches!(
            e,
            WasmError::NotGranted {
                grant: "keyvalue",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("imports wasi:keyvalue/"), "{text}");
    assert!(
        text.contains("@0.2.0-draft, which is not granted"),
        "{text}"
    );
    assert!(e.is_invalid_input());
    // Nothing granted: the first host import is named.
    let e = ex
        .engine
        .start(spec(&ex, "none", &["config", "x"], HostGrants::default()))
        .await
        .err()
        .expect("nothing granted");
    assert!(e.to_string().contains("which is not granted"), "{e}");
}

#[tokio::test]
async fn logging_records_are_lines_of_the_instance_log() {
    let ex = Executor::new();
    let args = ["log", "warn", "checkout", "stock is low"];
    let status = ex.run(&spec(&ex, "log", &args, all_granted())).await;
    assert_eq!(status.code, 0, "{:?}", ex.output("log"));
    assert_eq!(ex.output("log").1, "WARN checkout: stock is low\n");
}

/// Bucket name → key → value.
type Buckets = Arc<Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>>;

/// A stand-in agent: one bucket map per name, the wire protocol on a unix socket.
struct FakeAgent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    buckets: Buckets,
}

impl FakeAgent {
    fn start() -> FakeAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kv.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let buckets: Buckets = Arc::default();
        let state = buckets.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    while let Ok(Some(request)) = read_frame::<Request, _>(&mut stream).await {
                        let reply = answer(&state, request);
                        if write_frame(&mut stream, &reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeAgent {
            _dir: dir,
            socket,
            buckets,
        }
    }

    fn socket(&self) -> &Path {
        &self.socket
    }
}

fn answer(state: &Buckets, r: Request) -> Reply {
    let mut buckets = state.lock().unwrap();
    if r.bucket == "forbidden" {
        return Reply::Failed {
            failure: Failure::AccessDenied,
        };
    }
    let bucket = buckets.entry(r.bucket).or_default();
    match r.op {
        Op::Open => Reply::Done,
        Op::Get { key } => Reply::Value {
            value: bucket.get(&key).cloned().map(Value),
        },
        Op::Set { key, value } => {
            bucket.insert(key, value.0);
            Reply::Done
        }
        Op::Delete { key } => {
            bucket.remove(&key);
            Reply::Done
        }
        Op::Increment { key, delta } => {
            let now: u64 = bucket
                .get(&key)
                .map(|v| String::from_utf8_lossy(v).parse().unwrap())
                .unwrap_or(0);
            bucket.insert(key, (now + delta).to_string().into_bytes());
            Reply::Number {
                number: now + delta,
            }
        }
        Op::Exists { key } => Reply::Exists {
            exists: bucket.contains_key(&key),
        },
        // Pages of two keys, to walk the cursor.
        Op::ListKeys { cursor } => {
            let from = cursor.unwrap_or(0) as usize;
            let keys: Vec<String> = bucket.keys().skip(from).take(2).cloned().collect();
            let more = bucket.len() > from + keys.len();
            Reply::Keys {
                cursor: more.then_some((from + keys.len()) as u64),
                keys,
            }
        }
        Op::GetMany { keys } => Reply::Values {
            values: keys
                .into_iter()
                .map(|k| bucket.get(&k).cloned().map(|v| (k, Value(v))))
                .collect(),
        },
        Op::SetMany { entries } => {
            bucket.extend(entries.into_iter().map(|(k, v)| (k, v.0)));
            Reply::Done
        }
        Op::DeleteMany { keys } => {
            for k in keys {
                bucket.remove(&k);
            }
            Reply::Done
        }
    }
}

#[tokio::test]
async fn keyvalue_calls_reach_the_agent_socket_and_survive_the_instance() {
    let agent = FakeAgent::start();
    let ex = Executor::new();
    let host = HostGrants {
        keyvalue_socket: Some(agent.socket().to_path_buf()),
        ..all_granted()
    };
    for (i, want) in ["hits=1\n", "hits=2\n"].into_iter().enumerate() {
        let id = format!("incr-{i}");
        let status = ex
            .run(&spec(&ex, &id, &["incr", "counters", "hits"], host.clone()))
            .await;
        assert_eq!(status.code, 0, "{:?}", ex.output(&id));
        assert_eq!(ex.output(&id).0, want);
    }
    ex.run(&spec(
        &ex,
        "set",
        &["set", "app", "colour", "teal"],
        host.clone(),
    ))
    .await;
    ex.run(&spec(&ex, "get", &["get", "app", "colour"], host.clone()))
        .await;
    assert_eq!(ex.output("get").0, "colour=teal\n");
    assert_eq!(agent.buckets.lock().unwrap()["app"]["colour"], b"teal");
    ex.run(&spec(&ex, "del", &["del", "app", "colour"], host.clone()))
        .await;
    ex.run(&spec(&ex, "gone", &["get", "app", "colour"], host.clone()))
        .await;
    assert_eq!(ex.output("gone").0, "colour: not set\n");
    // The agent's refusal reaches the guest as access-denied.
    let status = ex
        .run(&spec(&ex, "denied", &["get", "forbidden", "k"], host))
        .await;
    assert_eq!(status.code, 1);
    assert_eq!(ex.output("denied").1, "host get: open: access-denied\n");
}

#[tokio::test]
async fn without_an_agent_keyvalue_fails_with_an_error_saying_so() {
    let ex = Executor::new();
    let status = ex
        .run(&spec(&ex, "noagent", &["incr", "b", "k"], all_granted()))
        .await;
    assert_eq!(status.code, 1);
    assert_eq!(status.reason, ExitReason::Error);
    let stderr = ex.output("noagent").1;
    assert!(
        stderr.starts_with("host incr: open: other: wasi:keyvalue is not available here"),
        "{stderr}"
    );
}

#[tokio::test]
async fn keyvalue_batches_and_key_pages_cross_the_socket() {
    let agent = FakeAgent::start();
    let ex = Executor::new();
    let host = HostGrants {
        keyvalue_socket: Some(agent.socket().to_path_buf()),
        ..all_granted()
    };
    let run = |id: &'static str, args: &'static [&'static str]| {
        let s = spec(&ex, id, args, host.clone());
        let ex = &ex;
        async move {
            let status = ex.run(&s).await;
            assert_eq!(status.code, 0, "{id}: {:?}", ex.output(id));
            ex.output(id).0
        }
    };
    assert_eq!(
        run("setmany", &["setmany", "b", "a=1", "b=2", "c=3"]).await,
        "3 set\n"
    );
    assert_eq!(
        run("getmany", &["getmany", "b", "a", "x", "c"]).await,
        "a=1\nx: not set\nc=3\n"
    );
    // Three keys in pages of two: the guest follows the cursor.
    assert_eq!(run("keys", &["keys", "b"]).await, "a\nb\nc\n");
    assert_eq!(
        run("delmany", &["delmany", "b", "a", "c"]).await,
        "2 deleted\n"
    );
    assert_eq!(run("keys-after", &["keys", "b"]).await, "b\n");
}
