//! `--log-format` and `--otlp-endpoint` of `skiff up`, `server` and `agent`: the flags, checked
//! by clap (a bad value exits 2 naming the flag), and the process's logs and traces installed
//! from them by `skiff-telemetry`.

use clap::Args;
use skiff_telemetry::{LogFormat, Options, Telemetry};

use crate::error::{CliError, Result};

#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// How log lines are written to standard error: text, or json (one object a line, with the
    /// trace_id and span_id of the span it is in)
    #[arg(long, default_value = "text", value_name = "text|json", value_parser = log_format)]
    log_format: LogFormat,
    /// Export traces over OTLP/gRPC to this collector: http://HOST:PORT (off by default)
    #[arg(long, value_name = "URL", value_parser = otlp_endpoint)]
    otlp_endpoint: Option<String>,
}

fn log_format(text: &str) -> std::result::Result<LogFormat, String> {
    text.parse()
        .map_err(|e: skiff_telemetry::Error| e.to_string())
}

fn otlp_endpoint(text: &str) -> std::result::Result<String, String> {
    skiff_telemetry::otlp_endpoint(text).map_err(|e| e.to_string())
}

/// Filters of `$SKIFF_LOG` (tracing's env-filter syntax), else info with the HTTP/2 stack quiet.
fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,hyper=warn")
    })
}

impl TelemetryArgs {
    /// Installs the logs and traces of a process named `service` (`skiff-server`, ...). Call
    /// inside the async runtime; keep the result and [`finish`] it at the end.
    pub fn init(&self, service: &'static str) -> Result<Telemetry> {
        let options = Options {
            format: self.log_format,
            otlp_endpoint: self.otlp_endpoint.clone(),
            service_name: service,
        };
        skiff_telemetry::init(&options, filter())
            .map_err(|e| CliError::usage(format!("error: --otlp-endpoint: {e}")))
    }
}

/// Sends the spans still queued (a few seconds at most), off the async threads.
pub async fn finish(telemetry: Telemetry) {
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        telemetry: TelemetryArgs,
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        let ok = Cmd::try_parse_from([
            "x",
            "--log-format",
            "json",
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
        ])
        .map(|c| c.telemetry.log_format);
        assert_eq!(ok.ok(), Some(LogFormat::Json));
        for (flag, value) in [
            ("--log-format", "yaml"),
            ("--otlp-endpoint", "127.0.0.1:4317"),
        ] {
            let e = Cmd::try_parse_from(["x", flag, value])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(flag), "{e}");
        }
    }
}
