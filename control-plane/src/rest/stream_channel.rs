//! Kubernetes' channel protocol for streaming subresources over a WebSocket (`pods/exec`,
//! `pods/attach`): every binary message starts with one byte naming its channel — stdin 0,
//! stdout 1, stderr 2, error 3 (one `metav1.Status` as JSON when the session ends), resize 4
//! (terminal size as JSON) — and `v5.channel.k8s.io` adds 255, the client's "this channel is
//! done" (`[255, 0]`: end of stdin). `v4.channel.k8s.io` is the same without the close signal.
//! The base64 text variants and v1-v3 (plain-text errors) are not offered.
//!
//! Owns: subprotocol negotiation, parsing client messages, framing server output, and the
//! Status documents written to the error channel (exit codes as kubelet reports them).
//!
//! Must not: read or write the connection ([`super::stream_session`] does).

use serde_json::{Value, json};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: the client will send nothing more on the channel named by the next byte.
pub const CLOSE: u8 = 255;

/// A negotiated subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V4,
}

impl Protocol {
    /// Preferred first.
    pub const SUPPORTED: [Protocol; 2] = [Protocol::V5, Protocol::V4];

    /// As in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
        }
    }

    /// The best protocol among those the client offers (the values of every
    /// `Sec-WebSocket-Protocol` header, each a comma-separated list), if any is supported.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
        let offered: Vec<&str> = offered
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        Self::SUPPORTED
            .into_iter()
            .find(|p| offered.contains(&p.name()))
    }
}

/// What a client's binary message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Stdin(Vec<u8>),
    /// End of stdin (v5's close signal for channel 0).
    CloseStdin,
    /// A terminal size change. skiff's exec has no terminal, so it is read and dropped.
    Resize {
        width: u16,
        height: u16,
    },
    /// An empty message, or the close of a channel that carries nothing from the client.
    Ignored,
}

/// A client message that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {0} is not one a client writes to")]
    UnknownChannel(u8),
    #[error("resize message: {0}")]
    BadResize(String),
}

/// Parses one binary message from the client.
pub fn parse_client(protocol: Protocol, message: &[u8]) -> Result<ClientFrame, ChannelError> {
    let Some((&channel, data)) = message.split_first() else {
        return Ok(ClientFrame::Ignored);
    };
    match channel {
        STDIN => Ok(ClientFrame::Stdin(data.to_vec())),
        RESIZE => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            let size: Size =
                serde_json::from_slice(data).map_err(|e| ChannelError::BadResize(e.to_string()))?;
            Ok(ClientFrame::Resize {
                width: size.width,
                height: size.height,
            })
        }
        CLOSE if protocol == Protocol::V5 => match data.first() {
            Some(&STDIN) => Ok(ClientFrame::CloseStdin),
            _ => Ok(ClientFrame::Ignored),
        },
        other => Err(ChannelError::UnknownChannel(other)),
    }
}

/// `data` as a message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The error channel's document for a command that ended with `code`, as kubelet writes it
/// (kubectl exits with the code it finds in `details.causes[reason=ExitCode]`).
pub fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: command {command:?} exited with {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The error channel's document for a session that failed (the node went away, the container
/// stopped being there, ...): kubectl prints its message.
pub fn failure_status(message: &str, reason: &str, code: u16) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_is_preferred_then_v4_and_nothing_older() {
        let offered = ["v4.channel.k8s.io, v5.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(Protocol::negotiate(offered), Some(Protocol::V5));
        assert_eq!(
            Protocol::negotiate(["v3.channel.k8s.io,v4.channel.k8s.io"]),
            Some(Protocol::V4)
        );
        assert_eq!(
            Protocol::negotiate(["v3.channel.k8s.io", "base64.channel.k8s.io"]),
            None
        );
        assert_eq!(Protocol::negotiate([]), None);
    }

    #[test]
    fn client_messages_by_channel() {
        let v5 = Protocol::V5;
        assert_eq!(
            parse_client(v5, b"\x00ls\n"),
            Ok(ClientFrame::Stdin(b"ls\n".to_vec()))
        );
        assert_eq!(parse_client(v5, &[255, 0]), Ok(ClientFrame::CloseStdin));
        assert_eq!(parse_client(v5, &[255, 4]), Ok(ClientFrame::Ignored));
        assert_eq!(parse_client(v5, b""), Ok(ClientFrame::Ignored));
        assert_eq!(
            parse_client(v5, b"\x04{\"Width\":120,\"Height\":40}"),
            Ok(ClientFrame::Resize {
                width: 120,
                height: 40
            })
        );
        assert!(matches!(
            parse_client(v5, b"\x04{\"Width\":-1}"),
            Err(ChannelError::BadResize(_))
        ));
        // v4 has no close signal; stdout is not a client's to write.
        assert_eq!(
            parse_client(Protocol::V4, &[255, 0]),
            Err(ChannelError::UnknownChannel(255))
        );
        assert_eq!(
            parse_client(v5, b"\x01x"),
            Err(ChannelError::UnknownChannel(1))
        );
    }

    #[test]
    fn exit_codes_read_as_kubectl_reads_them() {
        assert_eq!(frame(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(exit_status(0, &[])["status"], "Success");
        let failed = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let failure = failure_status("node \"n1\" disconnected", "InternalError", 500);
        assert_eq!(failure["code"], 500);
        assert_eq!(failure["message"], "node \"n1\" disconnected");
    }
}
