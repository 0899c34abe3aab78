//! The MOVER over real sockets: ndmjob's conformance suite, one backup stream across three
//! cartridges and back, the tape while the mover owns it, aborts, and sessions that vanish.

mod common;

use common::mover::{listen, mover_post, mover_state as state, open, void, window};

use ndmpd::client::Client;
use ndmpd::config::{DeviceKind, TapeConfig};
use ndmpd::tape::vtape::Vtape;
use ndmpd::tape::TapeDevice;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Reply, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PW: &[u8] = b"mover-pw";
const RS: u32 = 64 << 10;
const ALL: u64 = u64::MAX;

/// A server with three 1 MiB cartridges in drives t0, t1, t2 besides the defaults.
async fn start(carts: &Path) -> (common::TestServer, Vec<PathBuf>) {
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = carts.join(format!("small{i}.vtape"));
            Vtape::create(&p, &format!("SMALL{i}"), 1 << 20).unwrap();
            p
        })
        .collect();
    let extra = paths.clone();
    let t = common::start("ndmp", PW, move |cfg| {
        for (i, p) in extra.iter().enumerate() {
            cfg.tapes.push(TapeConfig {
                name: format!("t{i}"),
                kind: DeviceKind::Virtual,
                path: Some(p.clone()),
            });
        }
    })
    .await;
    (t, paths)
}

async fn client(t: &common::TestServer) -> Client {
    t.client().await
}

async fn err(c: &mut Client, r: Request) -> NdmpError {
    common::ndmp_err(c, r).await
}

async fn wait_state(c: &mut Client, want: MoverState) -> MoverGetStateReply {
    for _ in 0..500 {
        let s = state(c).await;
        if s.state == want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("mover never reached {want:?}");
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ndmjob_test_mover_passes_every_step() {
    let carts = tempfile::tempdir().unwrap();
    let (t, _) = start(carts.path()).await;
    let agent = format!("127.0.0.1:{}/4t,ndmp,mover-pw", t.addr.port());
    let text = tokio::task::spawn_blocking(move || {
        common::ndmjob(&["-o", "test-mover", "-vv", "-T", &agent, "-f", "vtape0"])
    })
    .await
    .unwrap();
    assert!(
        text.contains("FINAL test-mover Passed -- pass=100 warn=0 fail=0 (total 100)"),
        "{text}"
    );
    assert!(text.contains("LOCAL and TCP addressing tested."), "{text}");
}

/// Backs `data` up from t0 onwards, changing cartridge at each EOM; returns the pauses.
async fn backup_across(c: &mut Client, data: &[u8], carts: usize) -> Vec<u64> {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RS,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::RDWR)).await.unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(c, MoverMode::READ).await;
    let s = wait_state(c, MoverState::ACTIVE).await;
    assert_eq!(s.mode, MoverMode::READ);
    let Addr::Tcp { tcp_addr } = &s.data_connection_addr else {
        panic!("{s:?}")
    };
    assert_eq!(tcp_addr[0].port, sock.local_addr().unwrap().port());
    // while the mover streams, the tape answers GET_STATE and nothing else
    assert_eq!(err(c, void(Request::TapeGetState)).await, NdmpError::NO_ERR);
    assert_eq!(
        err(
            c,
            Request::TapeMtio(TapeMtioRequest {
                tape_op: MtioOp::REW,
                count: 1
            })
        )
        .await,
        NdmpError::DEVICE_BUSY_ERR
    );
    assert_eq!(
        err(c, void(Request::TapeClose)).await,
        NdmpError::DEVICE_BUSY_ERR
    );
    let feed = data.to_vec();
    let writer = tokio::spawn(async move {
        sock.write_all(&feed).await.unwrap();
        sock.shutdown().await.unwrap();
    });
    let mut pauses = Vec::new();
    loop {
        match mover_post(c).await {
            Request::NotifyMoverPaused(p) => {
                assert_eq!(p.reason, MoverPauseReason::EOM);
                let s = state(c).await;
                assert_eq!(s.state, MoverState::PAUSED);
                assert_eq!(s.pause_reason, MoverPauseReason::EOM);
                assert_eq!(s.bytes_moved, p.seek_position);
                pauses.push(p.seek_position);
                assert!(pauses.len() < carts, "more cartridges needed than given");
                // the DMA closes the full cartridge (filemark) and mounts the next
                c.call_ok(void(Request::TapeClose)).await.unwrap();
                let next = format!("t{}", pauses.len());
                c.call_ok(open(&next, TapeOpenMode::RDWR)).await.unwrap();
                let at = p.seek_position;
                c.call_ok(window(at, ALL - at)).await.unwrap();
                c.call_ok(void(Request::MoverContinue)).await.unwrap();
            }
            Request::NotifyMoverHalted(h) => {
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED);
                break;
            }
            _ => unreachable!(),
        }
    }
    writer.await.unwrap();
    let s = state(c).await;
    assert_eq!(s.state, MoverState::HALTED);
    assert_eq!(s.halt_reason, MoverHaltReason::CONNECT_CLOSED);
    assert_eq!(s.bytes_moved, data.len() as u64);
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
    pauses
}

