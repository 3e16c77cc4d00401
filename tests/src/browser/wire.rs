//! The browser's wire: one HTTP/1.1 request to chromedriver on loopback per WebDriver command.
//! The driver keeps a connection open after its answer, so answers are read by their own length
//! (`Content-Length`, or chunks). Must not: know WebDriver's commands (the parent module does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use super::{COMMAND_TIMEOUT, Error, Result};

/// One HTTP/1.1 request to the driver on loopback: the status and the body.
pub(super) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let fail = |e: std::io::Error| Error::Driver(format!("{method} {path}: {e}"));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(fail)?;
    stream.write_all(body.as_bytes()).map_err(fail)?;
    // The driver keeps the connection open after its answer: read by the answer's own length.
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(fail)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            Error::Driver(format!("{method} {path}: bad status line {status_line:?}"))
        })?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(fail)? == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse::<usize>().ok();
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let payload = if chunked {
        read_chunked(&mut reader).map_err(fail)?
    } else if let Some(length) = length {
        let mut payload = vec![0; length];
        reader.read_exact(&mut payload).map_err(fail)?;
        payload
    } else {
        let mut payload = Vec::new();
        reader.read_to_end(&mut payload).map_err(fail)?;
        payload
    };
    Ok((status, String::from_utf8_lossy(&payload).into_owned()))
}

/// The body of a chunked HTTP/1.1 answer.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(out);
        }
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad chunk size {line:?}"),
            )
        })?;
        if size == 0 {
            return Ok(out);
        }
        let start = out.len();
        out.resize(start + size, 0);
        reader.read_exact(&mut out[start..])?;
        let mut end = [0; 2];
        reader.read_exact(&mut end)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_answers_are_joined() {
        let mut body = &b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut body).unwrap(), b"abcde");
        assert_eq!(read_chunked(&mut &b"0\r\n\r\n"[..]).unwrap(), b"");
        assert!(read_chunked(&mut &b"zz\r\n"[..]).is_err());
    }
}
