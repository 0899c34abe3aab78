//! The btrfs provider: read-only subvolume snapshots taken and removed with the kernel's
//! ioctls directly, so the server needs no btrfs-progs at run time.
//!
//! Facts from the kernel's UAPI header `<linux/btrfs.h>` (checked against the installed header
//! by the unit tests): ioctl magic 0x94; `BTRFS_IOC_SNAP_DESTROY = _IOW(0x94, 15, struct
//! btrfs_ioctl_vol_args)`; `BTRFS_IOC_SNAP_CREATE_V2 = _IOW(0x94, 23, struct
//! btrfs_ioctl_vol_args_v2)`; `BTRFS_IOC_SUBVOL_GETFLAGS = _IOR(0x94, 25, __u64)`;
//! `BTRFS_SUBVOL_RDONLY = 1 << 1`; `struct btrfs_ioctl_vol_args { __s64 fd; char
//! name[BTRFS_PATH_NAME_MAX + 1]; }` with `BTRFS_PATH_NAME_MAX` 4087; `struct
//! btrfs_ioctl_vol_args_v2 { __s64 fd; __u64 transid; __u64 flags; union { ...; __u64
//! unused[4]; }; union { char name[BTRFS_SUBVOL_NAME_MAX + 1]; ... }; }` with
//! `BTRFS_SUBVOL_NAME_MAX` 4039: both are 4096 bytes. From the btrfs on-disk format
//! (`<linux/btrfs_tree.h>`, `<linux/magic.h>`): a subvolume's root directory is inode 256
//! (`BTRFS_FIRST_FREE_OBJECTID`), and statfs reports `BTRFS_SUPER_MAGIC` 0x9123683E.

use super::provider::{Provider, Volume};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// statfs `f_type` of a btrfs file system.
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// The inode number of every subvolume's root directory.
pub const SUBVOL_ROOT_INODE: u64 = 256;
/// The subvolume flag of a read-only subvolume (snapshots taken here carry it).
pub const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_PATH_NAME_MAX`: the longest name `btrfs_ioctl_vol_args` carries.
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_NAME_MAX`: the longest name `btrfs_ioctl_vol_args_v2` carries.
const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_INODE_ITEM_KEY`: the item type of an inode's attributes in a subvolume's tree.
const INODE_ITEM_KEY: u32 = 1;
/// The first inode number of a subvolume's own objects (`BTRFS_FIRST_FREE_OBJECTID`).
const FIRST_FREE_OBJECTID: u64 = 256;
/// Bytes of search results one TREE_SEARCH_V2 call may return.
const SEARCH_BUF: usize = 256 * 1024;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
pub struct VolArgs {
    /// Unused by SNAP_DESTROY.
    pub fd: i64,
    /// The subvolume's name in the directory the ioctl is issued on, NUL-terminated.
    pub name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2`, the union arms SNAP_CREATE_V2 uses.
