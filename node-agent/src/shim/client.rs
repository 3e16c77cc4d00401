//! One connection to one shim: containerd's task API (`containerd.task.v2.Task` over ttrpc),
//! as the agent uses it, with a deadline on every call but Wait.
//!
//! [`ShimClient`] is cheap to clone (one connection, shared). Create and Delete also keep the
//! agent's records (see [`super::records`]) so that a restarted agent knows which tasks it has in
//! which shim. A process is a task's init (`exec_id` empty) or one of its execs, as in the task
//! API itself. Must not: launch shims (that is [`super::Shims`]).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim::protos::api;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::shim_async::{Client, TaskClient};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::ttrpc::r#async::transport::Socket;
use containerd_shim::protos::ttrpc::context::Context;

use super::error::ShimError;
use super::records::Records;
use super::task::{CreateTask, ExitStatus, ShimInfo, TaskIo, TaskState, TaskUsage};

/// Deadlines of the agent's calls to its shims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to a shim's socket and its first answer (Connect).
    pub connect: Duration,
    /// Create: it compiles the module (a cache hit is milliseconds, a large module seconds).
    pub create: Duration,
    /// Every other call but Wait (which waits as long as the task runs).
    pub call: Duration,
    /// `shim start` and `shim delete`.
    pub action: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            create: Duration::from_secs(120),
            call: Duration::from_secs(10),
            action: Duration::from_secs(10),
        }
    }
}

/// A connection to the shim serving one group.
#[derive(Clone)]
pub struct ShimClient {
    group: String,
    address: String,
    task: TaskClient,
    timeouts: Timeouts,
    records: Records,
}

impl std::fmt::Debug for ShimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimClient")
            .field("group", &self.group)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The name of call `init` (on a task's init) or `exec` (on one of its execs), for errors.
fn op(init: &'static str, exec: &'static str, exec_id: &str) -> &'static str {
    if exec_id.is_empty() { init } else { exec }
}

