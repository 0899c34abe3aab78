//! Synthetic Ethernet/IPv4/TCP pcap files, for feeding tshark and `ndmpd pcap` conversations
//! recorded by a proxy or made up by a test.

use std::collections::HashMap;

/// An Ethernet/IPv4/TCP pcap of both directions. Connection i is 127.0.0.1:40000+i (the DMA)
/// to 127.0.0.1:10000 (the server), the port Wireshark's NDMP dissector is bound to.
pub struct PcapWriter {
    pub out: Vec<u8>,
    pub frames: u32,
    /// Per connection: the next sequence number of [DMA, server].
    seq: HashMap<usize, [u32; 2]>,
    /// Open each connection with SYN / SYN-ACK / ACK (tshark's reassembly wants it; the
    /// hostile-capture tests count packets without it).
    handshake: bool,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
/// IPv4's total length is 16 bits: larger reads go out as several segments.
const MAX_SEGMENT: usize = 60_000;

impl PcapWriter {
    pub fn new(handshake: bool) -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        PcapWriter {
            out,
            frames: 0,
            seq: HashMap::new(),
            handshake,
        }
    }

    /// Appends one chunk, preceded by the connection's handshake the first time it shows up.
    pub fn chunk(&mut self, conn: usize, to_server: bool, data: &[u8]) {
        if !self.seq.contains_key(&conn) {
            // distinct initial sequence numbers per side, so a mix-up would show
            let (d, s) = (1_000_000 * (conn as u32 + 1), 500_000_000 + conn as u32);
            if self.handshake {
                self.frame(conn, true, SYN, d, 0, &[]);
                self.frame(conn, false, SYN | ACK, s, d + 1, &[]);
                self.frame(conn, true, ACK, d + 1, s + 1, &[]);
            }
            self.seq.insert(conn, [d + 1, s + 1]);
        }
        let (me, peer) = if to_server { (0, 1) } else { (1, 0) };
        for seg in data.chunks(MAX_SEGMENT) {
            let s = self.seq[&conn];
            self.frame(conn, to_server, PSH_ACK, s[me], s[peer], seg);
            let next = self.seq.get_mut(&conn).unwrap();
            next[me] = next[me].wrapping_add(seg.len() as u32);
        }
    }

    fn frame(&mut self, conn: usize, from_dma: bool, flags: u8, seq: u32, ack: u32, data: &[u8]) {
        let dma = 40_000 + conn as u16;
        let (sport, dport) = if from_dma {
            (dma, 10_000)
        } else {
            (10_000, dma)
        };
        let mut f = Vec::with_capacity(54 + data.len());
        f.extend_from_slice(&[0, 0, 0, 0, 0, if from_dma { 1 } else { 2 }]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, if from_dma { 2 } else { 1 }]);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((40 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&(self.frames as u16).to_be_bytes()); // IP id
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]); // DF, TTL, TCP, no checksum
        f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(data);
        self.frames += 1;
        // 1 ms apart: increasing, and the same for every run
        let (secs, usecs) = (
            1_790_000_000 + self.frames / 1000,
            (self.frames % 1000) * 1000,
        );
        for w in [secs, usecs, f.len() as u32, f.len() as u32] {
            self.out.extend_from_slice(&w.to_le_bytes());
        }
        self.out.extend_from_slice(&f);
    }
}
