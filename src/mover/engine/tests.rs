//! The engine against real virtual cartridges over a LOCAL pipe and a TCP socket: records,
//! windows, end of medium across cartridges, filemarks, reads anywhere, aborts.

use super::*;
use crate::dataconn::local;
use crate::tape::library::OpenDrive;
use crate::tape::vtape::Vtape;
use std::path::{Path, PathBuf};
use std::time::Duration;

const RS: usize = 4096;

fn cartridge(dir: &Path, name: &str, capacity: u64) -> PathBuf {
    let p = dir.join(format!("{name}.vtape"));
    Vtape::create(&p, name, capacity).unwrap();
    p
}

fn drive(path: &Path, writable: bool) -> SharedDrive {
    let v = Vtape::open(path, writable).unwrap();
    Arc::new(Mutex::new(OpenDrive::unlocked("t", Box::new(v))))
}

/// Every record of the first file on a cartridge, concatenated.
fn tape_file(path: &Path, file: u32) -> Vec<u8> {
    let mut v = Vtape::open(path, false).unwrap();
    if file > 0 {
        v.space_filemarks(i64::from(file)).unwrap();
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok((n, _)) = v.read_record(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
}

struct Harness {
    commands: crossbeam_channel::Sender<Command>,
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    abort: Arc<AtomicBool>,
    progress: Arc<Progress>,
    thread: std::thread::JoinHandle<Event>,
}

fn start(mode: MoverMode, drive: SharedDrive, window: Window, conn: MoverConn) -> Harness {
    let (commands, commands_rx) = crossbeam_channel::unbounded();
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let abort = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let job = Job {
        mode,
        record_size: RS,
        drive,
        window,
        progress: progress.clone(),
        commands: commands_rx,
        events: events_tx,
        abort: abort.clone(),
    };
    let thread = std::thread::spawn(move || run(job, conn));
    Harness {
        commands,
        events,
        abort,
        progress,
        thread,
    }
}

const ALL: Window = Window {
    offset: 0,
    length: INFINITE,
};

#[test]
fn backup_spans_three_cartridges_without_losing_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    // 300 KiB cartridges; 700 KiB of stream fills two and part of a third
    let carts: Vec<_> = (0..3)
        .map(|i| cartridge(dir.path(), &format!("c{i}"), 300 << 10))
        .collect();
    let data = pattern(700 * 1024 + 123);
    let (m, mut d) = local::pipe(RS);
    let mut h = start(MoverMode::READ, drive(&carts[0], true), ALL, Conn::Local(m));
    let feed = {
        let data = data.clone();
        std::thread::spawn(move || {
            d.write_all(&data).unwrap();
            d.finish().unwrap();
        })
    };
    let mut pauses = Vec::new();
    let mut next = 1;
    let end = loop {
        match h.events.blocking_recv().unwrap() {
            Event::Paused {
                reason,
                seek_position,
                wrote,
            } => {
                assert!(wrote);
                pauses.push((reason, seek_position));
                let drive = drive(&carts[next], true);
                next += 1;
                let window = Window {
                    offset: seek_position,
                    length: INFINITE - seek_position,
                };
                h.commands
                    .send(Command::Continue { drive, window })
                    .unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
        if next == 3 {
            break h.thread.join().unwrap();
        }
    };
    feed.join().unwrap();
    match end {
        Event::Halted { reason, why, wrote } => {
            assert_eq!(reason, MoverHaltReason::CONNECT_CLOSED, "{why:?}");
            assert!(wrote);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pauses.len(), 2);
    assert!(pauses.iter().all(|p| p.0 == MoverPauseReason::EOM));
    let mut back = Vec::new();
    for c in &carts {
        back.extend(tape_file(c, 0));
    }
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the stream read back differs");
    assert_eq!(
        pauses[1].1,
        tape_file(&carts[0], 0).len() as u64 + tape_file(&carts[1], 0).len() as u64
    );
    assert_eq!(
        h.progress.bytes_moved.load(Ordering::Relaxed),
        data.len() as u64
    );
}

#[test]
fn a_window_pauses_with_eow_only_when_more_data_comes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cartridge(dir.path(), "w", 64 << 20);
    let data = pattern(5 * RS);
    let (m, mut d) = local::pipe(RS);
    let three = Window {
        offset: 0,
        length: 3 * RS as u64,
    };
    let tape = drive(&c, true);
    let mut h = start(MoverMode::READ, tape.clone(), three, Conn::Local(m));
    d.write_all(&data).unwrap();
    d.finish().unwrap();
    match h.events.blocking_recv().unwrap() {
        Event::Paused {
            reason,
            seek_position,
            ..
        } => {
            assert_eq!(reason, MoverPauseReason::EOW);
            assert_eq!(seek_position, 3 * RS as u64);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.progress.record_num.load(Ordering::Relaxed), 3);
    // exactly two more records: a window that ends at the stream's end does not pause
    let rest = Window {
        offset: 3 * RS as u64,
        length: 2 * RS as u64,
    };
    h.commands
        .send(Command::Continue {
            drive: tape.clone(),
            window: rest,
        })
        .unwrap();
    drop(d);
    let end = h.thread.join().unwrap();
    assert!(matches!(
        end,
        Event::Halted {
            reason: MoverHaltReason::CONNECT_CLOSED,
            ..
        }
    ));
    assert!(h.events.try_recv().is_err(), "no second pause");
    drop(tape);
    assert!(tape_file(&c, 0) == data);
}

/// A cartridge holding a label record, a filemark, then `data` in RS records and a filemark.
fn recorded(dir: &Path, data: &[u8]) -> PathBuf {
    let c = cartridge(dir, "r", 64 << 20);
    let mut v = Vtape::open(&c, true).unwrap();
    v.write_record(b"LABEL").unwrap();
    v.write_filemarks(1).unwrap();
    for rec in data.chunks(RS) {
        v.write_record(rec).unwrap();
    }
    v.write_filemarks(1).unwrap();
    v.flush().unwrap();
    c
}

fn positioned(c: &Path) -> SharedDrive {
    let d = drive(c, false);
    d.lock().unwrap().device.space_filemarks(1).unwrap();
    d
}

#[test]
fn recover_everything_then_pause_at_the_filemark() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(5 * RS + 1000);
    let c = recorded(dir.path(), &data);
    let (m, mut d) = local::pipe(RS);
    let mut h = start(MoverMode::WRITE, positioned(&c), ALL, Conn::Local(m));
    h.commands
        .send(Command::Read {
            offset: 0,
            length: INFINITE,
        })
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 5 * RS + 1000];
        std::io::Read::read_exact(&mut d, &mut got).unwrap();
        (got, d)
    });
    match h.events.blocking_recv().unwrap() {
        Event::Paused {
            reason,
            seek_position,
            ..
        } => {
            assert_eq!(reason, MoverPauseReason::EOF);
            assert_eq!(seek_position, data.len() as u64);
        }
        other => panic!("{other:?}"),
    }
    let (got, _d) = reader.join().unwrap();
    assert!(got == data);
    h.commands.send(Command::Close).unwrap();
    let end = h.thread.join().unwrap();
    assert!(matches!(
        end,
        Event::Halted {
            reason: MoverHaltReason::CONNECT_CLOSED,
            why: None,
            ..
        }
    ));
}

