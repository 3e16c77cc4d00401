//! The benchmarks' HTTP load generator: client threads inside a node's network namespace, and a
//! keep-alive HTTP/1.1 connection that sends `GET` and reads the whole response (by
//! Content-Length or chunked) before the next request.
//!
//! Must not: measure anything itself (callers time the calls) or send to an address outside the
//! namespaces the benchmark made.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Runs `f` on a thread inside network namespace `ns` (`/run/netns/NS`).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {path}: {e}"))?;
        f()
    })
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    /// Bytes read past the last response.
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr, path: &str) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends the request and reads its response; the status code.
    pub fn get(&mut self) -> Result<u16, String> {
        self.stream
            .write_all(&self.request)
            .map_err(|e| format!("sending: {e}"))?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        self.buf.drain(..head_end);
        match length {
            Some(n) => self.take(n)?,
            None if head.contains("transfer-encoding: chunked") => self.chunked()?,
            None => return Err("a response with neither Content-Length nor chunks".into()),
        }
        Ok(status)
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("reading: {e}")),
        }
    }

    /// Drops the next `n` bytes of the stream.
    fn take(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            self.fill()?;
        }
        self.buf.drain(..n);
        Ok(())
    }

    /// The next line (without its CRLF), consumed.
    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn chunked(&mut self) -> Result<(), String> {
        loop {
            let line = self.line()?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            self.take(size + 2)?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
