//! The tape library: the configured drives, the virtual cartridges on the shelf and which one
//! each virtual drive holds, and exclusive opening of a drive across sessions and processes.

use super::st::StTape;
use super::vtape::{Vtape, VtapeInfo};
use super::{TapeDevice, TapeError};
use crate::config::{Config, DeviceKind, TapeConfig};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a drive could not be opened; each maps to one TAPE_OPEN error.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no drive named {0:?} is configured")]
    NoDevice(String),
    #[error("drive {0} is in use by another session")]
    Busy(String),
    #[error("no cartridge is loaded in drive {0}")]
    NoTape(String),
    #[error("the cartridge in drive {0} is write protected")]
    WriteProtected(String),
    #[error("drive {0}: {1}")]
    Io(String, TapeError),
}

/// A drive opened by one session. Dropping it releases the drive.
#[derive(Debug)]
pub struct OpenDrive {
    pub name: String,
    pub device: Box<dyn TapeDevice>,
    /// Held for as long as the drive is open: an exclusive flock on the cartridge file or
    /// device node, which other sessions and `ndmpd vtape` respect.
    _lock: Option<File>,
}

impl OpenDrive {
    /// A drive around a device the caller already owns outright (tools, tests): no lock.
    pub fn unlocked(name: &str, device: Box<dyn TapeDevice>) -> OpenDrive {
        OpenDrive {
            name: name.to_string(),
            device,
            _lock: None,
        }
    }
}

/// Why a library change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Tape(#[from] TapeError),
}

impl From<std::io::Error> for LibraryError {
    fn from(e: std::io::Error) -> Self {
        LibraryError::Tape(e.into())
    }
}

/// One cartridge on the shelf.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cartridge {
    pub label: String,
    pub path: PathBuf,
    pub file_size: u64,
    pub info: Option<VtapeInfoView>,
    /// The virtual drive it is loaded in.
    pub loaded_in: Option<String>,
}

/// The serialisable part of a cartridge header.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VtapeInfoView {
    pub capacity: u64,
    pub used: u64,
    pub write_protected: bool,
}

impl From<VtapeInfo> for VtapeInfoView {
    fn from(i: VtapeInfo) -> Self {
        VtapeInfoView {
            capacity: i.capacity,
            used: i.used,
            write_protected: i.write_protected,
        }
    }
}

/// The drives and cartridges of one server (or of `ndmpd vtape` on the same data directory).
#[derive(Debug)]
pub struct Library {
    drives: Vec<TapeConfig>,
    dir: PathBuf,
    capacity: u64,
    /// Serialises changes to the load map within this process.
    state: Mutex<()>,
}

const STATE_FILE: &str = "loaded.toml";

impl Library {
    /// The library of `cfg`. Nothing on disk changes until [`Library::prepare`].
    pub fn new(cfg: &Config) -> Library {
        Library {
            drives: cfg.tapes.clone(),
            dir: cfg.data_dir.join("vtl"),
            capacity: cfg.library.cartridge_capacity,
            state: Mutex::new(()),
        }
    }

    /// First start: creates the cartridge directory, a blank cartridge for every empty virtual
    /// drive, and `spares` blank cartridges on the shelf. Later starts change nothing.
    pub fn prepare(&self, spares: usize) -> Result<(), LibraryError> {
        let fresh = !self.dir.join(STATE_FILE).exists();
        std::fs::create_dir_all(self.cartridge_dir())?;
        if !fresh {
            return Ok(());
        }
        let mut loaded = BTreeMap::new();
        for d in &self.drives {
            if d.kind == DeviceKind::Virtual && d.path.is_none() {
                let label = self.create_cartridge(None)?;
                loaded.insert(d.name.clone(), label);
            }
        }
        for _ in 0..spares {
            self.create_cartridge(None)?;
        }
        self.write_loaded(&loaded)
    }

    pub fn cartridge_dir(&self) -> PathBuf {
        self.dir.join("cartridges")
    }

    pub fn drives(&self) -> &[TapeConfig] {
        &self.drives
    }

