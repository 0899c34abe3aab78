//! Extended attributes and POSIX ACLs: reading them from a file and encoding them as the
//! ext2 in-inode attribute blob that a dump DR_EXTATTRIBUTES record carries (doc §5.6).

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

/// restore rejects attribute sets larger than this ("EA size too big").
pub const MAX_BLOB: usize = 4096;
const MAGIC_IN_INODE: u32 = 0xEA02_0001;

const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// Where to read attributes from: an open descriptor, or a path not to be followed.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Fd(RawFd),
    Path(&'a CStr),
}

/// Attributes as (name, value) pairs.
pub type Attrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads every attribute (name, value) of `src`. A file system without xattr support
/// yields an empty list; other errors are returned so the caller can warn.
pub fn read_all(src: Source<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match list(src) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut cname = name.to_vec();
        cname.push(0);
        let cname = CStr::from_bytes_with_nul(&cname).map_err(io::Error::other)?;
        match get(src, cname) {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed between list and get: nothing to carry.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls a "size query, then fill" xattr syscall until the buffer is big enough.
fn sized_call(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        if need == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; need as usize];
        let got = call(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        // The set grew between the two calls: ask again.
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

fn list(src: Source<'_>) -> io::Result<Vec<u8>> {
    sized_call(|p, n| match src {
        // SAFETY: p is null with n = 0 or points to a buffer of n bytes.
        Source::Fd(fd) => unsafe { libc::flistxattr(fd, p.cast(), n) },
        // SAFETY: as above; the path is NUL-terminated.
        Source::Path(path) => unsafe { libc::llistxattr(path.as_ptr(), p.cast(), n) },
    })
}

/// Linux 6.13's `listxattrat`: one number on every architecture (the unified syscall table),
/// not yet named by the `libc` crate for all of them.
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Cleared when the kernel (or a seccomp filter) refuses `listxattrat`: no one asks again.
static LIST_AT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether `name` in directory `dir` (not followed if a symlink) has no attributes, asked
/// by name without opening it. None when this cannot be told that way (an older kernel, a
/// filter, the name gone): the caller opens the object and asks its descriptor instead.
pub fn none_at(dir: std::os::fd::BorrowedFd<'_>, name: &CStr) -> Option<bool> {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    if !LIST_AT.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: a NUL-terminated name relative to a valid descriptor; a null list with size 0
    // only asks for the length.
    let n = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            std::ptr::null_mut::<libc::c_char>(),
            0usize,
        )
    };
    if n >= 0 {
        return Some(n == 0);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOTSUP) => Some(true),
        Some(libc::ENOSYS | libc::EPERM | libc::EINVAL) => {
            LIST_AT.store(false, Ordering::Relaxed);
            None
        }
        _ => None,
    }
}

fn get(src: Source<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    sized_call(|p, n| match src {
        // SAFETY: p is null with n = 0 or points to a buffer of n bytes; name is NUL-terminated.
        Source::Fd(fd) => unsafe { libc::fgetxattr(fd, name.as_ptr(), p, n) },
        // SAFETY: as above; the path is NUL-terminated.
        Source::Path(path) => unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), p, n) },
    })
}

/// Maps an attribute name to the ext2 name index and the stored suffix, or None when the
/// format has no index for it (restore would reject the whole set).
fn name_index(name: &[u8]) -> Option<(u8, &[u8])> {
    if name == ACL_ACCESS {
        return Some((2, b""));
    }
    if name == ACL_DEFAULT {
        return Some((3, b""));
    }
    for (prefix, idx) in [(&b"user."[..], 1u8), (b"trusted.", 4), (b"security.", 6)] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !rest.is_empty() {
                return Some((idx, rest));
            }
        }
    }
    None
}

