//! Appends CRI log records to a file and rotates it.
//!
//! Owns [`LogWriter`]: one per instance, shared by its stdout and stderr. Like containerd, it
//! buffers each stream up to a newline: complete lines become `F` records stamped when they
//! complete; a line longer than 16 KiB is cut into `P` records; what is left without a newline
//! when the instance ends is written by [`LogWriter::finish`] as a `P` record. (Guests' writes do
//! not follow lines: WASI preview 1 writes one iovec per call, so `printf("tick\n")` arrives as
//! `tick` then `\n`.) When the file reaches its size limit it is renamed to `<path>.1`
//! (replacing an older one) and a new file is started, so a log never takes more than about
//! twice the limit. Writes are small appends to a local file (page cache), done in place as
//! wasmtime-wasi's own stdio does. Must not: parse records (that is the reader).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::format::{LogStream, MAX_RECORD_CONTENT, encode_records};

/// A rotating CRI log file; clones write to the same file.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    buf: Vec<u8>,
    /// Bytes of each stream (stdout, stderr) after its last newline.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending) or creates the log at `path`, creating its parent directory.
    pub fn create(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                size,
                max_bytes: max_bytes.max(1),
                buf: Vec::new(),
                pending: [Vec::new(), Vec::new()],
            })),
        })
    }

    /// The path of the current file.
    pub fn path(&self) -> PathBuf {
        self.lock().map(|i| i.path.clone()).unwrap_or_default()
    }

    /// Takes `data` written by the guest to `stream`: its complete lines are appended as
    /// records stamped now, the rest waits for its newline.
    pub fn write(&self, stream: LogStream, data: &[u8]) -> io::Result<()> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        let pending = &mut inner.pending[index(stream)];
        pending.extend_from_slice(data);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // A line too long for one record goes out in full-size partial records.
        let overlong = (pending.len() - complete) / MAX_RECORD_CONTENT * MAX_RECORD_CONTENT;
        let ready = complete + overlong;
        if ready == 0 {
            return Ok(());
        }
        let out: Vec<u8> = pending.drain(..ready).collect();
        inner.append(OffsetDateTime::now_utc(), stream, &out)
    }

    /// Writes what is left of both streams (output without a final newline) as `P` records.
    /// Called when the instance ends.
    pub fn finish(&self) -> io::Result<()> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut inner.pending[index(stream)]);
            inner.append(OffsetDateTime::now_utc(), stream, &rest)?;
        }
        Ok(())
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("log writer poisoned"))
    }
}

fn index(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

impl Inner {
    fn append(&mut self, time: OffsetDateTime, stream: LogStream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        encode_records(time, stream, data, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `<path>.1`: where a full log goes on rotation.
pub(crate) fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse_line;

    fn records(path: &Path) -> Vec<String> {
        std::fs::read(path)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8(parse_line(l).unwrap().content).unwrap())
            .collect()
    }

    #[test]
    fn writes_both_streams_to_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/0.log");
        let w = LogWriter::create(&path, 1 << 20).unwrap();
        w.write(LogStream::Stdout, b"out\n").unwrap();
        w.clone().write(LogStream::Stderr, b"err").unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" stdout F out"), "{text}");
        assert!(lines[1].ends_with(" stderr P err"), "{text}");
    }

    #[test]
    fn lines_are_assembled_from_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::create(&path, 1 << 20).unwrap();
        // As a WASI preview 1 guest writes `printf("tick 1\n")`: text, then the newline.
        w.write(LogStream::Stdout, b"tick 1").unwrap();
        w.write(LogStream::Stderr, b"warn").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        w.write(LogStream::Stdout, b"\ntick 2\nti").unwrap();
        w.write(LogStream::Stdout, b"ck 3\n").unwrap();
        w.write(LogStream::Stderr, b"ing\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(
            records,
            [
                "stdout F tick 1",
                "stdout F tick 2",
                "stdout F tick 3",
                "stderr F warning"
            ]
        );
        // A line longer than a record is cut into partial records as it comes.
        let long = vec![b'x'; MAX_RECORD_CONTENT + 5];
        w.write(LogStream::Stdout, &long).unwrap();
        w.write(LogStream::Stdout, b"y\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last: Vec<&str> = text
            .lines()
            .skip(4)
            .map(|l| l.split(' ').nth(2).unwrap())
            .collect();
        assert_eq!(last, ["P", "F"]);
        assert!(text.ends_with("xxxxxy\n"));
    }

    #[test]
    fn rotates_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::create(&path, 200).unwrap();
        for i in 0..12 {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let old = records(&rotated_path(&path));
        let new = records(&path);
        assert!(!old.is_empty() && !new.is_empty(), "{old:?} {new:?}");
        assert!(std::fs::metadata(&path).unwrap().len() < 200);
        // Nothing lost across the last rotation, in order.
        let mut all = old.clone();
        all.extend(new);
        assert_eq!(all.last().unwrap(), "line 11");
        let first: usize = all[0].trim_start_matches("line ").parse().unwrap();
        let expected: Vec<String> = (first..12).map(|i| format!("line {i}")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn appends_to_an_existing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        LogWriter::create(&path, 1 << 20)
            .unwrap()
            .write(LogStream::Stdout, b"a\n")
            .unwrap();
        LogWriter::create(&path, 1 << 20)
            .unwrap()
            .write(LogStream::Stdout, b"b\n")
            .unwrap();
        assert_eq!(records(&path), ["a", "b"]);
    }
}
