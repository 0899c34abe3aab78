//! Reads pcap and pcapng capture files and reassembles the TCP streams inside them, for
//! `ndmpd pcap`, which decodes NDMP conversations from captures; every input byte is untrusted.

// Pipeline: file format (pcap, pcapng) -> frames -> link/IP/TCP headers (packet) ->
// TcpSegments -> per-direction byte streams (reassembly). No length read from a file is
// trusted: each is checked against the bytes present (and MAX_CAPLEN) before use, and
// payloads are slices of the input, so nothing is ever allocated from a declared length.

mod packet;
mod pcap;
mod pcapng;
mod reassembly;
mod types;

use bytes::Bytes;

pub use reassembly::{reassemble, Flow, Gap, StreamChunk};
pub use types::{CaptureError, TcpSegment, Timestamp, MAX_CAPLEN};
use types::{Endian, Frame};

/// Decodes every TCP segment in a pcap or pcapng file, copying each payload out of `file`.
///
/// Non-TCP packets and packets that do not parse as IP/TCP are skipped; a malformed file
/// structure is an error that names the offset (and packet) where it was found.
pub fn read_tcp_segments(file: &[u8]) -> Result<Vec<TcpSegment>, CaptureError> {
    into_result(decode(file, None))
}

/// Like [`read_tcp_segments`], but payloads are zero-copy slices of `file`.
pub fn read_tcp_segments_shared(file: &Bytes) -> Result<Vec<TcpSegment>, CaptureError> {
    into_result(decode(file, Some(file)))
}

/// Decodes as much as possible: the segments found before the first structural error, and
/// that error if there was one. A capture cut short (tcpdump killed mid-write) still yields
/// every complete packet this way.
pub fn read_tcp_segments_partial(file: &[u8]) -> (Vec<TcpSegment>, Option<CaptureError>) {
    decode(file, None)
}

fn into_result(
    (segments, error): (Vec<TcpSegment>, Option<CaptureError>),
) -> Result<Vec<TcpSegment>, CaptureError> {
    match error {
        Some(e) => Err(e),
        None => Ok(segments),
    }
}

fn decode(file: &[u8], shared: Option<&Bytes>) -> (Vec<TcpSegment>, Option<CaptureError>) {
    let mut segments = Vec::new();
    let mut sink = |frame: Frame<'_>| {
        if let Some(seg) = segment_from_frame(&frame, shared) {
            segments.push(seg);
        }
    };
    let magic = (Endian::Little.u32(file, 0), Endian::Big.u32(file, 0));
    let result = match magic {
        _ if file.is_empty() => Err(CaptureError::Empty),
        (Some(magic_le), Some(magic_be)) => {
            if let Some((endian, nanos)) = pcap::detect(magic_le, magic_be) {
                pcap::read(file, endian, nanos, &mut sink)
            } else if magic_le == pcapng::SHB_TYPE {
                pcapng::read(file, &mut sink)
            } else {
                Err(CaptureError::UnknownMagic { magic: magic_be })
            }
        }
        _ => Err(CaptureError::ShortHeader {
            what: "file magic number",
            offset: 0,
            needed: 4,
            available: file.len() as u64,
        }),
    };
    (segments, result.err())
}

