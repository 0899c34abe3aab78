//! The tar block layout as pure functions over bytes: ustar header fields, numbers in octal
//! or base-256, checksums, pax extended-header records, pax times and POSIX ACL text.

/// Largest pax or GNU long-name header accepted (bytes of records per member).
pub const MAX_PAX: usize = 1 << 20;
/// Most regions in a sparse map. The writer archives a file with more as a plain file.
pub const MAX_SPARSE_ENTRIES: usize = 1 << 20;

/// Every header and every data area is made of 512-byte blocks.
pub const BLOCK: usize = 512;
pub type Block = [u8; BLOCK];

// ustar field offsets and lengths (POSIX pax, "ustar Interchange Format").
pub const NAME: (usize, usize) = (0, 100);
pub const MODE: (usize, usize) = (100, 8);
pub const UID: (usize, usize) = (108, 8);
pub const GID: (usize, usize) = (116, 8);
pub const SIZE: (usize, usize) = (124, 12);
pub const MTIME: (usize, usize) = (136, 12);
pub const CHKSUM: (usize, usize) = (148, 8);
pub const TYPEFLAG: usize = 156;
pub const LINKNAME: (usize, usize) = (157, 100);
pub const MAGIC: (usize, usize) = (257, 6);
pub const VERSION: (usize, usize) = (263, 2);
pub const DEVMAJOR: (usize, usize) = (329, 8);
pub const DEVMINOR: (usize, usize) = (337, 8);
pub const PREFIX: (usize, usize) = (345, 155);

// The old GNU layout reuses the prefix area (sparse members, type 'S').
pub const GNU_SPARSE: usize = 386;
pub const GNU_SPARSE_ENTRIES: usize = 4;
pub const GNU_ISEXTENDED: usize = 482;
pub const GNU_REALSIZE: (usize, usize) = (483, 12);
/// Entries in an old GNU sparse extension block, and where its continuation flag is.
pub const GNU_EXT_ENTRIES: usize = 21;
pub const GNU_EXT_ISEXTENDED: usize = 504;

/// Largest value an ustar size or time field holds in octal (11 digits).
pub const OCTAL_11_MAX: u64 = (1 << 33) - 1;
/// Largest value an ustar id or device field holds in octal (7 digits).
pub const OCTAL_7_MAX: u64 = (1 << 21) - 1;

pub fn field(b: &Block, f: (usize, usize)) -> &[u8] {
    &b[f.0..f.0 + f.1]
}

/// A NUL-terminated string field (the whole field when it has no NUL).
pub fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Which header layout a block uses, from its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// POSIX ustar ("ustar\0" "00"): the prefix field extends the name.
    Ustar,
    /// GNU ("ustar " " \0"): the prefix area holds times and sparse entries.
    Gnu,
    /// Version 7: no magic, no owner names, no devices.
    V7,
}

pub fn flavour(b: &Block) -> Flavour {
    match field(b, MAGIC) {
        b"ustar\0" => Flavour::Ustar,
        b"ustar " => Flavour::Gnu,
        _ => Flavour::V7,
    }
}

pub fn is_zero(b: &Block) -> bool {
    b.iter().all(|&c| c == 0)
}

/// True when the stored checksum matches the block's byte sum (unsigned, or the signed sum
/// some historic writers used), the checksum field counting as spaces.
pub fn checksum_ok(b: &Block) -> bool {
    let Some(stored) = get_num(field(b, CHKSUM)) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (CHKSUM.0..CHKSUM.0 + CHKSUM.1).contains(&i) {
            b' '
        } else {
            c
        };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    stored == unsigned || stored == signed
}

/// A block that can start a member: a good checksum, and either a ustar magic or (v7) a
/// type flag of that era and a name.
pub fn is_header(b: &Block) -> bool {
    if is_zero(b) || !checksum_ok(b) {
        return false;
    }
    match flavour(b) {
        Flavour::Ustar | Flavour::Gnu => true,
        Flavour::V7 => matches!(b[TYPEFLAG], 0 | b'0'..=b'7') && b[0] != 0,
    }
}

/// Fills the checksum field of a finished header: six octal digits, NUL, space.
pub fn seal(b: &mut Block) {
    b[CHKSUM.0..CHKSUM.0 + CHKSUM.1].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    put_octal(&mut b[CHKSUM.0..CHKSUM.0 + 7], u64::from(sum));
    b[CHKSUM.0 + 7] = b' ';
}

