//! `exec` in a running Linux container, through its shim's task API as containerd does it: FIFOs
//! in the task's bundle, Exec with the container's own process spec (user, env, cwd,
//! capabilities) and the new argv, Start, output relayed until the process ends, Wait, Delete.
//! A caller that goes away (the receiver dropped) gets its command killed.
//!
//! Must not: exec into a Wasm task (the shim refuses it, naming why).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::Containers;
use crate::shim::{ShimClient, TaskIo};

/// What the caller sends to the command.
#[derive(Debug)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    CloseStdin,
}

/// What the command sends back; `Exit` is last.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An exec's FIFOs; the process is killed and removed if it is dropped before it ended.
struct Running {
    client: ShimClient,
    task: String,
    exec_id: String,
    dir: PathBuf,
    ended: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        let (client, task, exec_id, dir, ended) = (
            self.client.clone(),
            self.task.clone(),
            self.exec_id.clone(),
            self.dir.clone(),
            self.ended,
        );
        tokio::spawn(async move {
            if !ended {
                let _ = client.kill_exec(&task, &exec_id, 9).await;
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    client.wait_exec(&task, &exec_id),
                )
                .await;
            }
            let _ = client.delete_exec(&task, &exec_id).await;
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}

fn fifo(dir: &Path, name: &str) -> Result<String, String> {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("making {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

impl Containers {
    /// Runs `args` in running attempt `instance_id`; its output (then its exit code) comes on the
    /// returned channel. `input` carries stdin when `stdin` is set.
    pub async fn exec(
        &self,
        instance_id: &str,
        args: Vec<String>,
        stdin: bool,
        mut input: mpsc::Receiver<ExecInput>,
    ) -> Result<mpsc::Receiver<ExecOutput>, String> {
        let (client, task) = self
            .task_shim(instance_id)
            .await
            .ok_or_else(|| "the container is not running".to_string())?;
        let bundle = self
            .bundle_of(&task)
            .ok_or_else(|| "the container is not running".to_string())?;
        if args.is_empty() {
            return Err("command: required".into());
        }
        let config: serde_json::Value = std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("reading {}/config.json", bundle.display()))?;
        let mut process = config["process"].clone();
        process["args"] = serde_json::json!(args);
        process["terminal"] = serde_json::json!(false);
        let process = serde_json::to_vec(&process).map_err(|e| e.to_string())?;

        let exec_id = format!("exec-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = bundle.join(&exec_id);
        std::fs::create_dir(&dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
        let mut running = Running {
            client: client.clone(),
            task: task.clone(),
            exec_id: exec_id.clone(),
            dir: dir.clone(),
            ended: true,
        };
        let io = TaskIo {
            stdin: if stdin {
                fifo(&dir, "stdin")?
            } else {
                String::new()
            },
            stdout: fifo(&dir, "stdout")?,
            stderr: fifo(&dir, "stderr")?,
        };
        client
            .exec(&task, &exec_id, &io, process)
            .await
            .map_err(|e| e.to_string())?;
        // The shim holds the write ends from Exec on: no end of file before the command's.
        let open = |path: &str| {
            pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|e| format!("opening {path}: {e}"))
        };
        let mut out = open(&io.stdout)?;
        let mut err = open(&io.stderr)?;
        let mut sink = if stdin {
            Some(
                pipe::OpenOptions::new()
                    .open_sender(&io.stdin)
                    .map_err(|e| format!("opening {}: {e}", io.stdin))?,
            )
        } else {
            None
        };
        client
            .start_exec(&task, &exec_id)
            .await
            .map_err(|e| e.to_string())?;
        running.ended = false;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut running = running;
            let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
            let (mut out_open, mut err_open, mut input_open) = (true, true, true);
            while out_open || err_open {
                let sent = tokio::select! {
                    // The caller went away with nothing to read: the command goes too.
                    _ = tx.closed() => false,
                    n = out.read(&mut out_buf), if out_open => match n {
                        Ok(n) if n > 0 => tx.send(ExecOutput::Stdout(out_buf[..n].to_vec())).await.is_ok(),
                        _ => { out_open = false; true }
                    },
                    n = err.read(&mut err_buf), if err_open => match n {
                        Ok(n) if n > 0 => tx.send(ExecOutput::Stderr(err_buf[..n].to_vec())).await.is_ok(),
                        _ => { err_open = false; true }
                    },
                    message = input.recv(), if input_open => {
                        match message {
                            Some(ExecInput::Stdin(bytes)) => {
                                if let Some(s) = sink.as_mut()
                                    && s.write_all(&bytes).await.is_err()
                                {
                                    sink = None;
                                }
                            }
                            Some(ExecInput::CloseStdin) | None => {
                                input_open = false;
                                sink = None;
                                let _ = running.client.close_stdin(&running.task, &running.exec_id).await;
                            }
                        }
                        true
                    },
                };
                if !sent {
                    // The caller went away: `running` kills the command as it drops.
                    return;
                }
            }
            let code = match running
                .client
                .wait_exec(&running.task, &running.exec_id)
                .await
            {
                Ok(exit) => i32::try_from(exit.code).unwrap_or(i32::MAX),
                Err(_) => 128,
            };
            running.ended = true;
            let _ = tx.send(ExecOutput::Exit(code)).await;
        });
        Ok(rx)
    }
}
