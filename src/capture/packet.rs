//! Peels link-layer, IPv4/IPv6 and TCP headers off one captured frame to find the TCP segment.
//! Anything that is not an unfragmented TCP segment with intact headers is answered with `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
/// DLT_RAW as most BSDs number it; old files carry it instead of LINKTYPE_RAW.
const LINKTYPE_RAW_OLD: u32 = 12;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad, and the pre-standard QinQ tag some switches still emit.
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

const IPPROTO_TCP: u8 = 6;

/// The TCP facts of one frame; `payload` indexes into the frame's captured bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The sender's address and port.
    pub src: SocketAddr,
    /// The receiver's address and port.
    pub dst: SocketAddr,
    /// The TCP header's sequence number.
    pub seq: u32,
    /// The SYN flag.
    pub syn: bool,
    /// The FIN flag.
    pub fin: bool,
    /// The RST flag.
    pub rst: bool,
    /// Where the TCP payload is in the frame's captured bytes (possibly cut short).
    pub payload: Range<usize>,
    /// Payload length on the wire according to the IP header.
    pub payload_len: u32,
}

#[derive(Clone, Copy)]
enum Network {
    V4,
    V6,
}

/// Parses a frame of the given link type. `orig_len` is the frame's length on the wire,
/// which can exceed `data.len()` when the capture's snapshot length cut it.
pub(crate) fn parse(linktype: u32, data: &[u8], orig_len: u32) -> Option<Parsed> {
    let (net, ip_start) = link_layer(linktype, data)?;
    let ip = data.get(ip_start..)?;
    let wire_ip_len = (orig_len as usize).saturating_sub(ip_start).max(ip.len());
    let mut parsed = match net {
        Network::V4 => ipv4(ip, wire_ip_len)?,
        Network::V6 => ipv6(ip, wire_ip_len)?,
    };
    parsed.payload = parsed.payload.start + ip_start..parsed.payload.end + ip_start;
    Some(parsed)
}

/// Finds the network protocol and where its header starts.
fn link_layer(linktype: u32, data: &[u8]) -> Option<(Network, usize)> {
    match linktype {
        LINKTYPE_NULL => {
            let af: [u8; 4] = data.get(..4)?.try_into().ok()?;
            // The family is in the capturing host's byte order, which the file does not record.
            let net = address_family(u32::from_le_bytes(af))
                .or_else(|| address_family(u32::from_be_bytes(af)))?;
            Some((net, 4))
        }
        LINKTYPE_LOOP => Some((address_family(be32(data, 0)?)?, 4)),
        LINKTYPE_ETHERNET => ethertype_chain(data, 12),
        LINKTYPE_LINUX_SLL => {
            // The protocol field sits at offset 14, immediately before the payload at 16.
            ethertype_chain(data, 14)
        }
        LINKTYPE_LINUX_SLL2 => {
            let proto = be16(data, 0)?;
            if ETHERTYPE_VLAN.contains(&proto) {
                // A re-inserted VLAN tag follows the 20-byte header: TCI, then the inner type.
                ethertype_chain(data, 22)
            } else {
                Some((ethertype(proto)?, 20))
            }
        }
        LINKTYPE_RAW | LINKTYPE_RAW_OLD => match data.first()? >> 4 {
            4 => Some((Network::V4, 0)),
            6 => Some((Network::V6, 0)),
            _ => None,
        },
        LINKTYPE_IPV4 => Some((Network::V4, 0)),
        LINKTYPE_IPV6 => Some((Network::V6, 0)),
        _ => None,
    }
}

fn address_family(af: u32) -> Option<Network> {
    match af {
        2 => Some(Network::V4),
        // AF_INET6 on NetBSD/OpenBSD, FreeBSD and Darwin respectively.
        24 | 28 | 30 => Some(Network::V6),
        _ => None,
    }
}

fn ethertype(t: u16) -> Option<Network> {
    match t {
        ETHERTYPE_IPV4 => Some(Network::V4),
        ETHERTYPE_IPV6 => Some(Network::V6),
        _ => None,
    }
}

/// Reads the EtherType at `at`, stepping over any number of VLAN tags; every tag consumes
/// four bytes, so a frame full of tags ends when the data does.
fn ethertype_chain(data: &[u8], mut at: usize) -> Option<(Network, usize)> {
    loop {
        let t = be16(data, at)?;
        if ETHERTYPE_VLAN.contains(&t) {
            at += 4;
        } else {
            return Some((ethertype(t)?, at + 2));
        }
    }
}

