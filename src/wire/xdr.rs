//! XDR (RFC 4506) primitives for NDMP: a bounds-checked reader over `Bytes`, the `Xdr` trait,
//! and the wire types every message is built from (u_long, u_short, u_quad, strings, opaque).

use super::sample::{Gen, Sample};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::fmt;

/// Why a body or header could not be decoded. Offsets count from the start of the buffer
/// handed to the [`XdrReader`] (the message body, or the whole record for headers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The buffer ends before the value does.
    #[error("truncated at byte {offset}: {what} needs {need} bytes, {have} left")]
    Truncated {
        /// Where the value starts.
        offset: usize,
        /// The XDR type or field being read.
        what: &'static str,
        /// Bytes the value needs, padding included.
        need: u64,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// An array count above [`Limits::max_array`].
    #[error("at byte {offset}: array of {count} elements exceeds the limit of {limit}")]
    ArrayTooLong {
        /// Where the count word is.
        offset: usize,
        /// The count on the wire.
        count: u32,
        /// The limit in force.
        limit: u32,
    },
    /// An array count whose elements could not fit in the bytes left, even at their smallest.
    #[error("at byte {offset}: {count} elements of at least {min} bytes cannot fit in the {have} bytes left")]
    ArrayOverrun {
        /// Where the count word is.
        offset: usize,
        /// The count on the wire.
        count: u32,
        /// The smallest encoding of one element, in bytes.
        min: usize,
        /// Bytes left after the count word.
        have: usize,
    },
    /// An opaque or string length above [`Limits::max_bytes`].
    #[error("at byte {offset}: opaque/string of {len} bytes exceeds the limit of {limit}")]
    LengthTooLong {
        /// Where the length word is.
        offset: usize,
        /// The length on the wire.
        len: u32,
        /// The limit in force.
        limit: u32,
    },
    /// A union discriminant with no arm.
    #[error("at byte {offset}: {value:#x} is not a valid {what}")]
    BadDiscriminant {
        /// Where the discriminant is.
        offset: usize,
        /// The union's XDR type.
        what: &'static str,
        /// The discriminant on the wire.
        value: u32,
    },
    /// A `u_short`, `u_char` or `short` whose word holds a value the type cannot.
    #[error("at byte {offset}: {value:#x} is out of range for {what}")]
    OutOfRange {
        /// Where the word is.
        offset: usize,
        /// The XDR type.
        what: &'static str,
        /// The word on the wire.
        value: u32,
    },
    /// Bytes left over after the last field of a body that must use them all.
    #[error("{count} unexpected bytes after the end of the body")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Caps applied while decoding untrusted input, on top of "never more than the bytes present".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest element count accepted for any variable-length array.
    pub max_array: u32,
    /// Largest length accepted for any variable-length opaque or string.
    pub max_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // An nlist of a large selective restore or an FH batch can legitimately hold hundreds of
        // thousands of entries; the record size limit bounds the rest.
        Limits {
            max_array: 1 << 20,
            max_bytes: u32::MAX,
        }
    }
}

/// A cursor over one XDR-encoded buffer. Every read checks the bytes present first, so a
/// hostile length never causes an allocation or a panic.
#[derive(Debug, Clone)]
pub struct XdrReader {
    buf: Bytes,
    start_len: usize,
    limits: Limits,
}

impl XdrReader {
    /// A reader over `buf` with the default limits.
    pub fn new(buf: Bytes) -> Self {
        Self::with_limits(buf, Limits::default())
    }

