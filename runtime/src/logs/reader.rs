//! Reads a CRI log file as a stream of records, optionally following it across rotation.
//!
//! Owns [`read_log`]. A reading task feeds a bounded channel and stops as soon as the stream is
//! dropped. Following polls every 100 ms: new records are read as they are appended, and when
//! the file at the path is a different file (the writer rotated it to `<path>.1`) the rest of
//! the old file is drained and the new one is read from its start. Must not: write logs.

use std::collections::VecDeque;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::Stream;
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::format::{LogLine, parse_line};

const POLL: Duration = Duration::from_millis(100);

/// Streams the records of the log at `path`.
///
/// `tail`: only the last N records of the current file, then (if following) what comes next.
/// `follow`: keep reading appended records until the stream is dropped, across rotations;
/// otherwise the stream ends at the end of the file. A line that is not a CRI record yields an
/// `InvalidData` error item and reading goes on; a missing file yields one `NotFound` error.
/// Must be called within a tokio runtime.
pub fn read_log(
    path: impl Into<PathBuf>,
    follow: bool,
    tail: Option<usize>,
) -> impl Stream<Item = io::Result<LogLine>> + Send + 'static {
    let (tx, rx) = mpsc::channel(256);
    let path = path.into();
    tokio::spawn(async move {
        if let Err(e) = run(&path, follow, tail, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    ReceiverStream::new(rx)
}

type Tx = mpsc::Sender<io::Result<LogLine>>;

/// Identity of a file: (device, inode).
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

struct Cursor {
    reader: BufReader<File>,
    id: (u64, u64),
    pos: u64,
    /// An incomplete last line (the writer is mid-write).
    pending: Vec<u8>,
}

impl Cursor {
    async fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path).await?;
        let id = identity(&file.metadata().await?);
        Ok(Cursor {
            reader: BufReader::new(file),
            id,
            pos: 0,
            pending: Vec::new(),
        })
    }

    /// The next complete line, or None at the end of what is written so far.
    async fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let n = self.reader.read_until(b'\n', &mut self.pending).await?;
        self.pos += n as u64;
        if self.pending.last() == Some(&b'\n') {
            let mut line = std::mem::take(&mut self.pending);
            line.pop();
            Ok(Some(line))
        } else {
            Ok(None)
        }
    }
}

fn parse(line: &[u8]) -> io::Result<LogLine> {
    parse_line(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn run(path: &Path, follow: bool, tail: Option<usize>, tx: &Tx) -> io::Result<()> {
    let mut cursor = Cursor::open(path).await?;
    if let Some(n) = tail {
        let mut last = VecDeque::with_capacity(n.min(4096));
        while let Some(line) = cursor.next_line().await? {
            if n > 0 {
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(line);
            }
        }
        for line in last {
            if tx.send(parse(&line)).await.is_err() {
                return Ok(());
            }
        }
    }
    loop {
        while let Some(line) = cursor.next_line().await? {
            if tx.send(parse(&line)).await.is_err() {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
        if tx.is_closed() {
            return Ok(());
        }
        match tokio::fs::metadata(path).await {
            Ok(m) if identity(&m) != cursor.id => {
                // Rotated: drain what the old file got before the rename, then switch.
                while let Some(line) = cursor.next_line().await? {
                    if tx.send(parse(&line)).await.is_err() {
                        return Ok(());
                    }
                }
                cursor = Cursor::open(path).await?;
            }
            Ok(m) if m.len() < cursor.pos => {
                // Truncated in place: start over.
                cursor.reader.seek(io::SeekFrom::Start(0)).await?;
                cursor.pos = 0;
                cursor.pending.clear();
            }
            // Same file, or the new one is not created yet.
            Ok(_) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogStream, LogWriter};
    use futures::StreamExt;

    fn content(line: &io::Result<LogLine>) -> String {
        String::from_utf8(line.as_ref().unwrap().content.clone()).unwrap()
    }

    async fn collect(path: &Path, tail: Option<usize>) -> Vec<String> {
        read_log(path, false, tail)
            .map(|l| content(&l))
            .collect()
            .await
    }

    #[tokio::test]
    async fn reads_to_the_end_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::create(&path, 1 << 20).unwrap();
        w.write(LogStream::Stdout, b"one\ntwo\n").unwrap();
        w.write(LogStream::Stderr, b"three").unwrap();
        w.finish().unwrap();
        let lines: Vec<_> = read_log(&path, false, None).collect().await;
        assert_eq!(lines.len(), 3);
        assert_eq!(content(&lines[0]), "one");
        let last = lines[2].as_ref().unwrap();
        assert_eq!(last.stream, LogStream::Stderr);
        assert!(last.partial);
        assert_eq!(collect(&path, Some(2)).await, ["two", "three"]);
        assert_eq!(collect(&path, Some(0)).await, Vec::<String>::new());
        assert_eq!(collect(&path, Some(10)).await, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<_> = read_log(dir.path().join("nope.log"), true, None)
            .collect()
            .await;
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn bad_lines_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "garbage\n2023-11-14T22:13:20Z stdout F ok\n2023-11-14T22:13:20Z stdout F incomplete",
        )
        .unwrap();
        let items: Vec<_> = read_log(&path, false, None).collect().await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            items[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(content(&items[1]), "ok");
    }

    #[tokio::test]
    async fn follows_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::create(&path, 400).unwrap();
        w.write(LogStream::Stdout, b"before\n").unwrap();
        let mut stream = Box::pin(read_log(&path, true, Some(1)));
        async fn next(
            s: &mut (impl Stream<Item = io::Result<LogLine>> + Unpin),
        ) -> io::Result<LogLine> {
            tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("a record within 5 s")
                .expect("stream still open")
        }
        assert_eq!(content(&next(&mut stream).await), "before");
        // Enough lines to rotate several times; every one arrives once, in order.
        let writer = tokio::spawn(async move {
            for i in 0..40 {
                w.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        });
        for i in 0..40 {
            assert_eq!(content(&next(&mut stream).await), format!("line {i}"));
        }
        writer.await.unwrap();
        assert!(crate::logs::writer::rotated_path(&path).exists());
    }
}