#[repr(C)]
pub struct VolArgsV2 {
    /// An open descriptor of the source subvolume's root directory.
    pub fd: i64,
    /// Out: the transaction the snapshot was created in (with BTRFS_SUBVOL_CREATE_ASYNC).
    pub transid: u64,
    /// BTRFS_SUBVOL_RDONLY for a read-only snapshot.
    pub flags: u64,
    /// The qgroup-inherit union: unused here, zero.
    pub unused: [u64; 4],
    /// The new snapshot's name in the directory the ioctl is issued on, NUL-terminated.
    pub name: [u8; SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_timespec`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Timespec {
    /// Seconds.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args`: what GET_SUBVOL_INFO says of a subvolume.
#[repr(C)]
pub struct SubvolInfo {
    /// The subvolume's tree id.
    pub treeid: u64,
    /// Its name in its parent directory.
    pub name: [u8; 256],
    /// The tree id of the subvolume holding it.
    pub parent_id: u64,
    /// The inode of the directory holding it.
    pub dirid: u64,
    /// The last transaction that changed it.
    pub generation: u64,
    /// BTRFS_SUBVOL_RDONLY and friends.
    pub flags: u64,
    /// Its UUID.
    pub uuid: [u8; 16],
    /// For a snapshot, the UUID of the subvolume it is a snapshot of; zero otherwise.
    pub parent_uuid: [u8; 16],
    /// For a received subvolume, the UUID it was received as.
    pub received_uuid: [u8; 16],
    /// Transaction of the last change.
    pub ctransid: u64,
    /// Transaction it was created in: for a snapshot, every change to the source up to
    /// this transaction is in it, and none after.
    pub otransid: u64,
    /// Transaction it was sent in.
    pub stransid: u64,
    /// Transaction it was received in.
    pub rtransid: u64,
    /// Times of ctransid, otransid, stransid, rtransid.
    pub times: [Timespec; 4],
    /// Zero.
    pub reserved: [u64; 8],
}

/// `struct btrfs_ioctl_search_key`: a range of items in one tree, and of transactions.
#[repr(C)]
#[derive(Default)]
pub struct SearchKey {
    /// The tree; 0 is the subvolume the descriptor is in.
    pub tree_id: u64,
    /// Lowest key's object id.
    pub min_objectid: u64,
    /// Highest key's object id.
    pub max_objectid: u64,
    /// Lowest key's offset.
    pub min_offset: u64,
    /// Highest key's offset.
    pub max_offset: u64,
    /// Only tree blocks written in this transaction or later are searched.
    pub min_transid: u64,
    /// Only tree blocks written up to this transaction are searched.
    pub max_transid: u64,
    /// Lowest key's type.
    pub min_type: u32,
    /// Highest key's type.
    pub max_type: u32,
    /// In: the most items wanted; out: how many were returned.
    pub nr_items: u32,
    /// Alignment.
    pub unused: u32,
    /// Reserved.
    pub unused1: [u64; 4],
}

/// `struct btrfs_ioctl_search_args_v2` without its flexible buffer (the request code is
/// computed from this size; the buffer follows it in memory).
#[repr(C)]
pub struct SearchArgsV2 {
    /// The range searched.
    pub key: SearchKey,
    /// In: bytes of buffer after this struct; out: bytes needed when one item did not fit.
    pub buf_size: u64,
}

/// SearchArgsV2 with the result buffer after it.
#[repr(C)]
struct SearchBuf {
    args: SearchArgsV2,
    buf: [u8; SEARCH_BUF],
}

mod sys {
    use super::{SearchArgsV2, SubvolInfo, VolArgs, VolArgsV2};
    nix::ioctl_readwrite_bad!(
        /// BTRFS_IOC_TREE_SEARCH_V2 = `_IOWR(0x94, 17, struct btrfs_ioctl_search_args_v2)`.
        ///
        /// # Safety
        /// `fd` must be open on btrfs and `data` must be followed by `buf_size` writable bytes.
        tree_search_v2,
        nix::request_code_readwrite!(0x94, 17, std::mem::size_of::<SearchArgsV2>()),
        SearchArgsV2
    );
    nix::ioctl_read!(
        /// BTRFS_IOC_GET_SUBVOL_INFO = `_IOR(0x94, 60, struct btrfs_ioctl_get_subvol_info_args)`.
        ///
        /// # Safety
        /// `fd` must be open on btrfs and `data` a writable `SubvolInfo`.
        get_subvol_info,
        0x94,
        60,
        SubvolInfo
    );
    nix::ioctl_write_ptr!(
        /// BTRFS_IOC_SNAP_DESTROY = `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`.
        ///
        /// # Safety
        /// `fd` must be an open directory and `data` a valid `VolArgs`.
        snap_destroy,
        0x94,
        15,
        VolArgs
    );
    nix::ioctl_write_ptr!(
        /// BTRFS_IOC_SNAP_CREATE_V2 = `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)`.
        ///
        /// # Safety
        /// `fd` must be an open directory and `data` a valid `VolArgsV2`.
        snap_create_v2,
        0x94,
        23,
        VolArgsV2
    );
    nix::ioctl_read!(
        /// BTRFS_IOC_SUBVOL_GETFLAGS = `_IOR(0x94, 25, __u64)`.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to a writable `u64`.
        subvol_getflags,
        0x94,
        25,
        u64
    );
}

/// A few statfs magics by name, so "not btrfs" can say what it is instead.
fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext2/3/4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        other => format!("a file system of type {other:#x}"),
    }
}

/// The statfs `f_type` of the file system holding `path`.
fn fs_type(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Copies `name` into a NUL-terminated fixed array, refusing names that do not fit or that
/// are not a single path component.
fn fill_name(dst: &mut [u8], name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= dst.len() || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a usable snapshot name"),
        ));
    }
    dst[..name.len()].copy_from_slice(name.as_bytes());
    dst[name.len()] = 0;
    Ok(())
}

