//! Golden bytes for NDMP v3: the Rust codec of a v3 session (`wire::v3`) against C encoders that
//! rpcgen builds from `xdr/ndmp3.x`. For every v3 message body, random values encoded by Rust
//! must decode in C and re-encode to the very same bytes, and Rust must decode C's output back
//! to the original value; the v3-only layouts are pinned byte for byte as well.

use bytes::BytesMut;
use ndmpd::wire::sample::Gen;
use ndmpd::wire::v3;
use ndmpd::wire::xdr::XdrReader;
use ndmpd::wire::MessageCode;

mod common;

use common::golden::{message_table, rust_and_c_agree, Body};

/// A random body of `code` as the ndmp3 codec makes it, and its decode check.
fn body(code: MessageCode, reply: bool, g: &mut Gen) -> Option<Body> {
    let decoded = |r: Result<bool, _>| r.map_err(|e: ndmpd::wire::xdr::XdrError| e.to_string());
    if reply {
        let v = v3::sample_reply(code, g)?;
        let mut out = BytesMut::new();
        v.encode(&mut out);
        let check =
            move |b| decoded(v3::decode_reply(code, &mut XdrReader::new(b)).map(|d| d == v));
        Some((out.to_vec(), Box::new(check)))
    } else {
        let v = v3::sample_request(code, g)?;
        let mut out = BytesMut::new();
        v.encode(&mut out);
        let check =
            move |b| decoded(v3::decode_request(code, &mut XdrReader::new(b)).map(|d| d == v));
        Some((out.to_vec(), Box::new(check)))
    }
}

#[test]
fn rust_and_c_agree_on_every_message_body() {
    let rows = message_table("ndmp3");
    assert_eq!(rows.len(), 54, "message table has {} rows", rows.len());
    // every code of the table is known to the Rust side by the same name
    for row in &rows {
        assert_eq!(
            v3::code_name(MessageCode(row.code)),
            Some(row.name.as_str()),
            "code {:#x}",
            row.code
        );
    }
    let checked = rust_and_c_agree("ndmp3", &rows, &body);
    // 24 cases x 8 seeds x (every non-void body)
    assert!(checked > 24 * 8 * 50, "only {checked} bodies checked");
}

#[test]
fn void_bodies_encode_to_nothing() {
    for row in message_table("ndmp3") {
        let code = MessageCode(row.code);
        let mut g = Gen::new(1);
        if row.request.is_none() && row.post.is_none() {
            if let Some(v) = v3::sample_request(code, &mut g) {
                let mut out = BytesMut::new();
                v.encode(&mut out);
                assert!(out.is_empty(), "{} request should be empty", row.name);
            }
        }
        if row.reply.is_none() && row.post.is_none() {
            assert!(
                v3::sample_reply(code, &mut g).is_none(),
                "{} has no reply in the spec",
                row.name
            );
        }
    }
}

/// The bodies a v3 session sends, built from the v4 values the servers use, pinned byte for
/// byte: MOVER_GET_STATE without a mode, TAPE_GET_STATE with PARTITION invalid and a
/// partition, NOTIFY_MOVER_HALTED with v3's reason and words, LOG_MESSAGE without the
/// associated-message fields.
#[test]
fn v3_bodies_of_v4_values_are_pinned() {
    use ndmpd::wire::header::{Body, Message};
    use ndmpd::wire::messages::*;
    use ndmpd::wire::types::*;
    use ndmpd::wire::{Reply, Request};
    fn body(m: Message) -> Vec<u8> {
        let mut out = BytesMut::new();
        v3::downgrade(m).body.encode(&mut out);
        out.to_vec()
    }
    let be = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|w| w.to_be_bytes()).collect() };

    let mover = Reply::MoverGetState(MoverGetStateReply {
        mode: MoverMode::READ,
        state: MoverState::PAUSED,
        pause_reason: MoverPauseReason::EOM,
        record_size: 10240,
        record_num: 3,
        bytes_moved: 30720,
        window_length: u64::MAX,
        data_connection_addr: Addr::Tcp {
            tcp_addr: vec![TcpAddr {
                ip_addr: 0x7f00_0001,
                port: 4000,
                addr_env: vec![],
            }],
        },
        ..Default::default()
    });
    let want = be(&[
        0,
        3,
        1,
        0,
        10240,
        3,
        0,
        30720,
        0,
        0,
        0,
        0,
        0,
        0,
        !0,
        !0,
        1,
        0x7f00_0001,
        4000,
    ]);
    assert_eq!(body(Message::reply(1, 0, 1, mover)), want);

    let tape = Reply::TapeGetState(TapeGetStateReply {
        unsupported: 0x3,
        file_num: 2,
        block_size: 512,
        ..Default::default()
    });
    let want = be(&[0x43, 0, 0, 2, 0, 512, 0, 0, 0, 0, 0, 0]);
    assert_eq!(body(Message::reply(1, 0, 1, tape)), want);

    let halted = Request::NotifyMoverHalted(NotifyMoverHaltedPost {
        reason: MoverHaltReason::MEDIA_ERROR,
    });
    let mut want = be(&[3, 16]);
    want.extend_from_slice(b"tape media error");
    assert_eq!(body(Message::request(1, 0, halted)), want);

    let log = Request::LogMessage(LogMessagePost {
        log_type: LogType::WARNING,
        message_id: 9,
        entry: "ab".into(),
        associated_message_valid: HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE,
        associated_message_sequence: 4,
    });
    let mut want = be(&[3, 9, 2]);
    want.extend_from_slice(b"ab\0\0");
    assert_eq!(body(Message::request(1, 0, log)), want);

    // and the header of a v3 refusal never carries a v4-only code
    let m = Message::reply(
        1,
        0,
        1,
        Reply::with_error(MessageCode::MOVER_LISTEN, NdmpError::PRECONDITION_ERR).unwrap(),
    );
    let m = v3::downgrade(m);
    assert!(
        matches!(m.body, Body::Reply(ref r) if r.error() == Some(NdmpError::ILLEGAL_STATE_ERR))
    );
}
