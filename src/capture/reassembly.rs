//! Turns captured TCP segments into one ordered byte stream per direction of each connection,
//! delivering every byte once and marking the bytes the capture never saw as gaps.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bytes::Bytes;

use super::types::{TcpSegment, Timestamp};

/// TCP's largest possible window (65535 << 14). A sender never has more than this in flight,
/// so a hole further behind the newest byte seen than this was acknowledged long ago and no
/// retransmission of it can still arrive: it is declared a gap instead of buffering forever.
const MAX_WINDOW: u64 = 1 << 30;

/// Contiguous stream bytes carried by one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// Frame number of the segment that carried these bytes.
    pub packet: u64,
    /// When that segment was captured.
    pub time: Timestamp,
    /// Stream position of the first byte (0 = first payload byte; gaps count too).
    pub offset: u64,
    /// The bytes.
    pub data: Bytes,
}

/// Bytes of the stream that are not in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Frame number of the last segment delivered before the gap, or of the segment that
    /// opened the stream (usually the SYN) when nothing was delivered yet.
    pub after_packet: u64,
    /// Stream position of the first missing byte.
    pub offset: u64,
    /// How many bytes are missing.
    pub missing_bytes: u64,
}

/// One direction of one TCP connection, reassembled.
///
/// A new SYN with a different initial sequence number on the same address pair starts a new
/// `Flow`, because it is a new connection whose bytes must not be mixed with the old one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The sending end.
    pub src: SocketAddr,
    /// The receiving end.
    pub dst: SocketAddr,
    /// The stream in order; consecutive chunks are contiguous unless a gap lies between.
    pub chunks: Vec<StreamChunk>,
    /// Missing stretches in stream order.
    pub gaps: Vec<Gap>,
    /// Whether a SYN was seen in this direction.
    pub syn: bool,
    /// Whether a FIN was seen in this direction.
    pub fin: bool,
    /// Whether a RST was seen in this direction.
    pub rst: bool,
}

impl Flow {
    /// The delivered bytes, gaps left out.
    pub fn data(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }
}

/// Reassembles every direction of every connection in `segments` (taken in capture order).
/// Returns one [`Flow`] per direction, in order of first appearance.
pub fn reassemble(segments: &[TcpSegment]) -> Vec<Flow> {
    let mut streams: Vec<Stream> = Vec::new();
    let mut current: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    for seg in segments {
        let key = (seg.src, seg.dst);
        let existing = current
            .get(&key)
            .copied()
            .filter(|&i| streams.get(i).is_some_and(|s| !s.is_new_connection(seg)));
        let index = existing.unwrap_or_else(|| {
            streams.push(Stream::new(seg.src, seg.dst));
            current.insert(key, streams.len() - 1);
            streams.len() - 1
        });
        if let Some(stream) = streams.get_mut(index) {
            stream.accept(seg);
        }
    }
    streams.into_iter().map(Stream::finish).collect()
}

/// Bytes waiting for the hole before them to fill.
struct Pending {
    packet: u64,
    time: Timestamp,
    data: Bytes,
}

/// Reassembly state of one direction of one connection.
///
/// Positions are 64-bit stream offsets (0 = first payload byte), unwrapped from the 32-bit
/// sequence numbers relative to the highest position seen so far, so streams longer than
/// 4 GiB and sequence wrap-around need no special case. Buffered data is held as slices of
/// the segments' own payloads, so memory stays bounded by the captured payload.
struct Stream {
    flow: Flow,
    /// Sequence number of stream position 0; unset until a SYN or a segment with payload.
    origin: Option<u32>,
    /// Sequence number of the SYN, to tell its retransmission from a new connection.
    isn: Option<u32>,
    /// Position of the next byte to deliver.
    next: u64,
    /// One past the highest position any segment reached, counting bytes cut by the capture.
    high: u64,
    last_packet: u64,
    /// Keyed by (position, arrival) so that identical starts keep capture order and the
    /// first copy of a byte wins; overlaps are trimmed when entries are taken out.
    pending: BTreeMap<(u64, u64), Pending>,
    arrivals: u64,
}

