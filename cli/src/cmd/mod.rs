//! One module per verb.

pub mod agent;
pub mod apply;
pub mod auth;
pub mod config;
pub mod delete;
pub mod demo;
pub mod describe;
pub mod drain;
pub mod events;
pub mod exec;
pub mod get;
pub mod label;
pub mod logs;
pub mod node;
pub mod oci;
pub mod port_forward;
pub mod push;
pub mod rollout;
pub mod run;
pub mod scale;
pub mod server;
pub mod taint;
pub mod telemetry;
pub mod token;
pub mod top;
pub mod user;

use std::path::{Path, PathBuf};

use skiff_api::client::{ClientConfig, Transport};
use skiff_api::kinds::KindInfo;

use crate::error::{CliError, Result};

/// The config file: `--config`, else `$SKIFF_CONFIG`, else `~/.skiff/config.yaml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("SKIFF_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    home_dir().join(".skiff").join("config.yaml")
}

pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// A client transport from the config file.
pub fn connect(flag: Option<&Path>) -> Result<Transport> {
    let path = config_path(flag);
    let config = ClientConfig::load(&path).map_err(|e| {
        CliError::usage(format!(
            "{e}\nhint: start a cluster with `skiff up`, or pass --config FILE / set SKIFF_CONFIG"
        ))
    })?;
    Ok(config.connect()?)
}

/// Resolves a kind word (`pods`, `po`, `deployment`) or fails with exit code 2.
pub fn kind(word: &str) -> Result<&'static KindInfo> {
    KindInfo::lookup(word).ok_or_else(|| {
        let known: Vec<&str> = skiff_api::kinds::KINDS.iter().map(|k| k.plural).collect();
        CliError::usage(format!(
            "error: the server doesn't have a resource type {word:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// `-n NS` or `default`.
pub fn namespace(flag: &Option<String>) -> String {
    flag.clone().unwrap_or_else(|| "default".to_string())
}
