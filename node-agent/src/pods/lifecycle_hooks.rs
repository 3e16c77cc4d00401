//! Container lifecycle hooks, as kubelet runs them:
//!
//! - `postStart` runs right after the container starts, before the pod's next container is
//!   started; if it fails the container is killed (Warning `FailedPostStartHook`, then `Killing`)
//!   and restarts per the pod's restartPolicy.
//! - `preStop` runs before the container is sent SIGTERM, when the pod is deleted or a probe
//!   failure kills it; its time counts against the grace period (what is left, at least
//!   [`MIN_GRACE_AFTER_HOOK`] seconds, goes to the stop). A failed or timed-out hook
//!   (Warning `FailedPreStopHook`) does not stop the kill.
//!
//! Handlers: `exec` (Linux containers, through the shim's exec as `skiff exec` runs a command;
//! validation refuses it for Wasm containers, which have no processes), `httpGet` (the pod's
//! address unless the hook names a host; a status of 200-399 is success) and `sleep`.
//!
//! Must not: decide restarts (the worker's record does), or run a hook twice for one container
//! run (the worker calls postStart once per start, preStop once per stop).

use std::time::{Duration, Instant};

use skiff_api::ResourceExt;
use skiff_api::v1::{Container, LifecycleHandler, Pod, Probe};

use super::probes::spec::{Action, ProbeSpec};
use super::probes::{exec, http};
use super::seams::{ContainerRuntime, PodApi};

/// Kubelet's minimumGracePeriodInSeconds: a stop after a slow preStop hook still gets this long.
pub const MIN_GRACE_AFTER_HOOK: u32 = 2;

/// The longest a postStart hook may run (Kubernetes sets none; a hook that hangs would hold
/// the pod's worker, and so its deletion, forever).
pub const POST_START_LIMIT: Duration = Duration::from_secs(300);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn handler(self, container: &Container) -> Option<&LifecycleHandler> {
        let lifecycle = container.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lifecycle.post_start.as_ref(),
            Hook::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }

    fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }
}

/// Runs `handler` for running instance `instance` of `container`, aimed at `pod_ip`.
pub async fn run(
    runtime: &dyn ContainerRuntime,
    instance: &str,
    container: &Container,
    handler: &LifecycleHandler,
    pod_ip: &str,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        ))
        .await;
        return Ok(());
    }
    // The probe machinery resolves ports (by number or name) and hosts as Kubernetes does.
    let probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        ..Default::default()
    };
    match ProbeSpec::resolve(&probe, container, pod_ip).action {
        Action::Exec { command } => exec::check(runtime, instance, &command).await,
        Action::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            http::Get {
                https,
                host: &host,
                port,
                path: &path,
                headers: &headers,
            }
            .check()
            .await
        }
        Action::Invalid(message) => Err(message),
        Action::Tcp { .. } | Action::Grpc { .. } => {
            Err("a lifecycle hook runs exec, httpGet or sleep".into())
        }
    }
}

/// Kubernetes' wording of a failed hook: `Exec lifecycle hook ([sh -c exit 1]) for Container
/// "app" in Pod "web_default(uid)" failed - error: ...`.
fn failure_message(
    pod: &Pod,
    container: &Container,
    handler: &LifecycleHandler,
    e: &str,
) -> String {
    let meta = pod.meta();
    let what = if let Some(x) = &handler.exec {
        format!("Exec lifecycle hook ({:?})", x.command)
    } else if let Some(h) = &handler.http_get {
        format!(
            "HTTP lifecycle hook ({})",
            if h.path.is_empty() { "/" } else { &h.path }
        )
    } else {
        "Sleep lifecycle hook".to_string()
    };
    format!(
        "{what} for Container {:?} in Pod \"{}_{}({})\" failed - error: {e}",
        container.name, meta.name, meta.namespace, meta.uid
    )
}

