//! Backup throughput of the MOVER: a loopback TCP data connection into a virtual tape, against a
//! plain socket-to-file copy of the same bytes in the same run, for 64 KiB and 256 KiB records.

use ndmpd::client::Client;
use ndmpd::config::{Config, Credentials, Export};
use ndmpd::server::Server;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Opaque, Reply, Request};
use std::fs::File;
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RECORD_SIZES: [u32; 2] = [64 << 10, 256 << 10];
const PW: &[u8] = b"pw";
/// The sender's buffer; the stream repeats it, so N can exceed memory we care to fill.
const CHUNK: usize = 64 << 20;
/// The item header vtape puts in front of every record (src/tape/vtape/format.rs): it shifts
/// each record off the page-cache folio boundaries, which MOVER_BENCH_FRAMED=1 isolates.
const VTAPE_ITEM_HDR: usize = 32;
/// Generous: TAPE_CLOSE fsyncs gigabytes.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The first two CPUs this process may run on, if it may run on two.
fn two_cpus() -> Option<(usize, usize)> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set for sched_getaffinity to fill, and
    // CPU_ISSET reads within it for any cpu below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
            return None;
        }
        let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set));
        Some((cpus.next()?, cpus.next()?))
    }
}

/// Pins the calling thread (and the threads it spawns later) to one CPU.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, CPU_SET stays within it for any cpu
    // below CPU_SETSIZE, and pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            panic!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Bytes that neither compress nor repeat within a record, so no layer can cheat.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Connects and sends `total` bytes, then closes our half; returns when the clock started,
/// just before the first write, so connection setup is not timed.
fn spawn_sender(
    to: SocketAddr,
    data: Arc<Vec<u8>>,
    total: u64,
    pin: Option<usize>,
) -> thread::JoinHandle<Instant> {
    // named for perf, which tells the threads apart by name
    thread::Builder::new()
        .name("sender".into())
        .spawn(move || {
            if let Some(cpu) = pin {
                pin_to(cpu);
            }
            let mut s = TcpStream::connect(to).unwrap();
            let start = Instant::now();
            let mut left = total;
            while left > 0 {
                let n = left.min(data.len() as u64) as usize;
                s.write_all(&data[..n]).unwrap();
                left -= n as u64;
            }
            s.shutdown(Shutdown::Write).unwrap();
            start
        })
        .unwrap()
}

async fn start_server(dir: &Path, total: u64) -> SocketAddr {
    let mut cfg = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        data_dir: dir.join("data"),
        exports: vec![Export::new(dir.to_owned())],
        ..Config::default()
    };
    // a limit, not an allocation: an EOM pause would end the run
    cfg.library.cartridge_capacity = cfg.library.cartridge_capacity.max(2 * total);
    cfg.apply_embedded_defaults();
    cfg.rest_listen = None;
    cfg.validate().unwrap();
    let users = vec![Credentials {
        name: "ndmp".into(),
        password: PW.to_vec(),
    }];
    let server = Server::bind(cfg, users).await.unwrap();
    let addr = server.local_addrs()[0];
    // the server lives until the process exits
    tokio::spawn(server.run());
    addr
}

fn mtio(tape_op: MtioOp) -> Request {
    Request::TapeMtio(TapeMtioRequest { tape_op, count: 1 })
}

