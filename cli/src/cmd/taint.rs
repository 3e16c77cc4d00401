//! `skiff taint nodes NODE KEY[=VALUE]:EFFECT ... [--overwrite]`, and `KEY[:EFFECT]-` to remove,
//! as kubectl's: a node's taints keep pods that do not tolerate them off it (NoSchedule,
//! PreferNoSchedule) or, with NoExecute, evict them.
//!
//! Must not: touch anything but the node's `spec.taints`.

use clap::Args;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::{Node, Taint};

use crate::error::{CliError, Result};

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

#[derive(Args)]
pub struct TaintArgs {
    /// `nodes NODE TAINT...` or `node/NODE TAINT...`; a taint is `KEY[=VALUE]:EFFECT` to add,
    /// `KEY[:EFFECT]-` to remove
    #[arg(required = true, num_args = 1..)]
    words: Vec<String>,
    /// Replace a taint of the same key and effect
    #[arg(long)]
    overwrite: bool,
}

/// A taint to remove: by key, and effect if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub key: String,
    pub effect: String,
}

/// The taints to add and to remove, as kubectl parses them.
pub fn parse(specs: &[String]) -> std::result::Result<(Vec<Taint>, Vec<Removal>), String> {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for spec in specs {
        if let Some(rest) = spec.strip_suffix('-') {
            let (key, effect) = rest.split_once(':').unwrap_or((rest, ""));
            let key = key.split_once('=').map_or(key, |(k, _)| k);
            if !effect.is_empty() && !EFFECTS.contains(&effect) {
                return Err(format!(
                    "invalid taint effect: {effect}, unsupported taint effect"
                ));
            }
            remove.push(Removal {
                key: key.to_string(),
                effect: effect.to_string(),
            });
            continue;
        }
        let Some((kv, effect)) = spec.split_once(':') else {
            return Err(format!(
                "invalid taint spec: {spec}, unknown taint spec: it must be KEY[=VALUE]:EFFECT"
            ));
        };
        if !EFFECTS.contains(&effect) {
            return Err(format!(
                "invalid taint effect: {effect}, unsupported taint effect"
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(format!("invalid taint spec: {spec}: the key is empty"));
        }
        add.push(Taint {
            key: key.to_string(),
            value: value.to_string(),
            effect: effect.to_string(),
            // Kubernetes stamps the time a NoExecute taint was added (tolerationSeconds count from it).
            time_added: (effect == "NoExecute").then(skiff_api::time::now),
        });
    }
    for r in &remove {
        if add
            .iter()
            .any(|t| t.key == r.key && (r.effect.is_empty() || t.effect == r.effect))
        {
            return Err(
                "can not both modify and remove the following taint(s) in the same command: "
                    .to_string()
                    + &r.key,
            );
        }
    }
    Ok((add, remove))
}

/// `taints` after the change, and what kubectl says it did (`tainted`, `untainted`, `modified`).
pub fn apply(
    node: &str,
    taints: &[Taint],
    add: &[Taint],
    remove: &[Removal],
    overwrite: bool,
) -> std::result::Result<(Vec<Taint>, &'static str), String> {
    let mut out: Vec<Taint> = taints.to_vec();
    let mut replaced = false;
    for t in add {
        match out
            .iter_mut()
            .find(|x| x.key == t.key && x.effect == t.effect)
        {
            Some(_) if !overwrite => {
                return Err(format!(
                    "node {node} already has {} taint(s) with same effect(s) and --overwrite is false",
                    t.key
                ));
            }
            Some(existing) => {
                *existing = t.clone();
                replaced = true;
            }
            None => out.push(t.clone()),
        }
    }
    for r in remove {
        let before = out.len();
        out.retain(|x| !(x.key == r.key && (r.effect.is_empty() || x.effect == r.effect)));
        if out.len() == before {
            let named = if r.effect.is_empty() {
                r.key.clone()
            } else {
                format!("{}:{}", r.key, r.effect)
            };
            return Err(format!("taint {named:?} not found"));
        }
    }
    let how = match (add.is_empty(), remove.is_empty()) {
        _ if replaced => "modified",
        (false, false) => "modified",
        (false, true) => "tainted",
        _ => "untainted",
    };
    Ok((out, how))
}

/// The node named by `nodes NODE` / `node/NODE`, and the rest of the words.
fn node_and_specs(words: &[String]) -> Result<(String, &[String])> {
    let usage = || {
        CliError::usage(
            "error: taint: name a node: `skiff taint nodes NODE KEY=VALUE:EFFECT`".to_string(),
        )
    };
    let first = words.first().ok_or_else(usage)?;
    let (kind, name, rest) = match first.split_once('/') {
        Some((kind, name)) => (kind, name.to_string(), &words[1..]),
        None => {
            let name = words.get(1).ok_or_else(usage)?;
            (first.as_str(), name.clone(), &words[2..])
        }
    };
    if !matches!(kind, "node" | "nodes" | "no") {
        return Err(CliError::usage(format!(
            "error: taint: only nodes have taints, not {kind:?}"
        )));
    }
    if name.is_empty() || rest.is_empty() {
        return Err(usage());
    }
    Ok((name, rest))
}

pub async fn run(transport: &Transport, args: TaintArgs) -> Result<()> {
    let (node, specs) = node_and_specs(&args.words)?;
    let (add, remove) = parse(specs).map_err(|e| CliError::usage(format!("error: {e}")))?;
    let api = Api::<Node>::new(transport.clone(), "");
    for _ in 0..5 {
        let mut n = api.get(&node).await?;
        let spec = n.spec.get_or_insert_with(Default::default);
        let (taints, how) = apply(&node, &spec.taints, &add, &remove, args.overwrite)
            .map_err(|e| CliError::failed(format!("error: {e}")))?;
        spec.taints = taints;
        match api.update(n).await {
            Ok(_) => {
                println!("node/{node} {how}");
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: node {node:?} kept changing under us; try again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn specs_parse_as_kubectl() {
        let (add, remove) = parse(&words(&[
            "dedicated=gpu:NoSchedule",
            "quiet:PreferNoSchedule",
            "old-",
            "x:NoExecute-",
        ]))
        .unwrap();
        assert_eq!(add.len(), 2);
        assert_eq!(
            (
                add[0].key.as_str(),
                add[0].value.as_str(),
                add[0].effect.as_str()
            ),
            ("dedicated", "gpu", "NoSchedule")
        );
        assert_eq!((add[1].key.as_str(), add[1].value.as_str()), ("quiet", ""));
        assert!(add[0].time_added.is_none());
        assert_eq!(
            remove,
            [
                Removal {
                    key: "old".into(),
                    effect: "".into()
                },
                Removal {
                    key: "x".into(),
                    effect: "NoExecute".into()
                }
            ]
        );
        assert!(
            parse(&words(&["a=b"]))
                .unwrap_err()
                .starts_with("invalid taint spec")
        );
        assert_eq!(
            parse(&words(&["a=b:Sometimes"])).unwrap_err(),
            "invalid taint effect: Sometimes, unsupported taint effect"
        );
        assert!(parse(&words(&["a:NoSchedule", "a-"])).is_err());
        let (add, _) = parse(&words(&["evict:NoExecute"])).unwrap();
        assert!(add[0].time_added.is_some());
    }

    #[test]
    fn adding_an_existing_taint_needs_overwrite_and_removing_a_missing_one_fails() {
        let (add, _) = parse(&words(&["k=v:NoSchedule"])).unwrap();
        let (taints, how) = apply("n1", &[], &add, &[], false).unwrap();
        assert_eq!((taints.len(), how), (1, "tainted"));
        let (again, _) = parse(&words(&["k=w:NoSchedule"])).unwrap();
        assert_eq!(
            apply("n1", &taints, &again, &[], false).unwrap_err(),
            "node n1 already has k taint(s) with same effect(s) and --overwrite is false"
        );
        let (over, how) = apply("n1", &taints, &again, &[], true).unwrap();
        assert_eq!((over[0].value.as_str(), how), ("w", "modified"));
        let (_, remove) = parse(&words(&["k:NoSchedule-"])).unwrap();
        let (none, how) = apply("n1", &over, &[], &remove, false).unwrap();
        assert_eq!((none.len(), how), (0, "untainted"));
        assert_eq!(
            apply("n1", &none, &[], &remove, false).unwrap_err(),
            "taint \"k:NoSchedule\" not found"
        );
    }
}