/// Runs `container`'s postStart hook, if it has one, for the instance `instance` that just
/// started. On failure the instance is killed (grace `grace` seconds) and false is returned.
pub async fn post_start(
    runtime: &dyn ContainerRuntime,
    api: &dyn PodApi,
    pod: &Pod,
    container: &Container,
    instance: &str,
    pod_ip: &str,
    grace: u32,
) -> bool {
    let Some(handler) = Hook::PostStart.handler(container) else {
        return true;
    };
    let ran = tokio::time::timeout(
        POST_START_LIMIT,
        run(runtime, instance, container, handler, pod_ip),
    )
    .await
    .unwrap_or_else(|_| Err(format!("timed out after {}s", POST_START_LIMIT.as_secs())));
    let Err(e) = ran else {
        return true;
    };
    let message = failure_message(pod, container, handler, &e);
    tracing::info!(pod = %pod.name(), container = %container.name, error = %e, "postStart hook failed");
    api.event(
        pod,
        Some(&container.name),
        true,
        Hook::PostStart.failed_reason(),
        message,
    );
    api.event(
        pod,
        Some(&container.name),
        false,
        "Killing",
        format!(
            "FailedPostStartHook: Container {} failed post start hook, will be killed",
            container.name
        ),
    );
    if let Err(e) = runtime.kill(instance, grace).await {
        tracing::warn!(%instance, error = %e, "kill after a failed postStart hook");
    }
    false
}

