//! A function's settings: Wasm pods whose component exports `wasi:http/incoming-handler` are
//! served per request by their node, and these pod annotations tune that (the names in the
//! spirit of Knative's and Spin's settings; docs/functions.md is the user's page):
//!
//! | annotation | value | default |
//! | --- | --- | --- |
//! | [`TIMEOUT`] `skiff.dev/function-timeout` | a duration (`500ms`, `30s`, `2m`, `1m30s`), more than 0: past it, 504 | `30s` |
//! | [`MAX_BODY`] `skiff.dev/function-max-body` | a quantity of bytes (`1Mi`, `64k`, `4096`): a larger request body, 413 | `10Mi` |
//! | [`CONCURRENCY`] `skiff.dev/function-concurrency` | requests served at once per pod (`0`: no cap but the node's instance slots, Knative's `containerConcurrency: 0`): beyond, 503 with `Retry-After` | `100` |
//! | [`ALLOWED_OUTBOUND_HOSTS`] `skiff.dev/function-allowed-outbound-hosts` | comma-separated `SCHEME://HOST[:PORT]` (Spin's `allowed_outbound_hosts`: `*` scheme, host `*` or `*.domain`, port `*`; `insecure:allow-all`) | none: every outgoing request denied |
//!
//! Any of them also says the pod's Wasm containers are functions: one whose component is a
//! command then fails to start, naming why. A function serves on its container's declared TCP
//! `containerPort`s.
//!
//! Owns the names, parsing and validation (errors name the annotation). Must not: serve or know
//! the runtime (the agent passes the parsed values to the shim).

use std::time::Duration;

use crate::quantity::Quantity;
use crate::v1::ObjectMeta;
use crate::validation::FieldErrors;

/// Request timeout.
pub const TIMEOUT: &str = "skiff.dev/function-timeout";
/// Largest request body.
pub const MAX_BODY: &str = "skiff.dev/function-max-body";
/// Requests in flight per pod.
pub const CONCURRENCY: &str = "skiff.dev/function-concurrency";
/// Where outgoing requests may go.
pub const ALLOWED_OUTBOUND_HOSTS: &str = "skiff.dev/function-allowed-outbound-hosts";

/// Every function annotation.
pub const ALL: [&str; 4] = [TIMEOUT, MAX_BODY, CONCURRENCY, ALLOWED_OUTBOUND_HOSTS];

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;
/// Finite, so that one function cannot take every instance slot of its node's shim.
pub const DEFAULT_CONCURRENCY: u32 = 100;

/// A pod's function settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    pub timeout: Duration,
    pub max_body_bytes: u64,
    /// 0: no cap (but the node's instance slots).
    pub concurrency: u32,
    pub allowed_outbound_hosts: Vec<String>,
    /// Any function annotation is set: the pod's Wasm containers must be functions.
    pub declared: bool,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        FunctionSettings {
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            concurrency: DEFAULT_CONCURRENCY,
            allowed_outbound_hosts: Vec::new(),
            declared: false,
        }
    }
}

/// The settings `meta`'s annotations give, defaults where absent; the first bad one is the error
/// (`(annotation, message)`).
pub fn settings(meta: Option<&ObjectMeta>) -> Result<FunctionSettings, (&'static str, String)> {
    let mut s = FunctionSettings::default();
    let Some(meta) = meta else {
        return Ok(s);
    };
    let get = |key: &str| meta.annotations.get(key).map(|v| v.trim());
    s.declared = ALL.iter().any(|k| meta.annotations.contains_key(*k));
    if let Some(v) = get(TIMEOUT) {
        s.timeout = parse_duration(v).map_err(|m| (TIMEOUT, m))?;
        // As Kubernetes' timeouts (a probe's timeoutSeconds, activeDeadlineSeconds): positive.
        // Zero would be read as "no timeout" by some and "fail at once" by others.
        if s.timeout.is_zero() {
            return Err((
                TIMEOUT,
                format!("{v:?}: must be greater than 0 (a function always has a timeout)"),
            ));
        }
    }
    if let Some(v) = get(MAX_BODY) {
        let q = Quantity::parse(v).map_err(|e| (MAX_BODY, format!("{v:?}: {e}")))?;
        s.max_body_bytes = u64::try_from(q.value())
            .map_err(|_| (MAX_BODY, format!("{v:?}: must not be negative")))?;
    }
    if let Some(v) = get(CONCURRENCY) {
        s.concurrency = v.parse::<u32>().map_err(|_| {
            (
                CONCURRENCY,
                format!("{v:?}: must be a whole number, 0 for no cap"),
            )
        })?;
    }
    if let Some(v) = get(ALLOWED_OUTBOUND_HOSTS) {
        let entries: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        // The runtime's own parser: what passes here is what the node enforces.
        skiff_outbound_hosts::AllowedHosts::parse(&entries)
            .map_err(|e| (ALLOWED_OUTBOUND_HOSTS, e.to_string()))?;
        s.allowed_outbound_hosts = entries;
    }
    Ok(s)
}

