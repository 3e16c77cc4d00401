//! `--log-format json`: one JSON object a line, as log collectors read them:
//!
//! ```json
//! {"timestamp":"2026-12-07T18:30:00.123456Z","level":"INFO","target":"skiff_node_agent::pods",
//!  "message":"pod started","fields":{"pod":"default/web"},"span":"pod_sync",
//!  "trace_id":"4bf9...","span_id":"00f0..."}
//! ```
//!
//! `fields` holds the event's own fields over those of the spans it is in (outermost first);
//! `span`, `trace_id` and `span_id` are there only inside a span (ids when spans are made).
//!
//! Must not: write a line in more than one write (lines of concurrent tasks must not mix).

use std::io::Write;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The JSON log layer, writing each line to what `make_writer` gives.
pub struct JsonLayer<W> {
    make_writer: W,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<W> JsonLayer<W> {
    pub fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            dispatch: OnceLock::new(),
        }
    }
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(Map<String, Value>);

/// Collects fields into a map (the `message` field apart).
struct Visitor<'a> {
    fields: &'a mut Map<String, Value>,
    message: Option<&'a mut String>,
}

impl Visitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message"
            && let Some(m) = self.message.as_deref_mut()
        {
            *m = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return;
        }
        // tracing-opentelemetry's own keys (otel.name, otel.kind, ...) say how to export.
        if name.starts_with("otel.") {
            return;
        }
        self.fields.insert(name.to_string(), value);
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Visitor {
            fields: &mut fields,
            message: None,
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut Visitor {
                    fields,
                    message: None,
                });
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        let mut span_name = None;
        let mut current = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    fields.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                span_name = Some(span.name());
                current = Some(span.id());
            }
        }
        let mut message = String::new();
        event.record(&mut Visitor {
            fields: &mut fields,
            message: Some(&mut message),
        });
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(timestamp()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        line.insert("message".into(), Value::from(message));
        line.insert("fields".into(), Value::Object(fields));
        if let Some(name) = span_name {
            line.insert("span".into(), Value::from(name));
        }
        if let Some((trace_id, span_id)) = current.and_then(|id| self.ids(&id)) {
            line.insert("trace_id".into(), Value::from(trace_id));
            line.insert("span_id".into(), Value::from(span_id));
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let _ = self.make_writer.make_writer().write_all(text.as_bytes());
    }
}

impl<W> JsonLayer<W> {
    /// The OpenTelemetry trace and span ids of span `id`, when spans are made.
    fn ids(&self, id: &Id) -> Option<(String, String)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

/// Now, RFC 3339 in UTC with microseconds.
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.microsecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn each_event_is_one_object_with_its_span_fields_and_ids() {
        let lines = Lines::default();
        let (otel, _telemetry) = crate::otel_layer(None, "test").unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(otel)
            .with(JsonLayer::new(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(n = 1, "outside");
            let span = tracing::info_span!(
                "pod_sync",
                pod = "default/web",
                code = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("code", "OK");
            tracing::warn!(pod = "default/other", "inside \"quoted\"");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert_eq!(parsed[0]["message"], "outside");
        assert_eq!(parsed[0]["level"], "INFO");
        assert_eq!(parsed[0]["fields"]["n"], 1);
        assert!(parsed[0].get("trace_id").is_none());
        assert!(parsed[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        let inside = &parsed[1];
        assert_eq!(inside["message"], "inside \"quoted\"");
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["span"], "pod_sync");
        // The event's own field wins over its span's.
        assert_eq!(inside["fields"]["pod"], "default/other");
        assert_eq!(inside["fields"]["code"], "OK");
        assert_eq!(inside["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(inside["span_id"].as_str().unwrap().len(), 16);
        assert!(
            inside["target"]
                .as_str()
                .unwrap()
                .starts_with("skiff_telemetry")
        );
    }
}
