//! Wireshark's NDMP dissector must decode OUR server's traffic without a malformed packet.
//! A recording proxy sits between real DMAs (Amanda's ndmjob, the crate's client) and the
//! server; what it saw is written as a pcap on port 10000 and handed to tshark.
//! TSHARK_OURS_KEEP=FILE keeps a copy of the capture for a closer look.

mod common;

use bytes::Bytes;
use ndmpd::client::Client;
use ndmpd::wire::messages::{
    ScsiOpenRequest, TapeMtioRequest, TapeOpenRequest, TapeReadRequest, TapeWriteRequest, Void,
};
use ndmpd::wire::types::{scsi_flags, ExecuteCdbRequest, MtioOp, TapeOpenMode};
use ndmpd::wire::{Opaque, Reply, Request};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PW: &[u8] = b"tshark-pw";

/// One read by the proxy: connection index, direction, bytes.
struct Chunk {
    conn: usize,
    to_server: bool,
    data: Vec<u8>,
}

/// A TCP proxy on plain threads, so it never competes with the test's runtime for a worker.
/// Each chunk is recorded before it is forwarded, so the log's order is causal.
struct Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Chunk>>>,
    /// Copy threads still running: the log is complete once this is 0.
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(server: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, a, s) = (log.clone(), active.clone(), stop.clone());
        thread::spawn(move || {
            for (conn, dma) in listener.incoming().enumerate() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(dma) = dma else { continue };
                let Ok(srv) = TcpStream::connect(server) else {
                    continue;
                };
                let _ = (dma.set_nodelay(true), srv.set_nodelay(true));
                a.fetch_add(2, Ordering::SeqCst);
                let (d2, s2) = (dma.try_clone().unwrap(), srv.try_clone().unwrap());
                pipe(conn, true, dma, srv, l.clone(), a.clone());
                pipe(conn, false, s2, d2, l.clone(), a.clone());
            }
        });
        Proxy {
            addr,
            log,
            active,
            stop,
        }
    }

    /// Waits (bounded) for every connection to be closed on both sides, then takes the log.
    fn finish(&self) -> Vec<Chunk> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.active.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "proxy connections never closed");
            thread::sleep(Duration::from_millis(20));
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// Copies `from` to `to`, recording each read. EOF half-closes `to` so the peer sees the
/// close too; an error tears both sockets down so neither side waits forever.
fn pipe(
    conn: usize,
    to_server: bool,
    mut from: TcpStream,
    mut to: TcpStream,
    log: Arc<Mutex<Vec<Chunk>>>,
    active: Arc<AtomicUsize>,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) => {
                    let _ = to.shutdown(Shutdown::Write);
                    break;
                }
                Ok(n) => {
                    log.lock().unwrap().push(Chunk {
                        conn,
                        to_server,
                        data: buf[..n].to_vec(),
                    });
                    if to.write_all(&buf[..n]).is_err() {
                        let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
                        break;
                    }
                }
                Err(_) => {
                    let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
                    break;
                }
            }
        }
        active.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Runs ndmjob with `cmd`'s words (the temp paths have no spaces) on a blocking thread.
fn job(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    tokio::task::block_in_place(|| common::ndmjob(&args))
}

