//! The NDMP v3 captures in pcap-fixtures/ (`*-v3.pcap`, ndmjob against the reference daemon,
//! recorded by record-v3.sh): `ndmpd pcap` learns each connection's version from its
//! CONNECT_OPEN, decodes the v3 bodies as v3, and re-encodes every record byte for byte.

use ndmpd::pcap::decode_capture;
use ndmpd::wire::header::{Body, Message};
use ndmpd::wire::v3::{V3Reply, V3Request};
use ndmpd::wire::xdr::Limits;
use ndmpd::wire::{Reply, Request};
use std::path::PathBuf;

fn load(name: &str) -> ndmpd::pcap::Conversation {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcap-fixtures")
        .join(name);
    decode_capture(&std::fs::read(p).unwrap(), 10000)
}

/// (v3 requests/posts, v3 replies) decoded with v3 layouts, after checking every record.
fn check(name: &str) -> (Vec<V3Request>, Vec<V3Reply>) {
    let c = load(name);
    assert!(
        c.file_error.is_none() && c.stream_errors.is_empty(),
        "{name}"
    );
    assert!(c.events.len() > 10, "{name}: {} messages", c.events.len());
    let (mut req, mut rep) = (Vec::new(), Vec::new());
    for e in &c.events {
        let m = e
            .outcome
            .as_ref()
            .unwrap_or_else(|err| panic!("{name}: packet {}: {err}", e.packet));
        assert_eq!(m.to_bytes(), e.record, "{name}: packet {}", e.packet);
        assert!(
            !matches!(
                m.body,
                Body::Request(Request::Unknown { .. }) | Body::Reply(Reply::Unknown { .. })
            ),
            "{name}: packet {}: no body definition",
            e.packet
        );
        match &m.body {
            Body::Request(Request::V3(b)) => req.push(b.clone()),
            Body::Reply(Reply::V3(b)) => rep.push(b.clone()),
            _ => {}
        }
    }
    (req, rep)
}

#[test]
fn v3_captures_decode_as_v3_and_reencode_byte_identically() {
    let (req, rep) = check("query-v3.pcap");
    assert!(
        req.is_empty() && rep.is_empty(),
        "a query has no v3-only body"
    );
    let (_, rep) = check("test-mover-v3.pcap");
    assert!(rep.iter().any(|r| matches!(r, V3Reply::MoverGetState(_))));
    let (req, rep) = check("backup-tar-v3.pcap");
    assert!(req.iter().any(|r| matches!(r, V3Request::DataConnect(_))));
    assert!(req
        .iter()
        .any(|r| matches!(r, V3Request::NotifyDataHalted(_))));
    assert!(req.iter().any(|r| matches!(r, V3Request::LogMessage(_))));
    assert!(rep.iter().any(|r| matches!(r, V3Reply::MoverListen(_))));
    assert!(rep.iter().any(|r| matches!(r, V3Reply::DataGetState(_))));
    let (req, _) = check("restore-dar-v3.pcap");
    assert!(req
        .iter()
        .any(|r| matches!(r, V3Request::NotifyDataHalted(_))));
}

/// Decoded as v4, the same records do not all make sense: the version matters.
#[test]
fn v3_records_are_not_v4() {
    let c = load("backup-tar-v3.pcap");
    let bad = c
        .events
        .iter()
        .filter(|e| Message::decode_with(e.record.clone(), Limits::default()).is_err())
        .count();
    assert!(bad > 0, "every v3 record also decodes as v4");
}

/// The binary's `pcap` subcommand reads the v3 captures without a failure.
#[test]
fn pcap_command_decodes_v3_captures() {
    for f in [
        "query-v3.pcap",
        "test-mover-v3.pcap",
        "backup-tar-v3.pcap",
        "restore-dar-v3.pcap",
    ] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("pcap-fixtures")
            .join(f);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("pcap")
            .arg(&p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{f}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("CONNECT_OPEN"), "{f}: {text}");
    }
}
