//! Reads classic libpcap files (a 24-byte file header, then 16-byte record headers and packet
//! bytes), in microsecond or nanosecond resolution and either byte order, as frames.

use super::types::{CaptureError, Endian, Frame, Timestamp, MAX_CAPLEN};

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Recognises a pcap magic number read both ways round; returns the file's byte order and
/// whether timestamps are in nanoseconds.
pub(super) fn detect(magic_le: u32, magic_be: u32) -> Option<(Endian, bool)> {
    match (magic_le, magic_be) {
        (MAGIC_MICROS, _) => Some((Endian::Little, false)),
        (_, MAGIC_MICROS) => Some((Endian::Big, false)),
        (MAGIC_NANOS, _) => Some((Endian::Little, true)),
        (_, MAGIC_NANOS) => Some((Endian::Big, true)),
        _ => None,
    }
}

/// Walks every record of a pcap file whose magic [`detect`] accepted, handing each to `sink`.
pub(super) fn read(
    file: &[u8],
    endian: Endian,
    nanos: bool,
    sink: &mut dyn FnMut(Frame<'_>),
) -> Result<(), CaptureError> {
    let header = file
        .get(..FILE_HEADER_LEN)
        .ok_or(CaptureError::ShortHeader {
            what: "pcap file header",
            offset: 0,
            needed: FILE_HEADER_LEN as u64,
            available: file.len() as u64,
        })?;
    // The upper bits of this field carry FCS information, not the link type. The version,
    // time zone and snapshot length fields are not needed: readers in the wild ignore them.
    let linktype = endian.u32(header, 20).unwrap_or(0) & 0xffff;
    let per_sec: u128 = if nanos { 1_000_000_000 } else { 1_000_000 };

    let mut offset = FILE_HEADER_LEN;
    let mut number = 0u64;
    while let Some(rest) = file.get(offset..).filter(|r| !r.is_empty()) {
        number += 1;
        let short = || CaptureError::ShortHeader {
            what: "pcap record header",
            offset: offset as u64,
            needed: RECORD_HEADER_LEN as u64,
            available: rest.len() as u64,
        };
        let field = |at| endian.u32(rest, at).ok_or_else(short);
        let (ts_sec, ts_frac, caplen, orig_len) = (field(0)?, field(4)?, field(8)?, field(12)?);
        if caplen > MAX_CAPLEN {
            return Err(CaptureError::CaplenTooLarge {
                packet: number,
                offset: offset as u64,
                caplen,
                max: MAX_CAPLEN,
            });
        }
        let end = RECORD_HEADER_LEN + caplen as usize;
        let data = rest
            .get(RECORD_HEADER_LEN..end)
            .ok_or(CaptureError::CaplenPastEnd {
                packet: number,
                offset: offset as u64,
                caplen,
                available: rest.len().saturating_sub(RECORD_HEADER_LEN) as u64,
            })?;
        sink(Frame {
            number,
            linktype,
            // The seconds field is unsigned in current writers, which pushes 2038 to 2106.
            time: Timestamp::from_parts(i64::from(ts_sec), u64::from(ts_frac), per_sec),
            data,
            orig_len,
        });
        offset += end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{read_tcp_segments, read_tcp_segments_partial, CaptureError, Timestamp};

    #[test]
    fn both_byte_orders_and_resolutions_give_the_same_segments() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1000, ACK, b"hello"));
        for big in [false, true] {
            for nanos in [false, true] {
                let frac = if nanos { 123_456_789 } else { 123_456 };
                let file = pcap_file(big, nanos, 1, &[rec(1_700_000_000, frac, frame.clone())]);
                let segs = read_tcp_segments(&file).unwrap();
                assert_eq!(segs.len(), 1, "big={big} nanos={nanos}");
                let want_nanos = if nanos { 123_456_789 } else { 123_456_000 };
                assert_eq!(
                    segs[0].time,
                    Timestamp {
                        secs: 1_700_000_000,
                        nanos: want_nanos
                    }
                );
                assert_eq!(&segs[0].payload[..], b"hello");
                assert_eq!(segs[0].seq, 1000);
                assert_eq!(segs[0].packet, 1);
            }
        }
    }

    #[test]
    fn oversized_fraction_carries_into_seconds() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"x"));
        let file = pcap_file(false, false, 1, &[rec(10, 2_500_000, frame)]);
        let segs = read_tcp_segments(&file).unwrap();
        assert_eq!(
            segs[0].time,
            Timestamp {
                secs: 12,
                nanos: 500_000_000
            }
        );
    }

    #[test]
    fn header_only_file_has_no_segments() {
        let file = pcap_file(false, false, 1, &[]);
        assert_eq!(file.len(), 24);
        assert_eq!(read_tcp_segments(&file), Ok(vec![]));
        assert_eq!(
            read_tcp_segments(&pcap_file(true, true, 1, &[])),
            Ok(vec![])
        );
    }

    #[test]
    fn short_file_header_is_an_error() {
        let file = pcap_file(false, false, 1, &[]);
        let err = read_tcp_segments(&file[..10]).unwrap_err();
        assert_eq!(
            err,
            CaptureError::ShortHeader {
                what: "pcap file header",
                offset: 0,
                needed: 24,
                available: 10
            }
        );
    }

    #[test]
    fn huge_caplen_is_rejected_with_packet_and_offset() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"ok"));
        let mut file = pcap_file(
            false,
            false,
            1,
            &[rec(1, 0, frame.clone()), rec(2, 0, frame)],
        );
        let second = 24 + 16 + 60;
        file[second + 8..second + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let err = read_tcp_segments(&file).unwrap_err();
        assert_eq!(
            err,
            CaptureError::CaplenTooLarge {
                packet: 2,
                offset: second as u64,
                caplen: 0x7fff_ffff,
                max: 262_144
            }
        );
        assert!(err.to_string().contains("packet 2 at offset 100"), "{err}");
        // The packet before the damage is still available to a lenient caller.
        let (segs, err) = read_tcp_segments_partial(&file);
        assert_eq!(segs.len(), 1);
        assert!(err.is_some());
    }

    #[test]
    fn record_cut_short_by_end_of_file() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"ok"));
        let file = pcap_file(
            true,
            false,
            1,
            &[rec(1, 0, frame.clone()), rec(2, 0, frame)],
        );
        let err = read_tcp_segments(&file[..file.len() - 7]).unwrap_err();
        assert_eq!(
            err,
            CaptureError::CaplenPastEnd {
                packet: 2,
                offset: 100,
                caplen: 60,
                available: 53
            }
        );
        let err = read_tcp_segments(&file[..24 + 16 + 60 + 5]).unwrap_err();
        assert_eq!(
            err,
            CaptureError::ShortHeader {
                what: "pcap record header",
                offset: 100,
                needed: 16,
                available: 5
            }
        );
    }

    #[test]
    fn fcs_bits_in_linktype_field_are_ignored() {
        let frame = ethernet(&[], ETH_IPV4, &v4_packet(1, ACK, b"fcs"));
        let file = pcap_file(
            false,
            false,
            0x1000_0000 | 0x0400_0000 | 1,
            &[rec(1, 0, frame)],
        );
        assert_eq!(read_tcp_segments(&file).unwrap().len(), 1);
    }
}
