//! Hostile input against the wire layer: every case must end in a decode error (or a clean
//! partial read), with bounded memory and no panic. A counting allocator measures the memory.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use ndmpd::wire::header::{Body, Message, MessageError};
use ndmpd::wire::record::{RecordCodec, RecordError};
use ndmpd::wire::sample::Gen;
use ndmpd::wire::types::NdmpError;
use ndmpd::wire::xdr::XdrError;
use ndmpd::wire::{MessageCode, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead};

/// Tracks live and peak heap bytes of this test binary.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Serialises the tests that read PEAK, since tests run on several threads.
static MEASURE: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result and the most heap it held above the starting level.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let v = f();
    (v, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

fn request_record(code: u32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    for w in [1u32, 0x6000_0000, 0, code, 0, 0] {
        b.put_u32(w);
    }
    b.put_slice(body);
    b.freeze()
}

fn reply_record(code: u32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    for w in [7u32, 0x6000_0000, 1, code, 3, 0] {
        b.put_u32(w);
    }
    b.put_slice(body);
    b.freeze()
}

fn body_error(r: Result<Message, MessageError>) -> (u32, XdrError) {
    match r {
        Err(MessageError::Body { header, err }) => (header.sequence, err),
        other => panic!("expected a body decode error, got {other:?}"),
    }
}

#[test]
fn array_count_0x7fffffff_fails_with_bounded_memory() {
    let _g = MEASURE.lock().unwrap();
    // CONFIG_GET_FS_INFO reply: error NO_ERR, then fs_info<> claiming 2^31-1 entries
    let rec = reply_record(0x105, &[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
    let (r, peak) = peak_during(|| Message::decode(rec));
    let (_, err) = body_error(r);
    assert!(
        matches!(
            err,
            XdrError::ArrayTooLong {
                count: 0x7fff_ffff,
                ..
            }
        ),
        "{err}"
    );
    assert!(peak < 64 << 10, "decode held {peak} bytes");

    // the same count under the element limit still cannot pass the bytes-present check
    let mut body = vec![0, 0, 0, 0, 0, 0x0f, 0xff, 0xff];
    body.extend_from_slice(&[0; 64]);
    let (r, peak) = peak_during(|| Message::decode(reply_record(0x105, &body)));
    assert!(matches!(body_error(r).1, XdrError::ArrayOverrun { .. }));
    assert!(peak < 64 << 10, "decode held {peak} bytes");
}

#[test]
fn truncated_md5_digest_fails_fast() {
    // the 11-byte CONNECT_CLIENT_AUTH that hangs xdr-codec: MD5, empty id, 3 digest bytes
    let rec = request_record(0x901, &[0, 0, 0, 2, 0, 0, 0, 0, 1, 2, 3]);
    let (seq, err) = body_error(Message::decode(rec));
    assert_eq!(seq, 1, "the header survives so the sender can be answered");
    assert!(
        matches!(
            err,
            XdrError::Truncated {
                need: 16,
                have: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn string_length_0xfffffff0_fails_with_bounded_memory() {
    let _g = MEASURE.lock().unwrap();
    // TAPE_OPEN with a device name of 0xfffffff0 bytes and a few bytes present
    let rec = request_record(0x300, &[0xff, 0xff, 0xff, 0xf0, b'/', b'd', b'e', b'v']);
    let (r, peak) = peak_during(|| Message::decode(rec));
    let (_, err) = body_error(r);
    assert!(matches!(err, XdrError::Truncated { have: 4, .. }), "{err}");
    assert!(peak < 64 << 10, "decode held {peak} bytes");
}

#[test]
fn fragment_header_announcing_2gib_is_rejected_before_buffering() {
    let _g = MEASURE.lock().unwrap();
    let mut codec = RecordCodec::default();
    // last-fragment bit and a length of 2^31 - 1
    let mut buf = BytesMut::from(&b"\xff\xff\xff\xffdata"[..]);
    let (r, peak) = peak_during(|| codec.decode(&mut buf));
    assert!(
        matches!(
            r,
            Err(RecordError::TooLarge {
                size: 0x7fff_ffff,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(peak < 64 << 10, "decode held {peak} bytes");
}

#[test]
fn random_bytes_never_panic() {
    let _g = MEASURE.lock().unwrap();
    for seed in 0..64u64 {
        let mut g = Gen::new(seed);
        let noise = Bytes::from(g.bytes(64 << 10));
        let (_, peak) = peak_during(|| {
            // as a stream of records
            let mut codec = RecordCodec::default();
            let mut buf = BytesMut::from(&noise[..]);
            while let Ok(Some(rec)) = codec.decode(&mut buf) {
                let _ = Message::decode(rec);
            }
            // as one record whose header claims each known code in turn
            for code in Request::CODES {
                let mut rec = BytesMut::from(&request_record(code.0, &[])[..]);
                rec.extend_from_slice(&noise[..(seed as usize * 997) % noise.len()]);
                let _ = Message::decode(rec.freeze());
                let mut rec = BytesMut::from(&reply_record(code.0, &[])[..]);
                rec.extend_from_slice(&noise[..(seed as usize * 499) % noise.len()]);
                let _ = Message::decode(rec.freeze());
            }
        });
        assert!(peak < 8 << 20, "seed {seed}: decode held {peak} bytes");
    }
}

#[test]
fn unknown_code_keeps_its_sequence() {
    let rec = request_record(0x2050_0100, &[1, 2, 3, 4]);
    let m = Message::decode(rec).unwrap();
    assert_eq!(m.header.message_code, MessageCode(0x2050_0100));
    assert!(matches!(m.body, Body::Request(Request::Unknown { .. })));
    let reply = Message::header_error(1, 0, &m.header, NdmpError::NOT_SUPPORTED_ERR);
    assert_eq!(reply.header.reply_sequence, 1);
    assert_eq!(
        reply.to_bytes().len(),
        24,
        "header-error replies carry no body"
    );
}

#[test]
fn bad_message_type_drops_the_header() {
    let mut rec = BytesMut::from(&request_record(0x900, &[0, 0, 0, 4])[..]);
    rec[11] = 7;
    assert!(matches!(
        Message::decode(rec.freeze()),
        Err(MessageError::MessageType(7))
    ));
    assert!(matches!(
        Message::decode(Bytes::from_static(&[0; 23])),
        Err(MessageError::Header(_))
    ));
}

#[test]
fn trailing_bytes_are_a_decode_error() {
    let rec = request_record(0x900, &[0, 0, 0, 4, 0, 0, 0, 0]);
    assert!(matches!(
        body_error(Message::decode(rec)).1,
        XdrError::TrailingBytes { count: 4 }
    ));
}

#[tokio::test]
async fn valid_messages_split_into_one_byte_reads() {
    // a stream of real messages, one of them big enough for several fragments
    let mut g = Gen::new(42);
    let mut msgs = Vec::new();
    for (i, code) in Request::CODES.iter().enumerate() {
        let body = Request::sample(*code, &mut g).unwrap();
        msgs.push(Message::request(i as u32 + 1, 0x6000_0000, body));
    }
    let big = Request::TapeWrite(ndmpd::wire::messages::TapeWriteRequest {
        data_out: ndmpd::wire::Opaque(Bytes::from(g.bytes(10_000))),
    });
    msgs.push(Message::request(999, 0, big));
    let mut enc = RecordCodec::default().with_max_fragment(3996);
    let mut wire = BytesMut::new();
    for m in &msgs {
        tokio_util::codec::Encoder::encode(&mut enc, m, &mut wire).unwrap();
    }
    let (mut tx, rx) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        for b in wire.iter() {
            tx.write_all(&[*b]).await.unwrap();
        }
    });
    let mut frames = FramedRead::new(rx, RecordCodec::default());
    let mut got = Vec::new();
    while let Some(rec) = frames.next().await {
        got.push(Message::decode(rec.unwrap()).unwrap());
    }
    writer.await.unwrap();
    assert_eq!(got, msgs);
}

#[tokio::test]
async fn truncated_stream_reports_an_error() {
    let m = Message::request(1, 0, Request::ConnectOpen(Default::default()));
    let mut wire = BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut RecordCodec::default(), &m, &mut wire).unwrap();
    wire.truncate(wire.len() - 2);
    let mut frames = FramedRead::new(&wire[..], RecordCodec::default());
    assert!(matches!(
        frames.next().await,
        Some(Err(RecordError::Truncated { .. }))
    ));
}
