//! `skiff delete KIND NAME... | -f FILE`.

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ResourceClient, Transport};
use skiff_api::v1::DeleteRequest;
use skiff_api::with_kind;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct DeleteArgs {
    /// Kind, then names
    args: Vec<String>,
    /// Delete the objects of these manifests
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Seconds a running pod gets to stop (0: at once)
    #[arg(long)]
    grace_period: Option<i32>,
    /// Succeed when the object is already gone
    #[arg(long)]
    ignore_not_found: bool,
    /// Background, Foreground or Orphan (what happens to owned objects)
    #[arg(long, default_value = "Background")]
    cascade: String,
}

pub async fn run(transport: &Transport, args: DeleteArgs) -> Result<()> {
    let namespace = super::namespace(&args.namespace);
    let cascade = match args.cascade.to_ascii_lowercase().as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => {
            return Err(CliError::usage(format!(
                "error: --cascade {other:?}: use background, foreground or orphan"
            )));
        }
    };
    let mut targets: Vec<(&'static skiff_api::kinds::KindInfo, String, String)> = Vec::new();
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            return Err(CliError::usage(
                "error: give either -f or KIND NAME, not both",
            ));
        }
        let sources = super::apply::read_sources(&args.files)?;
        for m in super::apply::load_all(&sources, &namespace)? {
            let (ns, name) = with_kind!(m.info, K => {
                let obj: K = m.decode_valid(&namespace)?;
                (obj.namespace().to_string(), obj.name().to_string())
            });
            targets.push((m.info, ns, name));
        }
    } else {
        let Some((kind, names)) = args.args.split_first() else {
            return Err(CliError::usage(
                "error: what to delete: `skiff delete KIND NAME...` or `skiff delete -f FILE`",
            ));
        };
        if names.is_empty() {
            return Err(CliError::usage(format!("error: name the {kind} to delete")));
        }
        let info = super::kind(kind)?;
        targets.extend(names.iter().map(|n| (info, namespace.clone(), n.clone())));
    }
    let mut failure = None;
    for (info, ns, name) in targets {
        let req = DeleteRequest {
            name: name.clone(),
            propagation_policy: cascade.to_string(),
            grace_period_seconds: args.grace_period,
            ..Default::default()
        };
        let result = with_kind!(info, K => delete_one::<K>(transport, &ns, req).await);
        match result {
            Ok(()) => println!("{} {name:?} deleted", info.kind.to_ascii_lowercase()),
            Err(s) if s.code() == tonic::Code::NotFound && args.ignore_not_found => {}
            Err(s) => {
                let e = CliError::from(s);
                eprintln!("{e}");
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn delete_one<K: ResourceClient>(
    transport: &Transport,
    namespace: &str,
    req: DeleteRequest,
) -> std::result::Result<(), tonic::Status> {
    Api::<K>::new(transport.clone(), namespace)
        .delete_with(req)
        .await
        .map(|_| ())
}