/// One backup of `total` bytes onto vtape0 in records of `rs`: the time from the first byte
/// sent to NOTIFY_MOVER_HALTED, when the last record is in the page cache, and bytes_moved.
async fn mover_run(
    c: &mut Client,
    rs: u32,
    data: &Arc<Vec<u8>>,
    total: u64,
    pin: Option<usize>,
    sync: bool,
) -> (Duration, u64) {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: rs,
    }))
    .await
    .unwrap();
    c.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: "vtape0".into(),
        mode: TapeOpenMode::RDWR,
    }))
    .await
    .unwrap();
    // A write at BOT truncates the previous round's gigabytes; a one-byte record does that
    // here, untimed, as the baseline's File::create does, so both clocks see an empty file.
    c.call_ok(mtio(MtioOp::REW)).await.unwrap();
    c.call_ok(Request::TapeWrite(TapeWriteRequest {
        data_out: Opaque(bytes::Bytes::from_static(b"x")),
    }))
    .await
    .unwrap();
    c.call_ok(mtio(MtioOp::REW)).await.unwrap();
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: u64::MAX,
    }))
    .await
    .unwrap();
    let r = c
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap();
    let Reply::MoverListen(ListenReply {
        connect_addr: Addr::Tcp { tcp_addr },
        ..
    }) = r
    else {
        panic!("MOVER_LISTEN answered {r:?}")
    };
    let to = SocketAddr::from((tcp_addr[0].ip(), tcp_addr[0].port));
    let sender = spawn_sender(to, data.clone(), total, pin);
    let end = loop {
        let m = c
            .recv(CALL_TIMEOUT)
            .await
            .unwrap()
            .expect("the server closed the control connection");
        match m.body {
            Body::Request(Request::NotifyMoverHalted(h)) => {
                let end = Instant::now();
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED);
                break end;
            }
            Body::Request(Request::NotifyMoverPaused(p)) => panic!("the mover paused: {p:?}"),
            _ => {}
        }
    };
    let start = sender.join().unwrap();
    let Reply::MoverGetState(s) = c.call_ok(Request::MoverGetState(Void)).await.unwrap() else {
        unreachable!()
    };
    assert_eq!(s.bytes_moved, total, "MOVER_GET_STATE bytes_moved");
    c.call_ok(Request::MoverStop(Void)).await.unwrap();
    // filemark and fsync: timed only with MOVER_BENCH_SYNC=1, like the baseline's sync_all
    c.call_ok(Request::TapeClose(Void)).await.unwrap();
    let end = if sync { Instant::now() } else { end };
    (end - start, s.bytes_moved)
}

/// The same stream into a plain file: read whole records of `rs` as the mover does, write each;
/// `framed` puts a vtape item header with the record's CRC-32 in front of each, as vtape does.
fn baseline_run(
    path: &Path,
    rs: u32,
    data: &Arc<Vec<u8>>,
    total: u64,
    pin: Option<usize>,
    framed: bool,
    sync: bool,
) -> Duration {
    let mut file = File::create(path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let receiver = thread::Builder::new()
        .name("plain-copy".into())
        .spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; rs as usize];
            let mut written = 0u64;
            loop {
                let mut got = 0;
                while got < buf.len() {
                    match s.read(&mut buf[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => panic!("baseline read: {e}"),
                    }
                }
                if got == 0 {
                    break;
                }
                let record = &buf[..got];
                if framed {
                    let mut hdr = [0u8; VTAPE_ITEM_HDR];
                    hdr[..4].copy_from_slice(&crc32fast::hash(record).to_le_bytes());
                    let mut iov = [IoSlice::new(&hdr), IoSlice::new(record)];
                    let mut iov = &mut iov[..];
                    while !iov.is_empty() {
                        let n = file.write_vectored(iov).unwrap();
                        IoSlice::advance_slices(&mut iov, n);
                    }
                } else {
                    file.write_all(record).unwrap();
                }
                written += got as u64;
            }
            (Instant::now(), written, file)
        })
        .unwrap();
    let sender = spawn_sender(to, data.clone(), total, pin);
    let (end, written, file) = receiver.join().unwrap();
    let start = sender.join().unwrap();
    assert_eq!(written, total, "baseline bytes written");
    file.sync_all().unwrap();
    let end = if sync { Instant::now() } else { end };
    end - start
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[(s.len() - 1) / 2]
}

