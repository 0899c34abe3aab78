//! What the dump writer's callers deal in: its options, the file history and events it
//! reports with the kinds and stats of objects in them, and why it stops.

use std::io;
use std::path::PathBuf;

/// What to dump and what to write into the volume header.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Dump level 0..=31; only level 0 dumps everything.
    pub level: u32,
    /// Seconds since the epoch; at level > 0 objects whose mtime or ctime is at or after it
    /// are dumped (`c_ddate`). Ignored at level 0.
    pub base_date: i64,
    /// Seconds since the epoch of this dump (`c_date`).
    pub dump_date: i64,
    /// Volume label (15 bytes kept).
    pub label: String,
    /// Host name (63 bytes kept).
    pub host: String,
    /// What was dumped, e.g. the FILESYSTEM path (63 bytes kept).
    pub filesystem: String,
    /// File-name patterns (`*`, `?`) left out of the image entirely.
    pub exclude: Vec<String>,
    /// Records per tape block: the image is padded with TS_END to a multiple of this.
    pub ntrec: u32,
    /// At level > 0, when a snapshot provider knows them: the only non-directories that
    /// can have changed. Others are not stat'ed; the image is the same.
    pub changed: Option<std::sync::Arc<crate::format::changed::Changed>>,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            level: 0,
            base_date: 0,
            dump_date: 0,
            label: "none".into(),
            host: String::new(),
            filesystem: String::new(),
            exclude: Vec::new(),
            ntrec: 10,
            changed: None,
        }
    }
}

/// Type of a dumped object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe (FIFO).
    Fifo,
    /// A Unix-domain socket.
    Socket,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
}

impl FileKind {
    /// The kind of a directory entry from its type (`d_type`), without a stat; None for a
    /// directory, whose attributes the writers always read.
    pub fn of_entry(t: std::fs::FileType) -> Option<FileKind> {
        use std::os::unix::fs::FileTypeExt;
        Some(if t.is_dir() {
            return None;
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_char_device() {
            FileKind::CharDev
        } else if t.is_block_device() {
            FileKind::BlockDev
        } else {
            FileKind::File
        })
    }

    /// The kind the type bits of an `st_mode` name; None for bits that name none.
    pub fn of_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFREG => FileKind::File,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            _ => return None,
        })
    }
}

/// Attributes of one inode as reported in node history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStat {
    /// What type of object the inode is.
    pub kind: FileKind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Size in bytes: `st_size` in a dump; the tar writer's `Event::File` says what tar reports.
    pub size: u64,
    /// Last access, in whole seconds since the epoch.
    pub atime: i64,
    /// Last change of the data, in whole seconds since the epoch.
    pub mtime: i64,
    /// Last change of the inode (owner, mode, links), in whole seconds since the epoch.
    pub ctime: i64,
    /// Names of a non-directory inside the dumped tree; st_nlink for directories.
    pub nlink: u32,
}

/// File history, in image order.
#[derive(Debug)]
pub enum HistEvent<'a> {
    /// One entry of a dumped directory; "." and ".." come first.
    Dir {
        /// Image inode number of the directory holding the entry (see `IDENTITY_LIMIT`).
        dir_inode: u64,
        /// The entry's name, the bytes as on disk.
        name: &'a [u8],
        /// Image inode number of the object the entry names.
        inode: u64,
    },
    /// A dumped inode; `fh_info` is the byte offset of its TS_INODE record in the image.
    Node {
        /// Image inode number of the object.
        inode: u64,
        /// Its attributes.
        stat: &'a NodeStat,
        /// Byte offset of its TS_INODE record in the image.
        fh_info: u64,
    },
}

/// What the writer tells its caller while running.
#[derive(Debug)]
pub enum Event<'a> {
    /// A file history entry, in image order.
    History(HistEvent<'a>),
    /// After the scan, before any output: about how many bytes the image will have.
    Estimate(u64),
    /// Something was left out or damaged (vanished file, read error, other file system);
    /// the dump goes on.
    Warning(String),
}

/// Why a dump stopped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The root to dump could not be examined, or is not a directory.
    #[error("dump root {path}: {source}")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why; ENOTDIR when the root is not a directory.
        source: io::Error,
    },
    /// Writing to the output failed; what was written is not a whole image.
    #[error("writing the image: {0}")]
    Output(#[source] io::Error),
    /// A directory, named by path, whose packed entries are more than restore reads.
    #[error("directory {0} needs more than the 256 MiB of entries restore can read")]
    DirectoryTooLarge(PathBuf),
    /// The tree holds more objects than the image's 32-bit inode numbers can count.
    #[error("more inodes than a dump image can number")]
    TooManyInodes,
    /// The caller's abort flag was set; the image stops where it was.
    #[error("aborted")]
    Aborted,
}
