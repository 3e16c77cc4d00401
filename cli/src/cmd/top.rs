//! `skiff top nodes|pods`: the nodes' and pods' CPU and memory as the agents last reported them
//! (metrics.k8s.io, through `NodeMetricsApi.ListNodes|ListPods`), in `kubectl top`'s columns and
//! units: CPU in millicores (`12m`), memory in mebibytes (`34Mi`), and for nodes the share of
//! their allocatable (`CPU(%)`, `MEMORY(%)`); a node without figures is listed with
//! `<unknown>`, as kubectl does.
//!
//! Must not: compute figures (the agents measure, the server keeps them).

use clap::{Args, Subcommand};
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::quantity::Quantity;
use skiff_api::v1::node_metrics_api_client::NodeMetricsApiClient;
use skiff_api::v1::{MetricsListRequest, Node, ResourceUsage};

use crate::error::{CliError, Result};
use crate::output::table::render;

#[derive(Args)]
pub struct TopArgs {
    #[command(subcommand)]
    what: TopCommand,
}

#[derive(Subcommand)]
enum TopCommand {
    /// CPU and memory of nodes
    #[command(alias = "node", alias = "no")]
    Nodes(TopNodeArgs),
    /// CPU and memory of pods
    #[command(alias = "pod", alias = "po")]
    Pods(TopPodArgs),
}

#[derive(Args)]
struct TopNodeArgs {
    /// One node (all if none)
    name: Option<String>,
    /// Label selector (`zone=a`)
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Sort by cpu or memory (highest first)
    #[arg(long)]
    sort_by: Option<String>,
    /// No header line
    #[arg(long)]
    no_headers: bool,
}

#[derive(Args)]
struct TopPodArgs {
    /// One pod (all in the namespace if none)
    name: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// All namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web`)
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// One line per container
    #[arg(long)]
    containers: bool,
    /// Sort by cpu or memory (highest first)
    #[arg(long)]
    sort_by: Option<String>,
    /// No header line
    #[arg(long)]
    no_headers: bool,
}

/// What to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Cpu,
    Memory,
}

fn sort_by(flag: &Option<String>) -> Result<Option<SortBy>> {
    match flag.as_deref() {
        None | Some("") => Ok(None),
        Some("cpu") => Ok(Some(SortBy::Cpu)),
        Some("memory") => Ok(Some(SortBy::Memory)),
        Some(other) => Err(CliError::usage(format!(
            "error: --sort-by {other:?}: use cpu or memory"
        ))),
    }
}

pub async fn run(transport: &Transport, args: TopArgs) -> Result<()> {
    match args.what {
        TopCommand::Nodes(a) => nodes(transport, a).await,
        TopCommand::Pods(a) => pods(transport, a).await,
    }
}

/// kubectl's CPU column: whole millicores.
pub fn cpu_text(nano_cores: u64) -> String {
    format!("{}m", nano_cores / 1_000_000)
}

