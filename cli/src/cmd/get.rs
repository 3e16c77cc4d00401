//! `skiff get KIND[,KIND...] [NAME...] [-n NS | -A] [-o wide|json|yaml|name] [-l SEL] [-w]
//! [--chunk-size N]`.
//!
//! Lists are read in pages of `--chunk-size` (500, as kubectl) and a table is printed page by
//! page as they arrive (each page aligned on its own, as kubectl's), so a list of any size costs
//! the server and the client one page at a time. A watch (`-w`) goes on from the list's
//! resourceVersion, which every page of it reports: nothing written while paging is missed.

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, ResourceClient, Transport};
use skiff_api::kinds::KindInfo;
use skiff_api::with_kind;
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};
use skiff_api::printers::{self, Printer};

use crate::output::table::render;
use crate::output::{list_value, print_value, to_value};

#[derive(Args)]
pub struct GetArgs {
    /// Kind (pods, deploy, svc, ...; several comma-separated; `all`)
    kind: String,
    /// Names (all objects if none)
    names: Vec<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// All namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// wide, json, yaml or name
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Label selector (`app=web,tier!=db`)
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector (`spec.nodeName=node-1`)
    #[arg(long)]
    field_selector: Option<String>,
    /// After listing, watch for changes
    #[arg(short = 'w', long)]
    watch: bool,
    /// With --watch and -o json|yaml: print each change as `{type: ADDED|MODIFIED|DELETED, object}`
    #[arg(long)]
    output_watch_events: bool,
    /// Objects per list request, printed as each page arrives; 0 lists all in one request
    #[arg(long, default_value_t = 500)]
    chunk_size: i32,
    /// Events only: those about this object, KIND/NAME (`pod/web`)
    #[arg(long = "for", value_name = "KIND/NAME")]
    for_object: Option<String>,
}

pub async fn run(transport: &Transport, mut args: GetArgs) -> Result<()> {
    // kubectl's `get pod/web`: the kind and a name in one word.
    if let Some((kind, name)) = args.kind.clone().split_once('/') {
        if kind.contains(',') || name.is_empty() {
            return Err(CliError::usage(format!(
                "error: {:?}: use KIND/NAME with one kind",
                args.kind
            )));
        }
        args.names.insert(0, name.to_string());
        args.kind = kind.to_string();
    }
    let output = args.output.clone().unwrap_or_default();
    if !matches!(output.as_str(), "" | "wide" | "json" | "yaml" | "name") {
        return Err(CliError::usage(format!(
            "error: --output {output:?}: use wide, json, yaml or name"
        )));
    }
    let kinds: Vec<&'static KindInfo> = if args.kind == "all" {
        // kubectl's `all` category, of the kinds skiff serves, in kubectl's order.
        [
            "pods",
            "services",
            "deployments",
            "replicasets",
            "horizontalpodautoscalers",
        ]
        .iter()
        .filter_map(|k| KindInfo::lookup(k))
        .collect()
    } else {
        args.kind
            .split(',')
            .map(super::kind)
            .collect::<Result<_>>()?
    };
    if args.chunk_size < 0 {
        return Err(CliError::usage(format!(
            "error: --chunk-size {}: must be 0 (no paging) or more",
            args.chunk_size
        )));
    }
    if args.watch && kinds.len() > 1 {
        return Err(CliError::usage("error: --watch takes one kind"));
    }
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        super::namespace(&args.namespace)
    };
    let events_only = kinds.len() == 1 && kinds[0].kind == "Event";
    if args.for_object.is_some() && !events_only {
        return Err(CliError::usage("error: --for is only for events"));
    }
    // A table of events is printed whole and sorted by when each was last seen (kubectl's
    // `events` order); other forms go on below (`--for` becomes a field selector).
    if events_only && args.names.is_empty() && !args.watch && matches!(output.as_str(), "" | "wide")
    {
        let events = super::events::list(
            transport,
            &namespace,
            args.field_selector.as_deref().unwrap_or(""),
            args.for_object.as_deref(),
        )
        .await?;
        let events: Vec<_> = match &args.selector {
            Some(s) if !s.is_empty() => {
                let selector = skiff_api::selector::LabelSelector::parse(s)
                    .map_err(|e| CliError::usage(format!("error: --selector: {e}")))?;
                events
                    .into_iter()
                    .filter(|e| selector.matches(&e.meta().labels))
                    .collect()
            }
            _ => events,
        };
        if events.is_empty() {
            if namespace.is_empty() {
                eprintln!("No resources found");
            } else {
                eprintln!("No resources found in {namespace} namespace.");
            }
        } else {
            print!(
                "{}",
                super::events::table(&events, namespace.is_empty(), output == "wide", true)
            );
        }
        return Ok(());
    }
    if let Some(word) = &args.for_object {
        let about = super::events::for_selector(word)?;
        args.field_selector = Some(match args.field_selector.take() {
            Some(f) if !f.is_empty() => format!("{f},{about}"),
            _ => about,
        });
    }
    let mut values = Vec::new();
    let mut printed_any = false;
    for info in &kinds {
        let shown = with_kind!(info, K => get_kind::<K>(transport, &args, &namespace, &output, &mut values, kinds.len() > 1, printed_any).await)?;
        printed_any |= shown;
    }
    if output == "json" || output == "yaml" {
        let single = args.names.len() == 1 && kinds.len() == 1 && values.len() == 1;
        let value = if single {
            values.remove(0)
        } else {
            list_value(values)
        };
        print_value(&value, &output);
    } else if !printed_any && args.names.is_empty() && !args.watch {
        if namespace.is_empty() || kinds.iter().all(|k| !k.namespaced) {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
    }
    Ok(())
}

