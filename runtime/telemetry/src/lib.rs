//! Logs and traces of skiff's processes (`skiff server`, `skiff agent`, `skiff up` and the
//! shim): one place that installs the `tracing` subscriber of a process from its flags.
//!
//! - `--log-format text|json` ([`LogFormat`]): text is tracing's usual line; json is one object
//!   a line with `timestamp`, `level`, `target`, `message`, `fields` and, inside a span, `span`,
//!   `trace_id` and `span_id` ([`json`]).
//! - `--otlp-endpoint URL` ([`otlp_endpoint`]): spans are exported over OTLP/gRPC by a batch
//!   exporter on a thread of its own ([`export`]): a slow or absent collector drops spans, it
//!   never holds up the code that made them.
//! - W3C trace context ([`context`]): the `traceparent` of the current span, a span's parent from
//!   a `traceparent`, and the pod annotation that carries a pod's trace from its create request
//!   to the scheduler, the agent and the shim.
//!
//! Must not: put request bodies or secret values in a span or a log line (callers name only
//! verbs, kinds, namespaces, names and codes), or block a caller on the collector.

pub mod context;
pub mod export;
pub mod json;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use context::{POD_ANNOTATION, current_traceparent, set_parent};

/// How a process writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// tracing's human-readable line.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(Error::LogFormat(other.to_string())),
        }
    }
}

impl LogFormat {
    /// The flag's spelling (`text`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// Bad telemetry settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?}: must be text or json")]
    LogFormat(String),
    #[error("{0:?}: must be http://HOST:PORT (an OTLP/gRPC collector)")]
    Endpoint(String),
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Checks an `--otlp-endpoint`: an `http://` URL with a host and a port and no path
/// (OTLP/gRPC's collector address, by convention port 4317). Plain gRPC only: spans go to a
/// collector on the node or its network, which forwards them on (docs/tracing.md).
pub fn otlp_endpoint(url: &str) -> Result<String, Error> {
    let bad = || Error::Endpoint(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    let port = authority.rsplit_once(':').map(|(_, p)| p).ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("http://{authority}")),
        _ => Err(bad()),
    }
}

/// What a process asks of its telemetry.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: LogFormat,
    /// The collector to export spans to (checked by [`otlp_endpoint`]); none: no export.
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry's `service.name` of the spans (`skiff-server`, `skiff-agent`, ...).
    pub service_name: &'static str,
}

static EXPORTING: AtomicBool = AtomicBool::new(false);
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The environment variable that gives a shim the collector of the agent that launched it.
pub const ENDPOINT_ENV: &str = "SKIFF_OTLP_ENDPOINT";

/// Whether this process exports spans (so a trace context it starts is worth carrying on).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The collector this process exports spans to, if it does (the agent hands it to its shims).
pub fn exporting_to() -> Option<&'static str> {
    ENDPOINT.get().map(String::as_str)
}

/// The installed telemetry; [`Telemetry::shutdown`] sends the spans still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is queued and stops the exporter (blocking, at most 2 s: call it
    /// from a thread that may block, while the async runtime still runs).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = provider.shutdown_with_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// The layer that turns tracing spans into OpenTelemetry spans, and the provider behind it:
/// exporting to `endpoint` when given, else only making ids (for JSON logs' `trace_id`). Must
/// be called inside a Tokio runtime when `endpoint` is given (the gRPC channel lives on it).
pub fn otel_layer<S>(
    endpoint: Option<&str>,
    service_name: &'static str,
) -> Result<(Box<dyn Layer<S> + Send + Sync>, Telemetry), Error>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let provider = export::provider(endpoint, service_name)?;
    if let Some(endpoint) = endpoint {
        EXPORTING.store(true, Ordering::Relaxed);
        let _ = ENDPOINT.set(endpoint.to_string());
    }
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "skiff");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .boxed();
    Ok((
        layer,
        Telemetry {
            provider: Some(provider),
        },
    ))
}

/// Installs the process's subscriber: `filter`, the log lines in `options.format` on standard
/// error, and OpenTelemetry spans when they are exported or JSON logs name trace ids. Inside a
/// Tokio runtime when `options.otlp_endpoint` is given. A second call changes nothing.
pub fn init(options: &Options, filter: EnvFilter) -> Result<Telemetry, Error> {
    let want_otel = options.otlp_endpoint.is_some() || options.format == LogFormat::Json;
    let (otel, telemetry) = match want_otel {
        true => {
            let (layer, telemetry) =
                otel_layer(options.otlp_endpoint.as_deref(), options.service_name)?;
            (Some(layer), telemetry)
        }
        false => (None, Telemetry::default()),
    };
    // The OpenTelemetry layer first, so that a span has its ids when the log layer sees it; the
    // JSON layer directly in the stack (an `Option` or a `Vec` of layers would not hand it the
    // dispatcher it reads ids through).
    let spans = tracing_subscriber::registry().with(otel);
    let _ = match options.format {
        LogFormat::Text => spans
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .try_init(),
        LogFormat::Json => spans
            .with(json::JsonLayer::new(std::io::stderr))
            .with(filter)
            .try_init(),
    };
    Ok(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_or_say_what_is_wrong() {
        assert_eq!("json".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        let e = "yaml".parse::<LogFormat>().err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("\"yaml\": must be text or json"));
        assert_eq!(
            otlp_endpoint("http://127.0.0.1:4317").ok().as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(
            otlp_endpoint("http://collector:4317/").ok().as_deref(),
            Some("http://collector:4317")
        );
        for bad in [
            "127.0.0.1:4317",
            "http://",
            "http://host",
            "http://host:0",
            "http://host:x",
            "http://host:4317/v1/traces",
            "ftp://host:21",
            "https://host:4317",
        ] {
            assert!(otlp_endpoint(bad).is_err(), "{bad}");
        }
    }
}