/// Writes `v` as zero-padded octal digits and a final NUL; false when it does not fit.
pub fn put_octal(f: &mut [u8], v: u64) -> bool {
    let digits = f.len() - 1;
    if digits < 21 && v >> (3 * digits) != 0 {
        return false;
    }
    let mut x = v;
    for c in f[..digits].iter_mut().rev() {
        *c = b'0' + (x & 7) as u8;
        x >>= 3;
    }
    f[digits] = 0;
    true
}

/// Writes `v` in octal when it fits, else in the base-256 form GNU tar reads: big-endian
/// two's complement, the first byte 0x80 for a positive number, 0xff for a negative one.
pub fn put_num(f: &mut [u8], v: i64) {
    if v >= 0 && put_octal(f, v as u64) {
        return;
    }
    let fill = if v < 0 { 0xff } else { 0 };
    f.fill(fill);
    let bytes = v.to_be_bytes();
    let n = f.len().min(8);
    let len = f.len();
    f[len - n..].copy_from_slice(&bytes[8 - n..]);
    if v >= 0 {
        f[0] = 0x80;
    }
}

/// Reads a numeric field: octal digits (leading spaces, ending at NUL or space; an empty
/// field is 0) or base-256. None when malformed or outside i64.
pub fn get_num(f: &[u8]) -> Option<i64> {
    let first = *f.first()?;
    if first & 0x80 != 0 {
        // base-256: 0x80 marks a positive number, a set second bit a negative one whose
        // two's complement covers the whole field.
        let mut v: i128 = if first & 0x40 != 0 {
            i128::from(first as i8)
        } else {
            i128::from(first & 0x3f)
        };
        for &c in &f[1..] {
            v = v.checked_mul(256)?.checked_add(i128::from(c))?;
            if v.unsigned_abs() > 1 << 100 {
                return None;
            }
        }
        return i64::try_from(v).ok();
    }
    let mut i = 0;
    while i < f.len() && f[i] == b' ' {
        i += 1;
    }
    let mut v: i64 = 0;
    while i < f.len() && f[i] != 0 && f[i] != b' ' {
        let c = f[i];
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(i64::from(c - b'0'))?;
        i += 1;
    }
    Some(v)
}

/// Appends one pax record, "<len> <key>=<value>\n", where len counts the whole record.
pub fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    loop {
        let next = base + decimal_digits(len as u64);
        if next == len {
            break;
        }
        len = next;
    }
    put_decimal(out, len as u64);
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Appends the decimal digits of `n` (no allocation: a header is formatted per member).
pub fn put_decimal(out: &mut Vec<u8>, n: u64) {
    let mut d = [0u8; 20];
    let mut i = d.len();
    let mut x = n;
    loop {
        i -= 1;
        d[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    out.extend_from_slice(&d[i..]);
}

fn decimal_digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Splits pax extended-header data into (key, value) records. An error names the first
/// malformed record; the records before it have been delivered.
pub fn parse_pax(data: &[u8], mut each: impl FnMut(&[u8], &[u8])) -> Result<(), String> {
    let mut rest = data;
    let mut at = 0usize;
    while !rest.is_empty() {
        // Some writers pad the data with NULs.
        if rest.iter().all(|&c| c == 0) {
            break;
        }
        let Some(sp) = rest.iter().take(21).position(|&c| c == b' ') else {
            return Err(format!("record at byte {at} has no length"));
        };
        let len = parse_decimal(&rest[..sp])
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| format!("record at byte {at} has a bad length"))?;
        if len < sp + 3 || len > rest.len() {
            return Err(format!("record at byte {at} has a length out of range"));
        }
        let rec = &rest[sp + 1..len];
        let Some((&b'\n', rec)) = rec.split_last() else {
            return Err(format!("record at byte {at} does not end in a newline"));
        };
        let Some(eq) = rec.iter().position(|&c| c == b'=') else {
            return Err(format!("record at byte {at} has no '='"));
        };
        each(&rec[..eq], &rec[eq + 1..]);
        rest = &rest[len..];
        at += len;
    }
    Ok(())
}

/// An unsigned decimal number of at most 20 digits.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// A pax time, "[-]seconds[.fraction]", as (seconds, nanoseconds) with the nanoseconds
/// counted forward from the seconds (so -1.5 is (-2, 500000000)).
pub fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = i64::try_from(parse_decimal(int)?).ok()?;
    let mut ns = 0u32;
    for i in 0..9 {
        ns = ns * 10 + frac.get(i).map_or(0, |&c| u32::from(c - b'0'));
    }
    if !neg {
        return Some((secs, ns));
    }
    if ns == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - ns))
    }
}