    /// A reader over `buf` with the given limits.
    pub fn with_limits(buf: Bytes, limits: Limits) -> Self {
        let start_len = buf.len();
        XdrReader {
            buf,
            start_len,
            limits,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.start_len - self.buf.len()
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The limits this reader applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), XdrError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(XdrError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }

    /// The bytes not consumed yet, without consuming them.
    pub fn rest(&self) -> &Bytes {
        &self.buf
    }

    fn need(&self, what: &'static str, need: u64) -> Result<(), XdrError> {
        if (self.buf.len() as u64) < need {
            Err(XdrError::Truncated {
                offset: self.offset(),
                what,
                need,
                have: self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    /// Reads one big-endian word; `what` names it in the error if fewer than 4 bytes are left.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, XdrError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32())
    }

    /// Reads a big-endian 64-bit value (`hyper`, `ndmp4_u_quad`); `what` names it in the
    /// error if fewer than 8 bytes are left.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, XdrError> {
        self.need(what, 8)?;
        Ok(self.buf.get_u64())
    }

    /// Variable-length opaque or string: length word, data, zero padding to 4 bytes.
    /// Returns a zero-copy slice of the input.
    pub fn opaque(&mut self, what: &'static str) -> Result<Bytes, XdrError> {
        let offset = self.offset();
        let len = self.u32(what)?;
        if len > self.limits.max_bytes {
            return Err(XdrError::LengthTooLong {
                offset,
                len,
                limit: self.limits.max_bytes,
            });
        }
        let padded = pad4(len as u64);
        self.need(what, padded)?;
        let data = self.buf.split_to(len as usize);
        self.buf.advance((padded - len as u64) as usize);
        Ok(data)
    }

    /// Fixed-length opaque of N bytes plus padding.
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], XdrError> {
        let padded = pad4(N as u64);
        self.need(what, padded)?;
        let mut out = [0u8; N];
        self.buf.copy_to_slice(&mut out);
        self.buf.advance((padded - N as u64) as usize);
        Ok(out)
    }

    /// Reads an array count and proves that `count` elements of at least `min_size` bytes
    /// each can be present before the caller allocates anything.
    pub fn array_len(&mut self, what: &'static str, min_size: usize) -> Result<usize, XdrError> {
        let offset = self.offset();
        let count = self.u32(what)?;
        if count > self.limits.max_array {
            return Err(XdrError::ArrayTooLong {
                offset,
                count,
                limit: self.limits.max_array,
            });
        }
        if (count as u64).saturating_mul(min_size.max(1) as u64) > self.buf.len() as u64 {
            return Err(XdrError::ArrayOverrun {
                offset,
                count,
                min: min_size,
                have: self.buf.len(),
            });
        }
        Ok(count as usize)
    }
}

fn pad4(n: u64) -> u64 {
    (n + 3) & !3
}

/// Appends variable-length opaque bytes with their length word and padding.
pub fn put_opaque(out: &mut BytesMut, data: &[u8]) {
    out.reserve(4 + data.len() + 3);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    let pad = (4 - data.len() % 4) % 4;
    out.put_bytes(0, pad);
}

/// A type with an XDR encoding.
pub trait Xdr: Sized {
    /// The fewest bytes any value of this type occupies on the wire; lets array decoding
    /// reject impossible counts before allocating.
    const MIN_SIZE: usize;
    /// Appends the encoding to `out`.
    fn encode(&self, out: &mut BytesMut);
    /// Reads one value; fails if the bytes run out or break a rule of the type or the
    /// reader's limits.
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError>;
}

impl Xdr for u32 {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(*self);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        r.u32("u_long")
    }
}

/// `ndmp_u_quad` and `unsigned hyper`: two big-endian words, high first.
impl Xdr for u64 {
    const MIN_SIZE: usize = 8;
    fn encode(&self, out: &mut BytesMut) {
        out.put_u64(*self);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        r.u64("u_quad")
    }
}

/// `u_short`: 4 bytes on the wire. Values above 0xFFFF are rejected rather than truncated
/// (libtirpc truncates silently), so a hostile port or version never aliases a valid one.
impl Xdr for u16 {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(*self as u32);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        let v = r.u32("u_short")?;
        u16::try_from(v).map_err(|_| XdrError::OutOfRange {
            offset,
            what: "u_short",
            value: v,
        })
    }
}

/// `u_char`: 4 bytes on the wire, range checked.
impl Xdr for u8 {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(*self as u32);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        let v = r.u32("u_char")?;
        u8::try_from(v).map_err(|_| XdrError::OutOfRange {
            offset,
            what: "u_char",
            value: v,
        })
    }
}

/// `short`: a sign-extended 32-bit int on the wire, range checked.
impl Xdr for i16 {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(*self as i32);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let offset = r.offset();
        let v = r.u32("short")?;
        i16::try_from(v as i32).map_err(|_| XdrError::OutOfRange {
            offset,
            what: "short",
            value: v,
        })
    }
}

impl<T: Xdr> Xdr for Vec<T> {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.len() as u32);
        for item in self {
            item.encode(out);
        }
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        let n = r.array_len("array", T::MIN_SIZE)?;
        // array_len proved n * MIN_SIZE bytes are present, so this allocation is bounded by
        // the input size, not by the count on the wire.
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(r)?);
        }
        Ok(v)
    }
}

/// Fixed-length opaque data, e.g. the 16-byte MD5 digest or the 64-byte challenge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fixed<const N: usize>(pub [u8; N]);

impl<const N: usize> Xdr for Fixed<N> {
    const MIN_SIZE: usize = (N + 3) & !3;
    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.0);
        out.put_bytes(0, (4 - N % 4) % 4);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        r.fixed::<N>("fixed opaque").map(Fixed)
    }
}

impl<const N: usize> fmt::Debug for Fixed<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex(&self.0))
    }
}

impl<const N: usize> Default for Fixed<N> {
    fn default() -> Self {
        Fixed([0; N])
    }
}

