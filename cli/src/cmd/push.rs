//! `skiff push FILE.wasm REGISTRY/NAME:TAG`: a module or component (or WAT text) pushed to an
//! OCI registry as a Wasm OCI artifact in the CNCF layout (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), which any pod (or
//! `skiff run`) can then name as its image. No cluster is involved.
//!
//! Registries are reached as the node agent's pulls reach them: plain http for loopback ones and
//! those listed in `SKIFF_INSECURE_REGISTRIES` (comma-separated `host[:port]`), https for the
//! rest; anonymous, with the Docker bearer-token flow where a registry asks for it.
//!
//! Prints the reference and the manifest digest, as `docker push` ends. Exit codes: 2 for a file
//! that is not Wasm or a bad reference (naming it), 1 when the registry fails.

use std::path::PathBuf;

use clap::Args;
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
}

pub async fn run(args: PushArgs) -> Result<()> {
    let options = PushOptions {
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
