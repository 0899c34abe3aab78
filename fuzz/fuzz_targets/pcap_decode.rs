//! Fuzz target for `ndmpd pcap`: pcap/pcapng parsing, TCP reassembly, NDMP record splitting
//! and decoding, and both output formats; reassembled streams must account for every byte.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ndmpd::capture::{self, Flow};
use ndmpd::pcap;

/// The port the fixtures (and `ndmpd pcap` by default) use for NDMP.
const PORT: u16 = 10000;

/// Chunks and gaps must tile the stream from offset 0: every byte delivered once or
/// declared missing, in order.
fn check_flow(f: &Flow) {
    let mut pos = 0u64;
    let mut gaps = f.gaps.iter().peekable();
    for c in &f.chunks {
        while let Some(g) = gaps.next_if(|g| g.offset == pos && pos < c.offset) {
            pos += g.missing_bytes;
        }
        assert_eq!(c.offset, pos, "chunk of packet {} out of place", c.packet);
        pos += c.data.len() as u64;
    }
    for g in gaps {
        assert_eq!(
            g.offset, pos,
            "gap after packet {} out of place",
            g.after_packet
        );
        pos += g.missing_bytes;
    }
}

fuzz_target!(|data: &[u8]| {
    // What `ndmpd pcap FILE` runs, both output formats included.
    let conv = pcap::decode_capture(data, PORT);
    if let Some(first) = conv.events.first() {
        let t0 = first.time;
        let _ = pcap::header_line();
        for e in &conv.events {
            let _ = pcap::format_line(e, t0);
            let _ = pcap::format_json(e, "fuzz.pcap").to_string();
        }
    }
    let _ = conv.failures();

    // The three ways to read the segments agree.
    let (segments, error) = capture::read_tcp_segments_partial(data);
    let shared = capture::read_tcp_segments_shared(&Bytes::copy_from_slice(data));
    let copied = capture::read_tcp_segments(data);
    match &error {
        Some(e) => {
            assert_eq!(shared.as_ref().err(), Some(e));
            assert_eq!(copied.as_ref().err(), Some(e));
        }
        None => {
            assert_eq!(shared.as_ref().ok(), Some(&segments));
            assert_eq!(copied.as_ref().ok(), Some(&segments));
        }
    }

    // Reassembly of every connection, not just NDMP's.
    for flow in capture::reassemble(&segments) {
        check_flow(&flow);
    }
});