/// Appends the pax text of a time: whole seconds alone, else nine fraction digits.
pub fn put_time(out: &mut Vec<u8>, secs: i64, ns: u32) {
    let (int, frac) = match (secs < 0, ns) {
        (_, 0) => (secs.unsigned_abs(), None),
        (false, _) => (secs as u64, Some(ns)),
        // (secs, ns) is secs + ns/1e9, a negative number closer to zero than secs.
        (true, _) => ((secs + 1).unsigned_abs(), Some(1_000_000_000 - ns)),
    };
    if secs < 0 {
        out.push(b'-');
    }
    put_decimal(out, int);
    if let Some(f) = frac {
        out.push(b'.');
        let mut d = [b'0'; 9];
        let mut x = f;
        for c in d.iter_mut().rev() {
            *c = b'0' + (x % 10) as u8;
            x /= 10;
        }
        out.extend_from_slice(&d);
    }
}

// POSIX ACL tags of the kernel's xattr form.
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// The text form of a kernel ACL xattr value (version 2, 8-byte entries), one entry per
/// line with numeric ids, as GNU tar's --acls reads it. None if malformed.
pub fn acl_to_text(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return None;
    }
    if u32::from_le_bytes(value[..4].try_into().ok()?) != 2 {
        return None;
    }
    let mut out = Vec::new();
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let (name, qual) = match tag {
            ACL_USER_OBJ => ("user", None),
            ACL_USER => ("user", Some(id)),
            ACL_GROUP_OBJ => ("group", None),
            ACL_GROUP => ("group", Some(id)),
            ACL_MASK => ("mask", None),
            ACL_OTHER => ("other", None),
            _ => return None,
        };
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        if let Some(q) = qual {
            out.extend_from_slice(q.to_string().as_bytes());
        }
        out.push(b':');
        for (bit, c) in [(4, b'r'), (2, b'w'), (1, b'x')] {
            out.push(if perm & bit != 0 { c } else { b'-' });
        }
        out.push(b'\n');
    }
    Some(out)
}