fn segment_from_frame(frame: &Frame<'_>, shared: Option<&Bytes>) -> Option<TcpSegment> {
    let parsed = packet::parse(frame.linktype, frame.data, frame.orig_len)?;
    let bytes = frame.data.get(parsed.payload.clone())?;
    let payload = match shared {
        // `bytes` was cut from the very buffer `owner` holds, which is what slice_ref needs.
        Some(owner) => owner.slice_ref(bytes),
        None => Bytes::copy_from_slice(bytes),
    };
    Some(TcpSegment {
        packet: frame.number,
        time: frame.time,
        src: parsed.src,
        dst: parsed.dst,
        seq: parsed.seq,
        syn: parsed.syn,
        fin: parsed.fin,
        rst: parsed.rst,
        truncated: (payload.len() as u64) < u64::from(parsed.payload_len),
        payload_len: parsed.payload_len,
        payload,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders for synthetic frames and capture files, shared by the tests of every submodule.

    /// The EtherType of IPv4.
    pub const ETH_IPV4: u16 = 0x0800;
    /// The EtherType of IPv6.
    pub const ETH_IPV6: u16 = 0x86dd;
    /// TCP flag bit: the sender is done.
    pub const FIN: u8 = 0x01;
    /// TCP flag bit: opens a connection.
    pub const SYN: u8 = 0x02;
    /// TCP flag bit: resets a connection.
    pub const RST: u8 = 0x04;
    /// TCP flag bit: the acknowledgment field is valid.
    pub const ACK: u8 = 0x10;

    /// A TCP header (20 bytes plus `options`, which must be a multiple of 4) and payload.
    pub fn tcp(
        sport: u16,
        dport: u16,
        seq: u32,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&0x1000u32.to_be_bytes()); // ack
        v.push((((20 + options.len()) / 4) << 4) as u8);
        v.push(flags);
        v.extend_from_slice(&65535u16.to_be_bytes()); // window
        v.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        v.extend_from_slice(options);
        v.extend_from_slice(payload);
        v
    }

    /// An IPv4 packet without options carrying `l4` as protocol `proto`; `frag` is the
    /// flags-and-offset field, so tests can build fragments. The header checksum is right.
    pub fn ipv4_proto(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, 0];
        v.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0x12, 0x34]);
        v.extend_from_slice(&frag.to_be_bytes());
        v.extend_from_slice(&[64, proto, 0, 0]);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        let sum = checksum(&v);
        v[10..12].copy_from_slice(&sum.to_be_bytes());
        v.extend_from_slice(l4);
        v
    }

    /// A TCP packet over IPv4 with Don't Fragment set.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        ipv4_proto(src, dst, 6, 0x4000, l4)
    }

    fn checksum(b: &[u8]) -> u16 {
        let mut s: u32 = b
            .chunks(2)
            .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// An IPv6 packet; `ext` is a chain of (header type, body) extension headers placed
    /// before the TCP segment, each body padded to a multiple of 8 bytes with its length.
    pub fn ipv6_ext(src: [u8; 16], dst: [u8; 16], ext: &[(u8, Vec<u8>)], l4: &[u8]) -> Vec<u8> {
        let mut chain = Vec::new();
        for (i, (_, body)) in ext.iter().enumerate() {
            let next = ext.get(i + 1).map_or(6, |e| e.0);
            let mut h = vec![next, 0];
            h.extend_from_slice(body);
            while h.len() % 8 != 0 {
                h.push(0);
            }
            h[1] = (h.len() / 8 - 1) as u8;
            chain.extend_from_slice(&h);
        }
        let first = ext.first().map_or(6, |e| e.0);
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
        v.push(first);
        v.push(64);
        v.extend_from_slice(&src);
        v.extend_from_slice(&dst);
        v.extend_from_slice(&chain);
        v.extend_from_slice(l4);
        v
    }

    /// A TCP packet over IPv6 without extension headers.
    pub fn ipv6(src: [u8; 16], dst: [u8; 16], l4: &[u8]) -> Vec<u8> {
        ipv6_ext(src, dst, &[], l4)
    }

    /// An Ethernet frame with optional VLAN tags (TPID, TCI) and padding to the 60-byte minimum.
    pub fn ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for (tpid, tci) in tags {
            v.extend_from_slice(&tpid.to_be_bytes());
            v.extend_from_slice(&tci.to_be_bytes());
        }
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(payload);
        v.resize(v.len().max(60), 0);
        v
    }

    /// A Linux cooked capture (SLL) frame: the 16-byte header, which ends with the EtherType
    /// `proto`, then `payload`.
    pub fn sll(proto: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0];
        v.extend_from_slice(&proto.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A Linux cooked capture v2 (SLL2) frame: the 20-byte header, which puts `proto` first.
    pub fn sll2(proto: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = proto.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// A BSD loopback (DLT_NULL) frame: address family `af` in the capturing host's byte
    /// order, which `big` picks, since a reader must guess it.
    pub fn null_header(af: u32, big: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = if big {
            af.to_be_bytes()
        } else {
            af.to_le_bytes()
        }
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// One packet record of a classic pcap file.
    pub struct Record {
        /// Seconds of the timestamp.
        pub secs: u32,
        /// The fraction: microseconds, or nanoseconds in a nanosecond file.
        pub frac: u32,
        /// The captured bytes.
        pub data: Vec<u8>,
        /// The packet's length on the wire; more than `data` when the capture cut it.
        pub orig_len: u32,
    }

    /// A record captured whole.
    pub fn rec(secs: u32, frac: u32, data: Vec<u8>) -> Record {
        let orig_len = data.len() as u32;
        Record {
            secs,
            frac,
            data,
            orig_len,
        }
    }

    fn put32(v: &mut Vec<u8>, big: bool, x: u32) {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        });
    }

    fn put16(v: &mut Vec<u8>, big: bool, x: u16) {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        });
    }

    /// A classic pcap file (version 2.4, snap length 262144) in the byte order `big` picks,
    /// with the microsecond magic or, if `nanos`, the nanosecond one.
    pub fn pcap_file(big: bool, nanos: bool, linktype: u32, records: &[Record]) -> Vec<u8> {
        let mut v = Vec::new();
        put32(&mut v, big, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
        put16(&mut v, big, 2);
        put16(&mut v, big, 4);
        put32(&mut v, big, 0);
        put32(&mut v, big, 0);
        put32(&mut v, big, 262_144);
        put32(&mut v, big, linktype);
        for r in records {
            put32(&mut v, big, r.secs);
            put32(&mut v, big, r.frac);
            put32(&mut v, big, r.data.len() as u32);
            put32(&mut v, big, r.orig_len);
            v.extend_from_slice(&r.data);
        }
        v
    }

    /// A pcapng writer; each call appends one block in the current section's byte order.
    pub struct Ng {
        /// The file so far.
        pub buf: Vec<u8>,
        big: bool,
    }

    impl Ng {
        /// An empty file, little-endian until the first [`Ng::shb`] says otherwise.
        pub fn new() -> Ng {
            Ng {
                buf: Vec::new(),
                big: false,
            }
        }

        /// Appends a block of any type: `body` padded to 4 bytes, between the two length
        /// fields, so tests can write blocks the reader must skip.
        pub fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
            let mut body = body.to_vec();
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            let len = 12 + body.len() as u32;
            let big = self.big;
            put32(&mut self.buf, big, block_type);
            put32(&mut self.buf, big, len);
            self.buf.extend_from_slice(&body);
            put32(&mut self.buf, big, len);
            self
        }

        /// A Section Header Block (version 1.0, section length unknown); the blocks after it
        /// use its byte order.
        pub fn shb(&mut self, big: bool) -> &mut Ng {
            self.big = big;
            let mut b = Vec::new();
            put32(&mut b, big, 0x1a2b_3c4d);
            put16(&mut b, big, 1);
            put16(&mut b, big, 0);
            b.extend_from_slice(&[0xff; 8]);
            self.block(0x0a0d_0d0a, &b)
        }

        /// An Interface Description Block; `options` are (code, value) pairs.
        pub fn idb(&mut self, linktype: u16, snaplen: u32, options: &[(u16, Vec<u8>)]) -> &mut Ng {
            let big = self.big;
            let mut b = Vec::new();
            put16(&mut b, big, linktype);
            put16(&mut b, big, 0);
            put32(&mut b, big, snaplen);
            for (code, value) in options {
                put16(&mut b, big, *code);
                put16(&mut b, big, value.len() as u16);
                b.extend_from_slice(value);
                while b.len() % 4 != 0 {
                    b.push(0);
                }
            }
            if !options.is_empty() {
                b.extend_from_slice(&[0, 0, 0, 0]);
            }
            self.block(1, &b)
        }

        /// An Enhanced Packet Block: `ts` is in the interface's time units, split into its
        /// high and low words as the format stores it.
        pub fn epb(&mut self, iface: u32, ts: u64, data: &[u8], orig_len: u32) -> &mut Ng {
            let big = self.big;
            let mut b = Vec::new();
            put32(&mut b, big, iface);
            put32(&mut b, big, (ts >> 32) as u32);
            put32(&mut b, big, ts as u32);
            put32(&mut b, big, data.len() as u32);
            put32(&mut b, big, orig_len);
            b.extend_from_slice(data);
            self.block(6, &b)
        }

        /// The obsolete Packet Block (type 2), captured whole, with no drop count.
        pub fn pb(&mut self, iface: u16, ts: u64, data: &[u8]) -> &mut Ng {
            let big = self.big;
            let mut b = Vec::new();
            put16(&mut b, big, iface);
            put16(&mut b, big, 0);
            put32(&mut b, big, (ts >> 32) as u32);
            put32(&mut b, big, ts as u32);
            put32(&mut b, big, data.len() as u32);
            put32(&mut b, big, data.len() as u32);
            b.extend_from_slice(data);
            self.block(2, &b)
        }

        /// A Simple Packet Block: no interface, no timestamp, captured whole.
        pub fn spb(&mut self, data: &[u8]) -> &mut Ng {
            let big = self.big;
            let mut b = Vec::new();
            put32(&mut b, big, data.len() as u32);
            b.extend_from_slice(data);
            self.block(3, &b)
        }
    }

    /// The client of the test packets: 192.0.2.1, from an address block kept for examples.
    pub const A4: [u8; 4] = [192, 0, 2, 1];
    /// The server of the test packets: 198.51.100.7, from another example block.
    pub const B4: [u8; 4] = [198, 51, 100, 7];
    /// The client over IPv6: 2001:db8::1, the documentation prefix.
    pub const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    /// The server over IPv6: 2001:db8::2.
    pub const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A TCP/IPv4 packet from A4:40000 to B4:10000 (the NDMP port).
    pub fn v4_packet(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        ipv4(A4, B4, &tcp(40000, 10000, seq, flags, &[], payload))
    }

    /// The same packet as [`v4_packet`], from A6 to B6.
    pub fn v6_packet(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        ipv6(A6, B6, &tcp(40000, 10000, seq, flags, &[], payload))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_and_tiny_files() {
        assert_eq!(read_tcp_segments(&[]), Err(CaptureError::Empty));
        assert_eq!(
            read_tcp_segments(&[0xd4, 0xc3]),
            Err(CaptureError::ShortHeader {
                what: "file magic number",
                offset: 0,
                needed: 4,
                available: 2
            })
        );
        let err = read_tcp_segments(b"GIF89a..").unwrap_err();
        assert_eq!(err, CaptureError::UnknownMagic { magic: 0x4749_4638 });
        assert_eq!(
            err.to_string(),
            "not a pcap or pcapng file: unknown magic number 0x47494638 at offset 0"
        );
    }

    #[test]
    fn shared_reader_slices_the_input() {
        let file = Bytes::from(pcap_file(
            false,
            false,
            101,
            &[rec(1, 0, v4_packet(1, ACK, b"zero-copy"))],
        ));
        let segs = read_tcp_segments_shared(&file).unwrap();
        assert_eq!(&segs[0].payload[..], b"zero-copy");
        let inside = file.as_ptr_range();
        assert!(inside.contains(&segs[0].payload.as_ptr()));
        assert_eq!(Ok(segs), read_tcp_segments(&file));
    }

    #[test]
    fn pcap_and_pcapng_round_trip_through_reassembly() {
        let frames = [
            (
                1,
                1000u32,
                ethernet(&[], ETH_IPV4, &v4_packet(5000, SYN, b"")),
            ),
            (
                2,
                2000,
                ethernet(&[], ETH_IPV4, &v4_packet(5001, ACK, b"GET")),
            ),
            (
                3,
                3000,
                ethernet(&[], ETH_IPV4, &v4_packet(5007, ACK, b"DE")),
            ),
            (
                4,
                4000,
                ethernet(&[], ETH_IPV4, &v4_packet(5004, ACK, b"ABC")),
            ),
            (
                5,
                5000,
                ethernet(&[], ETH_IPV4, &v4_packet(5001, ACK | FIN, b"GETABCDE")),
            ),
        ];
        let pcap = pcap_file(
            true,
            false,
            1,
            &frames
                .iter()
                .map(|(s, f, d)| rec(*s, *f, d.clone()))
                .collect::<Vec<_>>(),
        );
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 0, &[]);
        for (s, f, d) in &frames {
            ng.epb(
                0,
                u64::from(*s) * 1_000_000 + u64::from(*f),
                d,
                d.len() as u32,
            );
        }
        let a = read_tcp_segments(&pcap).unwrap();
        let b = read_tcp_segments(&ng.buf).unwrap();
        assert_eq!(a, b);
        let flows = reassemble(&a);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].data(), b"GETABCDE");
        assert_eq!(
            flows[0].chunks.iter().map(|c| c.packet).collect::<Vec<_>>(),
            vec![2, 4, 3]
        );
        assert_eq!(
            flows[0].chunks[1].time,
            Timestamp {
                secs: 4,
                nanos: 4_000_000
            }
        );
    }

    /// A pcap and a pcapng file exercising most code paths, as seeds for mutation.
    fn seed_files() -> Vec<Vec<u8>> {
        let frames: Vec<Record> = vec![
            rec(
                1,
                1,
                ethernet(&[(0x8100, 3)], ETH_IPV4, &v4_packet(1, SYN, b"")),
            ),
            rec(
                1,
                2,
                ethernet(&[], ETH_IPV4, &v4_packet(2, ACK, b"0123456789")),
            ),
            rec(
                1,
                3,
                ethernet(
                    &[],
                    ETH_IPV6,
                    &ipv6_ext(
                        A6,
                        B6,
                        &[(0, vec![0; 6])],
                        &tcp(1, 2, 3, ACK, &[1, 1, 1, 1], b"six"),
                    ),
                ),
            ),
            rec(
                1,
                4,
                ethernet(&[], ETH_IPV4, &v4_packet(12, ACK | FIN, b"end")),
            ),
        ];
        let mut ng = Ng::new();
        ng.shb(false)
            .idb(1, 0, &[(9, vec![9]), (14, 7u64.to_le_bytes().to_vec())])
            .epb(0, 5, &frames[1].data, 70)
            .block(5, &[0; 16])
            .spb(&frames[2].data)
            .shb(true)
            .idb(276, 100, &[(9, vec![0x85])])
            .pb(0, 9, &sll2(ETH_IPV4, &v4_packet(3, ACK, b"sll2")))
            .epb(0, 10, &sll2(ETH_IPV6, &v6_packet(4, ACK, b"v6")), 100);
        vec![
            pcap_file(false, false, 1, &frames),
            pcap_file(true, true, 1, &frames),
            ng.buf.clone(),
        ]
    }

    /// Runs every entry point; the only requirement is that nothing panics or hangs.
    fn exercise(file: &[u8]) {
        let strict = read_tcp_segments(file);
        let (partial, err) = read_tcp_segments_partial(file);
        assert_eq!(strict.is_ok(), err.is_none());
        if let Some(e) = err {
            assert!(!e.to_string().is_empty());
        }
        let shared = read_tcp_segments_shared(&Bytes::copy_from_slice(file));
        assert_eq!(shared.as_ref().ok(), strict.as_ref().ok());
        for s in &partial {
            assert!(s.payload.len() <= MAX_CAPLEN as usize);
        }
        let flows = reassemble(&partial);
        assert!(flows.len() <= partial.len());
    }

    #[test]
    fn seeds_are_valid() {
        let seeds = seed_files();
        assert_eq!(read_tcp_segments(&seeds[0]).unwrap().len(), 4);
        // The same fraction values, read as nanoseconds instead of microseconds.
        let as_nanos: Vec<_> = read_tcp_segments(&seeds[0])
            .unwrap()
            .into_iter()
            .map(|s| TcpSegment {
                time: Timestamp {
                    nanos: s.time.nanos / 1000,
                    ..s.time
                },
                ..s
            })
            .collect();
        assert_eq!(read_tcp_segments(&seeds[1]).unwrap(), as_nanos);
        let ng = read_tcp_segments(&seeds[2]).unwrap();
        let summary: Vec<_> = ng
            .iter()
            .map(|s| (s.packet, s.time, s.payload.to_vec(), s.truncated))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    1,
                    Timestamp { secs: 7, nanos: 5 },
                    b"0123456789".to_vec(),
                    false
                ),
                (2, Timestamp::default(), b"six".to_vec(), false),
                (
                    3,
                    Timestamp {
                        secs: 0,
                        nanos: 281_250_000
                    },
                    b"sll2".to_vec(),
                    false
                ),
                (
                    4,
                    Timestamp {
                        secs: 0,
                        nanos: 312_500_000
                    },
                    b"v6".to_vec(),
                    false
                ),
            ]
        );
        for seed in &seeds {
            exercise(seed);
        }
    }

    #[test]
    fn every_truncation_of_the_seeds() {
        for seed in seed_files() {
            for len in 0..seed.len() {
                exercise(&seed[..len]);
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Insert(usize, Vec<u8>),
        Remove(usize, usize),
        Word(usize, u32),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            (
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 1..12)
            )
                .prop_map(|(i, v)| Mutation::Insert(i, v)),
            (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Remove(i, n)),
            (
                any::<usize>(),
                prop_oneof![
                    Just(0u32),
                    Just(0xffff_fff0),
                    Just(0x7fff_ffff),
                    Just(12),
                    any::<u32>()
                ]
            )
                .prop_map(|(i, w)| Mutation::Word(i, w)),
        ]
    }

    fn apply(file: &mut Vec<u8>, m: &Mutation) {
        if file.is_empty() {
            return;
        }
        match m {
            Mutation::Set(i, b) => {
                let i = i % file.len();
                file[i] = *b;
            }
            Mutation::Insert(i, v) => {
                let i = i % file.len();
                file.splice(i..i, v.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = i % file.len();
                let end = (i + n).min(file.len());
                file.drain(i..end);
            }
            Mutation::Word(i, w) => {
                // Aligned to four bytes, so it lands on length and caplen fields.
                let i = (i % file.len()) & !3;
                for (k, b) in w.to_le_bytes().iter().enumerate() {
                    if let Some(x) = file.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(
            magic in prop_oneof![Just(vec![]), Just(vec![0xd4, 0xc3, 0xb2, 0xa1]), Just(vec![0xa1, 0xb2, 0x3c, 0x4d]), Just(vec![0x0a, 0x0d, 0x0d, 0x0a])],
            body in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut file = magic;
            file.extend_from_slice(&body);
            exercise(&file);
        }

        #[test]
        fn mutated_files_never_panic(
            which in 0usize..3,
            mutations in proptest::collection::vec(mutation(), 1..6),
        ) {
            let mut file = seed_files().swap_remove(which);
            for m in &mutations {
                apply(&mut file, m);
            }
            exercise(&file);
        }
    }

    /// Captures a real TCP conversation over loopback with tcpdump and checks that the bytes
    /// read back from the pcap file (and from its pcapng conversion by editcap, when
    /// installed) are exactly the bytes that were sent. Skipped, with a note on stderr, where
    /// tcpdump is missing or may not capture (it needs root or CAP_NET_RAW).
    #[test]
    fn real_loopback_capture_matches_what_was_sent() {
        use std::process::Command;
        if Command::new("tcpdump").arg("--version").output().is_err() {
            eprintln!("skipped: tcpdump is not installed");
            return;
        }
        let configs: [&[&str]; 2] = [
            &["-i", "lo", "--immediate-mode"],
            // Immediate mode on "any" dropped packets in trials here; batched delivery did not.
            &[
                "-i",
                "any",
                "-y",
                "LINUX_SLL2",
                "--time-stamp-precision=nano",
            ],
        ];
        for args in configs {
            match real_capture::run(args) {
                Ok(()) => {}
                Err(real_capture::Skip(why)) => {
                    eprintln!("skipped capture with {args:?}: {why}");
                    return;
                }
            }
        }
    }

    mod real_capture {
        use super::super::*;
        use std::io::{BufRead, BufReader, Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::path::Path;
        use std::process::{Child, Command, Stdio};
        use std::sync::mpsc::{self, Receiver};
        use std::time::{Duration, Instant};

        /// Why tcpdump could not capture here (no permission, no such interface): the test
        /// notes it and passes.
        pub struct Skip(pub String);

        struct Tcpdump(Child);

        impl Tcpdump {
            /// SIGINT lets tcpdump flush and close the file and print its drop count;
            /// SIGKILL is the fallback.
            fn stop(&mut self) {
                let pid = self.0.id().to_string();
                let interrupted = Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .is_ok_and(|s| s.success());
                let deadline = Instant::now() + Duration::from_secs(5);
                while interrupted && Instant::now() < deadline {
                    if let Ok(Some(_)) = self.0.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }

        impl Drop for Tcpdump {
            fn drop(&mut self) {
                if let Ok(None) = self.0.try_wait() {
                    self.stop();
                }
            }
        }

        fn pattern(len: u32, mul: u32) -> Vec<u8> {
            (0..len)
                .map(|i| (i.wrapping_mul(mul) % 251) as u8)
                .collect()
        }

        fn flows_of(file: &[u8], port: u16) -> (Vec<TcpSegment>, Vec<Flow>) {
            let (segs, _) = read_tcp_segments_partial(file);
            let segs: Vec<_> = segs
                .into_iter()
                .filter(|s| s.src.port() == port || s.dst.port() == port)
                .collect();
            let flows = reassemble(&segs);
            (segs, flows)
        }

        /// Every delivered byte must be the byte sent at that offset. If the kernel dropped
        /// nothing, the stream must also be complete; otherwise the gaps must account for
        /// exactly the missing bytes.
        fn check_flow(flow: &Flow, sent: &[u8], lossless: bool) {
            for c in &flow.chunks {
                let at = c.offset as usize;
                assert!(
                    sent.get(at..at + c.data.len()) == Some(&c.data[..]),
                    "packet {} at stream offset {at} carries bytes that were not sent there",
                    c.packet
                );
            }
            let gap_bytes: u64 = flow.gaps.iter().map(|g| g.missing_bytes).sum();
            let delivered = flow.chunks.iter().map(|c| c.data.len() as u64).sum::<u64>();
            if lossless || flow.fin {
                assert_eq!(delivered + gap_bytes, sent.len() as u64, "{:?}", flow.gaps);
            }
            if lossless {
                assert!(flow.gaps.is_empty(), "{:?}", flow.gaps);
                assert!(flow.syn && flow.fin);
            }
        }

        fn check(flows: &[Flow], port: u16, request: &[u8], reply: &[u8], lossless: bool) {
            assert_eq!(flows.len(), 2, "one flow per direction");
            for flow in flows {
                let sent = if flow.dst.port() == port {
                    request
                } else {
                    reply
                };
                check_flow(flow, sent, lossless);
            }
        }

        /// tcpdump's closing report, e.g. "3 packets dropped by kernel".
        fn dropped(stderr: &Receiver<String>) -> u64 {
            let mut dropped = 0;
            while let Ok(line) = stderr.recv_timeout(Duration::from_secs(2)) {
                if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                    dropped += n.trim().parse::<u64>().unwrap_or(1);
                }
            }
            dropped
        }

        /// Captures a loopback TCP exchange with tcpdump (`args` added to its command line)
        /// and checks that the decoder reassembles both directions, from the pcap file and,
        /// when editcap is there, from its pcapng conversion.
        pub fn run(args: &[&str]) -> Result<(), Skip> {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Skip(e.to_string()))?;
            let port = listener
                .local_addr()
                .map_err(|e| Skip(e.to_string()))?
                .port();
            let dir = std::env::temp_dir();
            let pcap_path = dir.join(format!("ndmpd-capture-{}-{port}.pcap", std::process::id()));
            let ng_path = pcap_path.with_extension("pcapng");

            let mut child = Command::new("tcpdump")
                .args(args)
                .args(["-s", "0", "-B", "16384", "-U", "-n", "-w"])
                .arg(&pcap_path)
                .arg(format!("tcp port {port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Skip(e.to_string()))?;
            let stderr = child.stderr.take();
            let mut tcpdump = Tcpdump(child);
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                if let Some(stderr) = stderr {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let _ = tx.send(line);
                    }
                }
            });
            let mut said = Vec::new();
            loop {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(line) if line.contains("listening on") => break,
                    Ok(line) => said.push(line),
                    Err(_) => {
                        return Err(Skip(format!("tcpdump did not start: {}", said.join(" / "))))
                    }
                }
            }

            let request = pattern(70_000, 7);
            let reply = pattern(3_000, 13);
            let server = std::thread::spawn({
                let reply = reply.clone();
                move || {
                    let (mut s, _) = listener.accept().unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).unwrap();
                    s.write_all(&reply).unwrap();
                    got
                }
            });
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            for part in request.chunks(1500) {
                c.write_all(part).unwrap();
            }
            c.shutdown(Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            drop(c);
            assert!(server.join().unwrap() == request && back == reply);

            // Packets reach tcpdump in batches: wait until both FINs are in the file.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let file = std::fs::read(&pcap_path).unwrap_or_default();
                let (_, flows) = flows_of(&file, port);
                if flows.len() == 2 && flows.iter().all(|f| f.fin) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            tcpdump.stop();
            let lossless = dropped(&rx) == 0;

            let file = std::fs::read(&pcap_path).unwrap();
            let strict = read_tcp_segments(&file).unwrap();
            let (segs, flows) = flows_of(&file, port);
            assert_eq!(strict.len(), segs.len());
            check(&flows, port, &request, &reply, lossless);
            eprintln!(
                "tcpdump {args:?}: {} segments, {} bytes reassembled, lossless: {lossless}",
                segs.len(),
                flows.iter().map(|f| f.data().len()).sum::<usize>()
            );

            if editcap(&pcap_path, &ng_path) {
                let ng = std::fs::read(&ng_path).unwrap();
                let _ = std::fs::remove_file(&ng_path);
                let (ng_segs, ng_flows) = flows_of(&ng, port);
                assert!(
                    ng_segs == segs,
                    "the pcapng conversion must decode identically"
                );
                check(&ng_flows, port, &request, &reply, lossless);
            }
            let _ = std::fs::remove_file(&pcap_path);
            Ok(())
        }

        fn editcap(pcap_path: &Path, ng_path: &Path) -> bool {
            let converted = Command::new("editcap")
                .args(["-F", "pcapng"])
                .arg(pcap_path)
                .arg(ng_path)
                .status()
                .is_ok_and(|s| s.success());
            if !converted {
                eprintln!("editcap not available: pcapng conversion not checked");
            }
            converted
        }
    }
}