/// Reads the stream back from t0 onwards, changing cartridge at each EOF.
async fn recover_across(c: &mut Client, carts: usize) -> Vec<u8> {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RS,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::READ)).await.unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(c, MoverMode::WRITE).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        sock.read_to_end(&mut got).await.unwrap();
        got
    });
    wait_state(c, MoverState::ACTIVE).await;
    c.call_ok(Request::MoverRead(MoverRangeRequest {
        offset: 0,
        length: ALL,
    }))
    .await
    .unwrap();
    // a second read is refused: in progress, or (if the first already reached the filemark)
    // not allowed while PAUSED
    let second = err(
        c,
        Request::MoverRead(MoverRangeRequest {
            offset: 0,
            length: 1,
        }),
    )
    .await;
    assert!(
        matches!(
            second,
            NdmpError::READ_IN_PROGRESS_ERR | NdmpError::ILLEGAL_STATE_ERR
        ),
        "{second:?}"
    );
    let mut mounted = 1;
    loop {
        match mover_post(c).await {
            Request::NotifyMoverPaused(p) => {
                assert_eq!(p.reason, MoverPauseReason::EOF);
                if mounted == carts {
                    c.call_ok(void(Request::MoverClose)).await.unwrap();
                    continue;
                }
                c.call_ok(void(Request::TapeClose)).await.unwrap();
                c.call_ok(open(&format!("t{mounted}"), TapeOpenMode::READ))
                    .await
                    .unwrap();
                mounted += 1;
                let at = p.seek_position;
                c.call_ok(window(at, ALL - at)).await.unwrap();
                c.call_ok(void(Request::MoverContinue)).await.unwrap();
            }
            Request::NotifyMoverHalted(h) => {
                assert_eq!(h.reason, MoverHaltReason::CONNECT_CLOSED);
                break;
            }
            _ => unreachable!(),
        }
    }
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
    reader.await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_stream_across_three_cartridges_and_back() {
    let carts = tempfile::tempdir().unwrap();
    let (t, paths) = start(carts.path()).await;
    let mut c = client(&t).await;
    // 2.5 MiB onto 1 MiB cartridges: end of medium twice
    let data = pattern((5 << 20) / 2 + 777);
    let pauses = backup_across(&mut c, &data, 3).await;
    assert_eq!(pauses.len(), 2, "{pauses:?}");
    for (i, p) in paths.iter().enumerate() {
        let insp = Vtape::inspect(p).unwrap();
        assert_eq!(insp.filemarks, 1, "cartridge {i}: {insp}");
    }
    // what each cartridge holds is exactly the stream between two pauses
    let mut on_tape = Vec::new();
    for p in &paths {
        let mut v = Vtape::open(p, false).unwrap();
        let mut buf = vec![0u8; RS as usize];
        while let Ok((n, _)) = v.read_record(&mut buf) {
            on_tape.extend_from_slice(&buf[..n]);
        }
    }
    assert!(on_tape == data, "the cartridges do not hold the stream");
    let back = recover_across(&mut c, 3).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the stream read back differs");
    let s = state(&mut c).await;
    assert_eq!((s.state, s.bytes_moved), (MoverState::IDLE, 0));
    assert_eq!(s.record_size, RS, "the record size persists after STOP");
}

