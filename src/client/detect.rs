//! What a restore or list learns from the tape before it starts: the record size the image
//! was written with (the length of its first record) and its format (dump or tar).

use super::connection::{Client, ClientError};
use crate::wire::messages::*;
use crate::wire::{NdmpError, Reply, Request};

/// The TAPE_READ count of the probe: larger than any record a mover writes (the server cuts
/// a read at its own largest block), and small enough that the reply fits in one message of
/// the client's 16 MiB limit.
pub const PROBE_COUNT: u32 = (16 << 20) - (64 << 10);

/// dump's `NFS_MAGIC`, `OFS_MAGIC` and FreeBSD's `FS_UFS2_MAGIC`, at byte 24 of a header.
const DUMP_MAGICS: [u32; 3] = [60012, 60011, 0x1954_0119];

/// What the first record of a tape file says about the image in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The record's length: the record size the image was written with.
    pub record_size: u32,
    /// "dump" or "tar"; `None` when the record is neither.
    pub butype: Option<&'static str>,
    /// The record is the whole image (a filemark follows it): an image shorter than the
    /// record size it was written with.
    pub whole: bool,
}

/// The image format a first record starts: "dump" (a header with the dump magic in either
/// byte order), "tar" ("ustar" at byte 257, or an old tar header whose checksum is right).
pub fn butype_of(record: &[u8]) -> Option<&'static str> {
    if let Some(m) = record.get(24..28) {
        let m: [u8; 4] = m.try_into().ok()?;
        let (le, be) = (u32::from_le_bytes(m), u32::from_be_bytes(m));
        if DUMP_MAGICS.contains(&le) || DUMP_MAGICS.contains(&be) {
            return Some("dump");
        }
    }
    let header = record.get(..512)?;
    if &header[257..262] == b"ustar" || tar_checksum_ok(header) {
        return Some("tar");
    }
    None
}

/// An old (v7) tar header: a name, and a checksum field (octal, ended by NUL or space) equal
/// to the sum of the header's bytes with the field itself counted as spaces. Some writers
/// summed signed bytes; either sum is accepted.
fn tar_checksum_ok(h: &[u8]) -> bool {
    if h[0] == 0 {
        return false;
    }
    let field = &h[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let Some(stored) = digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(8).map(|v| v + u64::from(d - b'0'))
    }) else {
        return false;
    };
    let spaces = 8 * u64::from(b' ');
    let outside = |i: &usize| !(148..156).contains(i);
    let unsigned: u64 = (0..512)
        .filter(outside)
        .map(|i| u64::from(h[i]))
        .sum::<u64>()
        + spaces;
    let signed: i64 = (0..512)
        .filter(outside)
        .map(|i| i64::from(h[i] as i8))
        .sum::<i64>()
        + spaces as i64;
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// One TAPE_READ of [`PROBE_COUNT`]: the record, or `None` at a filemark.
async fn read_record(tape: &mut Client, drive: &str) -> Result<Option<Vec<u8>>, ClientError> {
    let reply = tape
        .call(Request::TapeRead(TapeReadRequest { count: PROBE_COUNT }))
        .await?;
    let Reply::TapeRead(r) = reply else {
        return Err(ClientError::Unexpected(format!(
            "TAPE_READ answered {:?}",
            reply.code()
        )));
    };
    match r.error {
        NdmpError::NO_ERR => Ok(Some(r.data_in.0.to_vec())),
        NdmpError::EOF_ERR => Ok(None),
        NdmpError::EOM_ERR => Err(ClientError::Unexpected(format!(
            "no image on {drive}: the tape ends where its first record should be \
             (a blank cartridge?)"
        ))),
        error => Err(tape.refusal(crate::wire::MessageCode::TAPE_READ, error)),
    }
}

/// Reads the first record of the image at the tape's position (the tape open on `tape`).
/// When that record is shorter than `given` (the record size the operator named, 0 for
/// none), the next read tells whether it is the image's only record: a short image is one
/// short record whatever the record size. A filemark or the end of data where the image
/// should start is an error in words. The tape is left after what was read: the caller
/// repositions (a restore rewinds when it sets the mover up).
pub async fn probe(tape: &mut Client, drive: &str, given: u32) -> Result<Detected, ClientError> {
    let Some(first) = read_record(tape, drive).await? else {
        return Err(ClientError::Unexpected(format!(
            "no image on {drive}: a filemark where its first record should be"
        )));
    };
    let record_size = u32::try_from(first.len()).unwrap_or(u32::MAX);
    let whole = given > record_size && read_record(tape, drive).await?.is_none();
    Ok(Detected {
        record_size,
        butype: butype_of(&first),
        whole,
    })
}

