//! Named snapshots an operator takes and removes over REST: kept in
//! `<subvolume>/.ndmpd-snap/operator/<name>`, which the start-up cleanup leaves alone.

pub use super::OPERATOR_DIR;
use super::{choose, held, Choice, Provider, SNAP_DIR};
use crate::config::Export;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The longest operator snapshot name.
pub const NAME_MAX: usize = 64;

/// The configured exports, as `ndmpd serve` gives them ([`set_exports`]) at start-up.
static EXPORTS: Mutex<Vec<Export>> = Mutex::new(Vec::new());

fn exports() -> Vec<Export> {
    EXPORTS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records the configured exports the operator endpoints work on (`ndmpd serve` calls it at
/// start-up, before [`super::startup`]).
pub fn set_exports(list: &[Export]) {
    *EXPORTS.lock().unwrap_or_else(|p| p.into_inner()) = list.to_vec();
}

/// Why an operator request cannot be done, with the HTTP status it deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 400 (bad request), 404 (no such snapshot) or 409 (conflict).
    pub status: u16,
    /// The request field it is about: "name" or "export".
    pub field: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

fn refused(status: u16, field: &'static str, message: String) -> Refused {
    Refused {
        status,
        field,
        message,
    }
}

/// Checks an operator snapshot name: letters, digits, `-`, `_`, `.`, at most 64 characters,
/// and not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), Refused> {
    let bad = |why: &str| {
        Err(refused(
            400,
            "name",
            format!("snapshot name {name:?} {why}: use letters, digits, '-', '_' and '.', at most {NAME_MAX} characters"),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > NAME_MAX {
        return bad("is too long");
    }
    if name == "." || name == ".." {
        return bad("is not a name");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("has a character that is not allowed");
    }
    Ok(())
}

/// How [`Entry::held_by`] starts for a snapshot kept as the base of incrementals.
pub const BASE_HOLDER: &str = "incremental base of";

/// Whether the operator may remove a snapshot held this way: their own, and kept bases
/// (the next incremental then walks the tree), never one a running backup reads.
fn removable(held_by: &str) -> bool {
    held_by == "operator" || held_by.starts_with(BASE_HOLDER)
}

/// One snapshot ndmpd holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The operator's name, or `<session>-<n>` for a backup's.
    pub name: String,
    /// The configured export it is a snapshot of.
    pub export: PathBuf,
    /// Where it is.
    pub path: PathBuf,
    /// When it was taken, seconds since the Unix epoch, when the file system says.
    pub created: Option<u64>,
    /// "operator", "backup <session>", or "incremental base of <FILESYSTEM> level <n>".
    pub held_by: String,
}

/// The provider and the subvolume root (where `.ndmpd-snap` is) of a configured export.
fn home_of(e: &Export) -> Result<(Arc<dyn Provider>, PathBuf), String> {
    let path = e.path.canonicalize().unwrap_or_else(|_| e.path.clone());
    match choose(e)? {
        Choice::Live(why) => Err(why),
        Choice::Snapshots(p) => {
            let vol = p.volume(&path)?;
            if vol.read_only {
                return Err(format!("{} is a read-only subvolume", vol.root.display()));
            }
            Ok((p, vol.root))
        }
    }
}

fn created(path: &Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    let t = m.created().ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Every snapshot ndmpd holds: the operator's, found by scanning the exports' snapshot
/// directories (so they are found again after a restart), and those running backups read.
pub fn list() -> Vec<Entry> {
    let mut out = Vec::new();
    let exports = exports();
    let mut homes = Vec::new();
    for e in &exports {
        let Ok((p, home)) = home_of(e) else { continue };
        homes.push((home.clone(), e.path.clone()));
        for b in super::base::list(&home) {
            if out.iter().any(|x: &Entry| x.path == b.path) {
                continue;
            }
            out.push(Entry {
                name: b
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                export: e.path.clone(),
                created: created(&b.path),
                held_by: format!("{BASE_HOLDER} {} level {}", b.filesystem, b.level),
                path: b.path,
            });
        }
        let dir = home.join(SNAP_DIR).join(OPERATOR_DIR);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for ent in rd.flatten() {
            let path = ent.path();
            if !p.is_snapshot(&path) || out.iter().any(|x: &Entry| x.path == path) {
                continue;
            }
            out.push(Entry {
                name: ent.file_name().to_string_lossy().into_owned(),
                export: e.path.clone(),
                created: created(&path),
                path,
                held_by: "operator".into(),
            });
        }
    }
    for (path, _) in held().iter() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let session = name.split('-').next().unwrap_or("?").to_string();
        // `<home>/.ndmpd-snap/<name>`: the export whose subvolume holds it
        let home = path.parent().and_then(Path::parent);
        let export = homes
            .iter()
            .find(|(h, _)| Some(h.as_path()) == home)
            .map(|(_, e)| e.clone())
            .or_else(|| home.map(Path::to_path_buf))
            .unwrap_or_default();
        out.push(Entry {
            name,
            export,
            created: created(path),
            path: path.clone(),
            held_by: format!("backup {session}"),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.path.cmp(&b.path)));
    out
}

/// What [`create`] will do, checked before the job starts.
pub struct Pending {
    provider: Arc<dyn Provider>,
    root: PathBuf,
    dir: PathBuf,
    name: String,
}

impl Pending {
    /// Where the snapshot will be.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// Checks a request for operator snapshot `name` of the configured export `export`: the
/// name's form (400), the export configured (400) and snapshot-capable (409), the name free
/// (409).
pub fn check(export: &str, name: &str) -> Result<Pending, Refused> {
    check_name(name)?;
    let wanted = Path::new(export);
    let canon = wanted.canonicalize().ok();
    let e = exports()
        .into_iter()
        .find(|e| e.path == wanted || (canon.is_some() && e.path.canonicalize().ok() == canon))
        .ok_or_else(|| {
            refused(
                400,
                "export",
                format!("{export:?} is not a configured export"),
            )
        })?;
    let (provider, home) = home_of(&e).map_err(|why| {
        refused(
            409,
            "export",
            format!("export {export} cannot have snapshots: {why}"),
        )
    })?;
    if list()
        .iter()
        .any(|x| x.name == name && x.held_by == "operator")
    {
        return Err(refused(
            409,
            "name",
            format!("a snapshot named {name:?} already exists"),
        ));
    }
    Ok(Pending {
        provider,
        root: home.clone(),
        dir: home.join(SNAP_DIR).join(OPERATOR_DIR),
        name: name.to_string(),
    })
}

/// Takes the snapshot [`check`] allowed. Blocks (a snapshot commits a transaction).
pub fn create(p: &Pending) -> Result<PathBuf, String> {
    let path = p.path();
    let fail = |e: std::io::Error| {
        format!(
            "cannot take a {} snapshot of {} as {}: {e}",
            p.provider.name(),
            p.root.display(),
            path.display()
        )
    };
    super::provider::private_dir(&p.root.join(SNAP_DIR)).map_err(fail)?;
    super::provider::private_dir(&p.dir).map_err(fail)?;
    if path.exists() {
        return Err(format!("{} already exists", path.display()));
    }
    p.provider.take(&p.root, &p.dir, &p.name).map_err(fail)?;
    tracing::info!("operator snapshot {} taken", path.display());
    Ok(path)
}

/// Removes operator snapshot or kept base `name`: 404 when there is none, 409 when a
/// running backup holds it or `in_use` says a backup reads it.
pub fn delete(name: &str, in_use: impl Fn(&Path) -> bool) -> Result<Entry, Refused> {
    let all = list();
    let Some(e) = all.iter().find(|e| e.name == name && removable(&e.held_by)) else {
        if let Some(e) = all.iter().find(|e| e.name == name) {
            return Err(refused(
                409,
                "name",
                format!("snapshot {name:?} is held by {}, not by the operator; it goes when that backup ends", e.held_by),
            ));
        }
        return Err(refused(
            404,
            "name",
            format!("there is no snapshot named {name:?}"),
        ));
    };
    if in_use(&e.path) {
        return Err(refused(
            409,
            "name",
            format!(
                "snapshot {name:?} is being read by a backup; delete it when the backup has ended"
            ),
        ));
    }
    let provider = exports()
        .iter()
        .find(|x| x.path == e.export)
        .and_then(|x| home_of(x).ok())
        .map(|(p, _)| p)
        .ok_or_else(|| {
            refused(
                409,
                "name",
                format!("export {} can no longer have snapshots", e.export.display()),
            )
        })?;
    provider.destroy(&e.path).map_err(|err| {
        refused(
            409,
            "name",
            format!("cannot remove snapshot {}: {err}", e.path.display()),
        )
    })?;
    tracing::info!(
        "snapshot {} ({}) removed by the operator",
        e.path.display(),
        e.held_by
    );
    Ok(e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("before-upgrade").is_ok());
        assert!(check_name("a.b_c-9").is_ok());
        assert!(check_name(&"x".repeat(64)).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.contains("letters, digits"), "{}", e.message);
        }
    }
}