impl Stream {
    fn new(src: SocketAddr, dst: SocketAddr) -> Stream {
        Stream {
            flow: Flow {
                src,
                dst,
                chunks: Vec::new(),
                gaps: Vec::new(),
                syn: false,
                fin: false,
                rst: false,
            },
            origin: None,
            isn: None,
            next: 0,
            high: 0,
            last_packet: 0,
            pending: BTreeMap::new(),
            arrivals: 0,
        }
    }

    fn is_new_connection(&self, seg: &TcpSegment) -> bool {
        if !seg.syn {
            return false;
        }
        match (self.isn, self.origin) {
            (Some(isn), _) => isn != seg.seq,
            // Started mid-stream; a SYN that does not lead to the first byte seen is a new
            // connection reusing the address pair.
            (None, Some(origin)) => origin != seg.seq.wrapping_add(1),
            (None, None) => false,
        }
    }

    fn accept(&mut self, seg: &TcpSegment) {
        self.flow.syn |= seg.syn;
        self.flow.fin |= seg.fin;
        self.flow.rst |= seg.rst;
        // A reset's sequence number need not be anywhere near the stream (a reply to an
        // unknown connection takes it from the peer's ACK), and any text it carries is a
        // diagnostic, not stream data.
        if seg.rst {
            return;
        }
        // The SYN occupies one sequence number; its payload (TCP Fast Open) follows it.
        let data_seq = seg.seq.wrapping_add(u32::from(seg.syn));
        let wire_len = u64::from(seg.payload_len).max(seg.payload.len() as u64);
        if seg.syn && self.isn.is_none() {
            self.isn = Some(seg.seq);
        }
        let origin = match self.origin {
            Some(origin) => origin,
            // Without a SYN the stream starts at the first segment carrying data; a bare ACK
            // could be a keepalive whose sequence number is one below the next byte.
            None if seg.syn || wire_len > 0 => {
                self.origin = Some(data_seq);
                self.last_packet = seg.packet;
                data_seq
            }
            None => return,
        };

        let start = self.position(origin, data_seq);
        let wire_end = start + i128::from(wire_len);
        // A FIN shows that everything before it was sent, even if the capture missed some
        // of it. A bare ACK's sequence number is no such evidence: after a FIN it is one
        // past the last byte, because the FIN itself consumes a sequence number.
        if (wire_len > 0 || seg.fin) && wire_end > i128::from(self.high) {
            self.high = u64::try_from(wire_end).unwrap_or(self.high);
        }
        let captured_end = start + seg.payload.len() as i128;
        let next = i128::from(self.next);
        if captured_end > next {
            // Bytes before `next` were delivered already (or precede the stream): drop them.
            let skip = usize::try_from(next - start).unwrap_or(0);
            let at = u64::try_from(start.max(next)).unwrap_or(self.next);
            if skip < seg.payload.len() {
                let data = seg.payload.slice(skip..);
                if at == self.next && self.pending.is_empty() {
                    self.deliver(seg.packet, seg.time, data);
                } else {
                    self.arrivals += 1;
                    let pending = Pending {
                        packet: seg.packet,
                        time: seg.time,
                        data,
                    };
                    self.pending.insert((at, self.arrivals), pending);
                    self.drain();
                }
            }
        }
        while self.high.saturating_sub(self.next) > MAX_WINDOW {
            let target = self.first_pending().unwrap_or(self.high);
            self.skip_to(target);
        }
    }

    /// Maps a sequence number to a stream position, choosing the one within 2 GiB of the
    /// highest position seen; negative results lie before the stream's first byte.
    fn position(&self, origin: u32, seq: u32) -> i128 {
        // Truncating `high` to 32 bits is exactly the modular arithmetic sequence numbers use.
        let high_seq = origin.wrapping_add(self.high as u32);
        let delta = seq.wrapping_sub(high_seq) as i32;
        i128::from(self.high) + i128::from(delta)
    }

    fn deliver(&mut self, packet: u64, time: Timestamp, data: Bytes) {
        let len = data.len() as u64;
        self.flow.chunks.push(StreamChunk {
            packet,
            time,
            offset: self.next,
            data,
        });
        self.next += len;
        self.last_packet = packet;
    }

