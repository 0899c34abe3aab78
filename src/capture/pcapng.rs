//! Reads pcapng files (sections of a header block, interface descriptions and packet blocks,
//! each block framed by its length at both ends) and hands out their packets as frames.

use super::types::{CaptureError, Endian, Frame, Timestamp, MAX_CAPLEN};

/// Section Header Block type; a palindrome, so it reads the same in either byte order.
pub(super) const SHB_TYPE: u32 = 0x0a0d_0d0a;
const IDB_TYPE: u32 = 1;
const PB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Blocks that Wireshark (checked with 4.0) shows as frames although they carry no packet:
/// systemd journal entries, sysdig events and custom blocks. Counting them keeps our packet
/// numbers equal to Wireshark's frame numbers.
const OTHER_FRAME_TYPES: [u32; 6] = [
    0x0000_0009,
    0x0000_0204,
    0x0000_0216,
    0x0000_0221,
    0x0000_0bad,
    0x4000_0bad,
];

const OPT_ENDOFOPT: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// What a packet block needs to know about the interface it was captured on.
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second, from `if_tsresol` (microseconds when absent).
    per_sec: u128,
    /// Seconds to add to every timestamp, from `if_tsoffset`.
    offset_secs: i64,
}

impl Interface {
    fn time(&self, high: u32, low: u32) -> Timestamp {
        let units = u64::from(high) << 32 | u64::from(low);
        Timestamp::from_parts(self.offset_secs, units, self.per_sec)
    }
}

/// Walks every block of a pcapng file, handing each packet to `sink` and skipping block
/// types that carry no packet.
pub(super) fn read(file: &[u8], sink: &mut dyn FnMut(Frame<'_>)) -> Result<(), CaptureError> {
    let mut offset = 0usize;
    let mut endian = Endian::Little;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut number = 0u64;

    while let Some(rest) = file.get(offset..).filter(|r| !r.is_empty()) {
        let at = offset as u64;
        let short = |what, needed: usize| CaptureError::ShortHeader {
            what,
            offset: at,
            needed: needed as u64,
            available: rest.len() as u64,
        };
        let raw_type = rest
            .get(..4)
            .ok_or_else(|| short("pcapng block header", 8))?;
        let is_shb = raw_type == SHB_TYPE.to_le_bytes();
        if is_shb {
            // A section may switch byte order, and its own length field is already in the new
            // order, so the byte-order magic has to be read before the length.
            let bom = rest
                .get(8..12)
                .ok_or_else(|| short("pcapng section header", 12))?;
            endian = if Endian::Little.u32(bom, 0) == Some(BYTE_ORDER_MAGIC) {
                Endian::Little
            } else if Endian::Big.u32(bom, 0) == Some(BYTE_ORDER_MAGIC) {
                Endian::Big
            } else {
                return Err(CaptureError::BadByteOrder {
                    offset: at,
                    magic: Endian::Big.u32(bom, 0).unwrap_or(0),
                });
            };
        }
        let block_type = endian
            .u32(rest, 0)
            .ok_or_else(|| short("pcapng block header", 8))?;
        let length = endian
            .u32(rest, 4)
            .ok_or_else(|| short("pcapng block header", 8))?;
        let body = block_body(rest, at, block_type, length, endian)?;

        match block_type {
            SHB_TYPE => {
                let major = endian.u16(body, 4).unwrap_or(0);
                let minor = endian.u16(body, 6).unwrap_or(0);
                if major != 1 {
                    return Err(CaptureError::UnsupportedVersion {
                        offset: at,
                        major,
                        minor,
                    });
                }
                // Interface numbers are local to a section.
                interfaces.clear();
            }
            IDB_TYPE => interfaces.push(parse_idb(body, endian, at)?),
            EPB_TYPE | PB_TYPE => {
                number += 1;
                // The obsolete Packet Block has a 16-bit interface id followed by a drop
                // count; otherwise its layout matches the Enhanced Packet Block.
                let iface_id = if block_type == EPB_TYPE {
                    endian.u32(body, 0).unwrap_or(0)
                } else {
                    u32::from(endian.u16(body, 0).unwrap_or(0))
                };
                let iface = lookup(&interfaces, iface_id, number, at)?;
                let high = endian.u32(body, 4).unwrap_or(0);
                let low = endian.u32(body, 8).unwrap_or(0);
                let caplen = endian.u32(body, 12).unwrap_or(0);
                let orig_len = endian.u32(body, 16).unwrap_or(0);
                check_caplen(caplen, number, at)?;
                let data =
                    body.get(20..20 + caplen as usize)
                        .ok_or(CaptureError::PacketPastBlock {
                            packet: number,
                            offset: at,
                            caplen,
                            available: body.len().saturating_sub(20) as u64,
                        })?;
                sink(Frame {
                    number,
                    linktype: iface.linktype,
                    time: iface.time(high, low),
                    data,
                    orig_len,
                });
            }
            SPB_TYPE => {
                number += 1;
                let iface = lookup(&interfaces, 0, number, at)?;
                let orig_len = endian.u32(body, 0).unwrap_or(0);
                let room = body.get(4..).unwrap_or(&[]);
                // An SPB has no captured-length field: the packet is as long as the original,
                // cut at the interface's snapshot length; the rest of the block is padding.
                // A block too small for that is read for what it holds.
                let mut caplen = orig_len.min(u32::try_from(room.len()).unwrap_or(u32::MAX));
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen);
                }
                check_caplen(caplen, number, at)?;
                let data = room.get(..caplen as usize).unwrap_or(room);
                sink(Frame {
                    number,
                    linktype: iface.linktype,
                    // The block carries no timestamp at all.
                    time: Timestamp::default(),
                    data,
                    orig_len,
                });
            }
            t if OTHER_FRAME_TYPES.contains(&t) => number += 1,
            _ => {}
        }
        offset += length as usize;
    }
    Ok(())
}

