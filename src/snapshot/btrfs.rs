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

mod sys {
    use super::{VolArgs, VolArgsV2};
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