fn open_dir(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

/// What GET_SUBVOL_INFO says of the subvolume holding `path` (no privilege needed).
pub fn subvol_info(path: &Path) -> io::Result<SubvolInfo> {
    let dir = open_dir(path)?;
    // SAFETY: SubvolInfo is plain integers and arrays: all zeroes is a valid value.
    let mut info: Box<SubvolInfo> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: an open directory and a writable struct of the size the request code says.
    unsafe { sys::get_subvol_info(dir.as_raw_fd(), &mut *info) }.map_err(io::Error::from)?;
    Ok(*info)
}

/// The inode numbers of the subvolume holding `root` whose attributes were last written
/// after transaction `since` (the inode item's `transid`), sorted. Every change to a file —
/// data, attributes, a name added or removed — writes its inode item, so this is a superset
/// of the files whose ctime moved; an atime update in the live tree also counts, which only
/// costs a stat. Uses TREE_SEARCH_V2, which only visits tree blocks written after `since`:
/// unchanged parts of the tree cost nothing. Needs CAP_SYS_ADMIN.
pub fn changed_inodes(root: &Path, since: u64) -> io::Result<Vec<u64>> {
    let dir = open_dir(root)?;
    // SAFETY: all-zero integers and arrays are a valid SearchBuf.
    let mut sb: Box<SearchBuf> = Box::new(unsafe { std::mem::zeroed() });
    let mut out = Vec::new();
    let (mut objectid, mut typ, mut offset) = (FIRST_FREE_OBJECTID, INODE_ITEM_KEY, 0u64);
    loop {
        sb.args.key = SearchKey {
            tree_id: 0,
            min_objectid: objectid,
            max_objectid: u64::MAX,
            min_offset: offset,
            max_offset: u64::MAX,
            min_transid: since.saturating_add(1),
            max_transid: u64::MAX,
            min_type: typ,
            max_type: u32::MAX,
            nr_items: u32::MAX,
            ..SearchKey::default()
        };
        sb.args.buf_size = SEARCH_BUF as u64;
        // SAFETY: an open directory; `sb.args` is followed by SEARCH_BUF writable bytes.
        unsafe { sys::tree_search_v2(dir.as_raw_fd(), &mut sb.args) }.map_err(io::Error::from)?;
        let n = sb.args.key.nr_items;
        if n == 0 {
            return Ok(out);
        }
        let mut at = 0usize;
        let mut last = (0u64, 0u32, 0u64);
        for _ in 0..n {
            let h = sb.buf.get(at..at + 32).ok_or_else(short)?;
            let word = |i: usize| u64::from_ne_bytes(h[i..i + 8].try_into().unwrap());
            let (obj, off) = (word(8), word(16));
            let t = u32::from_ne_bytes(h[24..28].try_into().unwrap());
            let len = u32::from_ne_bytes(h[28..32].try_into().unwrap()) as usize;
            let item = sb.buf.get(at + 32..at + 32 + len).ok_or_else(short)?;
            if t == INODE_ITEM_KEY && item.len() >= 16 {
                // btrfs_inode_item: generation, then transid (little-endian on disk)
                let transid = u64::from_le_bytes(item[8..16].try_into().unwrap());
                if transid > since && out.last() != Some(&obj) {
                    out.push(obj);
                }
            }
            last = (obj, t, off);
            at += 32 + len;
        }
        // resume just after the last key returned
        (objectid, typ, offset) = last;
        if offset < u64::MAX {
            offset += 1;
        } else if typ < u32::MAX {
            (typ, offset) = (typ + 1, 0);
        } else if objectid < u64::MAX {
            (objectid, typ, offset) = (objectid + 1, 0, 0);
        } else {
            return Ok(out);
        }
    }
}

fn short() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "TREE_SEARCH_V2 returned a truncated item",
    )
}

/// The btrfs snapshot provider.
pub struct Btrfs;

impl Btrfs {
    /// Whether the subvolume whose root is `root` is read-only (a read-only snapshot).
    pub fn read_only(root: &Path) -> io::Result<bool> {
        let dir = open_dir(root)?;
        let mut flags = 0u64;
        // SAFETY: an open directory and a writable u64.
        unsafe { sys::subvol_getflags(dir.as_raw_fd(), &mut flags) }.map_err(io::Error::from)?;
        Ok(flags & SUBVOL_RDONLY != 0)
    }
}