#[test]
fn reads_anywhere_in_the_window_space_the_tape_and_outside_it_pause_seek() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(6 * RS);
    let c = recorded(dir.path(), &data);
    // a TCP pair on loopback, as a real recovery uses
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    let four = Window {
        offset: 0,
        length: 4 * RS as u64,
    };
    let mut h = start(MoverMode::WRITE, positioned(&c), four, Conn::Tcp(server));
    let mut read = |offset: u64, length: u64| {
        h.commands.send(Command::Read { offset, length }).unwrap();
        let mut got = vec![0u8; length as usize];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        got
    };
    let (o, n) = (2 * RS + 100, 50);
    assert!(read(o as u64, n as u64) == data[o..o + n], "forward");
    let (o, n) = (10, 2 * RS);
    assert!(read(o as u64, n as u64) == data[o..o + n], "backward");
    let (o, n) = (3 * RS + 5, RS - 5);
    assert!(
        read(o as u64, n as u64) == data[o..o + n],
        "to the window's end"
    );
    h.commands
        .send(Command::Read {
            offset: 4 * RS as u64,
            length: 10,
        })
        .unwrap();
    match h.events.blocking_recv().unwrap() {
        Event::Paused {
            reason,
            seek_position,
            ..
        } => {
            assert_eq!(reason, MoverPauseReason::SEEK);
            assert_eq!(seek_position, 4 * RS as u64);
        }
        other => panic!("{other:?}"),
    }
    // the DMA positions the tape at record 4 and opens the window there
    let d = positioned(&c);
    d.lock().unwrap().device.space_records(4).unwrap();
    let window = Window {
        offset: 4 * RS as u64,
        length: INFINITE - 4 * RS as u64,
    };
    h.commands
        .send(Command::Continue { drive: d, window })
        .unwrap();
    let mut got = vec![0u8; 10];
    std::io::Read::read_exact(&mut client, &mut got).unwrap();
    assert_eq!(got, &data[4 * RS..4 * RS + 10]);
    h.abort.store(true, Ordering::Relaxed);
    h.commands.send(Command::Abort).unwrap();
    let end = h.thread.join().unwrap();
    assert!(matches!(
        end,
        Event::Halted {
            reason: MoverHaltReason::ABORTED,
            ..
        }
    ));
}

