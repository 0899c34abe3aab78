//! Images made or altered by hand for the reader tests: dump records (words, checksums,
//! directory entries) and tar members (minimal ustar headers, pax records, end markers).

// ------------------------------------------------------------------ dump records

/// Size of a dump record.
pub const DUMP_RECORD: usize = 1024;
/// `c_type` of the end-of-dump header.
pub const TS_END: u32 = 5;

/// The little-endian word at `off` of a record.
pub fn word(rec: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(rec[off..off + 4].try_into().unwrap())
}

/// Whether a (little-endian) record is a header: NFS magic and a checksum that holds.
pub fn is_header(rec: &[u8]) -> bool {
    word(rec, 24) == 60012 && rec.chunks(4).fold(0u32, |a, w| a.wrapping_add(word(w, 0))) == 84446
}

/// Makes a (little-endian) header's checksum hold again after it was changed.
pub fn reseal(rec: &mut [u8]) {
    rec[28..32].fill(0);
    let sum = rec.chunks(4).fold(0u32, |a, w| a.wrapping_add(word(w, 0)));
    rec[28..32].copy_from_slice(&84446u32.wrapping_sub(sum).to_le_bytes());
}

/// Replaces the one directory entry (type, name) in the image's directory data.
pub fn rename_entry(img: &mut [u8], dtype: u8, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut pat = vec![dtype, from.len() as u8];
    pat.extend_from_slice(from);
    pat.push(0);
    let hits: Vec<usize> = img
        .windows(pat.len())
        .enumerate()
        .filter(|(_, w)| *w == pat.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "entry {:?}", String::from_utf8_lossy(from));
    img[hits[0] + 2..hits[0] + 2 + to.len()].copy_from_slice(to);
}

// ------------------------------------------------------------------ tar members

/// Size of a tar block.
pub const TAR_BLOCK: usize = 512;

/// A minimal ustar member header, for hand-made archives.
pub fn hdr(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name);
    let octal = |b: &mut [u8], v: u64| {
        let s = format!("{:0w$o}", v, w = b.len() - 1);
        b[..s.len()].copy_from_slice(s.as_bytes());
    };
    octal(&mut b[100..108], 0o644);
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], 1_600_000_000);
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    seal(&mut b);
    b
}

/// Makes a tar header's checksum hold.
pub fn seal(b: &mut [u8]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// Pads the archive to a whole block.
pub fn pad(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(512), 0);
}

/// Appends a member: its header, then `data` padded to a whole block.
pub fn add(v: &mut Vec<u8>, name: &[u8], typeflag: u8, data: &[u8], link: &[u8]) {
    v.extend_from_slice(&hdr(name, typeflag, data.len() as u64, link));
    v.extend_from_slice(data);
    pad(v);
}

/// The body of a pax extended header with these records.
pub fn pax_records(recs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in recs {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Appends the end marker, two zero blocks.
pub fn end(v: &mut Vec<u8>) {
    v.extend_from_slice(&[0u8; 1024]);
}
