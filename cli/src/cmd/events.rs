//! Events, sorted: `skiff events [-n NS | -A] [--for KIND/NAME] [--types Warning,Normal]`
//! (kubectl's `events` verb, 1.29+) and the table of `skiff get events [--for KIND/NAME]`.
//! Both list every page, then print oldest first by when the event was last seen (its
//! `lastTimestamp`, else `firstTimestamp`, creation), as `kubectl events` does, so
//! the newest is at the bottom; `--for` keeps the events about one object. `skiff events`
//! prints kubectl events' columns (`LAST SEEN` as `2m (x4 over 5m)` for a repeated event, the
//! object as `Pod/web`); `get events` prints the Event table printer's (counts under `-o wide`).
//!
//! Must not: print any other kind (`get` does).

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::kinds::KindInfo;
use skiff_api::printers;
use skiff_api::v1::Event;

use crate::error::{CliError, Result};
use crate::output::table::render;

#[derive(Args)]
pub struct EventsArgs {
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// All namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Only events about this object: KIND/NAME (`pod/web`, `deployment/web`, `node/n1`)
    #[arg(long = "for", value_name = "KIND/NAME")]
    for_object: Option<String>,
    /// Only these types, comma-separated: Normal, Warning
    #[arg(long)]
    types: Option<String>,
    /// No header line
    #[arg(long)]
    no_headers: bool,
}

pub async fn run(transport: &Transport, args: EventsArgs) -> Result<()> {
    let types: Vec<String> = match &args.types {
        None => Vec::new(),
        Some(t) => t
            .split(',')
            .map(|t| match t.trim().to_ascii_lowercase().as_str() {
                "normal" => Ok("Normal".to_string()),
                "warning" => Ok("Warning".to_string()),
                other => Err(CliError::usage(format!(
                    "error: --types {other:?}: use Normal or Warning"
                ))),
            })
            .collect::<Result<_>>()?,
    };
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        super::namespace(&args.namespace)
    };
    let mut events = list(transport, &namespace, "", args.for_object.as_deref()).await?;
    if !types.is_empty() {
        events.retain(|e| types.contains(&e.r#type));
    }
    if events.is_empty() {
        if namespace.is_empty() {
            eprintln!("No events found.");
        } else {
            eprintln!("No events found in {namespace} namespace.");
        }
        return Ok(());
    }
    print!(
        "{}",
        events_table(&events, namespace.is_empty(), !args.no_headers)
    );
    Ok(())
}

/// When an event happened, as kubectl's describe and events print it: its age (since first
/// seen) alone, or `2m (x4 over 5m)` (since last seen, count, since first seen) when repeated.
pub fn interval(e: &Event) -> String {
    let first = e
        .first_timestamp
        .as_ref()
        .or(e.meta().creation_timestamp.as_ref());
    let first = skiff_api::time::age(first);
    if e.count > 1 {
        let last = skiff_api::time::age(e.last_timestamp.as_ref());
        format!("{last} (x{} over {first})", e.count)
    } else {
        first
    }
}

/// `kubectl events`' table: LAST SEEN (with counts), TYPE, REASON, OBJECT (`Pod/web`),
/// MESSAGE; NAMESPACE first across namespaces.
pub fn events_table(events: &[Event], with_namespace: bool, headers: bool) -> String {
    let mut head = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
    if with_namespace {
        head.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let object = e.involved_object.clone().unwrap_or_default();
            let mut r = vec![
                interval(e),
                e.r#type.clone(),
                e.reason.clone(),
                format!("{}/{}", object.kind, object.name),
                e.message.trim().to_string(),
            ];
            if with_namespace {
                r.insert(0, e.namespace().to_string());
            }
            r
        })
        .collect();
    render(&head, &rows, headers)
}

/// The field selector of `--for KIND/NAME`: `involvedObject.kind=Pod,involvedObject.name=web`.
pub fn for_selector(word: &str) -> Result<String> {
    let usage = || {
        CliError::usage(format!(
            "error: --for {word:?}: use KIND/NAME, for example pod/web"
        ))
    };
    let (kind, name) = word.split_once('/').ok_or_else(usage)?;
    if name.is_empty() || name.contains('/') {
        return Err(usage());
    }
    let info = KindInfo::lookup(kind).ok_or_else(|| {
        CliError::usage(format!(
            "error: --for {word:?}: the server doesn't have a resource type {kind:?}"
        ))
    })?;
    Ok(format!(
        "involvedObject.kind={},involvedObject.name={name}",
        info.kind
    ))
}