/// The record size and butype to restore with: what was detected, checked against what the
/// operator gave (0 and "" for nothing given). A contradiction is an error in words; a given
/// size larger than an image that is one short record is none.
pub fn settle(found: &Detected, record_size: u32, butype: &str) -> Result<(u32, String), String> {
    let short = found.whole && record_size > found.record_size;
    if record_size != 0 && record_size != found.record_size && !short {
        return Err(format!(
            "the image was written with {}-byte records, not the {record_size} given; \
             leave --record-size out to use what the tape says",
            found.record_size
        ));
    }
    let butype = match (found.butype, butype) {
        (Some(f), "") => f.to_string(),
        (Some(f), given) if !f.eq_ignore_ascii_case(given) => {
            return Err(format!(
                "the image is a {f} image, not {given}; leave --butype out to use what the \
                 tape says"
            ))
        }
        (_, given) if !given.is_empty() => given.to_string(),
        _ => {
            return Err(format!(
                "the image's first record ({} bytes) is neither a dump nor a tar header; \
                 give --butype if it is one",
                found.record_size
            ))
        }
    };
    Ok((
        if short {
            record_size
        } else {
            found.record_size
        },
        butype,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_header(name: &[u8], ustar: bool) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"000644 ");
        h[124..135].copy_from_slice(b"00000000005");
        if ustar {
            h[257..263].copy_from_slice(b"ustar\0");
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(field.as_bytes());
        h
    }

    #[test]
    fn dump_magic_in_either_byte_order() {
        let mut r = vec![0u8; 1024];
        r[24..28].copy_from_slice(&60012u32.to_le_bytes());
        assert_eq!(butype_of(&r), Some("dump"));
        r[24..28].copy_from_slice(&60012u32.to_be_bytes());
        assert_eq!(butype_of(&r), Some("dump"));
        r[24..28].copy_from_slice(&60013u32.to_le_bytes());
        assert_eq!(butype_of(&r), None);
    }

    #[test]
    fn tar_by_ustar_or_by_checksum() {
        assert_eq!(butype_of(&tar_header(b"a.txt", true)), Some("tar"));
        let mut old = tar_header(b"a.txt", false);
        assert_eq!(butype_of(&old), Some("tar"));
        // one changed byte breaks the checksum of an old header
        old[0] = b'b';
        assert_eq!(butype_of(&old), None);
        assert_eq!(butype_of(&[0u8; 512]), None);
        assert_eq!(butype_of(b"short"), None);
    }

    #[test]
    fn settle_takes_what_was_read_and_refuses_contradictions() {
        let found = Detected {
            record_size: 10240,
            butype: Some("dump"),
            whole: false,
        };
        assert_eq!(settle(&found, 0, ""), Ok((10240, "dump".to_string())));
        assert_eq!(
            settle(&found, 10240, "DUMP"),
            Ok((10240, "DUMP".to_string()))
        );
        let e = settle(&found, 262144, "").unwrap_err();
        assert!(e.contains("10240-byte records, not the 262144"), "{e}");
        let e = settle(&found, 0, "tar").unwrap_err();
        assert!(e.contains("a dump image, not tar"), "{e}");
        let unknown = Detected {
            record_size: 512,
            butype: None,
            whole: false,
        };
        assert!(settle(&unknown, 0, "").unwrap_err().contains("--butype"));
        assert_eq!(settle(&unknown, 0, "tar"), Ok((512, "tar".to_string())));
        // an image of one short record: a larger record size given is what it was written
        // with; a smaller one is not
        let short = Detected {
            record_size: 20480,
            butype: Some("tar"),
            whole: true,
        };
        assert_eq!(settle(&short, 262144, ""), Ok((262144, "tar".to_string())));
        assert_eq!(settle(&short, 0, ""), Ok((20480, "tar".to_string())));
        assert!(settle(&short, 10240, "").is_err());
    }
}