/// Adds an error naming the annotation for each bad function annotation of `meta`.
pub fn validate(meta: &ObjectMeta, path: &str, errors: &mut FieldErrors) {
    // One at a time, so that each bad annotation is named.
    for key in ALL {
        let Some(value) = meta.annotations.get(key) else {
            continue;
        };
        let alone = ObjectMeta {
            annotations: [(key.to_string(), value.clone())].into(),
            ..ObjectMeta::default()
        };
        if let Err((key, message)) = settings(Some(&alone)) {
            errors.add(format!("{path}[{key}]"), message);
        }
    }
}

/// A Go-style duration: one or more `<number><unit>`, units `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?}: not a duration (e.g. 500ms, 30s, 2m, 1m30s)");
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn defaults_and_values() {
        let none = settings(Some(&meta(&[]))).unwrap();
        assert_eq!(none, FunctionSettings::default());
        assert!(!none.declared);
        assert_eq!(none.concurrency, 100, "a finite cap by default");
        let unbounded = settings(Some(&meta(&[(CONCURRENCY, "0")]))).unwrap();
        assert_eq!(unbounded.concurrency, 0, "0 is Knative's: no cap");
        let s = settings(Some(&meta(&[
            (TIMEOUT, "1m30s"),
            (MAX_BODY, "1Mi"),
            (CONCURRENCY, "8"),
            (
                ALLOWED_OUTBOUND_HOSTS,
                "http://127.0.0.1:8080, https://*.example.com,*://h:*",
            ),
        ])))
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(90));
        assert_eq!((s.max_body_bytes, s.concurrency), (1 << 20, 8));
        assert_eq!(s.allowed_outbound_hosts.len(), 3);
        assert!(s.declared);
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn errors_name_the_annotation() {
        for (key, value, says) in [
            (TIMEOUT, "30", "not a duration"),
            (TIMEOUT, "soon", "not a duration"),
            (TIMEOUT, "0s", "must be greater than 0"),
            (TIMEOUT, "0ms", "must be greater than 0"),
            (MAX_BODY, "lots", "lots"),
            (MAX_BODY, "-1", "negative"),
            (CONCURRENCY, "-2", "whole number"),
            (ALLOWED_OUTBOUND_HOSTS, "example.com", "SCHEME://HOST"),
            (ALLOWED_OUTBOUND_HOSTS, "ftp://x", "scheme"),
            (ALLOWED_OUTBOUND_HOSTS, "http://x/path", "path"),
            (ALLOWED_OUTBOUND_HOSTS, "http://x:99999", "port"),
            (ALLOWED_OUTBOUND_HOSTS, "http://ok, http://[::1]x", "[::1]x"),
        ] {
            let mut errors = FieldErrors::default();
            validate(&meta(&[(key, value)]), "metadata.annotations", &mut errors);
            let text = errors.to_string();
            assert!(
                text.starts_with(&format!("metadata.annotations[{key}]")) && text.contains(says),
                "{key}={value}: {text}"
            );
        }
    }

    #[test]
    fn outbound_hosts_are_validated_as_the_runtime_parses_them() {
        for &(entry, refused) in skiff_outbound_hosts::EXAMPLES {
            let result = settings(Some(&meta(&[(ALLOWED_OUTBOUND_HOSTS, entry)])));
            match (result, refused) {
                (Ok(s), None) => assert_eq!(s.allowed_outbound_hosts, [entry]),
                (Err((key, message)), Some(says)) => {
                    assert_eq!(key, ALLOWED_OUTBOUND_HOSTS);
                    assert!(message.contains(says), "{entry}: {message}");
                }
                (got, _) => panic!("{entry}: {got:?}, expected {refused:?}"),
            }
        }
    }
}
