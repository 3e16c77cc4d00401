//! `skiff scale deployment/NAME --replicas N` (also `replicaset/NAME`, or `KIND NAME`).

use clap::Args;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::{Deployment, ReplicaSet};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct ScaleArgs {
    /// `deployment/NAME`, or `deployment NAME`
    target: Vec<String>,
    /// The number of pods wanted
    #[arg(long)]
    replicas: i32,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Splits `kind/name` or `kind name` into a kind and a name.
pub fn target(
    words: &[String],
    verb: &str,
) -> Result<(&'static skiff_api::kinds::KindInfo, String)> {
    let (kind, name) = match words {
        [one] => one
            .split_once('/')
            .map(|(k, n)| (k.to_string(), n.to_string()))
            .ok_or_else(|| {
                CliError::usage(format!(
                    "error: {verb}: name the object as KIND/NAME, e.g. deployment/web"
                ))
            })?,
        [kind, name] => (kind.clone(), name.clone()),
        _ => {
            return Err(CliError::usage(format!(
                "error: {verb}: name one object: KIND/NAME, e.g. deployment/web"
            )));
        }
    };
    if name.is_empty() {
        return Err(CliError::usage(format!("error: {verb}: the name is empty")));
    }
    Ok((super::kind(&kind)?, name))
}

pub async fn run(transport: &Transport, args: ScaleArgs) -> Result<()> {
    let (info, name) = target(&args.target, "scale")?;
    if args.replicas < 0 {
        return Err(CliError::usage(format!(
            "error: --replicas: must not be negative (got {})",
            args.replicas
        )));
    }
    let namespace = super::namespace(&args.namespace);
    // Re-read and retry on a conflict with a controller's write.
    for _ in 0..5 {
        let result = match info.kind {
            "Deployment" => {
                let api = Api::<Deployment>::new(transport.clone(), &namespace);
                let mut d = api.get(&name).await?;
                d.spec.get_or_insert_with(Default::default).replicas = Some(args.replicas);
                api.update(d).await.map(|_| ())
            }
            "ReplicaSet" => {
                let api = Api::<ReplicaSet>::new(transport.clone(), &namespace);
                let mut rs = api.get(&name).await?;
                rs.spec.get_or_insert_with(Default::default).replicas = Some(args.replicas);
                api.update(rs).await.map(|_| ())
            }
            other => {
                return Err(CliError::usage(format!(
                    "error: scale: {other} cannot be scaled (deployments and replicasets can)"
                )));
            }
        };
        match result {
            Ok(()) => {
                println!("{}.apps/{name} scaled", info.kind.to_ascii_lowercase());
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: scale: {name:?} kept changing under us; try again"
    )))
}
