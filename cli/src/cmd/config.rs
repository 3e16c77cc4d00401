//! `skiff config kubeconfig`: prints the kubeconfig of the client config (`--config`, else
//! `$SKIFF_CONFIG`, else `~/.skiff/config.yaml`) for kubectl and Kubernetes client libraries:
//! `skiff config kubeconfig > ~/.kube/config`, or `KUBECONFIG=<(skiff config kubeconfig)`.
//! `skiff server` and `skiff up` also write it as `DIR/kubeconfig`.

use std::path::Path;

use clap::{Args, Subcommand};
use skiff_api::client::ClientConfig;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the client config as a kubeconfig (cluster, context and user `skiff`) for kubectl
    Kubeconfig,
}

pub fn run(config_flag: Option<&Path>, args: ConfigArgs) -> Result<()> {
    let path = super::config_path(config_flag);
    let config = ClientConfig::load(&path).map_err(|e| CliError::usage(e.to_string()))?;
    match args.command {
        ConfigCommand::Kubeconfig => {
            print!("{}", skiff_control_plane::rest::kubeconfig::render(&config));
            Ok(())
        }
    }
}
