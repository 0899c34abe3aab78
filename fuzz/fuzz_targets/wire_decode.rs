//! Fuzz target over the whole receive path: record marking, header, every body decoder.
//! Whatever decodes must re-encode to bytes that decode to the same message.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ndmpd::wire::header::Message;
use ndmpd::wire::record::RecordCodec;
use tokio_util::codec::Decoder;

fn check(record: Bytes) {
    if let Ok(m) = Message::decode(record) {
        let again = Message::decode(m.to_bytes()).expect("re-encoded message must decode");
        assert_eq!(again, m);
    }
}

fuzz_target!(|data: &[u8]| {
    // the input as a stream of RPC records, as a server reads it
    let mut codec = RecordCodec::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(record)) = codec.decode(&mut buf) {
        check(record);
    }
    let _ = codec.decode_eof(&mut buf);
    // and as one bare record, so body decoders get inputs without framing noise
    check(Bytes::copy_from_slice(data));
});
