//! The values the capture readers share: the segments, timestamps and errors they return,
//! and the frame and byte-order helpers the pcap and pcapng readers hand to the decoder.

// A leaf: the format readers (pcap, pcapng), reassembly and the decoder in mod.rs all take
// these from here, so none of them has to import its parent module.

use std::net::SocketAddr;

use bytes::Bytes;

/// Largest captured length accepted for one packet. tcpdump's `-s 0` snapshot length is
/// 262144, so a larger record can only come from a corrupt or hostile file.
pub const MAX_CAPLEN: u32 = 256 * 1024;

/// A capture timestamp: seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds past `secs`, below 1,000,000,000.
    pub nanos: u32,
}

impl Timestamp {
    /// Builds a timestamp from whole seconds and a fraction counted in `1/per_sec` units;
    /// a fraction of a second or more is carried into the seconds, as some writers emit it.
    pub(super) fn from_parts(secs: i64, frac: u64, per_sec: u128) -> Timestamp {
        let per_sec = per_sec.max(1);
        let frac = u128::from(frac);
        let carry = i64::try_from(frac / per_sec).unwrap_or(i64::MAX);
        // rem < per_sec, so the quotient is below 1e9; rem < 2^64 keeps the product in range.
        let rem = frac % per_sec;
        let nanos = u32::try_from(rem * 1_000_000_000 / per_sec).unwrap_or(0);
        Timestamp {
            secs: secs.saturating_add(carry),
            nanos,
        }
    }
}

/// One TCP segment as captured, with its IP addresses and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment {
    /// 1-based frame number in the file, numbered as Wireshark numbers frames (every packet
    /// record counts, TCP or not).
    pub packet: u64,
    /// When the packet was captured.
    pub time: Timestamp,
    /// The sender's address and port.
    pub src: SocketAddr,
    /// The receiver's address and port.
    pub dst: SocketAddr,
    /// The header's sequence number: that of the first payload byte, or on a SYN the
    /// initial one.
    pub seq: u32,
    /// The SYN flag: the sender opens the connection.
    pub syn: bool,
    /// The FIN flag: the sender has no more to send.
    pub fin: bool,
    /// The RST flag: the connection is reset.
    pub rst: bool,
    /// The TCP payload bytes actually present in the file.
    pub payload: Bytes,
    /// True when the capture cut the payload short (caplen below the original length).
    pub truncated: bool,
    /// Payload length on the wire, from the IP length fields; `payload.len()` unless
    /// `truncated`. Reassembly uses it to size the hole a truncated segment leaves.
    pub payload_len: u32,
}