/// Every event in `namespace` (all if empty) matching `fields` and `--for`, sorted.
pub async fn list(
    transport: &Transport,
    namespace: &str,
    fields: &str,
    for_object: Option<&str>,
) -> Result<Vec<Event>> {
    let mut selector = fields.to_string();
    if let Some(word) = for_object {
        if !selector.is_empty() {
            selector.push(',');
        }
        selector.push_str(&for_selector(word)?);
    }
    let api = Api::<Event>::new(transport.clone(), namespace);
    let mut params = ListParams {
        limit: 500,
        ..ListParams::default().fields(&selector)
    };
    let mut events = Vec::new();
    loop {
        let (items, meta) = api.list(params.clone()).await?;
        events.extend(items);
        if meta.r#continue.is_empty() {
            break;
        }
        params.continue_token = meta.r#continue;
    }
    sort(&mut events);
    Ok(events)
}

/// When an event was last seen, as (seconds, nanos).
fn last_seen(e: &Event) -> (i64, i32) {
    e.last_timestamp
        .as_ref()
        .or(e.first_timestamp.as_ref())
        .or(e.meta().creation_timestamp.as_ref())
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

/// Oldest first; within one second (timestamps are whole seconds) in the order they were
/// written (resourceVersion: each reporter writes its events in order).
pub fn sort(events: &mut [Event]) {
    events.sort_by_key(order);
}

/// The sort key of an event: when last seen, then when written.
pub fn order(e: &Event) -> ((i64, i32), u64) {
    let written = e.meta().resource_version.parse().unwrap_or(0);
    (last_seen(e), written)
}

/// The events' table (the Event printer's columns; NAMESPACE first across namespaces).
pub fn table(events: &[Event], with_namespace: bool, wide: bool, headers: bool) -> String {
    let mut head = printers::headers::<Event>(wide);
    if with_namespace {
        head.insert(0, "NAMESPACE".into());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let mut r = printers::row(e, wide);
            if with_namespace {
                r.insert(0, e.namespace().to_string());
            }
            r
        })
        .collect();
    render(&head, &rows, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::ObjectMeta;

    fn event(name: &str, last: i64, reason: &str) -> Event {
        Event {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                resource_version: name.trim_start_matches("web.").into(),
                ..Default::default()
            }),
            reason: reason.into(),
            last_timestamp: Some(skiff_api::Timestamp {
                seconds: last,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_repeated_event_says_how_often_over_how_long() {
        let ago = |secs: i64| skiff_api::Timestamp {
            seconds: skiff_api::time::now().seconds - secs,
            nanos: 0,
        };
        let mut e = event("web.1", 0, "BackOff");
        e.first_timestamp = Some(ago(1800));
        e.last_timestamp = Some(ago(660));
        e.count = 4;
        assert_eq!(interval(&e), "11m (x4 over 30m)");
        // Once: its age since first seen, as kubectl.
        e.count = 1;
        assert_eq!(interval(&e), "30m");
        e.involved_object = Some(skiff_api::v1::ObjectReference {
            kind: "Pod".into(),
            name: "web".into(),
            ..Default::default()
        });
        e.r#type = "Warning".into();
        e.message = "Back-off restarting failed container app in pod web_default(u)".into();
        e.count = 2;
        let table = events_table(&[e], false, true);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("LAST SEEN"), "{table}");
        assert!(
            lines[1].starts_with("11m (x2 over 30m)   Warning   BackOff   Pod/web   Back-off"),
            "{table}"
        );
    }

    #[test]
    fn events_sort_oldest_first() {
        let mut events = vec![
            event("web.3", 30, "Started"),
            event("web.12", 10, "Pulled"),
            event("web.9", 10, "Scheduled"),
        ];
        sort(&mut events);
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Scheduled", "Pulled", "Started"]);
    }

    #[test]
    fn for_names_one_object() {
        assert_eq!(
            for_selector("pod/web").unwrap(),
            "involvedObject.kind=Pod,involvedObject.name=web"
        );
        assert_eq!(
            for_selector("deploy/web").unwrap(),
            "involvedObject.kind=Deployment,involvedObject.name=web"
        );
        for bad in ["web", "pod/", "pod/a/b", "widget/x"] {
            assert_eq!(for_selector(bad).unwrap_err().code, 2, "{bad}");
        }
    }
}
