//! `skiff rollout status|undo|history deployment/NAME`.
//!
//! `undo` works as kubectl's: the chosen revision's ReplicaSet template is written back into the
//! Deployment, and the controller rolls to it (reusing that ReplicaSet, under a new revision).

use std::time::Duration;

use clap::{Args, Subcommand};
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::{Deployment, ReplicaSet};
use skiff_control_plane::controllers::deployment::{revision_of, template_of};
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Wait until the Deployment's rollout is complete
    Status(StatusArgs),
    /// Roll back to the previous revision (or --to-revision)
    Undo(UndoArgs),
    /// List the Deployment's revisions
    History(HistoryArgs),
}

#[derive(Args)]
struct StatusArgs {
    target: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Give up after this long (e.g. 2m); exit code 1
    #[arg(long, value_parser = crate::duration::parse)]
    timeout: Option<Duration>,
}

#[derive(Args)]
struct UndoArgs {
    target: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The revision to go back to (default: the one before the current)
    #[arg(long)]
    to_revision: Option<i64>,
}

#[derive(Args)]
struct HistoryArgs {
    target: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

pub async fn run(transport: &Transport, args: RolloutArgs) -> Result<()> {
    match args.command {
        RolloutCommand::Status(a) => {
            let name = deployment_name(&a.target, "rollout status")?;
            status(transport, &super::namespace(&a.namespace), &name, a.timeout).await
        }
        RolloutCommand::Undo(a) => {
            let name = deployment_name(&a.target, "rollout undo")?;
            undo(
                transport,
                &super::namespace(&a.namespace),
                &name,
                a.to_revision,
            )
            .await
        }
        RolloutCommand::History(a) => {
            let name = deployment_name(&a.target, "rollout history")?;
            history(transport, &super::namespace(&a.namespace), &name).await
        }
    }
}

fn deployment_name(words: &[String], verb: &str) -> Result<String> {
    let (info, name) = super::scale::target(words, verb)?;
    if info.kind != "Deployment" {
        return Err(CliError::usage(format!(
            "error: {verb}: only deployments have rollouts (got {})",
            info.plural
        )));
    }
    Ok(name)
}

/// Where a rollout stands: `Ok(None)` done, `Ok(Some(msg))` waiting, `Err` failed.
pub fn rollout_state(d: &Deployment) -> std::result::Result<Option<String>, String> {
    let name = d.name();
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation < d.meta().generation {
        return Ok(Some(format!(
            "Waiting for deployment {name:?} spec update to be observed..."
        )));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.r#type == "Progressing" && c.reason == "ProgressDeadlineExceeded")
    {
        return Err(format!(
            "deployment {name:?} exceeded its progress deadline: {}",
            c.message
        ));
    }
    let want = spec.replicas.unwrap_or(1);
    if status.updated_replicas < want {
        return Ok(Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {} out of {want} new replicas have been updated...",
            status.updated_replicas
        )));
    }
    if status.replicas > status.updated_replicas {
        return Ok(Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            status.replicas - status.updated_replicas
        )));
    }
    if status.available_replicas < status.updated_replicas {
        return Ok(Some(format!(
            "Waiting for deployment {name:?} rollout to finish: {} of {} updated replicas are available...",
            status.available_replicas, status.updated_replicas
        )));
    }
    Ok(None)
}

async fn status(
    transport: &Transport,
    namespace: &str,
    name: &str,
    timeout: Option<Duration>,
) -> Result<()> {
    let api = Api::<Deployment>::new(transport.clone(), namespace);
    let follow = async {
        let mut last = String::new();
        loop {
            let d = api.get(name).await?;
            let version = d.meta().resource_version.clone();
            match rollout_state(&d) {
                Ok(None) => {
                    println!("deployment {name:?} successfully rolled out");
                    return Ok(());
                }
                Ok(Some(message)) => {
                    if message != last {
                        println!("{message}");
                        last = message;
                    }
                }
                Err(message) => return Err(CliError::failed(format!("error: {message}"))),
            }
            // Wait for the next change of this Deployment, then look again.
            let params = ListParams::default().fields(&format!("metadata.name={name}"));
            let mut events = api.watch(params, &version).await?;
            match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
                Ok(Some(Err(s))) => return Err(s.into()),
                Ok(Some(Ok(e))) if e.kind == "DELETED" => {
                    return Err(CliError::failed(format!(
                        "error: deployment {name:?} was deleted"
                    )));
                }
                _ => {}
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, follow).await.unwrap_or_else(|_| {
            Err(CliError::failed(format!(
                "error: timed out waiting for the rollout of deployment {name:?}"
            )))
        }),
        None => follow.await,
    }
}

/// The Deployment's ReplicaSets, oldest revision first.
async fn revisions(transport: &Transport, d: &Deployment) -> Result<Vec<ReplicaSet>> {
    let api = Api::<ReplicaSet>::new(transport.clone(), d.namespace());
    let (sets, _) = api.list(ListParams::default()).await?;
    let mut mine: Vec<ReplicaSet> = sets
        .into_iter()
        .filter(|rs| {
            rs.meta()
                .owner_references
                .iter()
                .any(|o| o.uid == d.meta().uid && o.controller == Some(true))
        })
        .collect();
    mine.sort_by_key(revision_of);
    Ok(mine)
}

async fn undo(
    transport: &Transport,
    namespace: &str,
    name: &str,
    to_revision: Option<i64>,
) -> Result<()> {
    let api = Api::<Deployment>::new(transport.clone(), namespace);
    let mut d = api.get(name).await?;
    let sets = revisions(transport, &d).await?;
    let current = d
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let target = match to_revision {
        Some(r) => sets.iter().find(|rs| revision_of(rs) == r).ok_or_else(|| {
            CliError::failed(format!(
                "error: deployment {name:?} has no revision {r} (revisions: {})",
                sets.iter()
                    .map(|rs| revision_of(rs).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => sets
            .iter()
            .rev()
            .find(|rs| template_of(rs) != current)
            .ok_or_else(|| {
                CliError::failed(format!(
                    "error: deployment {name:?} has no previous revision to roll back to"
                ))
            })?,
    };
    let template = template_of(target);
    if template == current {
        println!(
            "deployment.apps/{name} skipped rollback (current template already matches revision {})",
            revision_of(target)
        );
        return Ok(());
    }
    d.spec.get_or_insert_with(Default::default).template = Some(template);
    api.update(d).await?;
    println!(
        "deployment.apps/{name} rolled back to revision {}",
        revision_of(target)
    );
    Ok(())
}

async fn history(transport: &Transport, namespace: &str, name: &str) -> Result<()> {
    let api = Api::<Deployment>::new(transport.clone(), namespace);
    let d = api.get(name).await?;
    let sets = revisions(transport, &d).await?;
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|rs| {
            let images: Vec<String> = template_of(rs)
                .spec
                .map(|s| s.containers.into_iter().map(|c| c.image).collect())
                .unwrap_or_default();
            vec![
                revision_of(rs).to_string(),
                rs.name().to_string(),
                images.join(","),
                rs.meta()
                    .annotations
                    .get("kubernetes.io/change-cause")
                    .cloned()
                    .unwrap_or_else(|| "<none>".into()),
            ]
        })
        .collect();
    println!("deployment.apps/{name}");
    print!(
        "{}",
        crate::output::table::render(
            &["REVISION", "REPLICASET", "IMAGES", "CHANGE-CAUSE"],
            &rows,
            true
        )
    );
    Ok(())
}
