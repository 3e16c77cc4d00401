//! `skiff`: the one binary — the all-in-one cluster (`up`), the control plane (`server`), the
//! node agent (`agent`), and the kubectl-like client verbs (`apply`, `get`, `describe`, `delete`,
//! `logs`, `exec`, `port-forward`, `run`, `scale`, `rollout`), and `push` (a Wasm file to a
//! registry).
//!
//! Owns argument parsing, output formats and exit codes; the work itself lives in the library
//! crates. Must not hold cluster logic of its own.

mod cmd;
mod duration;
mod error;
mod metrics_endpoint;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use error::CliError;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A WebAssembly-first orchestrator",
    disable_help_subcommand = true
)]
struct Cli {
    /// Client config (default: $SKIFF_CONFIG, else ~/.skiff/config.yaml)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// All-in-one: the control plane with the embedded store (and this machine's node agent), in the foreground
    Up(Box<cmd::server::UpArgs>),
    /// The control plane only
    Server(Box<cmd::server::ServerArgs>),
    /// Create or update objects from manifests
    Apply(cmd::apply::ApplyArgs),
    /// List or show objects
    Get(cmd::get::GetArgs),
    /// Show an object in detail, with its events
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects by name or by manifest
    Delete(cmd::delete::DeleteArgs),
    /// A node agent: join a cluster and run the pods bound to this node
    Agent(cmd::agent::AgentArgs),
    /// Run a one-off pod and stream its output, like `docker run`
    Run(cmd::run::RunArgs),
    /// Print a container's logs
    Logs(cmd::logs::LogsArgs),
    /// Run a command in a running container of a pod
    Exec(cmd::exec::ExecArgs),
    /// Forward local ports to a pod (or a Service's or Deployment's pod)
    PortForward(cmd::port_forward::PortForwardArgs),
    /// Set the number of replicas of a Deployment or ReplicaSet
    Scale(cmd::scale::ScaleArgs),
    /// Add, change or remove labels of an object (a Node too)
    Label(cmd::label::LabelArgs),
    /// Add or remove taints of a node
    Taint(cmd::taint::TaintArgs),
    /// Mark a node unschedulable
    Cordon(cmd::drain::CordonArgs),
    /// Mark a node schedulable again
    Uncordon(cmd::drain::CordonArgs),
    /// Cordon a node and evict its pods (honouring PodDisruptionBudgets)
    Drain(cmd::drain::DrainArgs),
    /// Follow, undo or list a Deployment's rollouts
    Rollout(cmd::rollout::RolloutArgs),
    /// Push a Wasm module or component to an OCI registry as a Wasm OCI artifact
    Push(cmd::push::PushArgs),
    /// Inspect authorization: can-i, whoami
    Auth(cmd::auth::AuthArgs),
    /// Bootstrap tokens for joining nodes: create, list, revoke
    Token(cmd::token::TokenArgs),
    /// Events, oldest first (`--for KIND/NAME` for one object's)
    Events(cmd::events::EventsArgs),
    /// CPU and memory of nodes and pods, as the agents last reported them
    Top(cmd::top::TopArgs),
    /// Node credentials: revoke a node's client certificates
    Node(cmd::node::NodeArgs),
    /// User credentials: revoke a user's client certificates
    User(cmd::user::UserArgs),
    /// The client config in other forms: `skiff config kubeconfig` (for kubectl)
    Config(cmd::config::ConfigArgs),
    /// The linux executor with runc's command line, over OCI bundles
    #[command(hide = true)]
    Oci(cmd::oci::OciArgs),
}

fn main() {
    // The container init must run before any thread exists (it forks): not through clap and
    // tokio like every other command.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "linux-init") {
        std::process::exit(skiff_runtime::linux::init_main(&args[2..]));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // The linux executor's command line forks (an in-process container init): it runs before
    // any thread exists, like linux-init.
    let cli = match cli.command {
        Command::Oci(args) => return exit_with(cmd::oci::run(args)),
        command => Cli { command, ..cli },
    };
    // A server's warnings (Pod Security's `would violate ...`) are printed as kubectl does.
    skiff_api::client::set_warning_handler(|w| eprintln!("Warning: {w}"));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result: Result<(), CliError> = runtime.block_on(async move {
        let config = cli.config;
        match cli.command {
            Command::Up(args) => cmd::server::up(*args).await,
            Command::Server(args) => cmd::server::server(*args).await,
            Command::Apply(args) => cmd::apply::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Get(args) => cmd::get::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Describe(args) => {
                cmd::describe::run(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Delete(args) => {
                cmd::delete::run(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Agent(args) => cmd::agent::agent(args).await,
            Command::Run(args) => cmd::run::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Logs(args) => cmd::logs::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Exec(args) => cmd::exec::run(&cmd::connect(config.as_deref())?, args).await,
            Command::PortForward(args) => {
                cmd::port_forward::run(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Scale(args) => cmd::scale::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Label(args) => cmd::label::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Taint(args) => cmd::taint::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Cordon(args) => {
                cmd::drain::cordon(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Uncordon(args) => {
                cmd::drain::uncordon(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Drain(args) => {
                cmd::drain::drain(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Rollout(args) => {
                cmd::rollout::run(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Push(args) => cmd::push::run(args).await,
            Command::Auth(args) => cmd::auth::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Token(args) => cmd::token::run(config.as_deref(), args).await,
            Command::Config(args) => cmd::config::run(config.as_deref(), args),
            Command::Node(args) => cmd::node::run(&cmd::connect(config.as_deref())?, args).await,
            Command::User(args) => cmd::user::run(&cmd::connect(config.as_deref())?, args).await,
            Command::Events(args) => {
                cmd::events::run(&cmd::connect(config.as_deref())?, args).await
            }
            Command::Top(args) => cmd::top::run(&cmd::connect(config.as_deref())?, args).await,
            // Handled above, before the runtime started.
            Command::Oci(_) => Ok(()),
        }
    });
    exit_with(result);
}

/// Exits as a command's result says (message on stderr, its exit code); returns on success.
fn exit_with(result: Result<(), CliError>) {
    if let Err(e) = result {
        if !e.message.is_empty() {
            eprintln!("{e}");
        }
        std::process::exit(e.code);
    }
}