/// Runs tshark on `pcap` with NDMP on port 10000; returns stdout (stderr on failure panics).
fn tshark(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", "tcp.port==10000,ndmp"])
        .args(args)
        .output()
        .expect("tshark is required (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cdb(flags: u32, datain_len: u32, cdb: &[u8]) -> Request {
    Request::ScsiExecuteCdb(ExecuteCdbRequest {
        flags,
        timeout: 10_000,
        datain_len,
        cdb: Opaque(Bytes::copy_from_slice(cdb)),
        dataout: Opaque(Bytes::new()),
    })
}

/// The crate's client: INQUIRY, READ ELEMENT STATUS with data, a MOVE MEDIUM from an empty
/// slot whose CHECK CONDITION reply carries sense bytes, then a large tape block.
async fn client_session(proxy: SocketAddr) {
    let mut c = Client::connect(proxy).await.unwrap();
    c.auth_text("ndmp", PW).await.unwrap();
    c.call_ok(Request::ScsiOpen(ScsiOpenRequest {
        device: "changer0".into(),
    }))
    .await
    .unwrap();
    // INQUIRY first: it is what tells Wireshark this device is a changer (SMC)
    let inq = [0x12, 0, 0, 0, 96, 0];
    c.call_ok(cdb(scsi_flags::DATA_IN, 96, &inq)).await.unwrap();
    let res = [0xB8, 0x10, 0, 0, 0, 0x50, 0, 0, 0x20, 0, 0, 0];
    let Reply::ScsiExecuteCdb(r) = c
        .call_ok(cdb(scsi_flags::DATA_IN, 8192, &res))
        .await
        .unwrap()
    else {
        panic!("not an EXECUTE_CDB reply")
    };
    assert_eq!(r.status, 0, "READ ELEMENT STATUS: {r:?}");
    assert!(r.datain.0.len() > 8, "{r:?}");
    // slot 1008 (0x03F0) is empty: 2 spare cartridges fill 1003-1004 only
    let mv = [0xA5, 0, 0, 0, 0x03, 0xF0, 0, 1, 0, 0, 0, 0];
    let Reply::ScsiExecuteCdb(r) = c.call(cdb(0, 0, &mv)).await.unwrap() else {
        panic!("not an EXECUTE_CDB reply")
    };
    assert_eq!(r.status, 2, "MOVE MEDIUM from an empty slot: {r:?}");
    assert!(!r.ext_sense.0.is_empty(), "{r:?}");
    c.call_ok(Request::ScsiClose(Void)).await.unwrap();

    // a 128 KiB tape block each way: PDUs that span several TCP segments
    let block = Bytes::from((0..128u32 << 10).map(|i| i as u8).collect::<Vec<u8>>());
    let open = TapeOpenRequest {
        device: "vtape1".into(),
        mode: TapeOpenMode::RDWR,
    };
    c.call_ok(Request::TapeOpen(open)).await.unwrap();
    let mtio = |tape_op| Request::TapeMtio(TapeMtioRequest { tape_op, count: 1 });
    c.call_ok(mtio(MtioOp::REW)).await.unwrap();
    let data_out = Opaque(block.clone());
    c.call_ok(Request::TapeWrite(TapeWriteRequest { data_out }))
        .await
        .unwrap();
    c.call_ok(mtio(MtioOp::REW)).await.unwrap();
    let read = TapeReadRequest { count: 128 << 10 };
    let Reply::TapeRead(r) = c.call_ok(Request::TapeRead(read)).await.unwrap() else {
        panic!("not a TAPE_READ reply")
    };
    assert_eq!(r.data_in.0, block);
    c.call_ok(Request::TapeClose(Void)).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tshark_decodes_our_traffic_without_malformed_packets() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let proxy = Proxy::start(t.addr);
    let a = format!("127.0.0.1:{}/4t,ndmp,tshark-pw", proxy.addr.port());

    let out = job(&format!("-o init-elem-status -v -T {a} -r changer0"));
    assert!(out.contains("Operation complete"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let unload = format!("-o unload -v -T {a} -r changer0 -f vtape0");
    let out = job(&unload);
    assert!(out.contains("unload drive @1 to slot @1001"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let out = job(&format!("-o load=1003 -v -T {a} -r changer0"));
    assert!(out.contains("load slot @1003 into drive @1"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let out = job(&unload);
    assert!(out.contains("unload drive @1 to slot @1003"), "{out}");

    // TAPE_WRITE and TAPE_READ with data: a label written to the cartridge in vtape1, read back
    let out = job(&format!("-o init-labels -v -T {a} -f vtape1 -m TSHARK1"));
    assert!(out.contains("Writing tape label"), "{out}");
    assert!(!out.contains("had problems"), "{out}");
    let out = job(&format!("-l -v -T {a} -f vtape1"));
    assert!(out.contains("ME \"TSHARK1\""), "{out}");

    // a small backup with file history: FH posts, NOTIFY_*, DATA and MOVER traffic
    let tree = t.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for (name, len) in [("a.txt", 10), ("b.bin", 70_000), ("sub/c", 3)] {
        std::fs::write(tree.join(name), vec![b'x'; len]).unwrap();
    }
    let (tree, index) = (tree.display(), t.dir.path().join("index"));
    let index = index.display();
    let out = job(&format!(
        "-c -v -D {a} -T {a} -B dump -f vtape1 -C {tree} -I {index}"
    ));
    assert!(out.contains("Operation ended OKAY"), "{out}");

    client_session(proxy.addr).await;
    let out = job(&format!("-q -D {a} -T {a}"));
    assert!(!out.contains("had problems"), "{out}");

    let chunks = tokio::task::block_in_place(|| proxy.finish());
    let mut w = common::pcapw::PcapWriter::new(true);
    for c in &chunks {
        w.chunk(c.conn, c.to_server, &c.data);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ours.pcap");
    std::fs::write(&pcap, &w.out).unwrap();
    if let Some(keep) = std::env::var_os("TSHARK_OURS_KEEP") {
        std::fs::copy(&pcap, keep).unwrap(); // for a look with tshark -V
    }

    let malformed = tshark(
        &pcap,
        &["-Y", "_ws.malformed", "-T", "fields", "-e", "frame.number"],
    );
    let frames: Vec<&str> = malformed.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        frames.is_empty(),
        "malformed frames {frames:?} of {}:\n{}",
        w.frames,
        tshark(&pcap, &["-V", "-Y", "_ws.malformed"])
    );

    // one line per NDMP frame: message codes, SMC opcodes, sense ASC/ASCQ (comma lists)
    let mut args = vec!["-Y", "ndmp", "-T", "fields"];
    for f in [
        "ndmp.msg",
        "scsi_smc.opcode",
        "scsi.sns.asc",
        "scsi.sns.ascq",
    ] {
        args.extend(["-e", f]);
    }
    let decoded = tshark(&pcap, &args);
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let list = |s: Option<&str>| {
        s.unwrap_or("")
            .split(',')
            .filter_map(hex)
            .collect::<Vec<_>>()
    };
    let (mut pdus, mut codes, mut smc, mut sense) = (0, BTreeSet::new(), BTreeSet::new(), vec![]);
    for line in decoded.lines() {
        let mut col = line.split('\t');
        let msgs = list(col.next());
        pdus += msgs.len();
        codes.extend(msgs);
        smc.extend(list(col.next()));
        let asc = list(col.next());
        sense.extend(asc.into_iter().zip(list(col.next())));
    }
    assert!(pdus >= 150, "only {pdus} NDMP PDUs decoded:\n{decoded}");
    for code in [
        0x200, 0x206, 0x300, 0x304, 0x305, 0x401, 0x501, 0x502, 0x503,
    ] {
        assert!(
            codes.contains(&code),
            "no message {code:#x} in {codes:x?}:\n{decoded}"
        );
    }
    for op in [0x12, 0xa5, 0xb8] {
        assert!(
            smc.contains(&op),
            "no SMC opcode {op:#x} in {smc:x?}:\n{decoded}"
        );
    }
    // the failed MOVE MEDIUM's sense: MEDIUM SOURCE ELEMENT EMPTY
    assert!(
        sense.contains(&(0x3b, 0x0e)),
        "sense {sense:x?}:\n{decoded}"
    );
    eprintln!(
        "{} frames, {pdus} NDMP PDUs; message codes {codes:x?}; SMC opcodes {smc:x?}",
        w.frames
    );
}

/// The same for NDMP v3 sessions (ndmjob `/3t`): test-mover, a tar backup with history over
/// TCP, a DAR restore and a query through the proxy; tshark learns the version from
/// CONNECT_OPEN and finds nothing malformed, and ndmpd's own decoder re-encodes every record.
#[tokio::test(flavor = "multi_thread")]
async fn tshark_decodes_our_v3_traffic_without_malformed_packets() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let proxy = Proxy::start(t.addr);
    let a = format!("127.0.0.1:{}/3t,ndmp,tshark-pw", proxy.addr.port());

    let out = job(&format!("-o test-mover -v -T {a} -f vtape0"));
    assert!(out.contains("FINAL test-mover Passed"), "{out}");
    let tree = t.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for (name, len) in [("a.txt", 10), ("b.bin", 70_000), ("sub/c", 3)] {
        std::fs::write(tree.join(name), vec![b'y'; len]).unwrap();
    }
    let index = t.dir.path().join("index");
    let out = job(&format!(
        "-c -v -D {a} -T {a} -B tar -f vtape1 -C {} -I {}",
        tree.display(),
        index.display()
    ));
    assert!(out.contains("Operation ended OKAY"), "{out}");
    let dar = t.dir.path().join("dar");
    let out = job(&format!(
        "-x -v -D {a} -T {a} -B tar -f vtape1 -C {} -J {} /sub/c",
        dar.display(),
        index.display()
    ));
    assert!(out.contains("Operation ended OKAY"), "{out}");
    assert_eq!(std::fs::read(dar.join("sub/c")).unwrap(), b"yyy");
    let out = job(&format!("-q -D {a}"));
    assert!(out.contains("NDMPv3"), "{out}");

    let chunks = tokio::task::block_in_place(|| proxy.finish());
    let mut w = common::pcapw::PcapWriter::new(true);
    for c in &chunks {
        w.chunk(c.conn, c.to_server, &c.data);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("ours-v3.pcap");
    std::fs::write(&pcap, &w.out).unwrap();
    let malformed = tshark(
        &pcap,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    let frames: Vec<&str> = malformed.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        frames.is_empty(),
        "malformed frames {frames:?} of {}:\n{}",
        w.frames,
        tshark(&pcap, &["-V", "-Y", "_ws.malformed"])
    );
    let versions = tshark(&pcap, &["-Y", "ndmp", "-T", "fields", "-e", "ndmp.version"]);
    assert!(
        versions.contains('3'),
        "no v3 CONNECT_OPEN seen:\n{versions}"
    );

    let conv = ndmpd::pcap::decode_capture(&w.out, 10000);
    assert_eq!(conv.failures(), 0, "{:?}", conv.stream_errors);
    let mut v3_bodies = 0;
    for e in &conv.events {
        let m = e.outcome.as_ref().unwrap();
        assert_eq!(m.to_bytes(), e.record, "packet {}", e.packet);
        v3_bodies += usize::from(matches!(
            m.body,
            ndmpd::wire::header::Body::Request(Request::V3(_))
                | ndmpd::wire::header::Body::Reply(Reply::V3(_))
        ));
    }
    assert!(v3_bodies > 20, "only {v3_bodies} v3 bodies");
}
