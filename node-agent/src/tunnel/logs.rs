//! `skiff logs` on the agent's end of the node tunnel: reads the CRI-format log files of its
//! containers and sends them up.
//!
//! Following a log ends when the container stops and its file is drained; a rotated file is
//! finished before the new one is read.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_api::v1::*;
use tokio::sync::mpsc;

use crate::pods::{LogIndex, log_path};

/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

fn reply(id: u64, chunks: Vec<PodLogChunk>, end: bool, error: String) -> TunnelUp {
    TunnelUp {
        message: Some(tunnel_up::Message::Log(TunnelLogData {
            stream_id: id,
            chunks,
            end,
            error,
        })),
    }
}

pub(super) async fn send_log(
    id: u64,
    open: TunnelLogOpen,
    logs: LogIndex,
    up: mpsc::Sender<TunnelUp>,
) {
    let result = stream_log(id, &open, &logs, &up).await;
    let message = match result {
        Ok(()) => reply(id, Vec::new(), true, String::new()),
        Err(error) => reply(id, Vec::new(), true, error),
    };
    let _ = up.send(message).await;
}

async fn stream_log(
    id: u64,
    open: &TunnelLogOpen,
    logs: &LogIndex,
    up: &mpsc::Sender<TunnelUp>,
) -> Result<(), String> {
    let state = logs.get(&open.uid, &open.container).ok_or_else(|| {
        format!(
            "container {:?} in pod {:?} has not started yet",
            open.container, open.name
        )
    })?;
    let attempt = if open.previous {
        state.attempt.checked_sub(1).ok_or_else(|| {
            format!(
                "previous terminated container {:?} in pod {:?} not found",
                open.container, open.name
            )
        })?
    } else {
        state.attempt
    };
    let path = log_path(&state.dir, attempt);
    let mut reader = LogReader::open(&path, open.tail_lines)
        .map_err(|e| format!("reading the log of container {:?}: {e}", open.container))?;
    reader.since = open
        .since_time
        .as_ref()
        .map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos));
    reader.timestamps = open.timestamps;
    loop {
        let chunks = reader.read_new().map_err(|e| e.to_string())?;
        if !chunks.is_empty() {
            up.send(reply(id, chunks, false, String::new()))
                .await
                .map_err(|_| "tunnel closed".to_string())?;
            continue;
        }
        if !open.follow || open.previous {
            return Ok(());
        }
        let still_running = logs
            .get(&open.uid, &open.container)
            .is_some_and(|s| s.attempt == attempt && s.running);
        if !still_running {
            // One last read: lines written just before the container stopped.
            let chunks = reader.read_new().map_err(|e| e.to_string())?;
            if !chunks.is_empty() {
                let _ = up.send(reply(id, chunks, false, String::new())).await;
            }
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Reads a CRI log file incrementally, following rotation (`<path>.1`).
struct LogReader {
    path: PathBuf,
    inode: u64,
    offset: u64,
    /// Lines to skip at first read, for `--tail`.
    skip: usize,
    pending: Vec<u8>,
    /// Records written before this time (unix nanoseconds) are left out (`--since`).
    since: Option<i128>,
    /// Each record's content is preceded by its time and a space (`--timestamps`).
    timestamps: bool,
}

impl LogReader {
    fn open(path: &Path, tail: Option<i32>) -> std::io::Result<Self> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let skip = match (tail, &meta) {
            (Some(n), Some(_)) if n >= 0 => {
                let text = std::fs::read(path)?;
                let lines = text.iter().filter(|b| **b == b'\n').count();
                lines.saturating_sub(usize::try_from(n).unwrap_or(0))
            }
            _ => 0,
        };
        Ok(Self {
            path: path.to_path_buf(),
            inode: meta.map_or(0, |m| m.ino()),
            offset: 0,
            skip,
            pending: Vec::new(),
            since: None,
            timestamps: false,
        })
    }

    fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// New complete lines since the last call, as chunks.
    fn read_new(&mut self) -> std::io::Result<Vec<PodLogChunk>> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        if self.inode != 0 && meta.ino() != self.inode {
            // Rotated: finish the old file (now `.1`), then start the new one.
            let rotated = PathBuf::from(format!("{}.1", self.path.display()));
            if let Ok(rest) = Self::read_from(&rotated, self.offset) {
                bytes.extend(rest);
            }
            self.offset = 0;
        }
        self.inode = meta.ino();
        let new = Self::read_from(&self.path, self.offset)?;
        self.offset += new.len() as u64;
        bytes.extend(new);
        self.pending.extend(bytes);
        let Some(last_newline) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
        let mut chunks: Vec<PodLogChunk> = Vec::new();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            let Some((time, stream, partial, content)) = parse_cri(line) else {
                continue;
            };
            if let Some(since) = self.since {
                let written = skiff_runtime::logs::parse_line(line)
                    .map(|l| l.time.unix_timestamp_nanos())
                    .unwrap_or(i128::MAX);
                if written < since {
                    continue;
                }
            }
            let mut data = Vec::with_capacity(content.len() + time.len() + 2);
            if self.timestamps {
                data.extend_from_slice(time);
                data.push(b' ');
            }
            data.extend_from_slice(content);
            if !partial {
                data.push(b'\n');
            }
            match chunks.last_mut() {
                Some(last) if last.stream == stream && last.data.len() < 32 * 1024 => {
                    last.data.extend(data)
                }
                _ => chunks.push(PodLogChunk {
                    stream: stream.to_string(),
                    data,
                }),
            }
        }
        Ok(chunks)
    }
}

/// `<time> <stream> <P|F> <content>` → (time, stream, partial, content).
fn parse_cri(line: &[u8]) -> Option<(&[u8], &str, bool, &[u8])> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    Some((time, stream, tag == b"P", content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follows_and_survives_rotation() {
        let dir = std::env::temp_dir().join(format!("skiff-logreader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00Z stdout F one\n2026-01-01T00:00:00Z stderr F two\n",
        )
        .unwrap();
        let mut r = LogReader::open(&path, Some(1)).unwrap();
        let chunks = r.read_new().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].stream, "stderr");
        assert_eq!(chunks[0].data, b"two\n");
        std::fs::rename(&path, dir.join("0.log.1")).unwrap();
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("0.log.1"))
            .unwrap();
        std::io::Write::write_all(&mut old, b"2026-01-01T00:00:00Z stdout P thr\n").unwrap();
        std::fs::write(&path, "2026-01-01T00:00:01Z stdout F ee\n").unwrap();
        let chunks = r.read_new().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].data, b"three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn since_leaves_out_older_lines_and_timestamps_lead_each_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.5Z stdout F old\n\
             2026-01-01T00:00:01Z stdout F edge\n\
             2026-01-01T00:00:02.25Z stderr F new\n",
        )
        .unwrap();
        let mut r = LogReader::open(&path, None).unwrap();
        // 2026-01-01T00:00:01Z
        r.since = Some(1_767_225_601 * 1_000_000_000);
        r.timestamps = true;
        let chunks = r.read_new().unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].data, b"2026-01-01T00:00:01Z edge\n");
        assert_eq!(chunks[1].stream, "stderr");
        assert_eq!(chunks[1].data, b"2026-01-01T00:00:02.25Z new\n");
    }
}
