//! `skiff label KIND NAME KEY=VALUE ... KEY- [--overwrite]` (or `KIND/NAME`), as kubectl's: adds,
//! changes (with `--overwrite`) and removes labels of one object of any kind — Nodes included,
//! which an admin labels for nodeSelector and affinity.
//!
//! Must not: change anything but `metadata.labels`; validation is the server's.

use std::collections::BTreeMap;

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ResourceClient, Transport};
use skiff_api::kinds::KindInfo;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct LabelArgs {
    /// `KIND NAME KEY=VALUE... KEY-...` or `KIND/NAME ...`
    #[arg(required = true, num_args = 1..)]
    words: Vec<String>,
    /// Replace a label that has another value
    #[arg(long)]
    overwrite: bool,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// The labels to set and to remove.
pub fn parse(
    specs: &[String],
) -> std::result::Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    for spec in specs {
        if let Some((k, v)) = spec.split_once('=') {
            if k.is_empty() {
                return Err(format!("invalid label spec: {spec:?}: the key is empty"));
            }
            set.insert(k.to_string(), v.to_string());
        } else if let Some(k) = spec.strip_suffix('-').filter(|k| !k.is_empty()) {
            remove.push(k.to_string());
        } else {
            return Err(format!(
                "invalid label spec: {spec:?}: use KEY=VALUE to set, KEY- to remove"
            ));
        }
    }
    if let Some(k) = remove.iter().find(|k| set.contains_key(*k)) {
        return Err(format!(
            "can not both modify and remove a label in the same command: {k}"
        ));
    }
    if set.is_empty() && remove.is_empty() {
        return Err("at least one label update is required".into());
    }
    Ok((set, remove))
}

/// `labels` after the change, and what kubectl says (`labeled`, `unlabeled`, `not labeled`).
pub fn apply(
    labels: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    remove: &[String],
    overwrite: bool,
) -> std::result::Result<(BTreeMap<String, String>, &'static str), String> {
    let mut out = labels.clone();
    for (k, v) in set {
        if let Some(old) = labels.get(k)
            && old != v
            && !overwrite
        {
            return Err(format!(
                "'{k}' already has a value ({old}), and --overwrite is false"
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    for k in remove {
        out.remove(k);
    }
    let how = if out == *labels {
        "not labeled"
    } else if set.is_empty() {
        "unlabeled"
    } else {
        "labeled"
    };
    Ok((out, how))
}

/// `node/n1`, `deployment.apps/web`: how kubectl names an object it changed.
pub fn printed_name(info: &KindInfo, name: &str) -> String {
    let kind = info.kind.to_ascii_lowercase();
    match info.api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

async fn label_one<K: ResourceClient>(
    transport: &Transport,
    namespace: &str,
    name: &str,
    set: &BTreeMap<String, String>,
    remove: &[String],
    overwrite: bool,
) -> Result<&'static str> {
    let api = Api::<K>::new(transport.clone(), namespace);
    for _ in 0..5 {
        let mut obj = api.get(name).await?;
        let (labels, how) = apply(&obj.meta().labels, set, remove, overwrite)
            .map_err(|e| CliError::failed(format!("error: {e}")))?;
        if how == "not labeled" {
            return Ok(how);
        }
        obj.metadata_mut().labels = labels;
        match api.update(obj).await {
            Ok(_) => return Ok(how),
            Err(s) if s.code() == tonic::Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: {name:?} kept changing under us; try again"
    )))
}

pub async fn run(transport: &Transport, args: LabelArgs) -> Result<()> {
    let usage =
        || CliError::usage("error: label: name an object: `skiff label KIND NAME KEY=VALUE`");
    let first = args.words.first().ok_or_else(usage)?;
    let (kind, name, specs) = match first.split_once('/') {
        Some((kind, name)) => (kind.to_string(), name.to_string(), &args.words[1..]),
        None => {
            let name = args.words.get(1).ok_or_else(usage)?;
            (first.clone(), name.clone(), &args.words[2..])
        }
    };
    if name.is_empty() {
        return Err(usage());
    }
    let info = super::kind(&kind)?;
    let (set, remove) = parse(specs).map_err(|e| CliError::usage(format!("error: {e}")))?;
    let namespace = super::namespace(&args.namespace);
    let how = skiff_api::with_kind!(info, K => {
        label_one::<K>(transport, &namespace, &name, &set, &remove, args.overwrite).await
    })?;
    println!("{} {how}", printed_name(info, &name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_change_as_kubectl_says() {
        let (set, remove) = parse(&words(&["disk=ssd", "old-"])).unwrap();
        let before: BTreeMap<String, String> =
            [("old".into(), "x".into()), ("disk".into(), "hdd".into())].into();
        assert_eq!(
            apply(&before, &set, &remove, false).unwrap_err(),
            "'disk' already has a value (hdd), and --overwrite is false"
        );
        let (after, how) = apply(&before, &set, &remove, true).unwrap();
        assert_eq!(after, [("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(how, "labeled");
        let (_, how) = apply(&after, &set, &[], false).unwrap();
        assert_eq!(how, "not labeled");
        let (gone, how) = apply(&after, &BTreeMap::new(), &["disk".into()], false).unwrap();
        assert!(gone.is_empty());
        assert_eq!(how, "unlabeled");
        assert!(parse(&words(&["nonsense"])).is_err());
        assert!(parse(&words(&["a=1", "a-"])).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn objects_are_named_as_kubectl_names_them() {
        let node = KindInfo::lookup("node").unwrap();
        let deploy = KindInfo::lookup("deploy").unwrap();
        assert_eq!(printed_name(node, "n1"), "node/n1");
        assert_eq!(printed_name(deploy, "web"), "deployment.apps/web");
    }
}