/// Works out how long the IP datagram was on the wire; whatever follows it in the frame is
/// link-layer padding or trailer, and whatever of it is missing was cut by the capture.
///
/// `declared` is the datagram length from the IP header, or `None` when the header says 0,
/// which happens for TSO super-packets and jumbograms: then the frame's wire length is used.
/// A datagram longer than the frame that carried it is malformed.
fn datagram_len(declared: Option<usize>, wire_ip_len: usize) -> Option<usize> {
    let len = declared.unwrap_or(wire_ip_len);
    (len <= wire_ip_len).then_some(len)
}

fn ipv4(ip: &[u8], wire_ip_len: usize) -> Option<Parsed> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || ip.len() < header_len {
        return None;
    }
    let total = usize::from(be16(ip, 2)?);
    let frag = be16(ip, 6)?;
    // Only a whole, unfragmented datagram holds a complete TCP header at a known place.
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 || *ip.get(9)? != IPPROTO_TCP {
        return None;
    }
    let src = IpAddr::V4(Ipv4Addr::from(be32(ip, 12)?));
    let dst = IpAddr::V4(Ipv4Addr::from(be32(ip, 16)?));
    let len = datagram_len((total != 0).then_some(total), wire_ip_len)?;
    if len < header_len {
        return None;
    }
    tcp(ip, header_len, len, src, dst)
}

fn ipv6(ip: &[u8], wire_ip_len: usize) -> Option<Parsed> {
    if *ip.first()? >> 4 != 6 || ip.len() < 40 {
        return None;
    }
    let payload_len = usize::from(be16(ip, 4)?);
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?));
    let len = datagram_len((payload_len != 0).then_some(40 + payload_len), wire_ip_len)?;

    let mut next = *ip.get(6)?;
    let mut at = 40usize;
    // Each extension header is at least 8 bytes long, so the walk ends with the data.
    while next != IPPROTO_TCP {
        let ext_len = match next {
            // hop-by-hop, routing, destination options, mobility, HIP, shim6: 8-byte units
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*ip.get(at + 1)?) + 1) * 8,
            // authentication header: 4-byte units, not counting the first two
            51 => (usize::from(*ip.get(at + 1)?) + 2) * 4,
            // a fragment header (44), no next header (59), or another protocol
            _ => return None,
        };
        next = *ip.get(at)?;
        at += ext_len;
    }
    if at > len {
        return None;
    }
    tcp(ip, at, len, src, dst)
}