fn main() {
    // Shorter runs and more of them: page-cache speed on the VM drifts by 2x and more over
    // seconds, and a short pair of runs is more likely to see the same weather.
    // `cargo test --all-targets` runs this without --bench: one small round, as a smoke test
    let measuring = std::env::args().any(|a| a == "--bench");
    let total = knob("MOVER_BENCH_MB", if measuring { 512 } else { 16 }) << 20;
    let rounds = knob("MOVER_BENCH_ROUNDS", if measuring { 9 } else { 1 }).max(1);
    let framed = knob("MOVER_BENCH_FRAMED", 0) != 0;
    // 1: the clock stops once the bytes are on disk (TAPE_CLOSE / fsync), as a tape's are
    let sync = knob("MOVER_BENCH_SYNC", 0) != 0;
    // A loopback pair placed by the scheduler sometimes shares one CPU (wake-affine), which
    // halves a run at random; fixed places take that out of the comparison.
    let cpus = if knob("MOVER_BENCH_PIN", 1) != 0 {
        two_cpus()
    } else {
        None
    };
    let pin = cpus.map(|(sender, receiver)| {
        // before the runtime exists, so its workers, the mover engine and the plain copy
        // all inherit it
        pin_to(receiver);
        sender
    });
    let base: PathBuf = std::env::var_os("NDMPD_BENCH_DIR")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    // a target directory elsewhere leaves none here
    std::fs::create_dir_all(&base).unwrap();
    // the real disk, not a tmpfs /tmp: the comparison is about a filesystem
    let dir = tempfile::Builder::new()
        .prefix("bench-mover.")
        .tempdir_in(&base)
        .unwrap();
    let data = Arc::new(noise(CHUNK.min(total as usize).max(1)));
    println!(
        "mover backup vs {} socket-to-file copy: {} MiB per run, {rounds} rounds, in {}, {}",
        if framed {
            "vtape-framed (32-byte header + CRC-32 per record)"
        } else {
            "plain"
        },
        total >> 20,
        dir.path().display(),
        match cpus {
            Some((s, r)) => format!("sender on CPU {s}, receiver (mover or copy) on CPU {r}"),
            None => "threads not pinned".into(),
        }
    );
    if sync {
        println!(
            "clock: first byte sent -> bytes on disk (TAPE_CLOSE reply with its fsync / \
             receiver done and sync_all); truncation before each run is untimed in both"
        );
    } else {
        println!(
            "clock: first byte sent -> last byte in the page cache (NOTIFY_MOVER_HALTED / \
             receiver done); truncation before and fsync after each run are untimed in both"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = start_server(dir.path(), total).await;
        let mut c = Client::connect(addr).await.unwrap();
        c.set_timeout(CALL_TIMEOUT);
        c.open(4).await.unwrap();
        c.auth_text("ndmp", PW).await.unwrap();
        let plain = dir.path().join("plain.bin");
        let copy = if framed { "framed copy" } else { "plain copy" };
        for rs in RECORD_SIZES {
            let (mut mv, mut bl, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for r in 1..=rounds {
                // alternate who goes first, so neither always meets the other's leftovers
                let ((m, moved), b) = if r % 2 == 1 {
                    let m = mover_run(&mut c, rs, &data, total, pin, sync).await;
                    (m, baseline_run(&plain, rs, &data, total, pin, framed, sync))
                } else {
                    let b = baseline_run(&plain, rs, &data, total, pin, framed, sync);
                    (mover_run(&mut c, rs, &data, total, pin, sync).await, b)
                };
                let (m, b) = (mbps(total, m), mbps(total, b));
                mv.push(m);
                bl.push(b);
                ratio.push(m / b);
                println!(
                    "{:>3} KiB records, round {r}: mover {m:5.0} MB/s ({moved} bytes moved), \
                     {copy} {b:5.0} MB/s, mover/copy {:3.0}%",
                    rs >> 10,
                    100.0 * m / b
                );
            }
            let (m, b) = (median(&mv), median(&bl));
            // the per-round ratio is the steadier figure: both runs of a round see about the
            // same page-cache speed, which on the VM drifts by 2x and more between rounds
            println!(
                "{:>3} KiB records, median of {rounds}: mover {m:.0} MB/s, {copy} {b:.0} MB/s \
                 ({:.0}%); median mover/copy per round {:.0}%",
                rs >> 10,
                100.0 * m / b,
                100.0 * median(&ratio)
            );
        }
        c.close().await.unwrap();
    });
}
