//! The shim's logging: skiff-runtime logs with `tracing`, the shim framework writes `log` records
//! to containerd's log FIFO. A tracing subscriber forwards skiff's own events (info and above)
//! and everything else at warn and above as `log` records, so containerd's log shows what the
//! executors say without a line per guest WASI call (wasmtime-wasi traces those at info).
//!
//! Spans are exported over OTLP when the launching agent names its collector in
//! `SKIFF_OTLP_ENDPOINT` (`skiff-telemetry`; spans of the same filter).
//!
//! Must not: write anywhere but through `log` (the serving shim has no stderr).

use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Which events go to containerd's log.
const FILTER: &str = "warn,skiff_runtime=info,containerd_shim_skiff_v1=info";

/// Installs the forwarding subscriber (and the span exporter); call once, inside the async
/// runtime's context. Only the subscriber: the global `log` logger stays free for the framework
/// (containerd's log FIFO).
pub fn init() -> skiff_telemetry::Telemetry {
    let endpoint = std::env::var(skiff_telemetry::ENDPOINT_ENV)
        .ok()
        .and_then(|e| skiff_telemetry::otlp_endpoint(&e).ok());
    let (otel, telemetry) = match endpoint
        .as_deref()
        .map(|e| skiff_telemetry::otel_layer(Some(e), "skiff-shim"))
    {
        Some(Ok((layer, telemetry))) => (Some(layer), telemetry),
        Some(Err(e)) => {
            log::warn!("span export off: {e}");
            (None, skiff_telemetry::Telemetry::default())
        }
        None => (None, skiff_telemetry::Telemetry::default()),
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_writer(ToLog);
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(lines)
        .with(EnvFilter::new(FILTER));
    let _ = tracing::subscriber::set_global_default(subscriber);
    telemetry
}

/// Each formatted event becomes one `log` record.
#[derive(Clone, Copy)]
struct ToLog;

impl io::Write for ToLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = text.trim_end();
        if !text.is_empty() {
            log::info!("{text}");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ToLog {
    type Writer = ToLog;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