/// What is wrong with a capture file's structure, and where.
///
/// Offsets are byte offsets from the start of the file; packet numbers are 1-based frame
/// numbers. A packet whose *contents* cannot be parsed as IP/TCP is skipped, not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The file has no bytes.
    #[error("capture file is empty")]
    Empty,
    /// The first four bytes are neither a pcap magic number (either byte order, micro- or
    /// nanosecond) nor a pcapng section header.
    #[error("not a pcap or pcapng file: unknown magic number {magic:#010x} at offset 0")]
    UnknownMagic {
        /// The first four bytes, read big-endian.
        magic: u32,
    },
    /// The file ends inside a fixed-size header.
    #[error("file ends inside the {what} at offset {offset}: {needed} bytes needed, {available} present")]
    ShortHeader {
        /// Which header.
        what: &'static str,
        /// Where the header starts.
        offset: u64,
        /// The header's size.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A packet declares a captured length above [`MAX_CAPLEN`].
    #[error("packet {packet} at offset {offset} declares captured length {caplen}, above the limit of {max} bytes")]
    CaplenTooLarge {
        /// The packet's frame number.
        packet: u64,
        /// Where its record or block starts.
        offset: u64,
        /// The captured length declared.
        caplen: u32,
        /// [`MAX_CAPLEN`].
        max: u32,
    },
    /// A pcap record declares more packet bytes than the file has left.
    #[error("pcap record for packet {packet} at offset {offset} declares captured length {caplen} beyond end of file ({available} bytes left)")]
    CaplenPastEnd {
        /// The packet's frame number.
        packet: u64,
        /// Where its record header starts.
        offset: u64,
        /// The captured length declared.
        caplen: u32,
        /// Bytes left in the file after the record header.
        available: u64,
    },
    /// A pcapng block declares a length past the end of the file.
    #[error("pcapng block at offset {offset} declares length {length} beyond end of file ({available} bytes left)")]
    BlockPastEnd {
        /// Where the block starts.
        offset: u64,
        /// The block length declared.
        length: u32,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A pcapng block declares a length too small for its type's fixed fields.
    #[error("pcapng block of type {block_type:#010x} at offset {offset} declares length {length}, below its minimum of {min}")]
    BlockTooShort {
        /// Where the block starts.
        offset: u64,
        /// The block type.
        block_type: u32,
        /// The block length declared.
        length: u32,
        /// The smallest length a block of that type can have.
        min: u32,
    },
    /// A pcapng block length that is not a multiple of 4.
    #[error("pcapng block at offset {offset} declares length {length}, not a multiple of 4")]
    BlockMisaligned {
        /// Where the block starts.
        offset: u64,
        /// The block length declared.
        length: u32,
    },
    /// The length at the end of a pcapng block differs from the one at its start.
    #[error("pcapng block at offset {offset} ends with length {trailing}, but starts with length {leading}")]
    BlockTrailerMismatch {
        /// Where the block starts.
        offset: u64,
        /// The length at the start.
        leading: u32,
        /// The length at the end.
        trailing: u32,
    },
    /// A pcapng section header whose byte-order magic is not 0x1a2b3c4d either way round.
    #[error("pcapng section header at offset {offset} has byte-order magic {magic:#010x}, expected 0x1a2b3c4d in either byte order")]
    BadByteOrder {
        /// Where the section header starts.
        offset: u64,
        /// The magic, read big-endian.
        magic: u32,
    },
    /// A pcapng section of a major version other than 1.
    #[error("pcapng section header at offset {offset} has unsupported version {major}.{minor}")]
    UnsupportedVersion {
        /// Where the section header starts.
        offset: u64,
        /// The major version.
        major: u16,
        /// The minor version.
        minor: u16,
    },
    /// A pcapng packet names an interface its section never described.
    #[error("pcapng packet {packet} at offset {offset} refers to interface {interface}, but its section describes {defined} interface(s)")]
    UnknownInterface {
        /// The packet's frame number.
        packet: u64,
        /// Where its block starts.
        offset: u64,
        /// The interface ID it names.
        interface: u32,
        /// How many interfaces the section describes so far.
        defined: usize,
    },
    /// A pcapng packet declares more captured bytes than its block holds.
    #[error("pcapng packet {packet} at offset {offset} declares captured length {caplen} beyond its block ({available} bytes of packet data)")]
    PacketPastBlock {
        /// The packet's frame number.
        packet: u64,
        /// Where its block starts.
        offset: u64,
        /// The captured length declared.
        caplen: u32,
        /// Bytes the block has room for after its fixed fields.
        available: u64,
    },
    /// A pcapng option runs past the end of its block.
    #[error("pcapng block at offset {offset}: option {code} at offset {option_offset} declares length {length} beyond the block")]
    BadOption {
        /// Where the block starts.
        offset: u64,
        /// Where the option starts.
        option_offset: u64,
        /// The option code.
        code: u16,
        /// The option length declared.
        length: u16,
    },
    /// An interface's timestamp resolution (`if_tsresol`) too fine to convert: its units per
    /// second overflow.
    #[error(
        "pcapng interface description at offset {offset} has unsupported if_tsresol {value:#04x}"
    )]
    BadTsresol {
        /// Where the interface description block starts.
        offset: u64,
        /// The option's byte.
        value: u8,
    },
}

/// One packet record as the file format describes it, before any header is parsed.
pub(crate) struct Frame<'a> {
    /// 1-based frame number, as Wireshark counts them.
    pub number: u64,
    /// The link-layer header type (LINKTYPE_*) of the interface it was captured on.
    pub linktype: u32,
    /// When it was captured.
    pub time: Timestamp,
    /// The captured bytes, from the link-layer header on.
    pub data: &'a [u8],
    /// The packet's length on the wire; more than `data.len()` when the capture cut it.
    pub orig_len: u32,
}

/// Byte order of the multi-byte fields of a pcap file or pcapng section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    /// Least significant byte first.
    Little,
    /// Most significant byte first.
    Big,
}

impl Endian {
    /// The 16-bit value at `at`, or `None` if `buf` ends first.
    pub fn u16(self, buf: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = buf.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }

    /// The 32-bit value at `at`, or `None` if `buf` ends first.
    pub fn u32(self, buf: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    /// The 64-bit value at `at`, or `None` if `buf` ends first.
    pub fn u64(self, buf: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    }
}