impl<const N: usize> Serialize for Fixed<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<const N: usize> Sample for Fixed<N> {
    fn sample(g: &mut Gen) -> Self {
        let mut a = [0u8; N];
        for b in a.iter_mut() {
            *b = g.next_u64() as u8;
        }
        Fixed(a)
    }
}

/// An XDR `string<>`. NDMP carries file names and other text that need not be UTF-8, so the
/// bytes are kept exactly as received; display escapes what is not valid UTF-8.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NdmpString(pub Bytes);

impl NdmpString {
    /// The bytes as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Whether the string has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for NdmpString {
    fn from(s: &str) -> Self {
        NdmpString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for NdmpString {
    fn from(s: String) -> Self {
        NdmpString(Bytes::from(s.into_bytes()))
    }
}

impl From<&[u8]> for NdmpString {
    fn from(s: &[u8]) -> Self {
        NdmpString(Bytes::copy_from_slice(s))
    }
}

impl Xdr for NdmpString {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, &self.0);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        r.opaque("string").map(NdmpString)
    }
}

impl fmt::Display for NdmpString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NdmpString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl Serialize for NdmpString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_str() {
            Some(text) => s.serialize_str(text),
            // Not UTF-8: keep it lossless and say so, instead of replacing bytes.
            None => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex(&self.0))?;
                m.end()
            }
        }
    }
}

impl Sample for NdmpString {
    fn sample(g: &mut Gen) -> Self {
        let n = g.len(13);
        let v: Vec<u8> = if g.below(4) == 0 {
            // raw bytes exercise non-UTF-8 names; no NUL, because C's xdr_string measures the
            // string with strlen and so cannot carry one
            (0..n).map(|_| 1 + g.below(255) as u8).collect()
        } else {
            (0..n).map(|_| b'a' + g.below(26) as u8).collect()
        };
        NdmpString(Bytes::from(v))
    }
}

/// An XDR `opaque<>`: a zero-copy view into the received record.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Opaque(pub Bytes);

impl Opaque {
    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Xdr for Opaque {
    const MIN_SIZE: usize = 4;
    fn encode(&self, out: &mut BytesMut) {
        put_opaque(out, &self.0);
    }
    fn decode(r: &mut XdrReader) -> Result<Self, XdrError> {
        r.opaque("opaque").map(Opaque)
    }
}

/// Opaque data longer than this is shown as its length and first bytes.
const OPAQUE_SHOW: usize = 64;

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= OPAQUE_SHOW {
            write!(f, "{}", hex(&self.0))
        } else {
            write!(
                f,
                "<{} bytes: {}…>",
                self.0.len(),
                hex(&self.0[..OPAQUE_SHOW / 2])
            )
        }
    }
}

impl Serialize for Opaque {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() <= OPAQUE_SHOW {
            s.serialize_str(&hex(&self.0))
        } else {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("len", &self.0.len())?;
            m.serialize_entry("head", &hex(&self.0[..OPAQUE_SHOW / 2]))?;
            m.end()
        }
    }
}

impl Sample for Opaque {
    fn sample(g: &mut Gen) -> Self {
        let n = g.len(21);
        Opaque(Bytes::from(g.bytes(n)))
    }
}

/// Lower-case hex of a byte slice.
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Encodes one value into a fresh buffer.
pub fn to_bytes<T: Xdr>(v: &T) -> Bytes {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out.freeze()
}

/// Decodes one value that must use every byte of `buf`.
pub fn from_bytes<T: Xdr>(buf: Bytes) -> Result<T, XdrError> {
    let mut r = XdrReader::new(buf);
    let v = T::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Declares an XDR struct: fields are encoded and decoded in declaration order.
#[macro_export]
macro_rules! xdr_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::wire::xdr::Xdr for $name {
            const MIN_SIZE: usize = 0 $(+ <$ty as $crate::wire::xdr::Xdr>::MIN_SIZE)*;
            #[allow(unused_variables)]
            fn encode(&self, out: &mut bytes::BytesMut) {
                $($crate::wire::xdr::Xdr::encode(&self.$field, out);)*
            }
            #[allow(unused_variables)]
            fn decode(r: &mut $crate::wire::xdr::XdrReader) -> Result<Self, $crate::wire::xdr::XdrError> {
                Ok($name { $($field: <$ty as $crate::wire::xdr::Xdr>::decode(r)?),* })
            }
        }

        impl $crate::wire::sample::Sample for $name {
            #[allow(unused_variables)]
            fn sample(g: &mut $crate::wire::sample::Gen) -> Self {
                $name { $($field: $crate::wire::sample::Sample::sample(g)),* }
            }
        }
    };
}