/// How kubectl names a kind before an object's name: `pod`, `deployment.apps`,
/// `ingress.networking.k8s.io` (the kind, lower-cased, and its group when it has one).
fn kind_ref<K: ResourceClient>() -> String {
    let kind = K::KIND.to_ascii_lowercase();
    match K::API_VERSION.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

async fn get_kind<K: ResourceClient + Printer>(
    transport: &Transport,
    args: &GetArgs,
    namespace: &str,
    output: &str,
    values: &mut Vec<serde_json::Value>,
    several: bool,
    // A table printed before this kind's: a blank line between them, as kubectl's.
    after_another: bool,
) -> Result<bool> {
    let api = Api::<K>::new(transport.clone(), namespace);
    let params = ListParams::default()
        .labels(args.selector.as_deref().unwrap_or(""))
        .fields(args.field_selector.as_deref().unwrap_or(""));
    let wide = output == "wide";
    let with_ns = namespace.is_empty() && K::NAMESPACED;
    let row = |obj: &K| {
        let mut r = printers::row(obj, wide);
        if several {
            r[0] = format!("{}/{}", kind_ref::<K>(), r[0]);
        }
        if with_ns {
            r.insert(0, obj.namespace().to_string());
        }
        r
    };
    let mut headers = printers::headers::<K>(wide);
    if with_ns {
        headers.insert(0, "NAMESPACE".into());
    }
    let mut shown = 0usize;
    // Prints one page of objects (the header with the first object).
    let mut emit = |items: Vec<K>, values: &mut Vec<serde_json::Value>| {
        match output {
            "json" | "yaml" => values.extend(items.iter().map(to_value)),
            "name" => items
                .iter()
                .for_each(|o| println!("{}/{}", kind_ref::<K>(), o.name())),
            _ if !items.is_empty() => {
                let rows: Vec<_> = items.iter().map(row).collect();
                if shown == 0 && after_another {
                    println!();
                }
                print!("{}", render(&headers, &rows, shown == 0));
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            _ => {}
        }
        shown += items.len();
    };
    let list_version = if args.names.is_empty() {
        let mut params = ListParams {
            limit: args.chunk_size,
            ..params.clone()
        };
        loop {
            let (items, meta) = api.list(params.clone()).await?;
            emit(items, values);
            if meta.r#continue.is_empty() {
                break meta.resource_version;
            }
            params.continue_token = meta.r#continue;
        }
    } else {
        if namespace.is_empty() && K::NAMESPACED {
            return Err(CliError::usage(
                "error: a name cannot be looked up across all namespaces; use -n",
            ));
        }
        let mut items = Vec::new();
        for name in &args.names {
            items.push(api.get(name).await?);
        }
        emit(items, values);
        String::new()
    };
    if args.watch {
        // Print what changes after the list, until interrupted.
        let version = if list_version.is_empty() {
            let one = ListParams {
                limit: 1,
                ..params.clone()
            };
            api.list(one).await?.1.resource_version
        } else {
            list_version
        };
        let mut stream = api.watch(params, &version).await?;
        let mut header_printed = shown > 0;
        while let Some(event) = stream.next().await {
            let event = event?;
            if !args.names.is_empty() && !args.names.iter().any(|n| n == event.object.name()) {
                continue;
            }
            match output {
                "json" | "yaml" => {
                    // kubectl's: the object, or `{type, object}` with --output-watch-events.
                    let object = to_value(&event.object);
                    let v = if args.output_watch_events {
                        serde_json::json!({"type": event.kind, "object": object})
                    } else {
                        object
                    };
                    print_value(&v, output);
                    if output == "yaml" {
                        println!("---");
                    }
                }
                "name" => println!("{}/{}", kind_ref::<K>(), event.object.name()),
                _ => {
                    print!(
                        "{}",
                        render(&headers, &[row(&event.object)], !header_printed)
                    );
                    header_printed = true;
                }
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
    }
    Ok(shown > 0)
}