/// Checks a block's framing and returns its body (between the leading and trailing lengths).
fn block_body(
    rest: &[u8],
    at: u64,
    block_type: u32,
    length: u32,
    endian: Endian,
) -> Result<&[u8], CaptureError> {
    let min = match block_type {
        SHB_TYPE => 28,
        IDB_TYPE => 20,
        EPB_TYPE | PB_TYPE => 32,
        SPB_TYPE => 16,
        _ => 12,
    };
    if length < min {
        return Err(CaptureError::BlockTooShort {
            offset: at,
            block_type,
            length,
            min,
        });
    }
    if !length.is_multiple_of(4) {
        return Err(CaptureError::BlockMisaligned { offset: at, length });
    }
    let block = rest
        .get(..length as usize)
        .ok_or(CaptureError::BlockPastEnd {
            offset: at,
            length,
            available: rest.len() as u64,
        })?;
    let trailer_at = block.len().saturating_sub(4);
    let trailing = endian.u32(block, trailer_at).unwrap_or(0);
    if trailing != length {
        return Err(CaptureError::BlockTrailerMismatch {
            offset: at,
            leading: length,
            trailing,
        });
    }
    Ok(block.get(8..trailer_at).unwrap_or(&[]))
}

fn lookup(
    interfaces: &[Interface],
    id: u32,
    packet: u64,
    at: u64,
) -> Result<&Interface, CaptureError> {
    interfaces
        .get(id as usize)
        .ok_or(CaptureError::UnknownInterface {
            packet,
            offset: at,
            interface: id,
            defined: interfaces.len(),
        })
}

fn check_caplen(caplen: u32, packet: u64, at: u64) -> Result<(), CaptureError> {
    if caplen > MAX_CAPLEN {
        return Err(CaptureError::CaplenTooLarge {
            packet,
            offset: at,
            caplen,
            max: MAX_CAPLEN,
        });
    }
    Ok(())
}

fn parse_idb(body: &[u8], endian: Endian, at: u64) -> Result<Interface, CaptureError> {
    let mut iface = Interface {
        linktype: u32::from(endian.u16(body, 0).unwrap_or(0)),
        snaplen: endian.u32(body, 4).unwrap_or(0),
        per_sec: 1_000_000,
        offset_secs: 0,
    };
    let mut pos = 8usize;
    // Fewer than four bytes left cannot hold an option header; treat them as padding.
    while let (Some(code), Some(len)) = (endian.u16(body, pos), endian.u16(body, pos + 2)) {
        if code == OPT_ENDOFOPT {
            break;
        }
        let start = pos + 4;
        let value = body
            .get(start..start + usize::from(len))
            .ok_or(CaptureError::BadOption {
                offset: at,
                option_offset: at + 8 + pos as u64,
                code,
                length: len,
            })?;
        match (code, value) {
            (OPT_IF_TSRESOL, [resol, ..]) => {
                iface.per_sec = units_per_second(*resol).ok_or(CaptureError::BadTsresol {
                    offset: at,
                    value: *resol,
                })?;
            }
            (OPT_IF_TSOFFSET, _) => {
                // The option is a signed 64-bit count of seconds.
                if let Some(secs) = endian.u64(value, 0) {
                    iface.offset_secs = secs as i64;
                }
            }
            _ => {}
        }
        pos = start + usize::from(len).div_ceil(4) * 4;
    }
    Ok(iface)
}