/// Runs `container`'s preStop hook (if any) within `grace` seconds, then stops `instance` with
/// what is left of the grace period (at least [`MIN_GRACE_AFTER_HOOK`]).
pub async fn stop(
    runtime: &dyn ContainerRuntime,
    api: &dyn PodApi,
    pod: &Pod,
    container: Option<&Container>,
    instance: &str,
    pod_ip: &str,
    grace: u32,
) {
    let mut left = grace;
    if let Some(container) = container
        && let Some(handler) = Hook::PreStop.handler(container)
    {
        let started = Instant::now();
        let limit = Duration::from_secs(grace.into());
        let ran = tokio::time::timeout(limit, run(runtime, instance, container, handler, pod_ip))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "did not complete within the grace period of {grace}s"
                ))
            });
        if let Err(e) = ran {
            tracing::info!(pod = %pod.name(), container = %container.name, error = %e, "preStop hook failed");
            api.event(
                pod,
                Some(&container.name),
                true,
                Hook::PreStop.failed_reason(),
                failure_message(pod, container, handler, &e),
            );
        }
        let spent = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
        left = grace.saturating_sub(spent).max(MIN_GRACE_AFTER_HOOK);
    }
    if let Err(e) = runtime.kill(instance, left).await {
        tracing::warn!(%instance, error = %e, "kill");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use async_trait::async_trait;
    use skiff_api::v1::*;

    use super::*;
    use crate::containers::{ContainerSpec, Instance, StartFailure};

    /// Records what the hooks did, in order; exec answers with `exit`.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        exit: i32,
    }

    #[async_trait]
    impl ContainerRuntime for Fake {
        async fn digest(&self, _: &std::path::Path) -> Result<String, StartFailure> {
            unreachable!()
        }
        async fn start(&self, _: ContainerSpec) -> Result<Instance, StartFailure> {
            unreachable!()
        }
        async fn kill(&self, id: &str, grace: u32) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("kill {id} {grace}"));
            Ok(())
        }
        async fn remove(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
        async fn exec(&self, id: &str, command: Vec<String>) -> Result<(i32, String), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("exec {id} {}", command.join(" ")));
            Ok((self.exit, "boom".into()))
        }
    }

    #[async_trait]
    impl PodApi for Fake {
        async fn update_status(&self, pod: Pod) -> Result<Pod, tonic::Status> {
            Ok(pod)
        }
        async fn get(&self, _: &str, _: &str) -> Result<Option<Pod>, tonic::Status> {
            Ok(None)
        }
        async fn finish_deletion(&self, _: &str, _: &str) -> Result<(), tonic::Status> {
            Ok(())
        }
        fn event(&self, _: &Pod, _: Option<&str>, warning: bool, reason: &str, message: String) {
            let kind = if warning { "Warning" } else { "Normal" };
            self.calls
                .lock()
                .unwrap()
                .push(format!("{kind} {reason}: {message}"));
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_hooks(
        post_start: Option<LifecycleHandler>,
        pre_stop: Option<LifecycleHandler>,
    ) -> Container {
        Container {
            name: "app".into(),
            lifecycle: Some(Lifecycle {
                post_start,
                pre_stop,
            }),
            ..Default::default()
        }
    }

    fn exec(cmd: &str) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: vec!["sh".into(), "-c".into(), cmd.into()],
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failed_post_start_hook_kills_the_container() {
        let fake = Fake {
            exit: 1,
            ..Default::default()
        };
        let c = with_hooks(Some(exec("exit 1")), None);
        assert!(!post_start(&fake, &fake, &pod(), &c, "u1/app/0", "10.0.0.2", 30).await);
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls[0], "exec u1/app/0 sh -c exit 1");
        assert_eq!(
            calls[1],
            "Warning FailedPostStartHook: Exec lifecycle hook ([\"sh\", \"-c\", \"exit 1\"]) for Container \"app\" in Pod \"web_default(u1)\" failed - error: boom"
        );
        assert!(calls[2].starts_with("Normal Killing: FailedPostStartHook"));
        assert_eq!(calls[3], "kill u1/app/0 30");
        // A hook that succeeds leaves the container alone; none at all too.
        let ok = Fake::default();
        assert!(post_start(&ok, &ok, &pod(), &c, "u1/app/0", "10.0.0.2", 30).await);
        assert!(post_start(&ok, &ok, &pod(), &Container::default(), "i", "", 30).await);
        assert_eq!(ok.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn pre_stop_runs_first_and_counts_against_the_grace_period() {
        let fake = Fake::default();
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 1 }),
            ..Default::default()
        };
        let c = with_hooks(None, Some(sleep));
        let started = std::time::Instant::now();
        stop(&fake, &fake, &pod(), Some(&c), "u1/app/0", "", 30).await;
        assert!(started.elapsed() >= Duration::from_secs(1));
        // The hook's second is taken off the 30 s grace period.
        assert_eq!(fake.calls.lock().unwrap().clone(), ["kill u1/app/0 29"]);

        // A hook longer than the grace period is cut off; the stop still gets 2 s.
        let fake = Fake::default();
        let long = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 60 }),
            ..Default::default()
        };
        let c = with_hooks(None, Some(long));
        stop(&fake, &fake, &pod(), Some(&c), "u1/app/0", "", 1).await;
        let calls = fake.calls.lock().unwrap().clone();
        assert!(
            calls[0].starts_with(
                "Warning FailedPreStopHook: Sleep lifecycle hook for Container \"app\""
            ),
            "{calls:?}"
        );
        assert!(
            calls[0].ends_with("did not complete within the grace period of 1s"),
            "{calls:?}"
        );
        assert_eq!(calls[1], "kill u1/app/0 2");

        // A failing exec hook is reported and the kill goes on.
        let fake = Fake {
            exit: 2,
            ..Default::default()
        };
        let c = with_hooks(None, Some(exec("nginx -s quit")));
        stop(&fake, &fake, &pod(), Some(&c), "u1/app/0", "", 30).await;
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls[0], "exec u1/app/0 sh -c nginx -s quit");
        assert!(calls[1].starts_with("Warning FailedPreStopHook"));
        assert_eq!(calls[2], "kill u1/app/0 30");
    }

    #[tokio::test]
    async fn http_hooks_call_the_pods_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let handler = LifecycleHandler {
            http_get: Some(HttpGetAction {
                path: "/shutdown".into(),
                port: Some(skiff_api::IntOrString {
                    value: Some(skiff_api::IntOrStringValue::Int(i32::from(port))),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fake = Fake::default();
        let c = with_hooks(None, None);
        let result = run(&fake, "i", &c, &handler, "127.0.0.1").await;
        let request = served.await.unwrap();
        assert!(request.starts_with("GET /shutdown HTTP/1.1"), "{request}");
        assert!(result.unwrap_err().contains("500"));
    }
}
