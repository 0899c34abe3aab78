//! Decodes the captured conversations in pcap-fixtures/ (real DMA against a real NDMP server):
//! every message must decode with a known body and re-encode to exactly the bytes captured.

use ndmpd::pcap::{decode_capture, Conversation};
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::ConfigSetExtListRequest;
use ndmpd::wire::{MessageCode, Reply, Request};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcap-fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 12, "expected the recorded fixtures, found {v:?}");
    v
}

fn load(name: &str) -> Conversation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcap-fixtures")
        .join(name);
    decode_capture(&std::fs::read(path).unwrap(), 10000)
}

fn counts(c: &Conversation) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for msg in c.messages() {
        let kind = if msg.header.is_reply() {
            "reply"
        } else {
            "req"
        };
        let name = msg.header.message_code.name().unwrap_or("?");
        *m.entry(format!("{name}/{kind}")).or_default() += 1;
    }
    m
}

#[test]
fn every_fixture_decodes_and_reencodes_byte_identically() {
    let mut total = 0;
    for path in fixtures() {
        let conv = decode_capture(&std::fs::read(&path).unwrap(), 10000);
        assert!(
            conv.file_error.is_none(),
            "{}: {:?}",
            path.display(),
            conv.file_error
        );
        let name = path.display();
        assert!(conv.connections >= 1, "{name}: no NDMP connection found");
        assert!(
            conv.stream_errors.is_empty(),
            "{name}: {:?}",
            conv.stream_errors
        );
        for e in &conv.events {
            let m = e
                .outcome
                .as_ref()
                .unwrap_or_else(|err| panic!("{name}: packet {}: {err}", e.packet));
            assert!(
                m.header.message_code.name().is_some(),
                "{name}: packet {}: unknown code {:#x}",
                e.packet,
                m.header.message_code.0
            );
            assert!(
                !matches!(
                    m.body,
                    Body::Request(Request::Unknown { .. }) | Body::Reply(Reply::Unknown { .. })
                ),
                "{name}: packet {}: {:?} has no body definition",
                e.packet,
                m.header.message_code
            );
            assert_eq!(
                m.to_bytes(),
                e.record,
                "{name}: packet {}: {:?} re-encodes differently",
                e.packet,
                m.header.message_code
            );
            total += 1;
        }
    }
    assert!(total > 1000, "only {total} messages in all fixtures");
}