impl ShimClient {
    /// Connects to the shim at `address` (`unix://PATH`) and checks that it answers.
    pub(crate) async fn connect(
        group: &str,
        address: &str,
        timeouts: Timeouts,
        records: Records,
    ) -> Result<Self, ShimError> {
        let fail = |reason: String| ShimError::Connect {
            group: group.to_string(),
            address: address.to_string(),
            reason,
        };
        let path = PathBuf::from(
            address
                .strip_prefix("unix://")
                .ok_or_else(|| fail("not a unix:// address".into()))?,
        );
        // A Unix connect blocks while the listener's backlog is full: off the runtime's threads.
        let stream = tokio::time::timeout(
            timeouts.connect,
            tokio::task::spawn_blocking(move || std::os::unix::net::UnixStream::connect(path)),
        )
        .await
        .map_err(|_| fail(format!("no connection within {:?}", timeouts.connect)))?
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
        let socket = Socket::try_from(stream).map_err(|e| fail(e.to_string()))?;
        let client = ShimClient {
            group: group.to_string(),
            address: address.to_string(),
            task: TaskClient::new(Client::new(socket)),
            timeouts,
            records,
        };
        client
            .connect_info("")
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(client)
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every call goes through here: `call` (a request to the task service) within `limit`
    /// (`None`: as long as it takes), its failure named by `op` and `id`.
    async fn call<T>(
        &self,
        op: &'static str,
        id: &str,
        limit: Option<Duration>,
        call: impl Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, ShimError> {
        let result = match limit {
            Some(after) => {
                tokio::time::timeout(after, call)
                    .await
                    .map_err(|_| ShimError::Timeout {
                        op,
                        id: id.to_string(),
                        group: self.group.clone(),
                        after,
                    })?
            }
            None => call.await,
        };
        result.map_err(|e| ShimError::from_ttrpc(op, id, &self.group, e))
    }

    /// Connect: the shim's pid, and task `id`'s (0 if the shim has no such task).
    pub async fn connect_info(&self, id: &str) -> Result<ShimInfo, ShimError> {
        let req = api::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let call = self.task.connect(Context::default(), &req);
        let r = self
            .call("connect", id, Some(self.timeouts.connect), call)
            .await?;
        Ok(ShimInfo {
            shim_pid: r.shim_pid,
            task_pid: r.task_pid,
        })
    }

    /// Stats: task `id`'s figures now (a Linux task's cgroup, a Wasm task's instance).
    pub async fn stats(&self, id: &str) -> Result<TaskUsage, ShimError> {
        let any = self.stats_any(id).await?;
        TaskUsage::from_any(&any).map_err(|reason| ShimError::Decode {
            what: format!("stats of {id}"),
            reason,
        })
    }

    /// A function's request figures, all of them (the runtime's
    /// [`FunctionStats`](skiff_runtime::wasm::FunctionStats): requests received, in flight,
    /// rejected 503/413, timed out 504, errors 500, instantiations, a duration histogram), from
    /// the same Stats call; `None` when task `id` is no function (a command, a Linux task). For
    /// the HPA: `in_flight` as it is, `requests_total` as a rate between two readings.
    pub async fn function_stats(
        &self,
        id: &str,
    ) -> Result<Option<skiff_runtime::wasm::FunctionStats>, ShimError> {
        let any = self.stats_any(id).await?;
        Ok(super::task::function_stats(&any))
    }

    /// The Stats answer as it came.
    async fn stats_any(
        &self,
        id: &str,
    ) -> Result<containerd_shim::protos::protobuf::well_known_types::any::Any, ShimError> {
        let req = api::StatsRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let call = self.task.stats(Context::default(), &req);
        let r = self
            .call("stats", id, Some(self.timeouts.call), call)
            .await?;
        r.stats.into_option().ok_or_else(|| ShimError::Decode {
            what: format!("stats of {id}"),
            reason: "no figures in the answer".into(),
        })
    }

    /// Create: the task's pid. Recorded before the call, so that a crash in between leaves a
    /// record to clean up rather than a task the agent does not know.
    pub async fn create(&self, task: &CreateTask) -> Result<u32, ShimError> {
        super::records::check_id("task", &task.id)?;
        self.records
            .record_task(&self.group, &task.id, &task.bundle)?;
        let req = api::CreateTaskRequest {
            id: task.id.clone(),
            bundle: task.bundle.display().to_string(),
            rootfs: task
                .rootfs
                .iter()
                .map(|m| containerd_shim::protos::types::mount::Mount {
                    type_: m.typ.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let call = self.task.create(Context::default(), &req);
        match self
            .call("create", &task.id, Some(self.timeouts.create), call)
            .await
        {
            Ok(r) => Ok(r.pid),
            Err(e) => {
                // Refused: nothing was made (an AlreadyExists task is another record's).
                if matches!(e, ShimError::Rpc { .. })
                    && e.code() != Some(ttrpc::Code::ALREADY_EXISTS)
                {
                    let _ = self.records.forget_task(&self.group, &task.id);
                }
                Err(e)
            }
        }
    }

    /// Start: the task's pid. A task that was started already is refused (FailedPrecondition).
    pub async fn start(&self, id: &str) -> Result<u32, ShimError> {
        self.start_exec(id, "").await
    }

    /// Starts exec `exec_id` of task `id` (its init when empty): its pid.
    pub async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let req = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let call = self.task.start(Context::default(), &req);
        let op = op("start", "start exec", exec_id);
        Ok(self.call(op, id, Some(self.timeouts.call), call).await?.pid)
    }

    pub async fn state(&self, id: &str) -> Result<TaskState, ShimError> {
        let req = api::StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let call = self.task.state(Context::default(), &req);
        let r = self
            .call("state", id, Some(self.timeouts.call), call)
            .await?;
        let status = r.status.enum_value_or_default().into();
        let exit = (status == super::task::TaskStatus::Stopped)
            .then(|| ExitStatus::from_proto(r.exit_status, &r.exited_at));
        Ok(TaskState {
            pid: r.pid,
            status,
            exit,
        })
    }

    /// Wait: returns when the task has ended (at once if it has), however long that takes.
    /// Wrap it in a timeout to bound it; a dropped Wait leaves the task alone.
    pub async fn wait(&self, id: &str) -> Result<ExitStatus, ShimError> {
        self.wait_exec(id, "").await
    }

    /// Waits for exec `exec_id` of task `id` (its init when empty) to end.
    pub async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<ExitStatus, ShimError> {
        let req = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let call = self.task.wait(Context::default(), &req);
        let r = self
            .call(op("wait", "wait exec", exec_id), id, None, call)
            .await?;
        Ok(ExitStatus::from_proto(r.exit_status, &r.exited_at))
    }

    /// Kill: sends `signal` to the task's init, or with `all` to every process of a Linux
    /// task. A Wasm guest ends at its next epoch tick, whatever the signal (but 0 and those a
    /// process ignores by default), with 128 + the signal.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        self.signal(id, "", signal, all).await
    }

    /// Sends `signal` to exec `exec_id` of task `id`.
    pub async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ShimError> {
        self.signal(id, exec_id, signal, false).await
    }

    async fn signal(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), ShimError> {
        let req = api::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        let call = self.task.kill(Context::default(), &req);
        let op = op("kill", "kill exec", exec_id);
        self.call(op, id, Some(self.timeouts.call), call).await?;
        Ok(())
    }

    /// Delete: removes a stopped (or never started) task and what ran it; refused while it
    /// runs (kill it first). Forgets the agent's record of it, also when the shim no longer
    /// knows it.
    pub async fn delete(&self, id: &str) -> Result<ExitStatus, ShimError> {
        let deleted = self.delete_exec(id, "").await;
        if deleted.is_ok() || deleted.as_ref().is_err_and(ShimError::is_not_found) {
            self.records.forget_task(&self.group, id)?;
        }
        deleted
    }

    /// Removes ended exec `exec_id` of task `id` (its init when empty: see [`Self::delete`]).
    pub async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<ExitStatus, ShimError> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let call = self.task.delete(Context::default(), &req);
        let op = op("delete", "delete exec", exec_id);
        let r = self.call(op, id, Some(self.timeouts.call), call).await?;
        Ok(ExitStatus::from_proto(r.exit_status, &r.exited_at))
    }

    /// Exec: adds process `exec_id` to task `id`, not started: `process` is an OCI runtime
    /// `Process` as JSON, `io` its FIFOs (the shim opens them now).
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        io: &TaskIo,
        process: Vec<u8>,
    ) -> Result<(), ShimError> {
        let req = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: process,
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = self.task.exec(Context::default(), &req);
        self.call("exec", id, Some(self.timeouts.call), call)
            .await?;
        Ok(())
    }

    /// Closes exec `exec_id`'s stdin (what was written before still reaches it).
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), ShimError> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        let call = self.task.close_io(Context::default(), &req);
        self.call("close io", id, Some(self.timeouts.call), call)
            .await?;
        Ok(())
    }

    /// Shutdown: the shim exits once it serves no task (at once with `now`, ending what it
    /// runs), and this waits until its socket refuses connections (up to the call timeout);
    /// then the agent forgets the shim. Returns whether the shim went away.
    pub async fn shutdown(&self, now: bool) -> Result<bool, ShimError> {
        let req = api::ShutdownRequest {
            now,
            ..Default::default()
        };
        let call = self.task.shutdown(Context::default(), &req);
        match self
            .call("shutdown", &self.group, Some(self.timeouts.call), call)
            .await
        {
            // The shim may exit before its answer leaves.
            Ok(_) | Err(ShimError::Transport { .. }) => {}
            Err(e) => return Err(e),
        }
        if !now && !self.records.tasks(&self.group)?.is_empty() {
            // It still serves tasks of the agent's: it stays.
            return Ok(false);
        }
        let path = PathBuf::from(self.address.trim_start_matches("unix://"));
        let deadline = tokio::time::Instant::now() + self.timeouts.call;
        loop {
            let probe = path.clone();
            let alive = tokio::task::spawn_blocking(move || {
                std::os::unix::net::UnixStream::connect(probe).is_ok()
            })
            .await
            .unwrap_or(false);
            if !alive {
                self.records.forget_shim(&self.group)?;
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
