//! The audit log: one JSON line per API request, who did what to which object and how it ended,
//! in the shape of Kubernetes' `audit.k8s.io/v1` Event, written to `DIR/audit.log` with size-based
//! rotation (`--audit-log-path`, `--audit-log-maxsize`, `--audit-log-maxbackup`).
//!
//! Every event is at Kubernetes' `Metadata` level: the user, verb, object reference, response
//! code, source address, user agent and times, never a request or response body, so a Secret's
//! value cannot reach the log. Lines are handed to one writer thread through a bounded queue; if
//! the queue is full (the disk stalls) a line is dropped and counted rather than holding requests.
//!
//! The controllers' and the scheduler's own writes are recorded too ([`store`]), under
//! kube-controller-manager's and kube-scheduler's identities.
//!
//! Must not: see objects' contents, block a request on disk I/O, or decide anything.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Identity;

pub mod store;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;

/// `--audit-log-*`.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Where the log goes; `-` is standard output.
    pub path: PathBuf,
    /// Rotate when the file would pass this many megabytes (0: never).
    pub max_size_mb: u64,
    /// Rotated files kept (0: all).
    pub max_backups: usize,
}

impl AuditOptions {
    /// Kubernetes' `--audit-log-maxsize` and `--audit-log-maxbackup` have no default; skiff keeps
    /// ten files of 100 MB so an audit log cannot fill the disk.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("audit.log"),
            max_size_mb: 100,
            max_backups: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where audit events go.
pub struct AuditLog {
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

/// What a request touched: Kubernetes' `objectRef`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// Who, from where, which call: known once the request is authenticated.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Kubernetes' `auditID`, also sent back as the `audit-id` response header.
    pub audit_id: String,
    /// The gRPC path, `/skiff.v1.PodApi/Create`.
    pub uri: String,
    pub source_ip: Option<std::net::IpAddr>,
    pub user_agent: String,
    pub received: OffsetDateTime,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    username: &'a str,
    groups: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseStatus<'a> {
    metadata: Empty,
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'a str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: User<'a>,
    /// Who the caller acted as (`Impersonate-User`), as Kubernetes records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<User<'a>>,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a ObjectRef>,
    response_status: ResponseStatus<'a>,
    request_received_timestamp: String,
    stage_timestamp: String,
}

/// How a request ended, as Kubernetes' HTTP status.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub code: tonic::Code,
    pub message: &'a str,
}

impl Outcome<'_> {
    pub const OK: Outcome<'static> = Outcome {
        code: tonic::Code::Ok,
        message: "",
    };
}

/// The HTTP status Kubernetes would answer for a gRPC code.
pub fn http_code(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        InvalidArgument | OutOfRange => 400,
        Unauthenticated => 401,
        PermissionDenied => 403,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        FailedPrecondition => 422,
        ResourceExhausted => 429,
        Cancelled => 499,
        DeadlineExceeded => 504,
        Unimplemented => 501,
        Unavailable => 503,
        _ => 500,
    }
}

fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl AuditLog {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn open(options: &AuditOptions) -> Result<Arc<Self>, AuditError> {
        let sink = Sink::open(options)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || sink.run(rx))
            .map_err(|source| AuditError::Io {
                path: options.path.clone(),
                source,
            })?;
        Ok(Arc::new(Self {
            tx,
            dropped: AtomicU64::new(0),
        }))
    }

    /// Records one request. `who` is None for a request that failed authentication.
    pub fn record(
        &self,
        info: &RequestInfo,
        who: Option<&Identity>,
        verb: &str,
        object: Option<&ObjectRef>,
        stage: &str,
        outcome: Outcome<'_>,
    ) {
        self.record_impersonated(info, who, None, verb, object, stage, outcome);
    }

    /// Records one request of `who` acting as `impersonated`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_impersonated(
        &self,
        info: &RequestInfo,
        who: Option<&Identity>,
        impersonated: Option<&Identity>,
        verb: &str,
        object: Option<&ObjectRef>,
        stage: &str,
        outcome: Outcome<'_>,
    ) {
        let name = who.map(|w| w.name());
        let groups = who.map(|w| w.groups()).unwrap_or_default();
        let as_name = impersonated.map(|w| w.name());
        let as_groups = impersonated.map(|w| w.groups()).unwrap_or_default();
        let line = Line {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: &info.audit_id,
            stage,
            request_uri: &info.uri,
            verb,
            user: User {
                username: name.as_deref().unwrap_or("system:anonymous"),
                groups: groups.iter().map(|g| g.as_ref()).collect(),
            },
            impersonated_user: as_name.as_deref().map(|username| User {
                username,
                groups: as_groups.iter().map(|g| g.as_ref()).collect(),
            }),
            source_ips: info.source_ip.iter().map(|ip| ip.to_string()).collect(),
            user_agent: &info.user_agent,
            object_ref: object,
            response_status: ResponseStatus {
                metadata: Empty {},
                code: http_code(outcome.code),
                status: (outcome.code != tonic::Code::Ok).then_some("Failure"),
                message: outcome.message,
            },
            request_received_timestamp: timestamp(info.received),
            stage_timestamp: timestamp(OffsetDateTime::now_utc()),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        match self.tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "audit log queue full: events dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread's file and rotation.
struct Sink {
    options: AuditOptions,
    out: Option<BufWriter<File>>,
    size: u64,
}

fn open_file(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = f.metadata()?.len();
    Ok((BufWriter::new(f), size))
}

impl Sink {
    fn open(options: &AuditOptions) -> Result<Self, AuditError> {
        let out = if options.path.as_os_str() == "-" {
            None
        } else {
            if let Some(dir) = options.path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| AuditError::Io {
                    path: options.path.clone(),
                    source,
                })?;
            }
            Some(open_file(&options.path).map_err(|source| AuditError::Io {
                path: options.path.clone(),
                source,
            })?)
        };
        let (out, size) = match out {
            Some((o, s)) => (Some(o), s),
            None => (None, 0),
        };
        Ok(Self {
            options: options.clone(),
            out,
            size,
        })
    }

    fn run(mut self, rx: Receiver<String>) {
        while let Ok(first) = rx.recv() {
            self.write(&first);
            // Drain what queued meanwhile, then flush once.
            while let Ok(more) = rx.try_recv() {
                self.write(&more);
            }
            self.flush();
        }
        self.flush();
    }

    fn flush(&mut self) {
        let result = match &mut self.out {
            Some(out) => out.flush(),
            None => std::io::stdout().flush(),
        };
        if let Err(e) = result {
            tracing::warn!(path = %self.options.path.display(), error = %e, "audit log flush failed");
        }
    }

    fn write(&mut self, line: &str) {
        let limit = self.options.max_size_mb.saturating_mul(1024 * 1024);
        if self.out.is_some() && limit > 0 && self.size > 0 && self.size + line.len() as u64 > limit
        {
            self.rotate();
        }
        let result = match &mut self.out {
            Some(out) => out.write_all(line.as_bytes()),
            None => std::io::stdout().write_all(line.as_bytes()),
        };
        match result {
            Ok(()) => self.size += line.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.options.path.display(), error = %e, "audit log write failed")
            }
        }
    }

    /// Renames the log to `audit-<time>.log` beside it (lumberjack's naming, as Kubernetes'),
    /// removes the oldest backups past `max_backups`, and starts a new file.
    fn rotate(&mut self) {
        self.flush();
        let path = self.options.path.clone();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        );
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut backup = dir.join(format!("{stem}-{stamp}{ext}"));
        let mut n = 1;
        while backup.exists() {
            backup = dir.join(format!("{stem}-{stamp}-{n}{ext}"));
            n += 1;
        }
        self.out = None;
        if let Err(e) = std::fs::rename(&path, &backup) {
            tracing::warn!(path = %path.display(), error = %e, "audit log rotation failed");
        }
        match open_file(&path) {
            Ok((out, size)) => {
                self.out = Some(out);
                self.size = size;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "audit log reopen failed")
            }
        }
        if self.options.max_backups > 0 {
            let prefix = format!("{stem}-");
            let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p != &path
                        && p.file_name()
                            .map(|n| n.to_string_lossy())
                            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
                })
                .collect();
            // The time stamp sorts by age.
            backups.sort();
            let excess = backups.len().saturating_sub(self.options.max_backups);
            for old in &backups[..excess] {
                let _ = std::fs::remove_file(old);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info() -> RequestInfo {
        RequestInfo {
            audit_id: "id-1".into(),
            uri: "/skiff.v1.SecretApi/Get".into(),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            user_agent: "skiff/0.1".into(),
            received: OffsetDateTime::now_utc(),
        }
    }

    fn wait_for_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            if lines.len() >= n {
                return lines
                    .iter()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("fewer than {n} lines in {}", path.display());
    }

    #[test]
    fn events_are_kubernetes_audit_events_at_metadata_level() {
        let dir = tempfile::tempdir().unwrap();
        let options = AuditOptions::in_dir(dir.path());
        let log = AuditLog::open(&options).unwrap();
        let object = ObjectRef {
            resource: "secrets".into(),
            namespace: "shop".into(),
            name: "db".into(),
            api_version: "v1".into(),
            ..Default::default()
        };
        log.record(
            &info(),
            Some(&Identity::Node("n1".into())),
            "get",
            Some(&object),
            "ResponseComplete",
            Outcome {
                code: tonic::Code::PermissionDenied,
                message: "no",
            },
        );
        log.record(
            &info(),
            None,
            "get",
            None,
            "ResponseComplete",
            Outcome {
                code: tonic::Code::Unauthenticated,
                message: "invalid bearer token",
            },
        );
        let lines = wait_for_lines(&options.path, 2);
        let e = &lines[0];
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["level"], "Metadata");
        assert_eq!(e["auditID"], "id-1");
        assert_eq!(e["verb"], "get");
        assert_eq!(e["user"]["username"], "system:node:n1");
        assert_eq!(
            e["user"]["groups"],
            serde_json::json!(["system:nodes", "system:authenticated"])
        );
        assert_eq!(e["objectRef"]["resource"], "secrets");
        assert_eq!(e["objectRef"]["namespace"], "shop");
        assert_eq!(e["objectRef"]["name"], "db");
        assert_eq!(e["responseStatus"]["code"], 403);
        assert_eq!(e["sourceIPs"], serde_json::json!(["127.0.0.1"]));
        assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
        assert_eq!(lines[1]["user"]["username"], "system:anonymous");
        assert_eq!(lines[1]["responseStatus"]["code"], 401);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&options.path)
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        let options = AuditOptions {
            path: dir.path().join("audit.log"),
            max_size_mb: 1,
            max_backups: 2,
        };
        let mut sink = Sink::open(&options).unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        // About 5 MB: four or five rotations.
        for _ in 0..5 * 1024 {
            sink.write(&line);
        }
        sink.flush();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let backups = names.iter().filter(|n| n.starts_with("audit-")).count();
        assert_eq!(backups, 2, "{names:?}");
        assert!(names.contains(&"audit.log".to_string()));
        for n in &names {
            let size = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(size <= 1024 * 1024, "{n} is {size} bytes");
        }
    }

    #[test]
    fn grpc_codes_map_to_kubernetes_http_codes() {
        assert_eq!(http_code(tonic::Code::ResourceExhausted), 429);
        assert_eq!(http_code(tonic::Code::PermissionDenied), 403);
        assert_eq!(http_code(tonic::Code::Aborted), 409);
        assert_eq!(http_code(tonic::Code::Ok), 200);
    }
}
