//! WebSocket (RFC 6455), server side, as far as the streaming subresources need it: kubectl 1.30+
//! dials `pods/exec` and `pods/attach` over a WebSocket and speaks Kubernetes' channel protocol
//! ([`super::stream_channel`]) inside binary messages.
//!
//! Owns: the opening handshake's answer (`Sec-WebSocket-Accept`), reading client frames (masked,
//! fragmented messages reassembled, control frames surfaced, a size cap) and encoding server
//! frames (unmasked). No extensions are negotiated (no compression), so reserved bits are errors.
//!
//! Must not: know pods, channels or HTTP routing; the caller upgrades the connection and hands
//! over its byte streams.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The GUID RFC 6455 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message accepted from a client (stdin arrives in small chunks).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes used by the server.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// What went wrong reading a client's frames.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("websocket message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooBig(u64),
}

impl WsError {
    /// The close code that tells the client why the server ends the connection.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig(_) => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    digest.update(key.trim().as_bytes());
    digest.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.finish())
}

/// A whole message (or control frame) from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    /// Must be answered with a pong carrying the same payload.
    Ping(Vec<u8>),
    Pong,
    /// The client closes, with its close code when it gave one.
    Close(Option<u16>),
}

/// Reads the client's frames from the upgraded connection.
pub struct WsReader<R> {
    inner: R,
    /// A fragmented data message: its opcode and the bytes so far (control frames may come
    /// between its fragments).
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            partial: None,
        }
    }

    /// The next message; `None` when the connection ends without a close frame.
    pub async fn next(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            let Some(frame) = self.frame().await? else {
                return Ok(None);
            };
            match frame.opcode {
                OP_CLOSE => {
                    let code = (frame.payload.len() >= 2)
                        .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                OP_PING => return Ok(Some(Incoming::Ping(frame.payload))),
                OP_PONG => return Ok(Some(Incoming::Pong)),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol(
                            "a new message began before the fragmented one ended",
                        ));
                    }
                    if frame.fin {
                        return Ok(Some(message(frame.opcode, frame.payload)));
                    }
                    self.partial = Some((frame.opcode, frame.payload));
                }
                OP_CONTINUATION => {
                    let Some((opcode, mut bytes)) = self.partial.take() else {
                        return Err(WsError::Protocol("a continuation frame with no message"));
                    };
                    let total = bytes.len() + frame.payload.len();
                    if total > MAX_MESSAGE_BYTES {
                        return Err(WsError::TooBig(total as u64));
                    }
                    bytes.extend(frame.payload);
                    if frame.fin {
                        return Ok(Some(message(opcode, bytes)));
                    }
                    self.partial = Some((opcode, bytes));
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// One frame, unmasked; `None` at a clean end of the stream before a frame starts.
    async fn frame(&mut self) -> Result<Option<Frame>, WsError> {
        let mut head = [0u8; 2];
        match self.inner.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.inner.read_exact(&mut head[1..]).await?;
        let fin = head[0] & 0x80 != 0;
        if head[0] & 0x70 != 0 {
            return Err(WsError::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        let opcode = head[0] & 0x0F;
        if head[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let len = match head[1] & 0x7F {
            126 => u64::from(self.inner.read_u16().await?),
            127 => self.inner.read_u64().await?,
            n => u64::from(n),
        };
        if opcode >= OP_CLOSE && (!fin || len > 125) {
            return Err(WsError::Protocol(
                "control frames must be whole and at most 125 bytes",
            ));
        }
        if len > MAX_MESSAGE_BYTES as u64 {
            return Err(WsError::TooBig(len));
        }
        let mut mask = [0u8; 4];
        self.inner.read_exact(&mut mask).await?;
        // At most MAX_MESSAGE_BYTES, checked above.
        let mut payload = vec![0u8; len as usize];
        self.inner.read_exact(&mut payload).await?;
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

fn message(opcode: u8, payload: Vec<u8>) -> Incoming {
    if opcode == OP_TEXT {
        Incoming::Text(payload)
    } else {
        Incoming::Binary(payload)
    }
}

fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A binary message as one unmasked frame.
pub fn binary(payload: &[u8]) -> Vec<u8> {
    encode(OP_BINARY, payload)
}

/// The answer to a ping.
pub fn pong(payload: &[u8]) -> Vec<u8> {
    encode(OP_PONG, payload)
}

/// A close frame with `code` (its reason left empty).
pub fn close(code: u16) -> Vec<u8> {
    encode(OP_CLOSE, &code.to_be_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client frame as a browser or client-go writes it: masked.
    pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read_all(bytes: Vec<u8>) -> Vec<Result<Option<Incoming>, String>> {
        let mut reader = WsReader::new(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        loop {
            let next = reader.next().await.map_err(|e| e.to_string());
            let stop = !matches!(next, Ok(Some(_)));
            out.push(next);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn masked_frames_fragments_and_control_frames_are_read() {
        let mut bytes = client_frame(true, OP_BINARY, b"\x00hello");
        bytes.extend(client_frame(false, OP_BINARY, b"\x01par"));
        // A ping may come between the fragments of a message.
        bytes.extend(client_frame(true, OP_PING, b"hb"));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"tial"));
        let big = vec![7u8; 70_000];
        bytes.extend(client_frame(true, OP_BINARY, &big));
        bytes.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let mut got = read_all(bytes).await;
        // The big message is compared apart (a failure prints no 70,000 numbers).
        let large = got.remove(3);
        assert!(
            matches!(&large, Ok(Some(Incoming::Binary(b))) if *b == big),
            "the 70,000-byte message"
        );
        assert_eq!(
            got,
            vec![
                Ok(Some(Incoming::Binary(b"\x00hello".to_vec()))),
                Ok(Some(Incoming::Ping(b"hb".to_vec()))),
                Ok(Some(Incoming::Binary(b"\x01partial".to_vec()))),
                Ok(Some(Incoming::Close(Some(1000)))),
                Ok(None),
            ]
        );
    }

    #[tokio::test]
    async fn unmasked_oversized_and_stray_frames_are_refused() {
        let mut unmasked = client_frame(true, OP_BINARY, b"x");
        unmasked[1] &= 0x7F;
        unmasked.truncate(2);
        unmasked.push(b'x');
        let too_big = {
            let mut f = vec![0x80 | OP_BINARY, 0x80 | 127];
            f.extend((MAX_MESSAGE_BYTES as u64 + 1).to_be_bytes());
            f
        };
        let stray = client_frame(true, OP_CONTINUATION, b"x");
        let reserved = {
            let mut f = client_frame(true, OP_BINARY, b"x");
            f[0] |= 0x40;
            f
        };
        let long_ping = client_frame(true, OP_PING, &[0; 126]);
        for (bytes, want) in [
            (unmasked, "masked"),
            (too_big, "limit"),
            (stray, "continuation"),
            (reserved, "reserved"),
            (long_ping, "control frames"),
        ] {
            let got = read_all(bytes).await;
            let err = got.last().and_then(|r| r.clone().err()).unwrap_or_default();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
        // A connection that ends between frames ends the reader without an error.
        assert_eq!(read_all(Vec::new()).await, vec![Ok(None)]);
    }

    #[test]
    fn server_frames_are_unmasked_with_the_shortest_length() {
        assert_eq!(binary(b"\x01hi"), vec![0x82, 3, 1, b'h', b'i']);
        let medium = binary(&[0; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = binary(&[0; 70_000]);
        assert_eq!(&large[..2], &[0x82, 127]);
        assert_eq!(large.len(), 70_010);
        assert_eq!(close(CLOSE_NORMAL), vec![0x88, 2, 0x03, 0xE8]);
        assert_eq!(pong(b"hb"), vec![0x8A, 2, b'h', b'b']);
    }
}