/// Parses the text form of an ACL ("user::rw-,user:1000:r--,..." or one entry per line)
/// into the kernel's xattr value. Named qualifiers are looked up with `lookup(is_user,
/// name)`. Err says what is wrong.
pub fn acl_from_text(
    text: &[u8],
    lookup: &dyn Fn(bool, &[u8]) -> Option<u32>,
) -> Result<Vec<u8>, String> {
    let mut entries: Vec<(u16, u32, u16)> = Vec::new();
    for raw in text.split(|&c| c == b'\n' || c == b',') {
        let line = match raw.iter().position(|&c| c == b'#') {
            Some(i) => &raw[..i],
            None => raw,
        };
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if entries.len() >= 1024 {
            return Err("more than 1024 entries".into());
        }
        let parts: Vec<&[u8]> = line.split(|&c| c == b':').collect();
        if parts.len() < 3 || parts.len() > 4 {
            return Err(format!("bad entry {:?}", String::from_utf8_lossy(line)));
        }
        let (tag_name, qual, perms) = (parts[0], parts[1], parts[2]);
        let user = matches!(tag_name, b"user" | b"u");
        let (tag, id) = match (tag_name, qual.is_empty()) {
            (b"user" | b"u", true) => (ACL_USER_OBJ, ACL_UNDEFINED_ID),
            (b"group" | b"g", true) => (ACL_GROUP_OBJ, ACL_UNDEFINED_ID),
            (b"mask" | b"m", _) => (ACL_MASK, ACL_UNDEFINED_ID),
            (b"other" | b"o", _) => (ACL_OTHER, ACL_UNDEFINED_ID),
            (b"user" | b"u" | b"group" | b"g", false) => {
                // A fourth field, when present, is the numeric id of a named entry.
                let id = parts
                    .get(3)
                    .and_then(|n| parse_decimal(n))
                    .or_else(|| parse_decimal(qual))
                    .and_then(|n| u32::try_from(n).ok())
                    .or_else(|| lookup(user, qual))
                    .ok_or_else(|| format!("unknown name {:?}", String::from_utf8_lossy(qual)))?;
                (if user { ACL_USER } else { ACL_GROUP }, id)
            }
            _ => return Err(format!("bad tag {:?}", String::from_utf8_lossy(tag_name))),
        };
        let mut perm = 0u16;
        for &c in perms {
            perm |= match c {
                b'r' => 4,
                b'w' => 2,
                b'x' => 1,
                b'-' => 0,
                _ => {
                    return Err(format!(
                        "bad permissions {:?}",
                        String::from_utf8_lossy(perms)
                    ))
                }
            };
        }
        entries.push((tag, id, perm));
    }
    // The kernel wants entries ordered by tag, named ones by id.
    entries.sort_unstable();
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, id, perm) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut f = [0u8; 8];
        put_num(&mut f, 0o644);
        assert_eq!(&f, b"0000644\0");
        assert_eq!(get_num(&f), Some(0o644));
        put_num(&mut f, 1 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(get_num(&f), Some(1 << 30));
        let mut t = [0u8; 12];
        put_num(&mut t, -5);
        assert_eq!(t[0], 0xff);
        assert_eq!(get_num(&t), Some(-5));
        put_num(&mut t, 9 << 30);
        assert_eq!(get_num(&t), Some(9 << 30));
        assert_eq!(get_num(b"  17 \0\0"), Some(0o17));
        assert_eq!(get_num(b"\0\0\0"), Some(0));
        assert_eq!(get_num(b"0009"), None);
        assert_eq!(
            get_num(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(get_num(&[0xff; 12]), Some(-1));
    }

    #[test]
    fn records() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"a");
        assert_eq!(v, b"9 path=a\n");
        v.clear();
        pax_record(&mut v, b"k", &[b'x'; 94]);
        assert_eq!(&v[..4], b"101 ");
        assert_eq!(v.len(), 101);
        let mut seen = Vec::new();
        pax_record(&mut v, b"SCHILY.xattr.user.a", b"v=\n\0");
        parse_pax(&v, |k, val| seen.push((k.to_vec(), val.to_vec()))).unwrap();
        assert_eq!(
            seen[1],
            (b"SCHILY.xattr.user.a".to_vec(), b"v=\n\0".to_vec())
        );
        assert!(parse_pax(b"5 a=b\n", |_, _| {}).is_err());
        assert!(parse_pax(b"99999999999999999999999 a=b\n", |_, _| {}).is_err());
        assert!(parse_pax(b"1 ", |_, _| {}).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_time(b"7"), Some((7, 0)));
        assert_eq!(parse_time(b"1.1234567899"), Some((1, 123_456_789)));
        assert_eq!(parse_time(b"x"), None);
        assert_eq!(parse_time(b"-"), None);
        for (s, n) in [(12, 5), (-2, 500_000_000), (-1, 1), (0, 0), (-7, 0)] {
            let mut t = Vec::new();
            put_time(&mut t, s, n);
            assert_eq!(parse_time(&t), Some((s, n)));
        }
        let text = |s, n| {
            let mut t = Vec::new();
            put_time(&mut t, s, n);
            String::from_utf8(t).unwrap()
        };
        assert_eq!(text(12, 5), "12.000000005");
        assert_eq!(text(-2, 500_000_000), "-1.500000000");
        assert_eq!(text(-7, 0), "-7");
        assert_eq!(text(1_700_000_000, 123_456_789), "1700000000.123456789");
        let mut d = Vec::new();
        put_decimal(&mut d, u64::MAX);
        assert_eq!(d, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn acl_text() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [(1u16, 6u16, u32::MAX), (2, 4, 1000), (4, 4, u32::MAX)] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let t = acl_to_text(&v).unwrap();
        assert_eq!(t, b"user::rw-\nuser:1000:r--\ngroup::r--\n");
        assert_eq!(acl_from_text(&t, &|_, _| None).unwrap(), v);
        assert_eq!(
            acl_from_text(b"group::r--,user:bob:r--:1000,user::rw-", &|_, _| None).unwrap(),
            v
        );
        assert!(acl_from_text(b"user:bob:r--", &|_, _| None).is_err());
    }

    #[test]
    fn checksum() {
        let mut b = [0u8; BLOCK];
        b[..5].copy_from_slice(b"./a/\0");
        b[MAGIC.0..MAGIC.0 + 6].copy_from_slice(b"ustar\0");
        b[TYPEFLAG] = b'5';
        seal(&mut b);
        assert!(checksum_ok(&b) && is_header(&b));
        b[0] = b'x';
        assert!(!checksum_ok(&b));
        assert!(!is_header(&[0u8; BLOCK]));
    }
}
