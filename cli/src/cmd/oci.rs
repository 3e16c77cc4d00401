//! `skiff oci ...` (hidden): the linux executor with runc's command line, over OCI bundles —
//! `create`, `start`, `state`, `kill`, `delete`, `run`, `exec`, `spec` — so that it can be
//! compared with runc on the same bundle (tests, `bench/run oci-start`) and used by hand.
//!
//! `skiff linux-init` (the container init the executor spawns) is dispatched in `main` before
//! any thread starts; it is not a clap command.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use nix::sys::signal::Signal;
use skiff_runtime::linux::{self, LinuxRuntime, StdioSet};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct OciArgs {
    /// Where container state lives
    #[arg(long, default_value = "/run/skiff/oci", value_name = "DIR")]
    root: PathBuf,
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Subcommand)]
enum OciCommand {
    /// Set a container up from a bundle; it waits for `start`
    Create {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// Run the created container's process
    Start { id: String },
    /// Print the container's state as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init (or, --all, every process)
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped container (--force: kill it first)
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create, start, wait and delete; exit with the process's status
    Run {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// Run a command in a running container
    Exec {
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Write a default config.json (Kubernetes' defaults) into the current directory
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
}

fn failed(e: linux::LinuxError) -> CliError {
    CliError::failed(format!("error: {e}"))
}

/// The executor; `create`, `run` and `exec` first re-execute this command from its sealed binary
/// (`skiff_runtime::linux::sealed_exe`: once per command, never a copy per container), so that
/// the inits it forks or executes cannot be used to overwrite the host's skiff binary.
fn runtime(root: PathBuf, spawns_inits: bool) -> Result<LinuxRuntime> {
    if spawns_inits {
        let args: Vec<OsString> = std::env::args_os().collect();
        linux::sealed_exe::reexec_sealed(&args).map_err(failed)?;
    }
    // Sealed now, when an init runs: `/proc/self/exe` is the read-only (or sealed) binary.
    let exe = OsString::from("/proc/self/exe");
    // This command runs before any thread starts: the init can be a fork of it.
    LinuxRuntime::new(root, vec![exe, OsString::from("linux-init")])
        .map(LinuxRuntime::with_in_process_create)
        .map_err(failed)
}

fn inherit() -> StdioSet {
    StdioSet {
        stdin: Some(std::process::Stdio::inherit()),
        stdout: Some(std::process::Stdio::inherit()),
        stderr: Some(std::process::Stdio::inherit()),
    }
}

fn signal(name: Option<&str>) -> Result<Signal> {
    let Some(name) = name else {
        return Ok(Signal::SIGTERM);
    };
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| CliError::usage(format!("error: unknown signal {name:?}")));
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| CliError::usage(format!("error: unknown signal {name:?}")))
}

pub fn run(args: OciArgs) -> Result<()> {
    let spawns_inits = matches!(
        args.command,
        OciCommand::Create { .. } | OciCommand::Run { .. } | OciCommand::Exec { .. }
    );
    let rt = runtime(args.root, spawns_inits)?;
    match args.command {
        OciCommand::Create { bundle, id } => {
            rt.create(&id, &bundle, inherit()).map_err(failed)?;
        }
        OciCommand::Start { id } => rt.start(&id).map_err(failed)?,
        OciCommand::State { id } => {
            let st = rt.state(&id).map_err(failed)?;
            let json = serde_json::json!({
                "ociVersion": "1.0.2",
                "id": st.saved.id,
                "status": st.status.as_str(),
                "pid": if st.status == linux::Status::Stopped { 0 } else { st.saved.pid },
                "bundle": st.saved.bundle,
                "created": st.saved.created,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
        OciCommand::Kill { all, id, signal: s } => {
            rt.kill(&id, signal(s.as_deref())?, all).map_err(failed)?;
        }
        OciCommand::Delete { force, id } => rt.delete(&id, force).map_err(failed)?,
        OciCommand::Run { bundle, id } => {
            linux::become_subreaper().map_err(failed)?;
            let st = rt.create(&id, &bundle, inherit()).map_err(failed)?;
            let started = rt.start(&id);
            let code = match started {
                Ok(()) => linux::wait_pid(st.saved.pid).map_err(failed),
                Err(e) => Err(failed(e)),
            };
            let deleted = rt.delete(&id, true).map_err(failed);
            let code = code?;
            deleted?;
            if code != 0 {
                return Err(CliError {
                    code,
                    message: String::new(),
                });
            }
        }
        OciCommand::Exec { id, command } => {
            let st = rt.state(&id).map_err(failed)?;
            let bundle = linux::bundle::Bundle::load(&st.saved.bundle).map_err(failed)?;
            let mut process = bundle.spec.process().clone().unwrap_or_default();
            process.set_args(Some(command));
            process.set_terminal(Some(false));
            let mut child = rt.exec(&id, &process, inherit()).map_err(failed)?;
            let status = child
                .wait()
                .map_err(|e| CliError::failed(format!("error: waiting for exec: {e}")))?;
            let code = status.code().unwrap_or(1);
            if code != 0 {
                return Err(CliError {
                    code,
                    message: String::new(),
                });
            }
        }
        OciCommand::Spec { bundle } => {
            let config = linux::default_spec::ContainerConfig::new(vec!["sh".into()]);
            let json = linux::default_spec::spec_json(&config);
            let path = bundle.join("config.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap_or_default())
                .map_err(|e| CliError::failed(format!("error: writing {}: {e}", path.display())))?;
        }
    }
    Ok(())
}