#[test]
fn an_abort_ends_a_backup_waiting_for_data_and_keeps_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = cartridge(dir.path(), "a", 64 << 20);
    let (m, mut d) = local::pipe(RS);
    let h = start(MoverMode::READ, drive(&c, true), ALL, Conn::Local(m));
    d.write_all(&pattern(2 * RS)).unwrap();
    while h.progress.record_num.load(Ordering::Relaxed) < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    h.abort.store(true, Ordering::Relaxed);
    let end = h.thread.join().unwrap();
    assert!(matches!(
        end,
        Event::Halted {
            reason: MoverHaltReason::ABORTED,
            wrote: true,
            ..
        }
    ));
    assert!(tape_file(&c, 0) == pattern(2 * RS));
}

#[test]
fn a_write_protected_tape_halts_with_internal_error_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let c = cartridge(dir.path(), "p", 64 << 20);
    let (m, mut d) = local::pipe(RS);
    // opened read-only: every write fails as a media error would
    let h = start(MoverMode::READ, drive(&c, false), ALL, Conn::Local(m));
    let _ = d.write_all(&pattern(RS));
    let end = h.thread.join().unwrap();
    match end {
        Event::Halted {
            reason, why, wrote, ..
        } => {
            assert_eq!(reason, MoverHaltReason::INTERNAL_ERROR);
            assert!(why.unwrap().contains("tape write failed"));
            assert!(!wrote);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_record_longer_than_the_record_size_halts_media_error_and_nothing_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    // written with records four times the mover's record size
    let c = cartridge(dir.path(), "big", 64 << 20);
    let data = pattern(8 * RS);
    {
        let mut v = Vtape::open(&c, true).unwrap();
        for rec in data.chunks(4 * RS) {
            v.write_record(rec).unwrap();
        }
        v.write_filemarks(1).unwrap();
        v.flush().unwrap();
    }
    let (m, mut d) = local::pipe(RS);
    let h = start(MoverMode::WRITE, drive(&c, false), ALL, Conn::Local(m));
    h.commands
        .send(Command::Read {
            offset: 0,
            length: INFINITE,
        })
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut d, &mut got);
        got
    });
    let end = h.thread.join().unwrap();
    let Event::Halted { reason, why, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(reason, MoverHaltReason::MEDIA_ERROR);
    let why = why.unwrap();
    assert!(
        why.contains(&format!("tape record of {} bytes", 4 * RS))
            && why.contains(&format!("mover record size {RS}")),
        "{why}"
    );
    drop(h.commands);
    // not one byte of the cut record reached the data connection
    assert!(reader.join().unwrap().is_empty());
}

/// The length of every record of the first file on a cartridge.
fn record_lens(path: &Path) -> Vec<usize> {
    let mut v = Vtape::open(path, false).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut lens = Vec::new();
    while let Ok((n, _)) = v.read_record(&mut buf) {
        lens.push(n);
    }
    lens
}

#[test]
fn a_tcp_backup_sent_in_odd_pieces_lands_in_whole_records_and_a_stall_does_not_hold_them() {
    use crate::dataconn::net::{cork, Gather};
    let dir = tempfile::tempdir().unwrap();
    let c = cartridge(dir.path(), "t", 64 << 20);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    let h = start(MoverMode::READ, drive(&c, true), ALL, Conn::Tcp(server));
    let data = pattern(40 * RS + 1234);
    // sent in pieces that never line up with records: small ones gathered, large ones direct
    let pieces = [1000, 70_000, 3, 5 * RS + 17, 1, 9000, 33];
    let (resume, resumed) = crossbeam_channel::bounded::<()>(0);
    let sender = {
        let data = data.clone();
        std::thread::spawn(move || {
            cork(&client, true).unwrap();
            let mut w = Gather::new(&client);
            let mut at = 0;
            for p in pieces {
                w.write_all(&data[at..at + p]).unwrap();
                at += p;
            }
            // DATA stalls here with a part record in flight
            w.flush().unwrap();
            resumed.recv().unwrap();
            w.write_all(&data[at..]).unwrap();
            w.flush().unwrap();
            cork(&client, false).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let before: usize = pieces.iter().sum();
    let whole = (before / RS) as u64;
    // every whole record sent before the stall reaches the tape while DATA waits
    let mut spins = 0;
    while h.progress.record_num.load(Ordering::Relaxed) < whole {
        spins += 1;
        assert!(spins < 2000, "records held while the producer stalls");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.progress.record_num.load(Ordering::Relaxed), whole);
    resume.send(()).unwrap();
    sender.join().unwrap();
    let end = h.thread.join().unwrap();
    assert!(matches!(
        end,
        Event::Halted {
            reason: MoverHaltReason::CONNECT_CLOSED,
            wrote: true,
            ..
        }
    ));
    let lens = record_lens(&c);
    assert_eq!(lens.len(), 41);
    assert!(lens[..40].iter().all(|&n| n == RS), "{lens:?}");
    assert_eq!(lens[40], 1234);
    assert!(tape_file(&c, 0) == data);
}
