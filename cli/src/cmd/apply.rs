//! `skiff apply -f FILE|DIR|-`: create or update, idempotent; every document is validated before
//! anything is written.

use std::path::{Path, PathBuf};

use clap::Args;
use skiff_api::client::{Api, ResourceClient, Transport};
use skiff_api::manifest::{self, Manifest};
use skiff_api::with_kind;
use skiff_api::{Resource, ResourceExt};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct ApplyArgs {
    /// Manifest file, directory (its .yaml, .yml and .json files) or `-` for stdin
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Namespace for objects that name none
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Where manifests come from.
pub enum ManifestSource {
    Args(Vec<String>),
    /// (name, text) pairs compiled into the binary (the `up --demo` example).
    Embedded(Vec<(&'static str, &'static str)>),
}

/// Reads `-f` arguments into (source name, text) pairs.
pub fn read_sources(files: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::usage(format!("error: reading stdin: {e}")))?;
            out.push(("-".to_string(), text));
            continue;
        }
        let path = Path::new(f);
        let meta =
            std::fs::metadata(path).map_err(|e| CliError::usage(format!("error: {f}: {e}")))?;
        let paths: Vec<PathBuf> = if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CliError::usage(format!("error: {f}: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            entries
        } else {
            vec![path.to_path_buf()]
        };
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| CliError::usage(format!("error: {}: {e}", p.display())))?;
            out.push((p.display().to_string(), text));
        }
    }
    Ok(out)
}

/// Parses and validates every document, reporting all bad ones; nothing is sent if any is bad.
pub fn load_all(sources: &[(String, String)], namespace: &str) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in sources {
        match manifest::parse(name, text) {
            Ok(ms) => manifests.extend(ms),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for m in &manifests {
        let checked = with_kind!(m.info, K => m.decode_valid::<K>(namespace).map(|_| ()));
        if let Err(e) = checked {
            errors.push(e.to_string());
        } else if m.info.read_only {
            errors.push(format!(
                "{}: {}: kind {} is read-only: nodes register themselves (skiff agent)",
                m.origin,
                m.describe(),
                m.info.kind
            ));
        }
    }
    if !errors.is_empty() {
        return Err(CliError::usage(format!(
            "error: {}\nnothing was applied",
            errors.join("\nerror: ")
        )));
    }
    Ok(manifests)
}

pub async fn run(transport: &Transport, args: ApplyArgs) -> Result<()> {
    apply_sources(transport, ManifestSource::Args(args.files), args.namespace).await
}

pub async fn apply_sources(
    transport: &Transport,
    source: ManifestSource,
    namespace: Option<String>,
) -> Result<()> {
    let sources = match source {
        ManifestSource::Args(files) => read_sources(&files)?,
        ManifestSource::Embedded(list) => list
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
    };
    let namespace = super::namespace(&namespace);
    let mut manifests = load_all(&sources, &namespace)?;
    // Namespaces first (a directory lists `app.yaml` before `namespace.yaml`), otherwise in order.
    manifests.sort_by_key(|m| m.info.kind != "Namespace");
    let mut failed = None;
    for m in &manifests {
        let result = with_kind!(m.info, K => apply_one::<K>(transport, m, &namespace).await);
        match result {
            Ok(line) => println!("{line}"),
            Err(e) => {
                // Printed here, in order with the other documents: the exit only keeps its code.
                eprintln!("{e}");
                failed.get_or_insert(CliError {
                    code: e.code,
                    message: String::new(),
                });
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn apply_one<K: ResourceClient>(
    transport: &Transport,
    m: &Manifest,
    namespace: &str,
) -> Result<String> {
    let desired: K = m.decode_valid(namespace)?;
    let api = Api::<K>::new(transport.clone(), desired.namespace());
    let reference = format!("{}/{}", K::KIND.to_ascii_lowercase(), desired.name());
    for _ in 0..5 {
        let Some(current) = api.get_opt(desired.name()).await? else {
            match api.create(desired.clone()).await {
                Ok(_) => return Ok(format!("{reference} created")),
                Err(s) if s.code() == tonic::Code::AlreadyExists => continue,
                Err(s) => return Err(s.into()),
            }
        };
        let next = merge(&desired, &current);
        match api.update(next).await {
            Ok(updated) if updated.meta().resource_version == current.meta().resource_version => {
                return Ok(format!("{reference} unchanged"));
            }
            Ok(_) => return Ok(format!("{reference} configured")),
            Err(s) if s.code() == tonic::Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: {reference}: kept conflicting with concurrent writers; try again"
    )))
}

/// The manifest over the live object: what the manifest says wins; what the server and
/// controllers own (identity, status, finalizers, owners, foreign annotations) is kept.
fn merge<K: Resource>(desired: &K, current: &K) -> K {
    let mut next = desired.clone();
    let cur = current.meta();
    let meta = next.metadata_mut();
    meta.resource_version = cur.resource_version.clone();
    if meta.finalizers.is_empty() {
        meta.finalizers = cur.finalizers.clone();
    }
    if meta.owner_references.is_empty() {
        meta.owner_references = cur.owner_references.clone();
    }
    for (k, v) in &cur.annotations {
        meta.annotations
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    keep_server_fields(&mut next, current);
    next
}

/// Fields set by the cluster that a manifest normally leaves out.
fn keep_server_fields<K: Resource>(next: &mut K, current: &K) {
    let cur: &dyn std::any::Any = current;
    let any: &mut dyn std::any::Any = next;
    if let (Some(n), Some(c)) = (
        any.downcast_mut::<skiff_api::v1::Pod>(),
        cur.downcast_ref::<skiff_api::v1::Pod>(),
    ) && let (Some(ns), Some(cs)) = (n.spec.as_mut(), c.spec.as_ref())
        && ns.node_name.is_empty()
    {
        ns.node_name = cs.node_name.clone();
    }
}