    /// Delivers buffered data that the stream has now reached.
    fn drain(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let at = entry.key().0;
            if at > self.next {
                break;
            }
            let p = entry.remove();
            let skip = usize::try_from(self.next - at).unwrap_or(usize::MAX);
            if skip < p.data.len() {
                self.deliver(p.packet, p.time, p.data.slice(skip..));
            }
        }
    }

    fn first_pending(&self) -> Option<u64> {
        self.pending.keys().next().map(|&(at, _)| at)
    }

    /// Declares everything before `target` that was not delivered a gap and moves on.
    fn skip_to(&mut self, target: u64) {
        if target > self.next {
            self.flow.gaps.push(Gap {
                after_packet: self.last_packet,
                offset: self.next,
                missing_bytes: target - self.next,
            });
            self.next = target;
        }
        self.drain();
    }

    /// At the end of the capture no hole can fill any more.
    fn finish(mut self) -> Flow {
        while let Some(target) = self.first_pending() {
            self.skip_to(target);
        }
        if self.high > self.next {
            self.skip_to(self.high);
        }
        self.flow
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TcpSegment, Timestamp};
    use super::{reassemble, Flow, Gap, Stream};
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn client() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn server() -> SocketAddr {
        "10.0.0.2:10000".parse().unwrap()
    }

    fn seg(packet: u64, seq: u32, payload: &[u8]) -> TcpSegment {
        TcpSegment {
            packet,
            time: Timestamp {
                secs: packet as i64,
                nanos: 0,
            },
            src: client(),
            dst: server(),
            seq,
            syn: false,
            fin: false,
            rst: false,
            payload: Bytes::copy_from_slice(payload),
            truncated: false,
            payload_len: payload.len() as u32,
        }
    }

    fn syn(packet: u64, seq: u32) -> TcpSegment {
        TcpSegment {
            syn: true,
            ..seg(packet, seq, b"")
        }
    }

    fn fin(packet: u64, seq: u32) -> TcpSegment {
        TcpSegment {
            fin: true,
            ..seg(packet, seq, b"")
        }
    }

    fn reverse(mut s: TcpSegment) -> TcpSegment {
        std::mem::swap(&mut s.src, &mut s.dst);
        s
    }

    /// Checks that chunks and gaps tile the stream from position 0 without overlap.
    fn assert_tiles(flow: &Flow) -> u64 {
        let mut pieces: Vec<(u64, u64)> = flow
            .chunks
            .iter()
            .map(|c| (c.offset, c.data.len() as u64))
            .collect();
        pieces.extend(flow.gaps.iter().map(|g| (g.offset, g.missing_bytes)));
        pieces.sort();
        let mut pos = 0;
        for (offset, len) in pieces {
            assert_eq!(offset, pos, "pieces must be contiguous: {flow:?}");
            assert!(len > 0);
            pos += len;
        }
        pos
    }

    fn packets(flow: &Flow) -> Vec<u64> {
        flow.chunks.iter().map(|c| c.packet).collect()
    }

    #[test]
    fn syn_sets_the_initial_sequence_number() {
        let flows = reassemble(&[
            syn(1, 1000),
            seg(2, 1001, b"hello"),
            seg(3, 1006, b" world"),
            fin(4, 1012),
        ]);
        assert_eq!(flows.len(), 1);
        let f = &flows[0];
        assert_eq!(f.data(), b"hello world");
        assert_eq!(packets(f), vec![2, 3]);
        assert_eq!(f.chunks[1].offset, 5);
        assert_eq!(f.chunks[1].time, Timestamp { secs: 3, nanos: 0 });
        assert!(f.gaps.is_empty());
        assert!(f.syn && f.fin && !f.rst);
    }

    #[test]
    fn retransmission_is_delivered_once() {
        let flows = reassemble(&[
            seg(1, 1, b"abc"),
            seg(2, 1, b"abc"),
            seg(3, 4, b"def"),
            seg(4, 1, b"abcdef"),
        ]);
        assert_eq!(flows[0].data(), b"abcdef");
        assert_eq!(packets(&flows[0]), vec![1, 3]);
    }

    #[test]
    fn overlap_is_trimmed_and_first_copy_wins() {
        let flows = reassemble(&[seg(1, 1, b"abcd"), seg(2, 3, b"XXef"), seg(3, 5, b"YYgh")]);
        let f = &flows[0];
        assert_eq!(f.data(), b"abcdefgh");
        assert_eq!(f.chunks[1].data, Bytes::from_static(b"ef"));
        assert_eq!((f.chunks[1].offset, f.chunks[1].packet), (4, 2));
    }

    #[test]
    fn out_of_order_waits_for_the_hole() {
        let flows = reassemble(&[
            syn(1, 100),
            seg(2, 101, b"aa"),
            seg(3, 105, b"cc"),
            seg(4, 107, b"dd"),
            seg(5, 103, b"bb"),
            seg(6, 105, b"cc"),
        ]);
        let f = &flows[0];
        assert_eq!(f.data(), b"aabbccdd");
        assert_eq!(packets(f), vec![2, 5, 3, 4]);
        assert!(f.gaps.is_empty());
        assert_eq!(assert_tiles(f), 8);
    }

    #[test]
    fn overlapping_buffered_segments() {
        let flows = reassemble(&[
            seg(1, 0, b"a"),
            seg(2, 5, b"fgh"),
            seg(3, 3, b"defg"),
            seg(4, 5, b"FGHIJ"),
            seg(5, 1, b"bc"),
        ]);
        assert_eq!(flows[0].data(), b"abcdefghIJ");
        assert_tiles(&flows[0]);
    }

    #[test]
    fn lost_segment_becomes_a_gap() {
        let flows = reassemble(&[
            syn(1, 0),
            seg(2, 1, b"aa"),
            seg(3, 5, b"cc"),
            seg(4, 7, b"dd"),
            fin(5, 9),
        ]);
        let f = &flows[0];
        assert_eq!(f.data(), b"aaccdd");
        assert_eq!(
            f.gaps,
            vec![Gap {
                after_packet: 2,
                offset: 2,
                missing_bytes: 2
            }]
        );
        assert_eq!(f.chunks[1].offset, 4);
        assert_eq!(assert_tiles(f), 8);
    }

    #[test]
    fn lost_first_and_last_segments() {
        // The FIN's sequence number shows that two more bytes were sent.
        let flows = reassemble(&[syn(1, 0), seg(2, 4, b"cc"), fin(3, 8)]);
        let f = &flows[0];
        assert_eq!(
            f.gaps,
            vec![
                Gap {
                    after_packet: 1,
                    offset: 0,
                    missing_bytes: 3
                },
                Gap {
                    after_packet: 2,
                    offset: 5,
                    missing_bytes: 2
                }
            ]
        );
        assert_eq!(assert_tiles(f), 7);
    }

    #[test]
    fn acks_after_the_fin_add_no_gap() {
        let flows = reassemble(&[
            syn(1, 0),
            seg(2, 1, b"abc"),
            fin(3, 4),
            seg(4, 5, b""),
            seg(5, 5, b""),
        ]);
        assert_eq!(flows[0].data(), b"abc");
        assert!(flows[0].gaps.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let isn = u32::MAX - 3;
        let flows = reassemble(&[
            syn(1, isn),
            seg(2, isn.wrapping_add(1), b"abc"),
            seg(3, isn.wrapping_add(7), b"ghi"),
            seg(4, isn.wrapping_add(4), b"def"),
            seg(5, isn.wrapping_add(1), b"abcdef"),
        ]);
        assert_eq!(flows[0].data(), b"abcdefghi");
        assert!(flows[0].gaps.is_empty());
    }

    #[test]
    fn without_syn_the_first_data_segment_starts_the_stream() {
        let flows = reassemble(&[
            seg(1, 500, b""),
            seg(2, 5000, b"xyz"),
            seg(3, 4990, b"0123456789"),
            seg(4, 5003, b"!"),
        ]);
        let f = &flows[0];
        assert_eq!(f.data(), b"xyz!");
        assert!(f.gaps.is_empty() && !f.syn);
    }

    #[test]
    fn truncated_segment_leaves_a_gap() {
        let cut = |packet, seq, captured: &[u8], len| TcpSegment {
            truncated: true,
            payload_len: len,
            ..seg(packet, seq, captured)
        };
        let flows = reassemble(&[
            seg(1, 0, b"ab"),
            cut(2, 2, b"cd", 10),
            seg(3, 12, b"mn"),
            cut(4, 14, b"op", 5),
        ]);
        let f = &flows[0];
        assert_eq!(f.data(), b"abcdmnop");
        assert_eq!(
            f.gaps,
            vec![
                Gap {
                    after_packet: 2,
                    offset: 4,
                    missing_bytes: 8
                },
                Gap {
                    after_packet: 4,
                    offset: 16,
                    missing_bytes: 3
                }
            ]
        );
        assert_eq!(assert_tiles(f), 19);
    }

    #[test]
    fn truncated_bytes_can_still_come_from_a_retransmission() {
        let cut = TcpSegment {
            truncated: true,
            payload_len: 6,
            ..seg(2, 2, b"cd")
        };
        let flows = reassemble(&[
            seg(1, 0, b"ab"),
            cut,
            seg(3, 8, b"ij"),
            seg(4, 2, b"cdefgh"),
        ]);
        assert_eq!(flows[0].data(), b"abcdefghij");
        assert!(flows[0].gaps.is_empty());
    }

    #[test]
    fn directions_are_separate_flows_in_order_of_appearance() {
        let flows = reassemble(&[
            reverse(syn(1, 7000)),
            syn(2, 100),
            seg(3, 101, b"request"),
            reverse(seg(4, 7001, b"reply")),
        ]);
        assert_eq!(flows.len(), 2);
        assert_eq!(
            (flows[0].src, flows[0].dst, flows[0].data()),
            (server(), client(), b"reply".to_vec())
        );
        assert_eq!(
            (flows[1].src, flows[1].dst, flows[1].data()),
            (client(), server(), b"request".to_vec())
        );
    }

    #[test]
    fn a_new_syn_starts_a_new_connection() {
        let flows = reassemble(&[
            syn(1, 100),
            syn(2, 100), // retransmitted SYN: same connection
            seg(3, 101, b"first"),
            fin(4, 106),
            syn(5, 90_000),
            seg(6, 90_001, b"second"),
        ]);
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].data(), b"first");
        assert_eq!(flows[1].data(), b"second");
        assert!(flows[0].gaps.is_empty() && flows[1].gaps.is_empty());
    }

    #[test]
    fn reset_with_a_wild_sequence_number_adds_no_gap() {
        let rst = TcpSegment {
            rst: true,
            ..seg(3, 0x4000_0000, b"diagnostic")
        };
        let flows = reassemble(&[seg(1, 10, b"ab"), rst, seg(4, 12, b"cd")]);
        assert_eq!(flows[0].data(), b"abcd");
        assert!(flows[0].gaps.is_empty() && flows[0].rst);
    }

    #[test]
    fn syn_with_payload() {
        let tfo = TcpSegment {
            syn: true,
            ..seg(1, 41, b"early")
        };
        let flows = reassemble(&[tfo, seg(2, 47, b"-late")]);
        assert_eq!(flows[0].data(), b"early-late");
    }

    #[test]
    fn long_stream_with_a_permanent_hole_stays_bounded() {
        // 5 GiB after a lost segment: positions pass 2^32 and the hole must be given up on
        // once it is more than a window behind, instead of buffering everything.
        let block = Bytes::from(vec![0x5a; 65536]);
        let mut stream = Stream::new(client(), server());
        let isn = 0xffff_0000u32;
        stream.accept(&syn(1, isn));
        let mut seq = isn.wrapping_add(1);
        let mut max_pending = 0;
        for i in 0..(5u64 << 14) {
            let mut s = seg(i + 2, seq, b"");
            s.payload = block.clone();
            s.payload_len = 65536;
            if i != 3 {
                stream.accept(&s);
            }
            max_pending = max_pending.max(stream.pending.len());
            seq = seq.wrapping_add(65536);
        }
        assert!(
            max_pending <= (1 << 14) + 1,
            "pending grew to {max_pending}"
        );
        let flow = stream.finish();
        assert_eq!(
            flow.gaps,
            vec![Gap {
                after_packet: 4,
                offset: 3 * 65536,
                missing_bytes: 65536
            }]
        );
        assert_eq!(assert_tiles(&flow), 5 << 30);
    }

    proptest! {
        #[test]
        fn arbitrary_segments_keep_the_stream_consistent(
            raw in proptest::collection::vec((0u8..4, any::<u32>(), 0u8..8, 0usize..40, 0u32..100), 0..200),
            near in any::<bool>(),
        ) {
            let ports = [40000u16, 40001];
            let segs: Vec<TcpSegment> = raw
                .iter()
                .enumerate()
                .map(|(i, &(who, seq, flags, len, extra))| {
                    // Sequence numbers either anywhere or clustered, to reach both the
                    // wild-jump and the overlap paths.
                    let seq = if near { seq % 300 } else { seq };
                    let mut s = seg(i as u64 + 1, seq, &vec![i as u8; len]);
                    s.src.set_port(ports[usize::from(who & 1)]);
                    if who & 2 != 0 {
                        std::mem::swap(&mut s.src, &mut s.dst);
                    }
                    s.syn = flags & 1 != 0;
                    s.fin = flags & 2 != 0;
                    s.rst = flags & 4 != 0;
                    s.payload_len = len as u32 + extra % 3 * extra;
                    s.truncated = s.payload_len as usize > len;
                    s
                })
                .collect();
            let flows = reassemble(&segs);
            prop_assert!(flows.len() <= segs.len());
            for f in &flows {
                assert_tiles(f);
            }
        }

        #[test]
        fn shuffled_duplicated_segments_rebuild_the_stream(
            data in proptest::collection::vec(any::<u8>(), 1..2000),
            cuts in proptest::collection::vec(1usize..300, 1..40),
            isn in any::<u32>(),
            order in proptest::collection::vec(any::<u32>(), 80),
            dups in proptest::collection::vec(any::<bool>(), 80),
        ) {
            let mut pieces = Vec::new();
            let mut pos = 0;
            for c in cuts.iter().cycle() {
                if pos >= data.len() { break; }
                let end = (pos + c).min(data.len());
                pieces.push((pos, end));
                pos = end;
            }
            let mut list: Vec<(usize, usize)> = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                list.push(*p);
                if dups[i % dups.len()] {
                    // a retransmission that also overlaps the following piece
                    list.push((p.0, (p.1 + 7).min(data.len())));
                }
            }
            let mut keyed: Vec<_> = list.into_iter().enumerate().map(|(i, p)| (order[i % order.len()], i, p)).collect();
            keyed.sort();
            let mut segs = vec![syn(1, isn)];
            for (n, (_, _, (a, b))) in keyed.into_iter().enumerate() {
                segs.push(seg(n as u64 + 2, isn.wrapping_add(1).wrapping_add(a as u32), &data[a..b]));
            }
            let flows = reassemble(&segs);
            prop_assert_eq!(flows.len(), 1);
            prop_assert_eq!(flows[0].data(), data.clone());
            prop_assert!(flows[0].gaps.is_empty());
            prop_assert_eq!(assert_tiles(&flows[0]), data.len() as u64);
        }

        #[test]
        fn dropped_segments_leave_exact_gaps(
            data in proptest::collection::vec(any::<u8>(), 1..2000),
            cut in 1usize..200,
            drop in proptest::collection::vec(any::<bool>(), 1..64),
            isn in any::<u32>(),
        ) {
            let mut segs = vec![syn(1, isn)];
            let mut kept = vec![false; data.len()];
            for (i, start) in (0..data.len()).step_by(cut).enumerate() {
                let end = (start + cut).min(data.len());
                if !drop[i % drop.len()] {
                    kept[start..end].iter_mut().for_each(|k| *k = true);
                    segs.push(seg(i as u64 + 2, isn.wrapping_add(1).wrapping_add(start as u32), &data[start..end]));
                }
            }
            segs.push(fin(9999, isn.wrapping_add(1).wrapping_add(data.len() as u32)));
            let flows = reassemble(&segs);
            let f = &flows[0];
            prop_assert_eq!(assert_tiles(f), data.len() as u64);
            for c in &f.chunks {
                let at = c.offset as usize;
                prop_assert_eq!(&c.data[..], &data[at..at + c.data.len()]);
            }
            let expected: Vec<u8> = data.iter().zip(&kept).filter(|(_, k)| **k).map(|(b, _)| *b).collect();
            prop_assert_eq!(f.data(), expected);
        }
    }
}
