//! The provider trait: what a snapshot mechanism (btrfs today) must do for a backup. Kept
//! apart from mod.rs so that a provider and the lifetime code do not import each other.

use std::io;

/// The directory, at the root of a subvolume, that holds the snapshots of that subvolume
/// (here so that the lifetime code and the kept bases share it without importing each other).
pub const SNAP_DIR: &str = ".ndmpd-snap";

/// Makes `dir` readable by root only, or leaves it as it is when it exists: the snapshot
/// directories hold copies of every file, so other users must not walk into them.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
use std::path::{Path, PathBuf};

/// A way of taking read-only snapshots of the volume holding a path. Only providers a test
/// runs exist (btrfs).
pub trait Provider: Send + Sync + 'static {
    /// Its name, as the config, the log and CONFIG_GET_FS_INFO say it.
    fn name(&self) -> &'static str;
    /// The volume holding `path`, or why this provider cannot snapshot it.
    fn volume(&self, path: &Path) -> Result<Volume, String>;
    /// Takes a read-only snapshot of the volume rooted at `volume` as `dir/name`.
    fn take(&self, volume: &Path, dir: &Path, name: &str) -> io::Result<()>;
    /// Removes the snapshot at `snapshot`.
    fn destroy(&self, snapshot: &Path) -> io::Result<()>;
    /// Whether `path` is a snapshot this provider can remove (for the start-up cleanup).
    fn is_snapshot(&self, path: &Path) -> bool;
    /// The inode numbers (sorted) of the objects in snapshot `now` that may differ from
    /// snapshot `base` of the same volume, a superset of those whose ctime moved since; or
    /// why that cannot be known (the caller walks the tree instead).
    fn changed_since(&self, base: &Path, now: &Path) -> Result<Vec<u64>, String>;
}

/// A volume a provider can snapshot.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Its root directory.
    pub root: PathBuf,
    /// Already read-only (a snapshot itself): read as it is.
    pub read_only: bool,
}
