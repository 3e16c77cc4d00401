//! The CRI log line format: encoding a write into records and parsing a record back.
//!
//! Owns [`LogLine`], [`LogStream`], [`encode_records`] and [`parse_line`]. Must not: do I/O.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest content of one record; longer lines are split into partial records (as containerd
/// does at 16 KiB).
pub const MAX_RECORD_CONTENT: usize = 16 * 1024;

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: OffsetDateTime,
    pub stream: LogStream,
    /// The line continues in the next record of this stream (`P`), else it is complete (`F`).
    pub partial: bool,
    /// The bytes written, without the newline.
    pub content: Vec<u8>,
}

/// A line that is not a CRI log record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CRI log record ({reason}): {line:?}")]
pub struct ParseError {
    pub reason: &'static str,
    pub line: String,
}

/// Encodes one write of `data` to `stream` as records: one `F` record per complete line, a `P`
/// record for a trailing piece without newline, and lines past [`MAX_RECORD_CONTENT`] split into
/// `P` records.
pub fn encode_records(time: OffsetDateTime, stream: LogStream, data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let stamp = time
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
    let mut rest = data;
    while !rest.is_empty() {
        let (line, complete, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        let mut chunks = line.chunks(MAX_RECORD_CONTENT).peekable();
        if line.is_empty() {
            push_record(out, &stamp, stream, !complete, b"");
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            push_record(out, &stamp, stream, !(last && complete), chunk);
        }
        rest = next;
    }
}

fn push_record(out: &mut Vec<u8>, stamp: &str, stream: LogStream, partial: bool, content: &[u8]) {
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Parses one record (without its newline).
pub fn parse_line(line: &[u8]) -> Result<LogLine, ParseError> {
    let err = |reason| ParseError {
        reason,
        line: String::from_utf8_lossy(line).into_owned(),
    };
    let mut parts = line.splitn(4, |&b| b == b' ');
    let stamp = parts.next().ok_or_else(|| err("no timestamp"))?;
    let stream = parts.next().ok_or_else(|| err("no stream"))?;
    let tag = parts.next().ok_or_else(|| err("no tag"))?;
    let content = parts.next().unwrap_or_default();
    let stamp = std::str::from_utf8(stamp).map_err(|_| err("bad timestamp"))?;
    let time = OffsetDateTime::parse(stamp, &Rfc3339).map_err(|_| err("bad timestamp"))?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return Err(err("bad stream")),
    };
    // Tags may carry more flags after `:` in the future; only the first matters today.
    let partial = match tag.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(err("bad tag")),
    };
    Ok(LogLine {
        time,
        stream,
        partial,
        content: content.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()
    }

    fn text(data: &[u8]) -> String {
        let mut out = Vec::new();
        encode_records(at(), LogStream::Stdout, data, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn complete_lines_are_full_records() {
        assert_eq!(
            text(b"hello\nworld\n"),
            "2023-11-14T22:13:20.123456789Z stdout F hello\n\
             2023-11-14T22:13:20.123456789Z stdout F world\n"
        );
    }

    #[test]
    fn a_write_without_newline_is_partial() {
        assert_eq!(
            text(b"a\nhalf"),
            "2023-11-14T22:13:20.123456789Z stdout F a\n\
             2023-11-14T22:13:20.123456789Z stdout P half\n"
        );
        assert_eq!(text(b"\n"), "2023-11-14T22:13:20.123456789Z stdout F \n");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn nanoseconds_are_trimmed_like_go_rfc3339nano() {
        let mut out = Vec::new();
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_500_000_000).unwrap();
        encode_records(t, LogStream::Stderr, b"x\n", &mut out);
        assert_eq!(out, b"2023-11-14T22:13:20.5Z stderr F x\n");
    }

    #[test]
    fn long_lines_are_split() {
        let line = vec![b'x'; MAX_RECORD_CONTENT + 10];
        let mut data = line.clone();
        data.push(b'\n');
        let mut out = Vec::new();
        encode_records(at(), LogStream::Stdout, &data, &mut out);
        let records: Vec<LogLine> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_line(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert!(records[0].partial);
        assert!(!records[1].partial);
        assert_eq!(records[0].content.len(), MAX_RECORD_CONTENT);
        assert_eq!(records[1].content.len(), 10);
    }

    #[test]
    fn parse_round_trips() {
        let line = parse_line(b"2023-11-14T22:13:20.123456789Z stderr P a b  c").unwrap();
        assert_eq!(line.time, at());
        assert_eq!(line.stream, LogStream::Stderr);
        assert!(line.partial);
        assert_eq!(line.content, b"a b  c");
        let empty = parse_line(b"2023-11-14T22:13:20Z stdout F ").unwrap();
        assert_eq!(empty.content, b"");
        assert!(parse_line(b"garbage").is_err());
        assert!(parse_line(b"2023-11-14T22:13:20Z stdin F x").is_err());
        assert!(parse_line(b"2023-11-14T22:13:20Z stdout X x").is_err());
    }
}
