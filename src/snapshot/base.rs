//! Snapshots kept as the base of the next incremental: a backup with UPDATE=Y keeps its
//! snapshot, and a later incremental asks the provider what changed since it.
//!
//! Layout: `<subvolume>/.ndmpd-snap/base-<key>-L<level>-<date>`, where `<key>` names the
//! FILESYSTEM (spelled out in `base-<key>.filesystem` beside it) and `<date>` is the backup's
//! DUMP_DATE in seconds, the date dumpdates records, so that the base dumpdates chooses for
//! an incremental finds its snapshot. One per FILESYSTEM and level; a new one at level N
//! replaces those at N and above, which no later incremental can use.

use super::provider::{private_dir, Provider, SNAP_DIR};
use md5::{Digest, Md5};
use std::io;
use std::path::{Path, PathBuf};

/// How the names of kept bases (and their labels) start in [`SNAP_DIR`]: the start-up
/// cleanup leaves them. A backup's snapshot becomes a base by a rename in the same
/// directory, the only rename btrfs allows a read-only subvolume.
pub const BASE_PREFIX: &str = "base-";

/// A kept base snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Where it is.
    pub path: PathBuf,
    /// The FILESYSTEM of the backup that kept it.
    pub filesystem: String,
    /// That backup's level.
    pub level: u32,
    /// That backup's DUMP_DATE, seconds since the epoch.
    pub date: i64,
}

/// The directory of the kept bases of the subvolume whose root is `home`.
pub fn dir(home: &Path) -> PathBuf {
    home.join(SNAP_DIR)
}

/// A short, file-name-safe key for a FILESYSTEM path.
fn key(filesystem: &str) -> String {
    let d = Md5::digest(filesystem.as_bytes());
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `base-<key>-L<level>-<date>` split, or None for a name that is not a kept base's.
fn parse(name: &str) -> Option<(&str, u32, i64)> {
    let (key, rest) = name.strip_prefix(BASE_PREFIX)?.split_once("-L")?;
    let (level, date) = rest.split_once('-')?;
    Some((key, level.parse().ok()?, date.parse().ok()?))
}

/// Every kept base under `home`, sorted by path.
pub fn list(home: &Path) -> Vec<Kept> {
    let dir = dir(home);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some((key, level, date)) = parse(&name) else {
            continue;
        };
        let filesystem =
            std::fs::read_to_string(dir.join(format!("{BASE_PREFIX}{key}.filesystem")))
                .map(|s| s.trim_end_matches('\n').to_string())
                .unwrap_or_default();
        out.push(Kept {
            path: ent.path(),
            filesystem,
            level,
            date,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The base kept for an incremental of `filesystem` at `level` whose base date is
/// `base_date`: the one a lower level kept on that date.
pub fn find(home: &Path, filesystem: &str, level: u32, base_date: i64) -> Option<Kept> {
    let k = key(filesystem);
    list(home)
        .into_iter()
        .filter(|b| {
            b.path.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("{BASE_PREFIX}{k}-"))
            })
        })
        .filter(|b| b.filesystem == filesystem && b.level < level && b.date == base_date)
        .max_by_key(|b| b.level)
}

/// Moves `snapshot` (in `<home>/.ndmpd-snap`) to the kept bases as the base of
/// `filesystem` at `level` taken for the backup dated `date`, and removes the bases it
/// supersedes. Returns where it is now.
pub fn keep(
    p: &dyn Provider,
    snapshot: &Path,
    home: &Path,
    filesystem: &str,
    level: u32,
    date: i64,
) -> io::Result<PathBuf> {
    let dir = dir(home);
    private_dir(&dir)?;
    let k = key(filesystem);
    let label = dir.join(format!("{BASE_PREFIX}{k}.filesystem"));
    // a temporary name of its own: two backups of one file system may end together
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{BASE_PREFIX}{k}.filesystem.{}-{n}.tmp",
        std::process::id()
    ));
    std::fs::write(&tmp, format!("{filesystem}\n"))?;
    std::fs::rename(&tmp, &label)?;
    let dest = dir.join(format!("{BASE_PREFIX}{k}-L{level}-{date}"));
    if dest.exists() && dest != snapshot {
        p.destroy(&dest)?;
    }
    std::fs::rename(snapshot, &dest)?;
    for old in list(home) {
        let same_fs = old.filesystem == filesystem;
        if same_fs && old.level >= level && old.path != dest {
            match p.destroy(&old.path) {
                Ok(()) => {
                    tracing::info!("base snapshot {} superseded, removed", old.path.display())
                }
                Err(e) => tracing::warn!("cannot remove base snapshot {}: {e}", old.path.display()),
            }
        }
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse("base-0123abcd-L2-1700000000"),
            Some(("0123abcd", 2, 1_700_000_000))
        );
        assert_eq!(parse("base-0123abcd.filesystem"), None);
        assert_eq!(parse("base-0123abcd-Lx-1"), None);
        assert_eq!(parse("0123abcd-L2-1700000000"), None);
        assert_eq!(parse("12-3"), None);
        assert_eq!(key("/srv/a").len(), 16);
        assert_ne!(key("/srv/a"), key("/srv/b"));
    }
}
