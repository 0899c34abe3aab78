//! Point-in-time backups: a backup reads a read-only snapshot of the subvolume that holds its
//! FILESYSTEM instead of the live tree, and the snapshot lives exactly as long as the backup.
//!
//! Naming: `<subvolume root>/.ndmpd-snap/<session>-<n>` (session id, then a per-process
//! counter), in the export's subvolume, also for a FILESYSTEM in a subvolume nested below it.
//! Everything in a `.ndmpd-snap` directory is ndmpd's: at start-up the snapshots left there by
//! a server that died are removed, but the bases UPDATE=Y backups keep (see [`base`]). The directory stays once made, and a backup whose
//! FILESYSTEM is that subvolume root leaves `.ndmpd-snap` out, snapshot or not, so that both
//! give the same image. Operator snapshots (taken over REST) live apart, in
//! `.ndmpd-snap/operator/<name>`, and survive restarts (see [`operator`]).

pub mod base;
pub mod btrfs;
pub mod operator;
pub mod provider;

pub use provider::{Provider, Volume, SNAP_DIR};

use crate::config::{Config, Export, SnapshotMode};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// The directory, inside [`SNAP_DIR`], that holds operator snapshots (the start-up cleanup
/// leaves it alone; `operator` manages it).
pub const OPERATOR_DIR: &str = "operator";

/// What an export's backups read, decided from its `snapshot` setting and its file system.
pub enum Choice {
    /// Snapshots by this provider.
    Snapshots(Arc<dyn Provider>),
    /// The live tree, and why.
    Live(String),
}

/// The choice for `export`; an error in words when `snapshot = "btrfs"` cannot be honoured.
pub fn choose(export: &Export) -> Result<Choice, String> {
    let btrfs: Arc<dyn Provider> = Arc::new(btrfs::Btrfs);
    match export.snapshot {
        SnapshotMode::None => Ok(Choice::Live("snapshot = \"none\"".into())),
        SnapshotMode::Auto => Ok(match btrfs.volume(&export.path) {
            Ok(_) => Choice::Snapshots(btrfs),
            Err(why) => Choice::Live(why),
        }),
        SnapshotMode::Btrfs => match btrfs.volume(&export.path) {
            Ok(_) => Ok(Choice::Snapshots(btrfs)),
            Err(why) => Err(format!(
                "export {}: snapshot = \"btrfs\", but {why}",
                export.path.display()
            )),
        },
    }
}

/// The value of the `SNAPSHOT` pair CONFIG_GET_FS_INFO gives for `export`: the provider's
/// name, or `none`.
pub fn describe(export: &Export) -> &'static str {
    match choose(export) {
        Ok(Choice::Snapshots(p)) => p.name(),
        _ => "none",
    }
}

/// At start-up: says once per export what its backups read, and removes the snapshots a
/// previous server left behind. An export that cannot have the snapshots its config demands
/// is an error in words.
pub fn startup(cfg: &Config) -> Result<(), String> {
    for e in &cfg.exports {
        match choose(e)? {
            Choice::Live(why) => {
                info!(
                    "export {}: backups read the live tree, no snapshot ({why})",
                    e.path.display()
                );
            }
            Choice::Snapshots(p) => {
                let path = e.path.canonicalize().unwrap_or_else(|_| e.path.clone());
                let vol = p.volume(&path)?;
                info!(
                    "export {}: backups read a {} snapshot of subvolume {}",
                    e.path.display(),
                    p.name(),
                    vol.root.display()
                );
                if !vol.read_only {
                    remove_leftovers(p.as_ref(), &vol.root);
                }
            }
        }
    }
    Ok(())
}