/// A backup onto t0 that has written `records` records and waits for more.
async fn streaming(c: &mut Client, records: u64) -> TcpStream {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RS,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::RDWR)).await.unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(c, MoverMode::READ).await;
    sock.write_all(&pattern(records as usize * RS as usize))
        .await
        .unwrap();
    for _ in 0..500 {
        if u64::from(state(c).await.record_num) == records {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sock
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_while_streaming_then_the_tape_keeps_what_was_written() {
    let carts = tempfile::tempdir().unwrap();
    let (t, paths) = start(carts.path()).await;
    let mut c = client(&t).await;
    let mut sock = streaming(&mut c, 3).await;
    let info = t.registry.list().pop().unwrap().mover;
    assert_eq!((info.state, info.mode), ("ACTIVE", "READ"));
    assert_eq!(info.record_size, RS);
    let port = sock.local_addr().unwrap().port();
    assert_eq!(
        info.connection.as_deref(),
        Some(format!("TCP 127.0.0.1:{port}").as_str())
    );
    c.call_ok(void(Request::MoverAbort)).await.unwrap();
    match mover_post(&mut c).await {
        Request::NotifyMoverHalted(h) => assert_eq!(h.reason, MoverHaltReason::ABORTED),
        other => panic!("{other:?}"),
    }
    let s = state(&mut c).await;
    assert_eq!(
        (s.state, s.halt_reason),
        (MoverState::HALTED, MoverHaltReason::ABORTED)
    );
    assert_eq!(s.bytes_moved, 3 * u64::from(RS));
    let info = t.registry.list().pop().unwrap().mover;
    assert_eq!((info.state, info.halt_reason), ("HALTED", "ABORTED"));
    assert_eq!(info.bytes_moved, 3 * u64::from(RS));
    // the data connection is gone
    let mut b = [0u8; 1];
    assert_eq!(sock.read(&mut b).await.unwrap_or(0), 0);
    c.call_ok(void(Request::MoverStop)).await.unwrap();
    c.call_ok(void(Request::TapeClose)).await.unwrap();
    let insp = Vtape::inspect(&paths[0]).unwrap();
    assert_eq!((insp.records, insp.filemarks), (3, 1), "{insp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_dma_leaves_a_closed_tape_and_a_free_drive() {
    let carts = tempfile::tempdir().unwrap();
    let (t, paths) = start(carts.path()).await;
    let mut c = client(&t).await;
    let _sock = streaming(&mut c, 2).await;
    drop(c);
    let mut other = client(&t).await;
    let mut opened = NdmpError::DEVICE_BUSY_ERR;
    for _ in 0..500 {
        opened = err(&mut other, open("t0", TapeOpenMode::READ)).await;
        if opened != NdmpError::DEVICE_BUSY_ERR {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(opened, NdmpError::NO_ERR);
    other.call_ok(void(Request::TapeClose)).await.unwrap();
    let insp = Vtape::inspect(&paths[0]).unwrap();
    assert_eq!((insp.records, insp.filemarks), (2, 1), "{insp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_and_local_listen_are_answered_plainly() {
    let carts = tempfile::tempdir().unwrap();
    let (t, _) = start(carts.path()).await;
    let mut c = client(&t).await;
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: RS,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::RDWR)).await.unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let to = |port| Addr::Tcp {
        tcp_addr: vec![TcpAddr {
            ip_addr: u32::from(std::net::Ipv4Addr::LOCALHOST),
            port,
            addr_env: vec![],
        }],
    };
    let r = err(
        &mut c,
        Request::MoverConnect(MoverConnectRequest {
            mode: MoverMode::READ,
            addr: to(port),
        }),
    )
    .await;
    assert_eq!(r, NdmpError::CONNECT_ERR);
    let log = c.take_posts().into_iter().find_map(|m| match m.body {
        Body::Request(Request::LogMessage(l)) => Some(l.entry.to_string()),
        _ => None,
    });
    assert!(log.unwrap().contains(&port.to_string()));
    assert_eq!(state(&mut c).await.state, MoverState::IDLE);
    // LOCAL: the mover waits for this session's DATA server
    let r = c
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::LOCAL,
        }))
        .await
        .unwrap();
    assert!(matches!(
        r,
        Reply::MoverListen(ListenReply {
            connect_addr: Addr::Local,
            ..
        })
    ));
    assert_eq!(state(&mut c).await.state, MoverState::LISTEN);
    c.call_ok(void(Request::MoverAbort)).await.unwrap();
    match mover_post(&mut c).await {
        Request::NotifyMoverHalted(h) => assert_eq!(h.reason, MoverHaltReason::ABORTED),
        other => panic!("{other:?}"),
    }
    c.call_ok(void(Request::MoverStop)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_media_error_halts_with_internal_error_and_a_log_message() {
    let carts = tempfile::tempdir().unwrap();
    let (t, paths) = start(carts.path()).await;
    // one good record, one whose bytes rot on the cartridge after the CRC was taken
    let mut v = Vtape::open(&paths[0], true).unwrap();
    v.write_record(&[0x11; 4096]).unwrap();
    v.write_record(&[0xab; 4096]).unwrap();
    v.write_filemarks(1).unwrap();
    v.flush().unwrap();
    drop(v);
    let mut raw = std::fs::read(&paths[0]).unwrap();
    let at = raw
        .windows(64)
        .position(|w| w.iter().all(|&b| b == 0xab))
        .unwrap();
    raw[at + 100] ^= 0x01;
    std::fs::write(&paths[0], raw).unwrap();

    let mut c = client(&t).await;
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: 4096,
    }))
    .await
    .unwrap();
    c.call_ok(open("t0", TapeOpenMode::READ)).await.unwrap();
    c.call_ok(window(0, ALL)).await.unwrap();
    let mut sock = listen(&mut c, MoverMode::WRITE).await;
    wait_state(&mut c, MoverState::ACTIVE).await;
    c.call_ok(Request::MoverRead(MoverRangeRequest {
        offset: 0,
        length: ALL,
    }))
    .await
    .unwrap();
    let mut log = None;
    let halted = loop {
        let m = c.recv(Duration::from_secs(30)).await.unwrap().unwrap();
        match m.body {
            Body::Request(Request::LogMessage(l)) => log = Some(l),
            Body::Request(Request::NotifyMoverHalted(h)) => break h.reason,
            _ => {}
        }
    };
    assert_eq!(halted, MoverHaltReason::INTERNAL_ERROR);
    let log = log.expect("no LOG_MESSAGE before the halt");
    assert_eq!(log.log_type, LogType::ERROR);
    assert!(
        log.entry.to_string().contains("tape read failed"),
        "{log:?}"
    );
    // the good record reached the data connection before the bad one stopped the mover
    let mut got = Vec::new();
    sock.read_to_end(&mut got).await.unwrap();
    assert!(got == vec![0x11; 4096]);
    let s = state(&mut c).await;
    assert_eq!((s.state, s.bytes_moved), (MoverState::HALTED, 4096));
}