    pub fn drive(&self, name: &str) -> Option<&TapeConfig> {
        self.drives.iter().find(|d| d.name == name)
    }

    fn cartridge_path(&self, label: &str) -> PathBuf {
        self.cartridge_dir().join(format!("{label}.vtape"))
    }

    /// A label is a barcode-like name: letters, digits, '-' and '_', at most 32.
    pub fn valid_label(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= 32
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Creates a blank cartridge, with the next free `VTnnnn` label when none is given.
    pub fn create_cartridge(&self, label: Option<&str>) -> Result<String, LibraryError> {
        std::fs::create_dir_all(self.cartridge_dir())?;
        let label = match label {
            Some(l) if Self::valid_label(l) => l.to_string(),
            Some(l) => {
                return Err(LibraryError::Refused(format!(
                    "invalid cartridge label {l:?}: use letters, digits, '-' and '_' (at most 32)"
                )))
            }
            None => (1..)
                .map(|n| format!("VT{n:04}"))
                .find(|l| !self.cartridge_path(l).exists())
                .unwrap_or_default(),
        };
        let path = self.cartridge_path(&label);
        if path.exists() {
            return Err(LibraryError::Refused(format!("cartridge {label} exists")));
        }
        Vtape::create(&path, &label, self.capacity)?;
        Ok(label)
    }

    /// Which cartridge each virtual drive holds.
    pub fn loaded(&self) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join(STATE_FILE)).unwrap_or_default();
        toml::from_str::<BTreeMap<String, String>>(&text).unwrap_or_default()
    }

    fn write_loaded(&self, map: &BTreeMap<String, String>) -> Result<(), LibraryError> {
        let text = toml::to_string(map).map_err(|e| TapeError::Io(e.to_string()))?;
        // write-then-rename, so a crash never leaves a half-written load map
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        Ok(())
    }

    /// Puts a shelf cartridge into an empty virtual drive.
    pub fn load(&self, drive: &str, label: &str) -> Result<(), LibraryError> {
        let _g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.loaded();
        let refuse = |m: String| Err(LibraryError::Refused(m));
        match self.drive(drive) {
            Some(d) if d.kind == DeviceKind::Virtual && d.path.is_none() => {}
            Some(_) => return refuse(format!("drive {drive} does not take library cartridges")),
            None => return refuse(format!("no drive named {drive:?}")),
        }
        if !Self::valid_label(label) || !self.cartridge_path(label).exists() {
            return refuse(format!("no cartridge {label:?}"));
        }
        if let Some((d, _)) = map.iter().find(|(_, l)| *l == label) {
            return refuse(format!("cartridge {label} is already loaded in {d}"));
        }
        if let Some(l) = map.get(drive) {
            return refuse(format!("drive {drive} already holds {l}"));
        }
        map.insert(drive.to_string(), label.to_string());
        self.write_loaded(&map)
    }

    /// Takes the cartridge out of a virtual drive, back to the shelf.
    pub fn unload(&self, drive: &str) -> Result<Option<String>, LibraryError> {
        let _g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.loaded();
        let label = map.remove(drive);
        self.write_loaded(&map)?;
        Ok(label)
    }

    /// Every cartridge on the shelf or in a drive.
    pub fn cartridges(&self) -> Vec<Cartridge> {
        let loaded = self.loaded();
        let mut out: Vec<Cartridge> = std::fs::read_dir(self.cartridge_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let label = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".vtape")?
                    .to_string();
                let file_size = e.metadata().map(|m| m.len()).unwrap_or(0);
                Some(Cartridge {
                    info: Vtape::read_info(&path).ok().map(Into::into),
                    loaded_in: loaded
                        .iter()
                        .find(|(_, l)| **l == label)
                        .map(|(d, _)| d.clone()),
                    label,
                    path,
                    file_size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.label.cmp(&b.label));
        out
    }

    /// Resolves a cartridge label, or the name of the drive it is loaded in, to its file.
    pub fn resolve(&self, cart_or_drive: &str) -> Option<PathBuf> {
        if let Some(d) = self.drive(cart_or_drive) {
            return self.drive_cartridge(d);
        }
        if !Self::valid_label(cart_or_drive) {
            return None;
        }
        let p = self.cartridge_path(cart_or_drive);
        p.exists().then_some(p)
    }

    /// The cartridge file a virtual drive holds.
    fn drive_cartridge(&self, d: &TapeConfig) -> Option<PathBuf> {
        match (&d.kind, &d.path) {
            (DeviceKind::Virtual, Some(p)) => Some(p.clone()),
            (DeviceKind::Virtual, None) => {
                self.loaded().get(&d.name).map(|l| self.cartridge_path(l))
            }
            (DeviceKind::Device, _) => None,
        }
    }

    /// Opens a configured drive for one session. Only names from the config are accepted:
    /// a path, `..` or anything else gets NoDevice without touching the file system.
    pub fn open_drive(&self, name: &str, writable: bool) -> Result<OpenDrive, OpenError> {
        let d = self
            .drive(name)
            .ok_or_else(|| OpenError::NoDevice(name.to_string()))?;
        let io = |e: TapeError| OpenError::Io(name.to_string(), e);
        let path = match d.kind {
            DeviceKind::Virtual => self
                .drive_cartridge(d)
                .filter(|p| p.exists())
                .ok_or_else(|| OpenError::NoTape(name.to_string()))?,
            DeviceKind::Device => d
                .path
                .clone()
                .ok_or_else(|| OpenError::NoDevice(name.to_string()))?,
        };
        // A tape device node may be opened only once (st answers EBUSY), so its lock lives in
        // a lock file; a cartridge is locked itself, which `ndmpd vtape` checks too.
        let lock_path = match d.kind {
            DeviceKind::Virtual => path.clone(),
            DeviceKind::Device => {
                let dir = self.dir.join("locks");
                std::fs::create_dir_all(&dir).map_err(|e| io(e.into()))?;
                let p = dir.join(format!("{name}.lock"));
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&p)
                    .map_err(|e| io(e.into()))?;
                p
            }
        };
        let lock = lock_exclusive(&lock_path).map_err(|e| match e {
            LockError::Busy => OpenError::Busy(name.to_string()),
            LockError::Io(e) => io(e.into()),
        })?;
        let device: Box<dyn TapeDevice> = match d.kind {
            DeviceKind::Virtual => {
                let v = Vtape::open(&path, writable).map_err(io)?;
                if writable && v.info().write_protected {
                    return Err(OpenError::WriteProtected(name.to_string()));
                }
                Box::new(v)
            }
            DeviceKind::Device => match StTape::open(&path, writable) {
                Ok(t) => Box::new(t),
                Err(TapeError::NoTape) => return Err(OpenError::NoTape(name.to_string())),
                Err(TapeError::WriteProtected) => {
                    return Err(OpenError::WriteProtected(name.to_string()))
                }
                Err(e) => return Err(io(e)),
            },
        };
        Ok(OpenDrive {
            name: name.to_string(),
            device,
            _lock: Some(lock),
        })
    }

    /// Takes the lock a session would take, for `ndmpd vtape` commands that change a
    /// cartridge: fails with Busy while a session has it open.
    pub fn lock_cartridge(&self, path: &Path) -> Result<File, OpenError> {
        lock_exclusive(path).map_err(|e| match e {
            LockError::Busy => OpenError::Busy(path.display().to_string()),
            LockError::Io(e) => OpenError::Io(path.display().to_string(), e.into()),
        })
    }
}

enum LockError {
    Busy,
    Io(std::io::Error),
}

/// An exclusive, non-blocking flock on its own descriptor. flock locks belong to the open
/// file description, so two sessions in this process exclude each other just as two
/// processes do, and the kernel drops the lock if the process dies.
fn lock_exclusive(path: &Path) -> Result<File, LockError> {
    let f = File::open(path).map_err(LockError::Io)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(f);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(LockError::Busy)
    } else {
        Err(LockError::Io(e))
    }
}