/// Converts the kernel's POSIX ACL xattr value (version 2, 8-byte entries) to the ext3
/// on-disk form (version 1, ids only on named USER/GROUP entries). None if malformed.
pub fn acl_to_disk(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return None;
    }
    if u32::from_le_bytes(value[..4].try_into().ok()?) != 2 {
        return None;
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            0x01 | 0x04 | 0x10 | 0x20 => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Result of encoding: the blob (empty when nothing can be carried) and the names that
/// had to be left out, with the reason, for the caller to report.
pub struct Encoded {
    pub blob: Vec<u8>,
    pub dropped: Vec<(Vec<u8>, &'static str)>,
}

/// Builds the in-inode attribute blob: magic, entry table ending in four zero bytes,
/// then the values, each 4-byte aligned; value offsets count from the first entry.
pub fn encode(attrs: &[(Vec<u8>, Vec<u8>)]) -> Encoded {
    let mut dropped = Vec::new();
    let mut items: Vec<(u8, &[u8], Vec<u8>)> = Vec::new();
    for (name, value) in attrs {
        let Some((idx, suffix)) = name_index(name) else {
            dropped.push((name.clone(), "no ext2 name index for this namespace"));
            continue;
        };
        if suffix.len() > 255 {
            dropped.push((name.clone(), "name longer than 255 bytes"));
            continue;
        }
        let value = if idx == 2 || idx == 3 {
            match acl_to_disk(value) {
                Some(v) => v,
                None => {
                    dropped.push((name.clone(), "malformed POSIX ACL"));
                    continue;
                }
            }
        } else {
            value.clone()
        };
        items.push((idx, suffix, value));
    }
    if items.is_empty() {
        return Encoded {
            blob: Vec::new(),
            dropped,
        };
    }
    let pad4 = |n: usize| (n + 3) & !3;
    let table: usize = items
        .iter()
        .map(|(_, n, _)| 16 + pad4(n.len()))
        .sum::<usize>()
        + 4;
    let values: usize = items.iter().map(|(_, _, v)| pad4(v.len())).sum();
    let total = 4 + table + values;
    if total > MAX_BLOB {
        for (name, _) in attrs {
            dropped.push((
                name.clone(),
                "attribute set larger than the 4096 bytes restore accepts",
            ));
        }
        return Encoded {
            blob: Vec::new(),
            dropped,
        };
    }
    let mut blob = Vec::with_capacity(total);
    blob.extend_from_slice(&MAGIC_IN_INODE.to_le_bytes());
    let mut voff = table;
    for (idx, name, value) in &items {
        blob.push(name.len() as u8);
        blob.push(*idx);
        blob.extend_from_slice(&(voff as u16).to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(value.len() as u32).to_le_bytes());
        // Entry hash: restore does not check it.
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(name);
        blob.resize(pad4(blob.len()), 0);
        voff += pad4(value.len());
    }
    blob.extend_from_slice(&[0; 4]);
    for (_, _, value) in &items {
        blob.extend_from_slice(value);
        blob.resize(pad4(blob.len()), 0);
    }
    debug_assert_eq!(blob.len(), total);
    Encoded { blob, dropped }
}

/// Test helpers for the by-name paths (`none_at`) of both writers.
#[cfg(test)]
pub(crate) mod testing {
    /// Gives `path` the user attribute `user.note` = "v"; panics where the file system
    /// takes no user attributes (the tests need them).
    pub fn set_user_note(path: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name, a value of the length given.
        let set = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                c"user.note".as_ptr(),
                b"v".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(set, 0, "user xattrs on the test directory's file system");
    }

    /// Whether this kernel can list attributes by name (`listxattrat`, Linux 6.13), so a
    /// by-name path must be taken rather than may be.
    pub fn list_at_expected() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap());
        (v.next().unwrap(), v.next().unwrap()) >= (6, 13)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_short_tags_lose_their_id() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let d = acl_to_disk(&v).unwrap();
        assert_eq!(d.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&d[..4], &1u32.to_le_bytes());
        assert_eq!(&d[8..16], &[2, 0, 4, 0, 0xe8, 0x03, 0, 0]);
        assert!(acl_to_disk(&v[..7]).is_none());
    }

    #[test]
    fn blob_layout() {
        let attrs = vec![
            (b"user.a".to_vec(), b"xyz".to_vec()),
            (b"trusted.bb".to_vec(), Vec::new()),
            (b"system.weird".to_vec(), b"1".to_vec()),
        ];
        let e = encode(&attrs);
        assert_eq!(e.dropped.len(), 1);
        let b = &e.blob;
        assert_eq!(&b[..4], &MAGIC_IN_INODE.to_le_bytes());
        // first entry: name "a" index 1, value offset relative to byte 4
        assert_eq!((b[4], b[5]), (1, 1));
        let off = u16::from_le_bytes([b[6], b[7]]) as usize;
        assert_eq!(&b[4 + off..4 + off + 3], b"xyz");
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 3);
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn oversized_sets_are_dropped_whole() {
        let attrs = vec![(b"user.big".to_vec(), vec![7u8; 5000])];
        let e = encode(&attrs);
        assert!(e.blob.is_empty());
        assert_eq!(e.dropped.len(), 1);
    }
}