/// kubectl's memory column: whole mebibytes.
pub fn memory_text(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// `used` as a whole percentage of `of` (kubectl's integer division); `<unknown>` without `of`.
pub fn percent(used: u64, of: Option<u64>) -> String {
    match of {
        Some(of) if of > 0 => format!("{}%", u128::from(used) * 100 / u128::from(of)),
        _ => "<unknown>".into(),
    }
}

/// A node's allocatable cpu in nanocores and memory in bytes.
fn allocatable(node: &Node) -> (Option<u64>, Option<u64>) {
    let status = node.status.clone().unwrap_or_default();
    let quantity = |name: &str| {
        status
            .allocatable
            .get(name)
            .and_then(|q| Quantity::parse(q).ok())
    };
    let cpu = quantity("cpu").and_then(|q| u64::try_from(q.millis()).ok().map(|m| m * 1_000_000));
    let memory = quantity("memory").and_then(|q| u64::try_from(q.value()).ok());
    (cpu, memory)
}

async fn nodes(transport: &Transport, args: TopNodeArgs) -> Result<()> {
    let sort = sort_by(&args.sort_by)?;
    let request = MetricsListRequest {
        name: args.name.clone().unwrap_or_default(),
        label_selector: args.selector.clone().unwrap_or_default(),
        ..Default::default()
    };
    let metrics = NodeMetricsApiClient::new(transport.clone())
        .list_nodes(request)
        .await?
        .into_inner()
        .items;
    let api = Api::<Node>::new(transport.clone(), "");
    let nodes: Vec<Node> = match &args.name {
        Some(name) => vec![api.get(name).await?],
        None => {
            api.list(ListParams::default().labels(args.selector.as_deref().unwrap_or("")))
                .await?
                .0
        }
    };
    let usage_of = |name: &str| {
        metrics
            .iter()
            .find(|m| m.metadata.as_ref().is_some_and(|meta| meta.name == name))
            .and_then(|m| m.usage)
    };
    let mut measured: Vec<(&Node, ResourceUsage)> = Vec::new();
    let mut unknown = Vec::new();
    for node in &nodes {
        match usage_of(node.name()) {
            Some(u) => measured.push((node, u)),
            None => unknown.push(node.name().to_string()),
        }
    }
    if measured.is_empty() && unknown.is_empty() {
        eprintln!("No resources found");
        return Ok(());
    }
    if measured.is_empty() {
        return Err(CliError::failed(
            "error: metrics not available yet (the agents report every 2 s)",
        ));
    }
    match sort {
        Some(SortBy::Cpu) => measured.sort_by_key(|(_, u)| std::cmp::Reverse(u.cpu_nano_cores)),
        Some(SortBy::Memory) => measured.sort_by_key(|(_, u)| std::cmp::Reverse(u.memory_bytes)),
        None => {}
    }
    let mut rows: Vec<Vec<String>> = measured
        .iter()
        .map(|(node, u)| {
            let (cpu, memory) = allocatable(node);
            vec![
                node.name().to_string(),
                cpu_text(u.cpu_nano_cores),
                percent(u.cpu_nano_cores, cpu),
                memory_text(u.memory_bytes),
                percent(u.memory_bytes, memory),
            ]
        })
        .collect();
    rows.extend(unknown.into_iter().map(|name| {
        let mut r = vec![name];
        r.extend(std::iter::repeat_n("<unknown>".to_string(), 4));
        r
    }));
    print!(
        "{}",
        render(
            &["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            &rows,
            !args.no_headers
        )
    );
    Ok(())
}

async fn pods(transport: &Transport, args: TopPodArgs) -> Result<()> {
    let sort = sort_by(&args.sort_by)?;
    if args.all_namespaces && args.name.is_some() {
        return Err(CliError::usage(
            "error: a pod cannot be named across all namespaces; use -n",
        ));
    }
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        super::namespace(&args.namespace)
    };
    let request = MetricsListRequest {
        namespace: namespace.clone(),
        name: args.name.clone().unwrap_or_default(),
        label_selector: args.selector.clone().unwrap_or_default(),
    };
    let result = NodeMetricsApiClient::new(transport.clone())
        .list_pods(request)
        .await;
    let mut items = match result {
        Ok(r) => r.into_inner().items,
        Err(s) if s.code() == tonic::Code::NotFound && args.name.is_some() => {
            return Err(CliError::failed(format!(
                "error: Metrics not available for pod {namespace}/{}, age: unknown",
                args.name.clone().unwrap_or_default()
            )));
        }
        Err(s) => return Err(s.into()),
    };
    if items.is_empty() {
        if namespace.is_empty() {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
        return Ok(());
    }
    let total = |containers: &[skiff_api::v1::ContainerMetrics]| {
        containers.iter().fold((0u64, 0u64), |(c, m), x| {
            let u = x.usage.unwrap_or_default();
            (c + u.cpu_nano_cores, m + u.memory_bytes)
        })
    };
    match sort {
        Some(SortBy::Cpu) => items.sort_by_key(|p| std::cmp::Reverse(total(&p.containers).0)),
        Some(SortBy::Memory) => items.sort_by_key(|p| std::cmp::Reverse(total(&p.containers).1)),
        None => {}
    }
    let with_ns = namespace.is_empty();
    let mut headers: Vec<&str> = Vec::new();
    if with_ns {
        headers.push("NAMESPACE");
    }
    if args.containers {
        headers.extend(["POD", "NAME"]);
    } else {
        headers.push("NAME");
    }
    headers.extend(["CPU(cores)", "MEMORY(bytes)"]);
    let mut rows = Vec::new();
    for p in &items {
        let meta = p.metadata.clone().unwrap_or_default();
        let lead = |mut row: Vec<String>| {
            if with_ns {
                row.insert(0, meta.namespace.clone());
            }
            row
        };
        if args.containers {
            for c in &p.containers {
                let u = c.usage.unwrap_or_default();
                rows.push(lead(vec![
                    meta.name.clone(),
                    c.name.clone(),
                    cpu_text(u.cpu_nano_cores),
                    memory_text(u.memory_bytes),
                ]));
            }
        } else {
            let (cpu, memory) = total(&p.containers);
            rows.push(lead(vec![
                meta.name.clone(),
                cpu_text(cpu),
                memory_text(memory),
            ]));
        }
    }
    print!("{}", render(&headers, &rows, !args.no_headers));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_kubectls_units() {
        assert_eq!(cpu_text(12_400_000), "12m");
        assert_eq!(cpu_text(999_999), "0m");
        assert_eq!(memory_text(34 * 1024 * 1024 + 5), "34Mi");
        assert_eq!(percent(500_000_000, Some(2_000_000_000)), "25%");
        assert_eq!(percent(1, None), "<unknown>");
        assert_eq!(percent(1, Some(0)), "<unknown>");
    }

    #[test]
    fn allocatable_reads_quantities() {
        let mut status = skiff_api::v1::NodeStatus::default();
        status.allocatable.insert("cpu".into(), "3800m".into());
        status.allocatable.insert("memory".into(), "16Gi".into());
        let node = Node {
            status: Some(status),
            ..Default::default()
        };
        assert_eq!(
            allocatable(&node),
            (Some(3_800_000_000), Some(16 * 1024 * 1024 * 1024))
        );
        assert_eq!(allocatable(&Node::default()), (None, None));
    }

    #[test]
    fn sort_by_is_cpu_or_memory() {
        assert_eq!(sort_by(&Some("cpu".into())).unwrap(), Some(SortBy::Cpu));
        assert_eq!(sort_by(&None).unwrap(), None);
        assert_eq!(sort_by(&Some("age".into())).unwrap_err().code, 2);
    }
}
