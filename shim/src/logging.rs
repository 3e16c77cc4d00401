//! The shim's logging: skiff-runtime logs with `tracing`, the shim framework writes `log` records
//! to containerd's log FIFO. A tracing subscriber forwards skiff's own events (info and above)
//! and everything else at warn and above as `log` records, so containerd's log shows what the
//! executors say without a line per guest WASI call (wasmtime-wasi traces those at info).
//!
//! Must not: write anywhere but through `log` (the serving shim has no stderr).

use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Which events go to containerd's log.
const FILTER: &str = "warn,skiff_runtime=info,containerd_shim_skiff_v1=info";

/// Installs the forwarding subscriber; call once, before the async runtime starts. Only the
/// subscriber: the global `log` logger stays free for the framework (containerd's log FIFO).
pub fn init() {
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(FILTER))
        .with_ansi(false)
        .without_time()
        .with_writer(ToLog)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
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
