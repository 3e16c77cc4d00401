//! Unit tests of the host interfaces' pieces that need no guest: the wire protocol's frames and
//! the redaction of config values (guests exercise the rest: `runtime/tests/wasm/host_interfaces.rs`).

use super::keyvalue::wire::{Failure, Op, Reply, Request, Value, read_frame, write_frame};
use super::{ConfigValues, HostGrants};

#[tokio::test]
async fn frames_round_trip_with_values_as_base64() {
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    let request = Request {
        bucket: "b".into(),
        op: Op::SetMany {
            entries: vec![("k".into(), Value(vec![0, 159, 255]))],
        },
    };
    write_frame(&mut a, &request).await.unwrap();
    let got: Request = read_frame(&mut b).await.unwrap().unwrap();
    assert_eq!(got, request);
    let reply = Reply::Failed {
        failure: Failure::Other("full".into()),
    };
    write_frame(&mut b, &reply).await.unwrap();
    assert_eq!(
        read_frame::<Reply, _>(&mut a).await.unwrap().unwrap(),
        reply
    );
    // The wire form is JSON with the value in base64.
    let text = serde_json::to_string(&request).unwrap();
    assert_eq!(
        text,
        r#"{"bucket":"b","op":"set-many","entries":[["k","AJ//"]]}"#
    );
    drop(a);
    assert!(read_frame::<Reply, _>(&mut b).await.unwrap().is_none());
}

#[tokio::test]
async fn an_oversized_frame_is_refused() {
    let (mut a, mut b) = tokio::io::duplex(64);
    let len = (super::keyvalue::wire::MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
    tokio::io::AsyncWriteExt::write_all(&mut a, &len)
        .await
        .unwrap();
    let e = read_frame::<Request, _>(&mut b).await.unwrap_err();
    assert!(e.to_string().contains("over the"), "{e}");
}

#[test]
fn config_values_are_redacted_in_debug_output() {
    let grants = HostGrants {
        config: true,
        config_values: ConfigValues(vec![("password".into(), "s3cret".into())]),
        ..HostGrants::default()
    };
    let text = format!("{grants:?}");
    assert!(text.contains("password=<redacted>"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