/// Declares an open XDR enum: a `u32` newtype with named constants. Unknown values decode
/// and re-encode unchanged, so vendor codes and newer values survive a round trip.
#[macro_export]
macro_rules! open_enum {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub u32);

        #[allow(non_upper_case_globals)]
        impl $name {
            $($(#[$vm])* pub const $variant: $name = $name($value);)*

            /// Every named value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name($value)),*];

            /// The spec's name without its prefix, or `None` for a value the spec does not name.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $value => Some(stringify!($variant)),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.name() {
                    Some(n) => s.serialize_str(n),
                    None => s.serialize_u32(self.0),
                }
            }
        }

        impl $crate::wire::xdr::Xdr for $name {
            const MIN_SIZE: usize = 4;
            fn encode(&self, out: &mut bytes::BytesMut) {
                bytes::BufMut::put_u32(out, self.0);
            }
            fn decode(r: &mut $crate::wire::xdr::XdrReader) -> Result<Self, $crate::wire::xdr::XdrError> {
                r.u32(stringify!($name)).map($name)
            }
        }

        impl $crate::wire::sample::Sample for $name {
            fn sample(g: &mut $crate::wire::sample::Gen) -> Self {
                // mostly named values; sometimes one the spec does not name, which must
                // survive a round trip unchanged
                if g.below(8) == 0 {
                    $name(g.next_u32())
                } else {
                    Self::ALL[g.below(Self::ALL.len() as u64) as usize]
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_padding_and_zero_copy() {
        let mut out = BytesMut::new();
        put_opaque(&mut out, b"abcde");
        assert_eq!(&out[..], b"\0\0\0\x05abcde\0\0\0");
        let buf = out.freeze();
        let mut r = XdrReader::new(buf.clone());
        let o = r.opaque("t").unwrap();
        assert_eq!(&o[..], b"abcde");
        // same allocation as the input: no copy was made
        assert_eq!(o.as_ptr(), buf[4..].as_ptr());
        r.finish().unwrap();
    }

    #[test]
    fn truncated_opaque_is_an_error() {
        let buf = Bytes::from_static(b"\0\0\0\x08abcd");
        let err = XdrReader::new(buf).opaque("t").unwrap_err();
        assert!(matches!(
            err,
            XdrError::Truncated {
                need: 8,
                have: 4,
                ..
            }
        ));
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        let buf = Bytes::from_static(b"\xff\xff\xff\xf0");
        assert!(matches!(
            XdrReader::new(buf).opaque("t"),
            Err(XdrError::Truncated { .. })
        ));
        let buf = Bytes::from_static(b"\x7f\xff\xff\xff\0\0\0\0");
        assert!(matches!(
            Vec::<u32>::decode(&mut XdrReader::new(buf)),
            Err(XdrError::ArrayTooLong { .. })
        ));
        let limits = Limits {
            max_array: u32::MAX,
            max_bytes: 16,
        };
        let buf = Bytes::from_static(b"\x7f\xff\xff\xff\0\0\0\0");
        assert!(matches!(
            Vec::<u32>::decode(&mut XdrReader::with_limits(buf.clone(), limits)),
            Err(XdrError::ArrayOverrun { .. })
        ));
        assert!(matches!(
            XdrReader::with_limits(buf, limits).opaque("t"),
            Err(XdrError::LengthTooLong { .. })
        ));
    }

    #[test]
    fn truncated_fixed_opaque_fails_fast() {
        // 16-byte digest with only 3 bytes present
        let buf = Bytes::from_static(b"\x01\x02\x03");
        assert!(matches!(
            Fixed::<16>::decode(&mut XdrReader::new(buf)),
            Err(XdrError::Truncated { need: 16, .. })
        ));
    }

    #[test]
    fn small_ints_are_range_checked() {
        let buf = Bytes::from_static(b"\x00\x01\x00\x04");
        assert!(matches!(
            u16::decode(&mut XdrReader::new(buf)),
            Err(XdrError::OutOfRange { value: 0x10004, .. })
        ));
        let buf = Bytes::from_static(b"\xff\xff\xff\xfe");
        assert_eq!(i16::decode(&mut XdrReader::new(buf)).unwrap(), -2);
        let buf = Bytes::from_static(b"\x00\x00\x01\x00");
        assert!(u8::decode(&mut XdrReader::new(buf)).is_err());
    }

    #[test]
    fn strings_keep_non_utf8_bytes() {
        let s = NdmpString(Bytes::from_static(b"caf\xe9\n"));
        assert_eq!(s.to_string(), "caf\\xe9\\n");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"hex":"636166e90a"}"#
        );
        let round = from_bytes::<NdmpString>(to_bytes(&s)).unwrap();
        assert_eq!(round, s);
    }
}