/// Removes every backup snapshot in `<root>/.ndmpd-snap`; returns how many. The operator's
/// directory is left alone: those snapshots outlive the server on purpose.
pub fn remove_leftovers(p: &dyn Provider, root: &Path) -> usize {
    let dir = root.join(SNAP_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let path = ent.path();
        if ent.file_name() == OPERATOR_DIR
            || ent
                .file_name()
                .to_string_lossy()
                .starts_with(base::BASE_PREFIX)
        {
            continue;
        }
        if !p.is_snapshot(&path) {
            warn!(
                "{}: not a snapshot, left alone in ndmpd's snapshot directory",
                path.display()
            );
            continue;
        }
        match p.destroy(&path) {
            Ok(()) => {
                info!("removed leftover snapshot {}", path.display());
                n += 1;
            }
            Err(e) => warn!("cannot remove leftover snapshot {}: {e}", path.display()),
        }
    }
    n
}

/// The snapshots held by running backups: what [`release_all`] removes at shutdown.
type HeldList = Vec<(PathBuf, Arc<dyn Provider>)>;
static HELD: Mutex<HeldList> = Mutex::new(Vec::new());
static COUNTER: AtomicU64 = AtomicU64::new(1);

fn held() -> std::sync::MutexGuard<'static, HeldList> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// A snapshot a backup reads: removed when this is dropped, however the backup ended,
/// unless the backup keeps it as the base of the next incremental ([`Held::keep_as_base`]).
pub struct Held {
    path: PathBuf,
    /// The root of the subvolume whose `.ndmpd-snap` holds it.
    home: PathBuf,
    provider: Arc<dyn Provider>,
}

impl Held {
    /// Where the snapshot is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For an incremental of `filesystem` at `level` whose base date is `base_date`: the
    /// base snapshot kept by that earlier backup, and the inode numbers that may have
    /// changed since it (sorted). An error says in words why the tree must be walked.
    pub fn changes_since_base(
        &self,
        filesystem: &str,
        level: u32,
        base_date: i64,
    ) -> Result<(base::Kept, Vec<u64>), String> {
        let kept = base::find(&self.home, filesystem, level, base_date).ok_or_else(|| {
            "no snapshot of the base backup is kept (it ran without UPDATE=Y or without a snapshot,              or its snapshot was removed)"
                .to_string()
        })?;
        let changed = self.provider.changed_since(&kept.path, &self.path)?;
        Ok((kept, changed))
    }

    /// Keeps the snapshot as the base of the next incremental of `filesystem` above
    /// `level`, for the backup dated `date`; returns where it is kept. On failure the
    /// snapshot is removed as usual and the error says why.
    pub fn keep_as_base(self, filesystem: &str, level: u32, date: i64) -> Result<PathBuf, String> {
        if unhold(&self.path).is_none() {
            return Err("the server is shutting down".into());
        }
        match base::keep(
            self.provider.as_ref(),
            &self.path,
            &self.home,
            filesystem,
            level,
            date,
        ) {
            Ok(dest) => {
                info!(
                    "snapshot {} kept as {}",
                    self.path.display(),
                    dest.display()
                );
                Ok(dest)
            }
            Err(e) => {
                if let Err(e) = self.provider.destroy(&self.path) {
                    warn!("cannot remove snapshot {}: {e}", self.path.display());
                }
                Err(format!("cannot keep snapshot {}: {e}", self.path.display()))
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        release(&self.path);
    }
}

/// Takes the snapshot at `path` off the held list; None when [`release_all`] already did.
fn unhold(path: &Path) -> Option<(PathBuf, Arc<dyn Provider>)> {
    let mut h = held();
    h.iter()
        .position(|(p, _)| p == path)
        .map(|i| h.swap_remove(i))
}

/// Removes the snapshot at `path` unless [`release_all`] already did.
fn release(path: &Path) {
    if let Some((path, p)) = unhold(path) {
        match p.destroy(&path) {
            Ok(()) => info!("snapshot {} removed", path.display()),
            Err(e) => warn!(
                "cannot remove snapshot {}: {e} (the next start-up removes it)",
                path.display()
            ),
        }
    }
}

/// Removes every snapshot a backup still holds: for a server shutting down while backup
/// threads may still be unwinding.
pub fn release_all() {
    let all: HeldList = std::mem::take(&mut *held());
    for (path, p) in all {
        match p.destroy(&path) {
            Ok(()) => info!("snapshot {} removed at shutdown", path.display()),
            Err(e) => warn!("cannot remove snapshot {} at shutdown: {e}", path.display()),
        }
    }
}

/// What the `SNAPSHOT` variable of a backup environment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A snapshot where the export has a provider; none that can be taken fails the backup
    /// (the default).
    Yes,
    /// The live tree (`SNAPSHOT=N`).
    No,
    /// A snapshot if one can be taken, else the live tree with a warning
    /// (`SNAPSHOT=optional`).
    Optional,
}

/// Reads `SNAPSHOT` (Y/N, yes/no, true/false, 1/0, or `optional`; missing means Y).
pub fn want(value: Option<&str>) -> Result<Want, String> {
    let Some(v) = value else {
        return Ok(Want::Yes);
    };
    if v.trim().eq_ignore_ascii_case("optional") {
        return Ok(Want::Optional);
    }
    // the spellings DATA's other flags take (data::env::flag), without importing data,
    // which imports this module
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "1" | "on" => Ok(Want::Yes),
        "n" | "no" | "f" | "false" | "0" | "off" => Ok(Want::No),
        _ => Err(format!("SNAPSHOT {v:?} is not Y, N or optional")),
    }
}