#[test]
fn conversations_have_the_expected_shape() {
    // query: two agents, TEXT auth accepted, every CONFIG_GET_* answered without error
    let q = load("query-text.pcap");
    assert_eq!(q.connections, 2);
    let c = counts(&q);
    assert_eq!(c["NOTIFY_CONNECTION_STATUS/req"], 2);
    assert_eq!(c["CONFIG_GET_HOST_INFO/reply"], 2);
    for m in q.messages().filter(|m| m.header.is_reply()) {
        assert_eq!(
            ndmpd::pcap::reply_error(m),
            Some(ndmpd::wire::NdmpError::NO_ERR)
        );
    }
    let host = q
        .messages()
        .find_map(|m| match &m.body {
            Body::Reply(Reply::ConfigGetHostInfo(h)) => Some(h.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!host.hostname.is_empty());

    // MD5: the challenge is 64 bytes and the digest travels in the auth union
    let md5 = load("query-md5.pcap");
    assert!(md5.messages().any(|m| matches!(
        &m.body,
        Body::Request(Request::ConnectClientAuth(a))
            if matches!(a.auth_data, ndmpd::wire::types::AuthData::Md5(_))
    )));
    // pcapng carries the same messages as the pcap it was converted from
    let ng = load("query-md5.pcapng");
    let a: Vec<_> = md5.events.iter().map(|e| e.record.clone()).collect();
    let b: Vec<_> = ng.events.iter().map(|e| e.record.clone()).collect();
    assert_eq!(a, b);

    // a wrong password is refused in the reply body
    let f = load("auth-fail.pcap");
    let refusals = f
        .messages()
        .filter(|m| {
            m.header.message_code == MessageCode::CONNECT_CLIENT_AUTH
                && ndmpd::pcap::reply_error(m) == Some(ndmpd::wire::NdmpError::NOT_AUTHORIZED_ERR)
        })
        .count();
    assert_eq!(refusals, 2);

    // the FH_ADD_FILE of a tar backup spans several 3996-byte fragments and holds every entry
    let b = load("backup-tar-fh.pcap");
    let fh = b
        .events
        .iter()
        .find(|e| {
            matches!(
                e.outcome.as_ref().map(|m| &m.body),
                Ok(Body::Request(Request::FhAddFile(_)))
            )
        })
        .expect("an FH_ADD_FILE");
    assert!(
        fh.fragments > 1,
        "FH_ADD_FILE came in {} fragment(s)",
        fh.fragments
    );
    match &fh.outcome.as_ref().unwrap().body {
        Body::Request(Request::FhAddFile(p)) => assert_eq!(p.files.len(), 214),
        _ => unreachable!(),
    }

    // dump-style history: the first directory entry is "." of the root
    let d = load("backup-dump-fh.pcap");
    let first_dir = d
        .messages()
        .find_map(|m| match &m.body {
            Body::Request(Request::FhAddDir(p)) => Some(p.dirs[0].clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(first_dir.name[0], ndmpd::wire::types::FileName::unix("."));

    // one connection means NDMP_ADDR_LOCAL for the data connection
    let l = load("backup-local.pcap");
    assert_eq!(l.connections, 1);
    assert!(l.messages().any(|m| matches!(
        &m.body,
        Body::Request(Request::DataConnect(r)) if r.addr == ndmpd::wire::types::Addr::Local
    )));

    // DAR: the recover name list carries fh_info and the data server asks for byte ranges
    let dar = load("restore-dar.pcap");
    let nlist = dar
        .messages()
        .find_map(|m| match &m.body {
            Body::Request(Request::DataStartRecover(r)) => Some(r.nlist.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(nlist.len(), 1);
    assert_ne!(nlist[0].fh_info, u64::MAX);
    assert_eq!(counts(&dar)["NOTIFY_DATA_READ/req"], 2);

    // the reference answers DATA_LISTEN with a header-only NOT_SUPPORTED reply
    let t = load("test-data.pcap");
    assert!(t
        .messages()
        .any(|m| m.header.message_code == MessageCode::DATA_LISTEN
            && m.header.is_reply()
            && m.header.error_code == ndmpd::wire::NdmpError::NOT_SUPPORTED_ERR
            && m.body == Body::Empty));
    assert_eq!(
        counts(&load("test-mover.pcap"))["NOTIFY_MOVER_HALTED/req"],
        6
    );
}

#[test]
fn set_ext_list_decodes_in_both_layouts() {
    use bytes::Bytes;
    use ndmpd::wire::xdr::{from_bytes, to_bytes};
    // spec: one (class, version) pair
    let spec = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0x20, 0x52, 0, 0, 0, 1]);
    let v: ConfigSetExtListRequest = from_bytes(spec.clone()).unwrap();
    assert!(matches!(v, ConfigSetExtListRequest::Spec { .. }));
    assert_eq!(to_bytes(&v), spec);
    // NDMJOB: error word, then one class with a version array
    let nj = Bytes::from_static(&[
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x20, 0x52, 0, 0, 0, 1, 0, 0, 0, 1,
    ]);
    let v: ConfigSetExtListRequest = from_bytes(nj.clone()).unwrap();
    assert!(matches!(v, ConfigSetExtListRequest::Ndmjob { .. }));
    assert_eq!(v.selected()[0].ext_class_id, 0x2052);
    assert_eq!(v.selected()[0].ext_version, 1);
    assert_eq!(to_bytes(&v), nj);
}

/// Wireshark's NDMP dissector must find nothing malformed in the fixtures. One frame is exempt:
/// the reference server's header-only DATA_LISTEN reply (error NOT_SUPPORTED in the header, no
/// body), which the spec allows but Wireshark 4.0 flags.
#[test]
fn tshark_finds_no_malformed_packets() {
    let have = Command::new("tshark").arg("--version").output().is_ok();
    assert!(have, "tshark is required (scripts/test.sh installs it)");
    for path in fixtures() {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args([
                "-d",
                "tcp.port==10000,ndmp",
                "-Y",
                "_ws.malformed",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "tshark failed on {}", path.display());
        let frames: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let allowed: &[&str] = if path.ends_with("test-data.pcap") {
            &["24"]
        } else {
            &[]
        };
        assert!(
            frames.iter().all(|f| allowed.contains(&f.as_str())),
            "{}: malformed frames {frames:?}",
            path.display()
        );
    }
}

#[test]
fn pcap_command_prints_every_message() {
    let exe = env!("CARGO_BIN_EXE_ndmpd");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcap-fixtures/query-md5.pcapng");
    let out = Command::new(exe).arg("pcap").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("2 NDMP connection(s) on port 10000, 32 message(s)"),
        "{text}"
    );
    assert!(text.contains("CONFIG_GET_AUTH_ATTR"));
    let replies = text
        .lines()
        .filter(|l| l.contains(" reply ") && !l.starts_with("packet"));
    assert_eq!(replies.count(), 15);

    let out = Command::new(exe)
        .args(["pcap", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 32);
    let attr = lines
        .iter()
        .find(|v| v["message"] == "CONFIG_GET_AUTH_ATTR" && v["message_type"] == "REPLY")
        .unwrap();
    assert_eq!(attr["body"]["server_attr"]["auth_type"], "MD5");
    assert_eq!(
        attr["body"]["server_attr"]["challenge"]
            .as_str()
            .unwrap()
            .len(),
        128
    );
}

/// The reference daemon's robot simulator driven by `ndmjob -o load=1025` (robot.pcap): every
/// SCSI message decodes, and the CDBs and element status inside are the SMC ones ndmjob sends.
#[test]
fn robot_conversation_carries_smc_cdbs() {
    let r = load("robot.pcap");
    let c = counts(&r);
    assert_eq!(c["SCSI_OPEN/req"], 1);
    assert_eq!(c["SCSI_OPEN/reply"], 1);
    assert_eq!(c["SCSI_EXECUTE_CDB/req"], c["SCSI_EXECUTE_CDB/reply"]);
    let opcodes: std::collections::BTreeSet<u8> = r
        .messages()
        .filter_map(|m| match &m.body {
            Body::Request(Request::ScsiExecuteCdb(x)) => x.cdb.0.first().copied(),
            _ => None,
        })
        .collect();
    // INQUIRY, MODE SENSE(6) of the element address page, READ ELEMENT STATUS, MOVE MEDIUM
    for op in [0x12, 0x1a, 0xb8, 0xa5] {
        assert!(opcodes.contains(&op), "{op:#x} in {opcodes:x?}");
    }
    // the simulator's element status: 8-byte header, then pages whose descriptors add up
    let status = r
        .messages()
        .find_map(|m| match &m.body {
            Body::Reply(Reply::ScsiExecuteCdb(x)) if x.datain.0.len() > 100 => {
                Some(x.datain.0.to_vec())
            }
            _ => None,
        })
        .expect("a READ ELEMENT STATUS answer");
    let count = u32::from_be_bytes([0, status[5], status[6], status[7]]) as usize;
    // the simulator returns its whole 8 KiB buffer, zeros after the report
    assert_eq!(status.len(), 8192);
    assert!(status[count + 8..].iter().all(|b| *b == 0));
    let status = &status[..count + 8];
    let mut p = 8;
    let mut elements = 0;
    while p + 8 <= status.len() {
        let dlen = u16::from_be_bytes([status[p + 2], status[p + 3]]) as usize;
        let bytes = u32::from_be_bytes([0, status[p + 5], status[p + 6], status[p + 7]]) as usize;
        assert!(dlen > 0 && bytes.is_multiple_of(dlen), "page at {p}");
        elements += bytes / dlen;
        p += 8 + bytes;
    }
    assert_eq!(p, status.len());
    assert_eq!(
        elements,
        u16::from_be_bytes([status[2], status[3]]) as usize
    );
}
