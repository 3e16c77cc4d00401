//! The OpenTelemetry tracer provider of a process: a batch exporter to an OTLP/gRPC collector
//! when one is given, else a provider that only makes span ids.
//!
//! The batch processor runs on a thread of its own with a bounded queue: a span ending adds to
//! the queue (dropped when it is full), and exports happen on that thread every
//! [`SCHEDULED_DELAY`], so a collector that is slow or down costs requests nothing.
//!
//! Must not: export anything but spans, or block a caller on the network.

use std::time::Duration;

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use crate::Error;

/// How often queued spans are sent.
pub const SCHEDULED_DELAY: Duration = Duration::from_millis(500);
/// How many ended spans may wait; more are dropped.
const MAX_QUEUE: usize = 4096;
/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider of `service_name`, exporting to `endpoint` when given (inside a Tokio runtime:
/// the exporter's gRPC channel lives on it).
pub fn provider(
    endpoint: Option<&str>,
    service_name: &'static str,
) -> Result<SdkTracerProvider, Error> {
    let resource = Resource::builder().with_service_name(service_name).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else {
        return Ok(builder.build());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| Error::Exporter(e.to_string()))?;
    let config = BatchConfigBuilder::default()
        .with_scheduled_delay(SCHEDULED_DELAY)
        .with_max_queue_size(MAX_QUEUE)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    Ok(builder.with_span_processor(processor).build())
}
