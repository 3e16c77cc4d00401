//! `skiff token create|list|revoke`: bootstrap tokens, as `kubeadm token` manages them (Secrets
//! `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` in `kube-system`).
//!
//! `create` prints the join token an agent reads with `--token-file` or `$SKIFF_TOKEN`
//! (`skiff-join.<CA sha256>.<id>.<secret>`); `list` never prints a secret; `revoke` deletes the
//! Secret, after which the token is refused at once. A token only gets a node its certificate:
//! revoking it does not touch nodes that joined with it.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use skiff_api::client::{Api, ClientConfig, ListParams};
use skiff_api::join::{
    BOOTSTRAP_NAME_PREFIX, BOOTSTRAP_NAMESPACE, BOOTSTRAP_SECRET_TYPE, BootstrapToken, JoinToken,
    bootstrap_secret, split_bootstrap_token,
};
use skiff_api::v1::Secret;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a bootstrap token and print its join token (for `skiff agent --token-file`)
    Create(CreateArgs),
    /// List bootstrap tokens: id, time left, expiry, description (never the secret)
    List,
    /// Delete a bootstrap token: ID, ID.SECRET or the whole join token
    Revoke {
        /// The token's id (or the token)
        token: String,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// How long the token is good for (0: it never expires)
    #[arg(long, default_value = "24h", value_parser = crate::duration::parse)]
    ttl: Duration,
    /// What the token is for, shown by `skiff token list`
    #[arg(long, default_value = "")]
    description: String,
}

pub async fn run(config_flag: Option<&Path>, args: TokenArgs) -> Result<()> {
    let path = super::config_path(config_flag);
    let config = ClientConfig::load(&path).map_err(|e| CliError::usage(e.to_string()))?;
    let api: Api<Secret> = Api::new(config.connect()?, BOOTSTRAP_NAMESPACE);
    match args.command {
        TokenCommand::Create(args) => create(&api, &config, args).await,
        TokenCommand::List => list(&api).await,
        TokenCommand::Revoke { token } => revoke(&api, &token).await,
    }
}

fn random_bytes() -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; 64];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CliError::failed(format!("error: /dev/urandom: {e}")))?;
    Ok(bytes)
}

async fn create(api: &Api<Secret>, config: &ClientConfig, args: CreateArgs) -> Result<()> {
    let token = JoinToken::generate(&config.certificate_authority_data, random_bytes()?)
        .map_err(|e| CliError::failed(format!("error: {e}")))?;
    let expiration = (!args.ttl.is_zero())
        .then(|| skiff_api::time::now().seconds + args.ttl.as_secs().max(1) as i64);
    api.create(bootstrap_secret(&token, expiration, &args.description))
        .await?;
    println!("{token}");
    Ok(())
}

async fn list(api: &Api<Secret>) -> Result<()> {
    let params = ListParams::default().fields(&format!("type={BOOTSTRAP_SECRET_TYPE}"));
    let (secrets, _) = api.list(params).await?;
    let now = skiff_api::time::now().seconds;
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .filter_map(BootstrapToken::from_secret)
        .map(|t| {
            let (ttl, expires) = match t.expiration {
                None => ("<forever>".to_string(), "<never>".to_string()),
                Some(at) if at <= now => ("<invalid>".to_string(), skiff_api::join::rfc3339(at)),
                Some(at) => (
                    skiff_api::time::human_duration(Duration::from_secs((at - now) as u64)),
                    skiff_api::join::rfc3339(at),
                ),
            };
            vec![t.id, ttl, expires, t.description]
        })
        .collect();
    print!(
        "{}",
        crate::output::table::render(&["TOKEN", "TTL", "EXPIRES", "DESCRIPTION"], &rows, true)
    );
    Ok(())
}

/// The id in `ID`, `ID.SECRET` or a join token.
fn token_id(text: &str) -> Option<String> {
    let text = text.trim();
    if let Ok(join) = JoinToken::parse(text) {
        return Some(join.id);
    }
    if let Some((id, _)) = split_bootstrap_token(text) {
        return Some(id.to_string());
    }
    (text.len() == 6
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then(|| text.to_string())
}

async fn revoke(api: &Api<Secret>, token: &str) -> Result<()> {
    let id = token_id(token).ok_or_else(|| {
        CliError::usage(format!(
            "error: {token:?} is not a bootstrap token id ([a-z0-9]{{6}}), token or join token"
        ))
    })?;
    match api.delete(&format!("{BOOTSTRAP_NAME_PREFIX}{id}")).await {
        Ok(_) => {
            println!("bootstrap token {id:?} deleted");
            Ok(())
        }
        Err(status) if status.code() == tonic::Code::NotFound => Err(CliError::failed(format!(
            "error: bootstrap token {id:?} not found"
        ))),
        Err(status) => Err(status.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_ids_tokens_and_join_tokens() {
        assert_eq!(token_id("abcdef").as_deref(), Some("abcdef"));
        assert_eq!(
            token_id("abcdef.0123456789abcdef").as_deref(),
            Some("abcdef")
        );
        let join = format!("skiff-join.{}.abcdef.0123456789abcdef", "ab".repeat(32));
        assert_eq!(token_id(&join).as_deref(), Some("abcdef"));
        for bad in [
            "",
            "ABCDEF",
            "abcde",
            "abcdef.short",
            "bootstrap-token-abcdef",
        ] {
            assert_eq!(token_id(bad), None, "{bad}");
        }
    }
}