/// Parses the TCP header at `at` of an IP datagram `len` bytes long on the wire.
fn tcp(ip: &[u8], at: usize, len: usize, src: IpAddr, dst: IpAddr) -> Option<Parsed> {
    let seg = ip.get(at..len.min(ip.len()))?;
    let header_len = usize::from(*seg.get(12)? >> 4) * 4;
    if header_len < 20 || header_len > seg.len() {
        return None;
    }
    let flags = *seg.get(13)?;
    let payload_len = u32::try_from(len.checked_sub(at)?.checked_sub(header_len)?).ok()?;
    Some(Parsed {
        src: SocketAddr::new(src, be16(seg, 0)?),
        dst: SocketAddr::new(dst, be16(seg, 2)?),
        seq: be32(seg, 4)?,
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        payload: at + header_len..at + seg.len(),
        payload_len,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{read_tcp_segments, TcpSegment, Timestamp};
    use super::{parse, Parsed};
    use std::net::SocketAddr;

    fn v4_addrs() -> (SocketAddr, SocketAddr) {
        (
            "192.0.2.1:40000".parse().unwrap(),
            "198.51.100.7:10000".parse().unwrap(),
        )
    }

    fn v6_addrs() -> (SocketAddr, SocketAddr) {
        (
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2001:db8::2]:10000".parse().unwrap(),
        )
    }

    /// Reads a one-packet pcap file of `linktype` and returns its single segment.
    fn only_segment(linktype: u32, frame: Vec<u8>) -> TcpSegment {
        let file = pcap_file(false, false, linktype, &[rec(1_600_000_000, 42, frame)]);
        let mut segs = read_tcp_segments(&file).unwrap();
        assert_eq!(segs.len(), 1, "linktype {linktype}");
        segs.remove(0)
    }

    fn check(seg: &TcpSegment, addrs: (SocketAddr, SocketAddr), payload: &[u8]) {
        assert_eq!((seg.src, seg.dst), addrs);
        assert_eq!(&seg.payload[..], payload);
        assert_eq!(seg.seq, 0x1234_5678);
        assert_eq!(
            seg.time,
            Timestamp {
                secs: 1_600_000_000,
                nanos: 42_000
            }
        );
        assert!(!seg.truncated);
        assert_eq!(seg.payload_len as usize, payload.len());
    }

    #[test]
    fn every_link_type_ipv4() {
        let ip = v4_packet(0x1234_5678, ACK, b"NDMP over v4");
        let frames: Vec<(u32, Vec<u8>)> = vec![
            (0, null_header(2, false, &ip)),
            (0, null_header(2, true, &ip)),
            (108, null_header(2, true, &ip)),
            (1, ethernet(&[], ETH_IPV4, &ip)),
            (1, ethernet(&[(0x8100, 42)], ETH_IPV4, &ip)),
            (1, ethernet(&[(0x88a8, 100), (0x8100, 42)], ETH_IPV4, &ip)),
            (113, sll(ETH_IPV4, &ip)),
            (
                113,
                sll(
                    0x8100,
                    &[&[0, 5][..], &ETH_IPV4.to_be_bytes(), &ip].concat(),
                ),
            ),
            (276, sll2(ETH_IPV4, &ip)),
            (
                276,
                sll2(
                    0x8100,
                    &[&[0, 5][..], &ETH_IPV4.to_be_bytes(), &ip].concat(),
                ),
            ),
            (101, ip.clone()),
            (12, ip.clone()),
            (228, ip.clone()),
        ];
        for (linktype, frame) in frames {
            check(&only_segment(linktype, frame), v4_addrs(), b"NDMP over v4");
        }
    }

    #[test]
    fn every_link_type_ipv6() {
        let ip = v6_packet(0x1234_5678, ACK, b"NDMP over v6");
        let mut frames: Vec<(u32, Vec<u8>)> = vec![
            (108, null_header(30, true, &ip)),
            (1, ethernet(&[], ETH_IPV6, &ip)),
            (1, ethernet(&[(0x8100, 7)], ETH_IPV6, &ip)),
            (113, sll(ETH_IPV6, &ip)),
            (276, sll2(ETH_IPV6, &ip)),
            (101, ip.clone()),
            (12, ip.clone()),
            (229, ip.clone()),
        ];
        for af in [24, 28, 30] {
            frames.push((0, null_header(af, false, &ip)));
            frames.push((0, null_header(af, true, &ip)));
        }
        for (linktype, frame) in frames {
            check(&only_segment(linktype, frame), v6_addrs(), b"NDMP over v6");
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked_and_fragments_skipped() {
        let l4 = tcp(40000, 10000, 0x1234_5678, ACK, &[], b"ext");
        let ext = vec![
            (0u8, vec![1, 4, 0, 0, 0, 0]),
            (43, vec![0; 14]),
            (60, vec![1, 2, 0, 0, 0, 0]),
            (51, vec![0; 14]),
        ];
        let mut ip = ipv6_ext(A6, B6, &ext, &l4);
        // The builder sizes every header in 8-byte units; AH counts 4-byte units minus 2.
        let ah_at = 40 + 8 + 16 + 8;
        ip[ah_at + 1] = (16 / 4 - 2) as u8;
        check(&only_segment(229, ip), v6_addrs(), b"ext");

        let frag = ipv6_ext(A6, B6, &[(44, vec![0, 0, 0, 0, 0, 1])], &l4);
        assert_eq!(parse(229, &frag, frag.len() as u32), None);
        let udp = ipv6_ext(A6, B6, &[(60, vec![0; 6])], &l4);
        let mut udp = udp;
        udp[40] = 17;
        assert_eq!(parse(229, &udp, udp.len() as u32), None);
    }

    #[test]
    fn ipv4_fragments_and_other_protocols_are_skipped() {
        let l4 = tcp(40000, 10000, 1, ACK, &[], b"frag");
        for frag in [0x2000u16, 0x0001, 0x20ff] {
            let ip = ipv4_proto(A4, B4, 6, frag, &l4);
            assert_eq!(parse(228, &ip, ip.len() as u32), None, "frag {frag:#x}");
        }
        let udp = ipv4_proto(A4, B4, 17, 0, &l4);
        assert_eq!(parse(228, &udp, udp.len() as u32), None);
        // Frames are still numbered: the TCP packet after an ARP and a UDP one is frame 3.
        let arp = ethernet(&[], 0x0806, &[0; 28]);
        let file = pcap_file(
            false,
            false,
            1,
            &[
                rec(1, 0, arp),
                rec(1, 0, ethernet(&[], ETH_IPV4, &udp)),
                rec(1, 0, ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"t"))),
            ],
        );
        let segs = read_tcp_segments(&file).unwrap();
        assert_eq!(segs.iter().map(|s| s.packet).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"ab"));
        assert_eq!(frame.len(), 60, "padded to the Ethernet minimum");
        let seg = only_segment(1, frame);
        assert_eq!(&seg.payload[..], b"ab");
        assert!(!seg.truncated);
        // A pure ACK's padding is not payload either.
        let seg = only_segment(1, ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"")));
        assert!(seg.payload.is_empty());
    }

    #[test]
    fn truncated_caplen_marks_the_segment() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, &[7u8; 1000]));
        let mut short = rec(5, 0, frame[..14 + 40 + 100].to_vec());
        short.orig_len = frame.len() as u32;
        let file = pcap_file(false, false, 1, &[short]);
        let seg = &read_tcp_segments(&file).unwrap()[0];
        assert!(seg.truncated);
        assert_eq!(seg.payload.len(), 100);
        assert_eq!(seg.payload_len, 1000);

        // Cut inside the padding only: the payload is complete.
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"ab"));
        let mut short = rec(5, 0, frame[..14 + 42].to_vec());
        short.orig_len = 60;
        let seg = &read_tcp_segments(&pcap_file(false, false, 1, &[short])).unwrap()[0];
        assert!(!seg.truncated);
        assert_eq!(&seg.payload[..], b"ab");

        // Cut inside the TCP header: nothing usable.
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"ab"));
        let mut short = rec(5, 0, frame[..14 + 30].to_vec());
        short.orig_len = 60;
        assert_eq!(
            read_tcp_segments(&pcap_file(false, false, 1, &[short])).unwrap(),
            vec![]
        );
    }

    #[test]
    fn ip_length_longer_than_an_uncut_frame_is_malformed() {
        let mut ip = v4_packet(1, ACK, b"abc");
        ip[3] += 10;
        assert_eq!(parse(228, &ip, ip.len() as u32), None);
    }

    #[test]
    fn zero_ip_length_from_segmentation_offload_uses_the_frame_length() {
        let mut ip = v4_packet(1, ACK, b"offloaded");
        ip[2] = 0;
        ip[3] = 0;
        let p = parse(228, &ip, ip.len() as u32).unwrap();
        assert_eq!(&ip[p.payload.clone()], b"offloaded");
        let mut ip6 = v6_packet(1, ACK, b"jumbo");
        ip6[4] = 0;
        ip6[5] = 0;
        let p = parse(229, &ip6, ip6.len() as u32).unwrap();
        assert_eq!(&ip6[p.payload], b"jumbo");
    }

    #[test]
    fn tcp_options_and_bad_data_offsets() {
        let opts = [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 1, 1, 0];
        let ip = ipv4(A4, B4, &tcp(40000, 10000, 9, SYN, &opts, b"tfo"));
        let p: Parsed = parse(228, &ip, ip.len() as u32).unwrap();
        assert!(p.syn && !p.fin && !p.rst);
        assert_eq!(&ip[p.payload], b"tfo");
        for offset in [0u8, 4, 15] {
            let mut bad = ip.clone();
            bad[20 + 12] = offset << 4;
            assert_eq!(
                parse(228, &bad, bad.len() as u32),
                None,
                "data offset {offset}"
            );
        }
        let mut short_ihl = ip.clone();
        short_ihl[0] = 0x44;
        assert_eq!(parse(228, &short_ihl, short_ihl.len() as u32), None);
        let mut long_ihl = ip.clone();
        long_ihl[0] = 0x4f;
        assert!(parse(228, &long_ihl[..50], 50).is_none());
    }

    #[test]
    fn flags_and_unknown_link_types() {
        let ip = v4_packet(1, FIN | RST | ACK, b"");
        let p = parse(101, &ip, ip.len() as u32).unwrap();
        assert!(p.fin && p.rst && !p.syn);
        assert_eq!(parse(9999, &ip, ip.len() as u32), None);
        assert_eq!(parse(101, &[0x50; 60], 60), None);
        assert_eq!(parse(0, &null_header(99, false, &ip), 99), None);
        assert_eq!(
            parse(1, &ethernet(&[(0x8100, 1)], 0x0806, &[0; 40]), 60),
            None
        );
    }
}