/// Decodes `if_tsresol`: the high bit selects a power of two, otherwise a power of ten, of
/// units per second. Powers of ten beyond 10^38 cannot be represented and are refused.
fn units_per_second(resol: u8) -> Option<u128> {
    let exp = u32::from(resol & 0x7f);
    if resol & 0x80 != 0 {
        1u128.checked_shl(exp)
    } else {
        10u128.checked_pow(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{read_tcp_segments, CaptureError, Timestamp};
    use std::net::SocketAddr;

    fn v4_frame(seq: u32, payload: &[u8]) -> Vec<u8> {
        ethernet(&[], ETH_IPV4, &v4_packet(seq, ACK, payload))
    }

    #[test]
    fn two_sections_with_different_byte_orders_and_resolutions() {
        let mut ng = Ng::new();
        ng.shb(false)
            .idb(1, 0, &[])
            .idb(101, 0, &[(9, vec![9])])
            .epb(0, 1_700_000_000_250_000, &v4_frame(1, b"one"), 57)
            .epb(1, 1_700_000_001_000_000_123, &v4_packet(2, ACK, b"two"), 43)
            .block(5, &[0; 20]) // interface statistics: skipped
            .block(0x0bad, &[1, 2, 3, 4]) // custom block: counted, skipped
            .shb(true)
            // 2^-10 s units plus a 100 s offset
            .idb(
                1,
                0,
                &[(9, vec![0x8a]), (14, 100u64.to_be_bytes().to_vec())],
            )
            .epb(0, 1536, &v4_frame(3, b"three"), 59);
        let segs = read_tcp_segments(&ng.buf).unwrap();
        let got: Vec<_> = segs
            .iter()
            .map(|s| (s.packet, s.time, s.payload.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    Timestamp {
                        secs: 1_700_000_000,
                        nanos: 250_000_000
                    },
                    b"one".to_vec()
                ),
                (
                    2,
                    Timestamp {
                        secs: 1_700_000_001,
                        nanos: 123
                    },
                    b"two".to_vec()
                ),
                // the custom block was frame 3
                (
                    4,
                    Timestamp {
                        secs: 101,
                        nanos: 500_000_000
                    },
                    b"three".to_vec()
                ),
            ]
        );
        let a: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        assert!(segs.iter().all(|s| s.src == a));
    }

    #[test]
    fn interfaces_are_local_to_their_section() {
        let mut ng = Ng::new();
        ng.shb(false)
            .idb(1, 0, &[])
            .idb(1, 0, &[])
            .shb(false)
            .idb(1, 0, &[])
            .epb(1, 0, &v4_frame(1, b"x"), 55);
        let err = read_tcp_segments(&ng.buf).unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::UnknownInterface {
                    packet: 1,
                    interface: 1,
                    defined: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn simple_and_obsolete_packet_blocks() {
        let mut ng = Ng::new();
        ng.shb(true)
            .idb(113, 0, &[])
            .spb(&sll(ETH_IPV4, &v4_packet(7, ACK, b"simple")))
            .pb(0, 3_000_000, &sll(ETH_IPV6, &v6_packet(8, ACK, b"old")));
        let segs = read_tcp_segments(&ng.buf).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (segs[0].packet, segs[0].time, &segs[0].payload[..]),
            (1, Timestamp::default(), &b"simple"[..])
        );
        assert_eq!(
            (segs[1].packet, segs[1].time.secs, &segs[1].payload[..]),
            (2, 3, &b"old"[..])
        );
        assert_eq!(
            segs[1].dst,
            "[2001:db8::2]:10000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn simple_packet_block_respects_snaplen() {
        let mut ng = Ng::new();
        let packet = v4_packet(7, ACK, b"0123456789");
        ng.shb(false).idb(101, 45, &[]).spb(&packet);
        let segs = read_tcp_segments(&ng.buf).unwrap();
        assert_eq!(&segs[0].payload[..], b"01234");
        assert!(segs[0].truncated);
        assert_eq!(segs[0].payload_len, 10);
    }

    #[test]
    fn non_packet_frames_still_count() {
        let mut ng = Ng::new();
        ng.shb(false)
            .idb(1, 0, &[])
            .block(9, b"MESSAGE=hi\n")
            .block(4, &[0; 4]) // name resolution: not a frame
            .block(0x4000_0bad, &[0, 0, 0x7e, 0xd9])
            .block(0x208, &[0; 28]) // sysdig event with flags: not a frame in Wireshark 4.0
            .epb(0, 0, &v4_frame(1, b"x"), 55);
        assert_eq!(read_tcp_segments(&ng.buf).unwrap()[0].packet, 3);
    }

    #[test]
    fn huge_block_length_is_reported_with_offset() {
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 0, &[]);
        let at = ng.buf.len();
        ng.epb(0, 0, &v4_frame(1, b"x"), 55);
        ng.buf[at + 4..at + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let err = read_tcp_segments(&ng.buf).unwrap_err();
        assert_eq!(
            err,
            CaptureError::BlockPastEnd {
                offset: at as u64,
                length: 0xffff_fff0,
                available: 92
            }
        );
        assert_eq!(
            err.to_string(),
            format!("pcapng block at offset {at} declares length 4294967280 beyond end of file (92 bytes left)")
        );
    }

    #[test]
    fn block_framing_errors() {
        let mut ng = Ng::new();
        ng.shb(true).idb(1, 0, &[]);
        let at = ng.buf.len();
        ng.block(0x0bad, &[0; 8]);
        let with_len = |len: u32| {
            let mut f = ng.buf.clone();
            f[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
            read_tcp_segments(&f).unwrap_err()
        };
        assert!(matches!(
            with_len(0),
            CaptureError::BlockTooShort {
                length: 0,
                min: 12,
                ..
            }
        ));
        assert!(matches!(with_len(8), CaptureError::BlockTooShort { .. }));
        assert_eq!(
            with_len(18),
            CaptureError::BlockMisaligned {
                offset: at as u64,
                length: 18
            }
        );
        assert_eq!(
            with_len(16),
            CaptureError::BlockTrailerMismatch {
                offset: at as u64,
                leading: 16,
                trailing: 0
            }
        );
        let mut f = ng.buf.clone();
        f.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            read_tcp_segments(&f).unwrap_err(),
            CaptureError::ShortHeader {
                needed: 8,
                available: 3,
                ..
            }
        ));
    }

    #[test]
    fn section_header_errors() {
        let mut ng = Ng::new();
        ng.shb(false);
        assert_eq!(read_tcp_segments(&ng.buf), Ok(vec![]));
        let mut bad_bom = ng.buf.clone();
        bad_bom[8] = 0;
        assert!(matches!(
            read_tcp_segments(&bad_bom).unwrap_err(),
            CaptureError::BadByteOrder { offset: 0, .. }
        ));
        let mut v2 = ng.buf.clone();
        v2[12] = 2;
        assert_eq!(
            read_tcp_segments(&v2).unwrap_err(),
            CaptureError::UnsupportedVersion {
                offset: 0,
                major: 2,
                minor: 0
            }
        );
        assert!(matches!(
            read_tcp_segments(&ng.buf[..10]).unwrap_err(),
            CaptureError::ShortHeader { .. }
        ));
    }

    #[test]
    fn packet_errors() {
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 0, &[]);
        let at = ng.buf.len();
        ng.epb(0, 0, &v4_frame(1, b"x"), 55);
        let with_caplen = |caplen: u32| {
            let mut f = ng.buf.clone();
            f[at + 20..at + 24].copy_from_slice(&caplen.to_le_bytes());
            read_tcp_segments(&f).unwrap_err()
        };
        assert!(matches!(
            with_caplen(0x7fff_ffff),
            CaptureError::CaplenTooLarge { packet: 1, .. }
        ));
        assert_eq!(
            with_caplen(61),
            CaptureError::PacketPastBlock {
                packet: 1,
                offset: at as u64,
                caplen: 61,
                available: 60
            }
        );
        let mut no_idb = Ng::new();
        no_idb.shb(false).spb(b"data");
        assert!(matches!(
            read_tcp_segments(&no_idb.buf).unwrap_err(),
            CaptureError::UnknownInterface { .. }
        ));
    }

    #[test]
    fn option_errors() {
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 0, &[(9, vec![39])]);
        assert!(matches!(
            read_tcp_segments(&ng.buf).unwrap_err(),
            CaptureError::BadTsresol { value: 39, .. }
        ));
        let mut ng = Ng::new();
        ng.shb(false).idb(1, 0, &[(2, vec![b'x'; 4])]);
        let len_at = 28 + 8 + 8 + 2;
        ng.buf[len_at..len_at + 2].copy_from_slice(&200u16.to_le_bytes());
        assert_eq!(
            read_tcp_segments(&ng.buf).unwrap_err(),
            CaptureError::BadOption {
                offset: 28,
                option_offset: 44,
                code: 2,
                length: 200
            }
        );
        // 2^-127 and 10^-38 are representable; an offset pushes seconds below zero.
        let mut ng = Ng::new();
        ng.shb(false)
            .idb(101, 0, &[(9, vec![0xff])])
            .idb(
                101,
                0,
                &[(9, vec![38]), (14, (-5i64).to_le_bytes().to_vec())],
            )
            .epb(0, u64::MAX, &v4_packet(1, ACK, b"a"), 41)
            .epb(1, 0, &v4_packet(2, ACK, b"b"), 41);
        let segs = read_tcp_segments(&ng.buf).unwrap();
        assert_eq!(segs[0].time, Timestamp { secs: 0, nanos: 0 });
        assert_eq!(segs[1].time, Timestamp { secs: -5, nanos: 0 });
    }
}
