//! `skiff user revoke NAME`: refuse a user's client certificates from now on.
//!
//! Writes NAME (spelled as a ConfigMap key: `skiff_api::join::revoked_user_key`) and the time
//! into the ConfigMap `kube-system/skiff-revoked-user-certificates` (created when missing); every
//! API server refuses the user's certificates signed (`notBefore`) up to that time at once and
//! ends the watches opened with them. A certificate the admin signs later is good. Bearer tokens
//! are not affected (token-file users are removed from the file; ServiceAccount tokens go with
//! their pod or Secret). Must not: touch RBAC bindings.

use clap::{Args, Subcommand};
use skiff_api::join::{REVOKED_USERS_CONFIG_MAP, revoked_user_key};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Revoke a user's client certificates (signed up to now): refused at once by every server
    Revoke {
        /// The user's name (the certificates' common name)
        name: String,
    },
}

/// The longest user name taken (a ConfigMap key holds 253 bytes; one byte may take three).
const MAX_NAME: usize = 84;

pub async fn run(transport: &skiff_api::client::Transport, args: UserArgs) -> Result<()> {
    match args.command {
        UserCommand::Revoke { name } => revoke(transport, &name).await,
    }
}

async fn revoke(transport: &skiff_api::client::Transport, user: &str) -> Result<()> {
    if user.is_empty() || user.len() > MAX_NAME || user.chars().any(char::is_control) {
        return Err(CliError::usage(format!(
            "error: user name {user:?}: must be 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    let key = revoked_user_key(user);
    let what = format!("user {user:?}");
    let at = super::node::add_to_revocation_list(transport, REVOKED_USERS_CONFIG_MAP, &key, &what)
        .await?;
    println!("user {user:?} revoked: their client certificates signed up to {at} are refused");
    Ok(())
}