impl Provider for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn volume(&self, path: &Path) -> Result<Volume, String> {
        let magic = fs_type(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if magic != BTRFS_SUPER_MAGIC {
            return Err(format!(
                "{} is on {}, not btrfs",
                path.display(),
                fs_name(magic)
            ));
        }
        // Each subvolume has a device number of its own: the nearest inode-256 directory
        // above `path` on the same device is the root of the subvolume holding it.
        let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dev = md.dev();
        let mut cur = path.to_path_buf();
        let mut ino = md.ino();
        loop {
            if ino == SUBVOL_ROOT_INODE {
                let read_only = Btrfs::read_only(&cur).map_err(|e| {
                    format!("{}: cannot read the subvolume's flags: {e}", cur.display())
                })?;
                return Ok(Volume {
                    root: cur,
                    read_only,
                });
            }
            let parent = match cur.parent() {
                Some(p) => p.to_path_buf(),
                None => break,
            };
            match std::fs::metadata(&parent) {
                Ok(m) if m.dev() == dev => {
                    ino = m.ino();
                    cur = parent;
                }
                _ => break,
            }
        }
        Err(format!(
            "no btrfs subvolume root is reachable above {} (a bind mount of a subdirectory?)",
            path.display()
        ))
    }

    fn take(&self, volume: &Path, dir: &Path, name: &str) -> io::Result<()> {
        let src = open_dir(volume)?;
        let dst = open_dir(dir)?;
        let mut args = Box::new(VolArgsV2 {
            fd: i64::from(src.as_raw_fd()),
            transid: 0,
            flags: SUBVOL_RDONLY,
            unused: [0; 4],
            name: [0; SUBVOL_NAME_MAX + 1],
        });
        fill_name(&mut args.name, name)?;
        // SAFETY: both descriptors are open directories; `args` is a valid, initialised struct.
        unsafe { sys::snap_create_v2(dst.as_raw_fd(), &*args) }.map_err(io::Error::from)?;
        Ok(())
    }

    fn destroy(&self, snapshot: &Path) -> io::Result<()> {
        let (Some(parent), Some(name)) = (snapshot.parent(), snapshot.file_name()) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        let name = name
            .to_str()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let dir = open_dir(parent)?;
        let mut args = Box::new(VolArgs {
            fd: 0,
            name: [0; PATH_NAME_MAX + 1],
        });
        fill_name(&mut args.name, name)?;
        // SAFETY: an open directory and a valid, initialised struct.
        unsafe { sys::snap_destroy(dir.as_raw_fd(), &*args) }.map_err(io::Error::from)?;
        Ok(())
    }

