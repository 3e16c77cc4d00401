//! `skiff push FILE.wasm REGISTRY/NAME:TAG`: a module or component (or WAT text) pushed to an
//! OCI registry as a Wasm OCI artifact in the CNCF layout (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), which any pod (or
//! `skiff run`) can then name as its image. No cluster is involved.
//!
//! Registries are reached as the node agent's pulls reach them: plain http for loopback ones and
//! those listed in `SKIFF_INSECURE_REGISTRIES` (comma-separated `host[:port]`), https for the
//! rest. Credentials come from a Docker config file, as `docker push` finds them:
//! `--registry-config FILE`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
//! (what `docker login` writes: `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`);
//! the registry's challenge decides basic auth or the bearer-token flow. Without a config file,
//! or no entry for the registry, the push is anonymous. Credential helpers (`credsStore`) are
//! not run.
//!
//! Prints the reference and the manifest digest, as `docker push` ends. Exit codes: 2 for a file
//! that is not Wasm or a bad reference (naming it), 1 when the registry fails.

use std::path::PathBuf;

use clap::Args;
use skiff_runtime::image::Keyring;
use skiff_runtime::image::push::{PushOptions, push_wasm};

use crate::error::{CliError, Result};

/// The environment variable naming registries reached over plain http (as the agent's).
const INSECURE_REGISTRIES_ENV: &str = "SKIFF_INSECURE_REGISTRIES";

#[derive(Args)]
pub struct PushArgs {
    /// The module or component to push (a .wasm binary, or .wat text)
    file: PathBuf,
    /// Where to: REGISTRY/NAME:TAG (e.g. 127.0.0.1:5000/hello:v1)
    reference: String,
    /// The Docker config file with the registry's credentials (default:
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, if there is one)
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
}

/// The credentials of the config file `--registry-config` names, or of docker's default one if
/// it exists; a file named on the command line must exist.
fn keyring(explicit: Option<&PathBuf>) -> Result<Keyring> {
    let path = match explicit {
        Some(path) => path.clone(),
        None => {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
            match dir.map(|d| d.join("config.json")) {
                Some(p) if p.exists() => p,
                _ => return Ok(Keyring::default()),
            }
        }
    };
    Keyring::from_file(&path).map_err(|e| CliError::usage(format!("error: --registry-config: {e}")))
}

pub async fn run(args: PushArgs) -> Result<()> {
    let options = PushOptions {
        keyring: keyring(args.registry_config.as_ref())?,
        insecure_registries: std::env::var(INSECURE_REGISTRIES_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        ..PushOptions::default()
    };
    let pushed = push_wasm(&args.file, &args.reference, &options)
        .await
        .map_err(|e| {
            if e.is_bad_input() {
                CliError::usage(format!("error: {e}"))
            } else {
                CliError::failed(format!("error: {e}"))
            }
        })?;
    println!(
        "{}: pushed {} ({}, {} bytes)\ndigest: {}",
        pushed.reference,
        args.file.display(),
        pushed.kind.os(),
        pushed.size,
        pushed.digest
    );
    Ok(())
}
