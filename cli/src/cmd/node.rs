//! `skiff node revoke NAME`: refuse a node's client certificates from now on.
//!
//! Writes NAME and the time into the ConfigMap `kube-system/skiff-revoked-node-certificates`
//! (created when missing); every API server refuses the node's certificates signed up to that
//! time at once, ends its open watches and tunnel, and refuses its renewals. The machine may join
//! again with a bootstrap token (a certificate signed later is good). Must not: touch the Node
//! object or its pods (deleting the Node is `skiff delete node NAME`).

use clap::{Args, Subcommand};
use skiff_api::client::Api;
use skiff_api::join::{BOOTSTRAP_NAMESPACE, REVOKED_NODES_CONFIG_MAP, rfc3339};
use skiff_api::v1::{ConfigMap, ObjectMeta};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Revoke a node's client certificates (signed up to now): its agent is refused at once
    Revoke {
        /// The node's name
        name: String,
    },
}

/// Writes that lost a race with another writer, tried again this many times.
const CONFLICT_RETRIES: usize = 5;

pub async fn run(transport: &skiff_api::client::Transport, args: NodeArgs) -> Result<()> {
    match args.command {
        NodeCommand::Revoke { name } => revoke(transport, &name).await,
    }
}

async fn revoke(transport: &skiff_api::client::Transport, node: &str) -> Result<()> {
    if !skiff_api::validation::is_dns1123_subdomain(node) {
        return Err(CliError::usage(format!(
            "error: node name {node:?}: must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
        )));
    }
    let at = add_to_revocation_list(
        transport,
        REVOKED_NODES_CONFIG_MAP,
        node,
        &format!("node {node:?}"),
    )
    .await?;
    println!("node {node:?} revoked: its certificates signed up to {at} are refused");
    Ok(())
}

/// Sets `key` to now in the revocation list `list` (a ConfigMap in `kube-system`, created when
/// missing), retrying lost races; returns the time written. `what` names the holder in errors.
pub(crate) async fn add_to_revocation_list(
    transport: &skiff_api::client::Transport,
    list: &str,
    key: &str,
    what: &str,
) -> Result<String> {
    let api: Api<ConfigMap> = Api::new(transport.clone(), BOOTSTRAP_NAMESPACE);
    let at = rfc3339(skiff_api::time::now().seconds);
    for _ in 0..CONFLICT_RETRIES {
        let written = match api.get_opt(list).await? {
            Some(mut list) => {
                list.data.insert(key.to_string(), at.clone());
                api.update(list).await
            }
            None => {
                let list = ConfigMap {
                    metadata: Some(ObjectMeta {
                        name: list.to_string(),
                        namespace: BOOTSTRAP_NAMESPACE.to_string(),
                        ..Default::default()
                    }),
                    data: [(key.to_string(), at.clone())].into(),
                    ..Default::default()
                };
                api.create(list).await
            }
        };
        match written {
            Ok(_) => return Ok(at),
            Err(s) if matches!(s.code(), tonic::Code::Aborted | tonic::Code::AlreadyExists) => {}
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: revoking {what}: {BOOTSTRAP_NAMESPACE}/{list} kept changing; try again"
    )))
}