    fn is_snapshot(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INODE)
            && fs_type(path).is_ok_and(|t| t == BTRFS_SUPER_MAGIC)
    }

    fn changed_since(&self, base: &Path, now: &Path) -> Result<Vec<u64>, String> {
        let info = |p: &Path| subvol_info(p).map_err(|e| format!("{}: {e}", p.display()));
        let (b, n) = (info(base)?, info(now)?);
        if b.parent_uuid == [0; 16] || b.parent_uuid != n.parent_uuid {
            return Err(format!(
                "{} is not a snapshot of the subvolume {} is a snapshot of",
                base.display(),
                now.display()
            ));
        }
        if b.otransid > n.otransid {
            return Err(format!(
                "{} is newer than {}",
                base.display(),
                now.display()
            ));
        }
        changed_inodes(now, b.otransid).map_err(|e| {
            format!(
                "searching {} for changes since transaction {}: {e}",
                now.display(),
                b.otransid
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_linux_btrfs_h() {
        assert_eq!(size_of::<VolArgs>(), 4096);
        assert_eq!(offset_of!(VolArgs, name), 8);
        assert_eq!(size_of::<VolArgsV2>(), 4096);
        assert_eq!(offset_of!(VolArgsV2, transid), 8);
        assert_eq!(offset_of!(VolArgsV2, flags), 16);
        assert_eq!(offset_of!(VolArgsV2, unused), 24);
        assert_eq!(offset_of!(VolArgsV2, name), 56);
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn request_codes_match_the_c_macros() {
        // _IOW(0x94, 15, 4096 bytes), _IOW(0x94, 23, 4096 bytes), _IOR(0x94, 25, 8 bytes)
        assert_eq!(
            nix::request_code_write!(0x94, 15, size_of::<VolArgs>()) as u64,
            0x5000_940F
        );
        assert_eq!(
            nix::request_code_write!(0x94, 23, size_of::<VolArgsV2>()) as u64,
            0x5000_9417
        );
        assert_eq!(
            nix::request_code_read!(0x94, 25, size_of::<u64>()) as u64,
            0x8008_9419
        );
    }

    #[test]
    fn constants_match_the_kernel_header() {
        let Ok(text) = std::fs::read_to_string("/usr/include/linux/btrfs.h") else {
            // a broken install under CI (scripts/test.sh installs linux-libc-dev)
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty() || v == "0" || v == "false"),
                "/usr/include/linux/btrfs.h is missing: apt-get install linux-libc-dev"
            );
            eprintln!("NOTE: /usr/include/linux/btrfs.h is not installed; skipping");
            return;
        };
        let squashed: Vec<String> = text
            .lines()
            .map(|l| {
                let l = l.trim_end().trim_end_matches('\\');
                l.split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        let joined = squashed.join(" ");
        for def in [
            "#define BTRFS_IOCTL_MAGIC 0x94",
            "#define BTRFS_PATH_NAME_MAX 4087",
            "#define BTRFS_SUBVOL_NAME_MAX 4039",
            "#define BTRFS_SUBVOL_RDONLY (1ULL << 1)",
            "#define BTRFS_IOC_SNAP_DESTROY _IOW(BTRFS_IOCTL_MAGIC, 15, struct btrfs_ioctl_vol_args)",
            "#define BTRFS_IOC_SNAP_CREATE_V2 _IOW(BTRFS_IOCTL_MAGIC, 23, struct btrfs_ioctl_vol_args_v2)",
            "#define BTRFS_IOC_SUBVOL_GETFLAGS _IOR(BTRFS_IOCTL_MAGIC, 25, __u64)",
            "struct btrfs_ioctl_vol_args { __s64 fd; char name[BTRFS_PATH_NAME_MAX + 1]; };",
            "#define BTRFS_IOC_TREE_SEARCH_V2 _IOWR(BTRFS_IOCTL_MAGIC, 17, struct btrfs_ioctl_search_args_v2)",
            "#define BTRFS_IOC_GET_SUBVOL_INFO _IOR(BTRFS_IOCTL_MAGIC, 60, struct btrfs_ioctl_get_subvol_info_args)",
        ] {
            assert!(joined.contains(def), "{def} not in the header");
        }
        let magic = std::fs::read_to_string("/usr/include/linux/magic.h").unwrap_or_default();
        if !magic.is_empty() {
            assert!(magic
                .lines()
                .any(|l| l.contains("BTRFS_SUPER_MAGIC") && l.contains("0x9123683E")));
        }
    }

    #[test]
    fn search_and_info_layouts_match_linux_btrfs_h() {
        assert_eq!(size_of::<SearchKey>(), 104);
        assert_eq!(offset_of!(SearchKey, min_transid), 40);
        assert_eq!(offset_of!(SearchKey, min_type), 56);
        assert_eq!(offset_of!(SearchKey, nr_items), 64);
        assert_eq!(size_of::<SearchArgsV2>(), 112);
        assert_eq!(offset_of!(SearchBuf, buf), 112);
        assert_eq!(size_of::<Timespec>(), 16);
        assert_eq!(offset_of!(SubvolInfo, parent_id), 264);
        assert_eq!(offset_of!(SubvolInfo, parent_uuid), 312);
        assert_eq!(offset_of!(SubvolInfo, otransid), 352);
        assert_eq!(size_of::<SubvolInfo>(), 504);
    }

    #[test]
    fn names_must_fit_and_be_one_component() {
        let mut buf = [0u8; 8];
        assert!(fill_name(&mut buf, "1-2").is_ok());
        assert_eq!(&buf[..4], b"1-2\0");
        for bad in ["", "a/b", "12345678", "a\0b"] {
            assert!(fill_name(&mut buf, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tmp_dir_is_not_btrfs_unless_it_is() {
        let d = tempfile::tempdir().unwrap();
        match Btrfs.volume(d.path()) {
            Ok(v) => assert!(v.root.starts_with("/")),
            Err(why) => assert!(why.contains("not btrfs"), "{why}"),
        }
    }
}
