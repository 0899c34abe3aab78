//! `ndmpd pcap` on hostile captures: it must name the bad packet, exit non-zero, and never
//! panic or hang. Captures are synthesised here as Ethernet/IPv4/TCP pcap files.

mod common;

use bytes::BytesMut;
use common::pcapw::PcapWriter;
use ndmpd::wire::header::Message;
use ndmpd::wire::messages::ConnectOpenRequest;
use ndmpd::wire::record::RecordCodec;
use ndmpd::wire::sample::Gen;
use ndmpd::wire::Request;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::codec::Encoder;

fn record(msg: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    RecordCodec::default().frame(msg, &mut out).unwrap();
    out.to_vec()
}

fn valid(seq: u32) -> Vec<u8> {
    let m = Message::request(
        seq,
        1_790_000_000,
        Request::ConnectOpen(ConnectOpenRequest {
            protocol_version: 4,
        }),
    );
    let mut out = BytesMut::new();
    RecordCodec::default().encode(&m, &mut out).unwrap();
    out.to_vec()
}

fn request(seq: u32, code: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [seq, 1_790_000_000, 0, code, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend_from_slice(body);
    record(&m)
}

/// Runs `ndmpd pcap` with a 30 s deadline; returns (exit code, stderr).
fn run_pcap(path: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("pcap")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("ndmpd pcap hung on {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn capture(dir: &Path, name: &str, segments: &[Vec<u8>]) -> std::path::PathBuf {
    let mut w = PcapWriter::new(false);
    for s in segments {
        w.chunk(0, true, s);
    }
    let p = dir.join(name);
    std::fs::write(&p, &w.out).unwrap();
    p
}

#[test]
fn hostile_messages_are_named_and_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "array",
            {
                let mut m = Vec::new();
                for w in [2u32, 1_790_000_000, 1, 0x105, 1, 0, 0, 0x7fff_ffff] {
                    m.extend_from_slice(&w.to_be_bytes());
                }
                record(&m)
            },
            "array of 2147483647 elements",
        ),
        (
            "digest",
            request(2, 0x901, &[0, 0, 0, 2, 0, 0, 0, 0, 1, 2, 3]),
            "CONNECT_CLIENT_AUTH body",
        ),
        (
            "string",
            request(2, 0x300, &[0xff, 0xff, 0xff, 0xf0, b'x', 0, 0, 0]),
            "TAPE_OPEN body",
        ),
    ];
    for (name, bad, expect) in cases {
        let p = capture(dir.path(), name, &[valid(1), bad, valid(3)]);
        let (code, err) = run_pcap(&p);
        assert_eq!(code, 1, "{name}: exit code, stderr: {err}");
        assert!(err.contains("packet 2"), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
    }
}

#[test]
fn hostile_streams_fail_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    // a fragment header announcing 2 GiB
    let p = capture(
        dir.path(),
        "frag",
        &[valid(1), vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4]],
    );
    let (code, err) = run_pcap(&p);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("packet 2") && err.contains("exceeds the limit"),
        "{err}"
    );

    // 64 KiB of random bytes in one stream
    let mut g = Gen::new(7);
    let noise: Vec<Vec<u8>> = (0..16).map(|_| g.bytes(4096)).collect();
    let p = capture(dir.path(), "noise", &noise);
    let (code, err) = run_pcap(&p);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // a capture that ends inside a record
    let mut cut = valid(1);
    cut.truncate(10);
    let p = capture(dir.path(), "cut", &[valid(1), cut]);
    let (code, err) = run_pcap(&p);
    assert_eq!(code, 1);
    assert!(
        err.contains("capture ends inside a record after packet 2"),
        "{err}"
    );
}

#[test]
fn one_byte_segments_decode() {
    let dir = tempfile::tempdir().unwrap();
    let mut wire = valid(1);
    wire.extend(valid(2));
    let segs: Vec<Vec<u8>> = wire.iter().map(|b| vec![*b]).collect();
    let p = capture(dir.path(), "bytes", &segs);
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .arg("pcap")
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("CONNECT_OPEN").count(), 2, "{text}");
}

#[test]
fn broken_capture_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen::new(3);
    let good = PcapWriter::new(false);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("random".into(), g.bytes(65536)),
        ("header-only".into(), good.out.clone()),
    ];
    let mut w = PcapWriter::new(false);
    w.chunk(0, true, &valid(1));
    let mut truncated = w.out.clone();
    truncated.truncate(truncated.len() - 5);
    files.push(("truncated".into(), truncated));
    let mut huge = PcapWriter::new(false).out;
    huge.extend_from_slice(&[0; 8]);
    huge.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    huge.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
    files.push(("caplen".into(), huge));
    for (name, data) in files {
        let p = dir.path().join(&name);
        std::fs::write(&p, data).unwrap();
        let (code, err) = run_pcap(&p);
        assert!(!err.contains("panicked"), "{name}: {err}");
        if name == "header-only" {
            assert_eq!(code, 0, "{name}: an empty capture is not an error: {err}");
        } else {
            assert_eq!(code, 1, "{name}: {err}");
        }
    }
}