/// What a backup reads, decided at DATA_START_BACKUP.
pub struct Plan {
    /// The directory the tree is read from: FILESYSTEM, or the same place in a snapshot.
    pub root: PathBuf,
    /// The snapshot, removed when this is dropped.
    pub held: Option<Held>,
    /// A name to leave out of the walk (ndmpd's snapshot directory at a subvolume root).
    pub exclude: Option<String>,
    /// What to tell the DMA in a LOG_MESSAGE, and whether it is a warning.
    pub note: Option<(bool, String)>,
    /// The export lets an UPDATE=Y backup keep its snapshot as the base of incrementals.
    pub keep_base: bool,
}

impl Plan {
    fn live(filesystem: &Path, exclude: Option<String>, note: Option<(bool, String)>) -> Plan {
        Plan {
            root: filesystem.to_path_buf(),
            held: None,
            exclude,
            note,
            keep_base: false,
        }
    }
}

/// Decides what a backup of `filesystem` (canonical, inside one of `exports`) reads, and
/// takes the snapshot. Blocks (a snapshot commits a transaction). An error says in words
/// why no snapshot could be taken when one was required.
pub fn prepare(
    exports: &[Export],
    filesystem: &Path,
    want: Want,
    session: u64,
) -> Result<Plan, String> {
    let export = exports
        .iter()
        .filter_map(|e| e.path.canonicalize().ok().map(|root| (root, e)))
        .filter(|(root, _)| filesystem.starts_with(root))
        .max_by_key(|(root, _)| root.as_os_str().len());
    let Some((export_root, export)) = export else {
        return Ok(Plan::live(filesystem, None, None));
    };
    let fs = filesystem.display();
    let provider = match choose(export) {
        Ok(Choice::Snapshots(p)) => p,
        Ok(Choice::Live(why)) => {
            let text = format!("reading the live tree of {fs}: no snapshot ({why})");
            return Ok(Plan::live(filesystem, None, Some((false, text))));
        }
        Err(why) => return Err(format!("no snapshot of {fs} can be taken: {why}")),
    };
    let vol = match provider.volume(filesystem) {
        Ok(v) => v,
        Err(why) if want == Want::Yes => {
            return Err(format!("no snapshot of {fs} can be taken: {why}"))
        }
        Err(why) => {
            let text = format!("reading the live tree of {fs}: no snapshot ({why})");
            return Ok(Plan::live(
                filesystem,
                None,
                Some((want == Want::Optional, text)),
            ));
        }
    };
    let rel = filesystem
        .strip_prefix(&vol.root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // snapshots live in the export's own subvolume, where the start-up cleanup looks, also
    // for a FILESYSTEM in a subvolume nested below it
    let home = match provider.volume(&export_root) {
        Ok(h) if !h.read_only => h.root,
        _ => vol.root.clone(),
    };
    let exclude = (filesystem == home).then(|| SNAP_DIR.to_string());
    if want == Want::No {
        let text = format!("SNAPSHOT=N: reading the live tree of {fs}, not a snapshot");
        return Ok(Plan::live(filesystem, exclude, Some((false, text))));
    }
    if vol.read_only {
        let text = format!(
            "{fs} is in a read-only subvolume ({}), a snapshot already: read as it is",
            vol.root.display()
        );
        return Ok(Plan::live(filesystem, exclude, Some((false, text))));
    }
    match take(provider.clone(), &vol.root, &home, session) {
        Ok(held) => {
            let after = if export.keep_base_snapshots {
                "removed when the backup ends, or kept as the base of the next incrementals if \
                 it succeeds with UPDATE=Y"
            } else {
                "removed when the backup ends"
            };
            let text = format!(
                "reading {fs} from {} snapshot {} (taken now, {after})",
                provider.name(),
                held.path.display()
            );
            Ok(Plan {
                root: held.path.join(&rel),
                held: Some(held),
                exclude,
                note: Some((false, text)),
                keep_base: export.keep_base_snapshots,
            })
        }
        Err(e) => {
            let why = format!(
                "cannot take a {} snapshot of {}: {e}",
                provider.name(),
                vol.root.display()
            );
            if want == Want::Optional {
                let text = format!("SNAPSHOT=optional: {why}; reading the live tree of {fs}");
                return Ok(Plan::live(filesystem, exclude, Some((true, text))));
            }
            Err(format!(
                "{why} (SNAPSHOT=N or SNAPSHOT=optional in the backup environment reads the live tree instead)"
            ))
        }
    }
}

/// Takes a snapshot of the volume at `root` as `<home>/.ndmpd-snap/<session>-<n>` and
/// registers it as held.
fn take(p: Arc<dyn Provider>, root: &Path, home: &Path, session: u64) -> io::Result<Held> {
    let dir = home.join(SNAP_DIR);
    provider::private_dir(&dir)?;
    let name = format!("{session}-{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let path = dir.join(&name);
    if p.is_snapshot(&path) {
        // a stale one from an earlier run with the same numbers
        p.destroy(&path)?;
    }
    p.take(root, &dir, &name)?;
    held().push((path.clone(), p.clone()));
    info!("snapshot {} taken", path.display());
    Ok(Held {
        path,
        home: home.to_path_buf(),
        provider: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_variable() {
        assert_eq!(want(None), Ok(Want::Yes));
        assert_eq!(want(Some("y")), Ok(Want::Yes));
        assert_eq!(want(Some("N")), Ok(Want::No));
        assert_eq!(want(Some("no")), Ok(Want::No));
        assert_eq!(want(Some("Optional")), Ok(Want::Optional));
        let e = want(Some("sometimes")).unwrap_err();
        assert_eq!(e, "SNAPSHOT \"sometimes\" is not Y, N or optional");
    }

    #[test]
    fn none_and_a_non_btrfs_auto_export_read_the_live_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        if btrfs::Btrfs.volume(&root).is_ok() {
            eprintln!("NOTE: the temporary directory is on btrfs; the btrfs cases are in tests/snapshot_btrfs.rs");
            return;
        }
        let mut e = Export::new(root.clone());
        for mode in [SnapshotMode::Auto, SnapshotMode::None] {
            e.snapshot = mode;
            assert_eq!(describe(&e), "none");
            let plan = prepare(std::slice::from_ref(&e), &root, Want::Yes, 1).unwrap();
            assert_eq!(plan.root, root);
            assert!(plan.held.is_none() && plan.exclude.is_none());
            let (warning, text) = plan.note.unwrap();
            assert!(!warning);
            assert!(text.starts_with("reading the live tree of"), "{text}");
        }
        e.snapshot = SnapshotMode::Btrfs;
        let why = choose(&e).err().unwrap();
        assert!(why.contains("snapshot = \"btrfs\", but"), "{why}");
        assert!(why.contains("not btrfs"), "{why}");
    }
}
