//! The tape library: the configured drives, the virtual cartridges and where each one is
//! (drive, slot, import/export slot), and exclusive opening of devices across processes.

pub mod contents;
pub mod layout;

use super::st::StTape;
use super::vtape::{Vtape, VtapeInfo};
use super::{TapeDevice, TapeError};
use crate::config::{Config, DeviceKind, TapeConfig};
pub use contents::{Contents, Place, Placed};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a drive could not be opened; each maps to one TAPE_OPEN error.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No drive of that name is configured (NO_DEVICE_ERR).
    #[error("no drive named {0:?} is configured")]
    NoDevice(String),
    /// The drive (for `lock_cartridge`, the cartridge file) is locked by another session or
    /// process (DEVICE_BUSY_ERR).
    #[error("drive {0} is in use by another session")]
    Busy(String),
    /// No cartridge is in the drive, or it was ejected (NO_TAPE_LOADED_ERR).
    #[error("no cartridge is loaded in drive {0}")]
    NoTape(String),
    /// Opened for writing, but the cartridge is write protected (WRITE_PROTECT_ERR).
    #[error("the cartridge in drive {0} is write protected")]
    WriteProtected(String),
    /// Anything else: the drive (or cartridge file) and the tape error, which decides the
    /// NDMP error.
    #[error("drive {0}: {1}")]
    Io(String, TapeError),
}

/// A drive opened by one session. Dropping it releases the drive.
#[derive(Debug)]
pub struct OpenDrive {
    /// The configured drive name.
    pub name: String,
    /// The device this session reads and writes.
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
    /// The change breaks a rule of the library (bad label, no such cartridge, full ports,
    /// damaged state file); the text says which.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing the state file or a cartridge failed.
    #[error(transparent)]
    Tape(#[from] TapeError),
}

impl From<std::io::Error> for LibraryError {
    fn from(e: std::io::Error) -> Self {
        LibraryError::Tape(e.into())
    }
}

/// One cartridge, wherever it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cartridge {
    /// The label: its file name without `.vtape`.
    pub label: String,
    /// Its cartridge file.
    pub path: PathBuf,
    /// Size of that file in bytes (0 when it cannot be read).
    pub file_size: u64,
    /// Its header; None when the file cannot be read as a cartridge.
    pub info: Option<VtapeInfoView>,
    /// The virtual drive it is loaded in.
    pub loaded_in: Option<String>,
    /// Where it is: "drive vtape0", "slot 3", "port 1"; `None` outside the library.
    pub place: Option<String>,
}

/// The serialisable part of a cartridge header.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VtapeInfoView {
    /// Capacity in bytes (records and filemarks, headers included).
    pub capacity: u64,
    /// Bytes used; [`VtapeInfo::used`] says how they are counted.
    pub used: u64,
    /// The write-protect flag is set, or the file is not writable.
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

/// Why a cartridge could not be moved. The changer reports each as its SCSI sense; `ndmpd
/// vtape` prints the message.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// A place this library's configuration does not have.
    #[error("{0} does not exist in this library")]
    NoSuchPlace(Place),
    /// No cartridge is where the move starts.
    #[error("{0} is empty")]
    SourceEmpty(Place),
    /// The destination already holds a cartridge, the one labelled.
    #[error("{0} already holds {1}")]
    DestinationFull(Place, String),
    /// The cartridge is in a drive a session still has open, and the drive has not ejected
    /// it.
    #[error("{label} is still loaded in drive {drive} and in use by a session: close or eject (MTIO OFF) the tape first")]
    NotEjected {
        /// The drive.
        drive: String,
        /// The cartridge's label.
        label: String,
    },
    /// An initiator has locked the import/export slots (PREVENT MEDIUM REMOVAL).
    #[error("the import/export slots are locked (PREVENT MEDIUM REMOVAL)")]
    RemovalPrevented,
    /// The library refused the change, or could not read or save its state.
    #[error(transparent)]
    Library(#[from] LibraryError),
}

/// The drives and cartridges of one server (or of `ndmpd vtape` on the same data directory).
#[derive(Debug)]
pub struct Library {
    /// Replaced by a reload ([`Library::set_drives`]); a session holds its open drive apart
    /// from this list, so it keeps it until it closes.
    drives: std::sync::RwLock<Vec<TapeConfig>>,
    dir: PathBuf,
    capacity: u64,
    slots: u16,
    ports: u16,
}

const STATE_FILE: &str = "library.toml";
/// The drive-to-cartridge map of earlier versions, read once to migrate.
const OLD_STATE_FILE: &str = "loaded.toml";
const LOCK_FILE: &str = "library.lock";

impl Library {
    /// The library of `cfg`. Nothing on disk changes until [`Library::prepare`].
    pub fn new(cfg: &Config) -> Library {
        Library {
            drives: std::sync::RwLock::new(cfg.tapes.clone()),
            dir: cfg.data_dir.join("vtl"),
            capacity: cfg.library.cartridge_capacity,
            slots: cfg.library.slots,
            ports: cfg.library.import_export_slots,
        }
    }

    /// Readies the library: on first start creates a blank cartridge for every changer
    /// drive (its home slot kept free for it) and `spares` more in the storage slots; on
    /// later starts migrates an old load map and drops places the configuration no longer
    /// has (their cartridges go to a free slot, or outside).
    pub fn prepare(&self, spares: usize) -> Result<(), LibraryError> {
        std::fs::create_dir_all(self.cartridge_dir())?;
        let fresh = !self.dir.join(STATE_FILE).exists();
        let old = self.dir.join(OLD_STATE_FILE);
        self.transact(|c| {
            // a data directory with cartridges but no state is taken as it is, not refilled
            if fresh && !old.exists() && self.cartridge_labels().is_empty() {
                let drives = self.changer_drives();
                for (i, d) in drives.iter().enumerate() {
                    let label = self.create_file(None)?;
                    let home = u16::try_from(i + 1).ok().filter(|n| *n <= self.slots);
                    c.put(&label, Place::Drive(d.clone()), home.map(Place::Slot));
                }
                for _ in 0..spares {
                    let label = self.create_file(None)?;
                    self.shelve(c, &label, false);
                }
            } else if fresh {
                let text = std::fs::read_to_string(&old).unwrap_or_default();
                let map: BTreeMap<String, String> = toml::from_str(&text).unwrap_or_default();
                for (drive, label) in map {
                    if self.changer_drives().contains(&drive) && self.file_of(&label).is_some() {
                        c.put(&label, Place::Drive(drive), None);
                    }
                }
                for cart in self.cartridge_labels() {
                    if c.find(&cart).is_none() {
                        self.shelve(c, &cart, true);
                    }
                }
            }
            self.reconcile(c);
            // power on: no initiator prevents medium removal any more
            c.prevent_removal = false;
            Ok::<_, LibraryError>(())
        })?;
        if old.exists() {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Puts a cartridge into the first storage slot no drive's cartridge calls home (any free
    /// slot when `any` is set); it stays outside the library when there is none.
    fn shelve(&self, c: &mut Contents, label: &str, any: bool) -> Option<Place> {
        let reserved: Vec<u16> = c
            .placed
            .iter()
            .filter_map(|p| match (&p.at, &p.source) {
                (Place::Drive(_), Some(Place::Slot(n))) => Some(*n),
                _ => None,
            })
            .collect();
        let n = c
            .free_slot(self.slots, &reserved)
            .or_else(|| c.free_slot(self.slots, &[]).filter(|_| any))?;
        c.put(label, Place::Slot(n), None);
        Some(Place::Slot(n))
    }

    /// Takes inventory: forgets cartridges whose files are gone and moves those in places
    /// the configuration no longer has (a removed drive, slots beyond the count) to a free
    /// slot, or outside.
    pub fn reconcile(&self, c: &mut Contents) {
        c.placed.retain(|p| self.file_of(&p.label).is_some());
        let stray: Vec<String> = c
            .placed
            .iter()
            .filter(|p| !self.place_exists(&p.at))
            .map(|p| p.label.clone())
            .collect();
        for label in stray {
            c.remove(&label);
            self.shelve(c, &label, true);
        }
        for p in c.placed.iter_mut() {
            if p.source.as_ref().is_some_and(|s| !self.place_exists(s)) {
                p.source = None;
            }
            if !matches!(p.at, Place::Drive(_)) {
                p.ejected = false;
            }
        }
    }

    /// The directory of the cartridge files (`LABEL.vtape`).
    pub fn cartridge_dir(&self) -> PathBuf {
        self.dir.join("cartridges")
    }

    /// Every configured drive, in configuration order.
    pub fn drives(&self) -> Vec<TapeConfig> {
        self.drives_now().clone()
    }

    /// The configured drive named `name`.
    pub fn drive(&self, name: &str) -> Option<TapeConfig> {
        self.drives_now().iter().find(|d| d.name == name).cloned()
    }

    fn drives_now(&self) -> std::sync::RwLockReadGuard<'_, Vec<TapeConfig>> {
        // writers only swap the whole list, so a poisoned lock still holds a whole one
        self.drives.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a reloaded drive list in force. Sessions keep the drives they have open (a
    /// removed drive stays theirs until they close it); new TAPE_OPENs see the new list. A
    /// cartridge in a drive that is gone goes to a free slot, as at start-up.
    pub fn set_drives(&self, drives: Vec<TapeConfig>) {
        *self.drives.write().unwrap_or_else(|e| e.into_inner()) = drives;
        let reconciled = self.transact(|c| {
            self.reconcile(c);
            Ok::<_, LibraryError>(())
        });
        if let Err(e) = reconciled {
            tracing::warn!("tape library: cannot save its state after a reload: {e}");
        }
    }

    /// The drives the virtual changer serves: virtual drives without a fixed cartridge, in
    /// configuration order (which gives their element addresses).
    pub fn changer_drives(&self) -> Vec<String> {
        self.drives_now()
            .iter()
            .filter(|d| d.kind == DeviceKind::Virtual && d.path.is_none())
            .map(|d| d.name.clone())
            .collect()
    }

    /// Number of storage slots and of import/export slots.
    pub fn slot_counts(&self) -> (u16, u16) {
        (self.slots, self.ports)
    }

    /// Whether `place` exists in this library's configuration.
    pub fn place_exists(&self, place: &Place) -> bool {
        match place {
            Place::Drive(d) => self.changer_drives().iter().any(|x| x == d),
            Place::Slot(n) => (1..=self.slots).contains(n),
            Place::Port(n) => (1..=self.ports).contains(n),
        }
    }

    fn cartridge_path(&self, label: &str) -> PathBuf {
        self.cartridge_dir().join(format!("{label}.vtape"))
    }

    /// The file of cartridge `label`, if it exists.
    fn file_of(&self, label: &str) -> Option<PathBuf> {
        let p = self.cartridge_path(label);
        (Self::valid_label(label) && p.exists()).then_some(p)
    }

    /// A label is a barcode-like name: letters, digits, '-' and '_', at most 32.
    pub fn valid_label(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= 32
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Creates a blank cartridge, with the next free `VTnnnn` label when none is given, and
    /// puts it in the first free storage slot. Returns its label and where it went (`None`:
    /// the slots are full, it is outside the library).
    pub fn create_cartridge(
        &self,
        label: Option<&str>,
    ) -> Result<(String, Option<Place>), LibraryError> {
        self.transact(|c| {
            // a new blank never takes the home slot of a loaded cartridge
            let label = self.create_file(label)?;
            let place = self.shelve(c, &label, false);
            Ok((label, place))
        })
    }

    fn create_file(&self, label: Option<&str>) -> Result<String, LibraryError> {
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

    /// When the state file last changed (modification time and size): a cheap way to know
    /// whether [`Library::contents`] would read anything new.
    pub fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        let m = std::fs::metadata(self.dir.join(STATE_FILE)).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// The library state as it is on disk now.
    /// A damaged file reads as an empty library here (views only); changes refuse it, see
    /// [`Library::load_contents`].
    pub fn contents(&self) -> Contents {
        self.load_contents().unwrap_or_default()
    }

    /// The library state, or why it cannot be read. A missing file is an empty library; a
    /// damaged one is an error, so that no change overwrites what an operator can still fix.
    pub fn load_contents(&self) -> Result<Contents, LibraryError> {
        let path = self.dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(e.into()),
        };
        toml::from_str(&text).map_err(|e| {
            LibraryError::Refused(format!(
                "{} is damaged ({}): fix it, or remove it to rebuild the library from the cartridges",
                path.display(),
                e.message()
            ))
        })
    }

    /// Runs `f` on the library state under the library's file lock and saves what it left,
    /// if it succeeded. The lock is an flock on its own descriptor, so sessions of this
    /// server and `ndmpd vtape` in another process take turns.
    pub fn transact<T, E: From<LibraryError>>(
        &self,
        f: impl FnOnce(&mut Contents) -> Result<T, E>,
    ) -> Result<T, E> {
        let _lock = self.state_lock().map_err(|e| E::from(e.into()))?;
        let mut c = self.load_contents().map_err(E::from)?;
        let before = c.clone();
        let out = f(&mut c)?;
        if c != before || !self.dir.join(STATE_FILE).exists() {
            self.write_contents(&c).map_err(E::from)?;
        }
        Ok(out)
    }

    fn state_lock(&self) -> std::io::Result<File> {
        std::fs::create_dir_all(&self.dir)?;
        crate::fslock::lock_file(&self.dir.join(LOCK_FILE))
    }

    fn write_contents(&self, c: &Contents) -> Result<(), LibraryError> {
        let text = toml::to_string(c).map_err(|e| TapeError::Io(e.to_string()))?;
        // write-then-rename, so a crash never leaves a half-written state file
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        // on disk before it replaces the old state: a power cut leaves one or the other
        f.sync_data()?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        Ok(())
    }

    /// Which cartridge each changer drive holds.
    pub fn loaded(&self) -> BTreeMap<String, String> {
        self.contents()
            .placed
            .into_iter()
            .filter_map(|p| match p.at {
                Place::Drive(d) => Some((d, p.label)),
                _ => None,
            })
            .collect()
    }

    /// Whether a session has the cartridge's file open (it holds its lock).
    pub fn in_use(&self, label: &str) -> bool {
        match self.file_of(label) {
            Some(p) => matches!(lock_exclusive(&p), Err(LockError::Busy)),
            None => false,
        }
    }

    /// [`Library::in_use`] for a robot about to take the cartridge: a lock that goes away
    /// within half a second does not count. A lock outlives its session's close while a
    /// process that forked in that moment has not yet exec'd (its copy of the descriptor
    /// holds the lock), and a real robot takes longer than that to move anyway.
    fn in_use_settled(&self, label: &str) -> bool {
        for _ in 0..50 {
            if !self.in_use(label) {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    }

    /// Moves a cartridge between two places inside the library, as the robot does: a drive
    /// gives its cartridge up unless a session still has it loaded and open.
    pub fn move_cartridge(&self, from: &Place, to: &Place) -> Result<String, MoveError> {
        self.transact(|c| self.move_in(c, from, to))
    }

    /// [`Library::move_cartridge`] inside a transaction.
    pub fn move_in(&self, c: &mut Contents, from: &Place, to: &Place) -> Result<String, MoveError> {
        for p in [from, to] {
            if !self.place_exists(p) {
                return Err(MoveError::NoSuchPlace(p.clone()));
            }
        }
        let Some(src) = c.at(from).cloned() else {
            return Err(MoveError::SourceEmpty(from.clone()));
        };
        if let Some(d) = c.at(to) {
            return Err(MoveError::DestinationFull(to.clone(), d.label.clone()));
        }
        if let Place::Drive(drive) = from {
            if !src.ejected && self.in_use_settled(&src.label) {
                return Err(MoveError::NotEjected {
                    drive: drive.clone(),
                    label: src.label,
                });
            }
        }
        c.take(from);
        // SMC's source element: where it was last moved from; a drive-to-drive move keeps
        // the slot it came from, which is where it belongs
        let source = match (from, to) {
            (Place::Drive(_), Place::Drive(_)) => src.source.clone(),
            _ => Some(from.clone()),
        };
        c.put(&src.label, to.clone(), source);
        Ok(src.label)
    }

    /// `ndmpd vtape load`: puts a cartridge (in a slot, a port or outside) into an empty
    /// changer drive, as an operator would by hand.
    pub fn load(&self, drive: &str, label: &str) -> Result<(), MoveError> {
        let to = Place::Drive(drive.to_string());
        if self.drive(drive).is_some() && !self.place_exists(&to) {
            return Err(LibraryError::Refused(format!(
                "drive {drive} does not take library cartridges"
            ))
            .into());
        }
        if self.file_of(label).is_none() {
            return Err(LibraryError::Refused(format!("no cartridge {label:?}")).into());
        }
        self.transact(|c| match c.find(label).map(|p| p.at.clone()) {
            Some(from) => self.move_in(c, &from, &to).map(|_| ()),
            None => {
                if !self.place_exists(&to) {
                    return Err(MoveError::NoSuchPlace(to));
                }
                if let Some(d) = c.at(&to) {
                    return Err(MoveError::DestinationFull(to, d.label.clone()));
                }
                c.put(label, to, None);
                Ok(())
            }
        })
    }

    /// `ndmpd vtape unload` and the end of MTIO OFF's story: takes the cartridge out of a
    /// changer drive back to its home slot if that is free, else the first free slot, else
    /// outside the library. Returns its label and where it went.
    pub fn unload(&self, drive: &str) -> Result<Option<(String, Option<Place>)>, MoveError> {
        let from = Place::Drive(drive.to_string());
        if !self.place_exists(&from) {
            return Err(MoveError::NoSuchPlace(from));
        }
        self.transact(|c| {
            let Some(p) = c.at(&from).cloned() else {
                return Ok(None);
            };
            let home = p
                .source
                .clone()
                .filter(|s| matches!(s, Place::Slot(_)) && c.at(s).is_none());
            let to = home.or_else(|| c.free_slot(self.slots, &[]).map(Place::Slot));
            match to {
                Some(to) => {
                    self.move_in(c, &from, &to)?;
                    Ok(Some((p.label, Some(to))))
                }
                None => {
                    if !p.ejected && self.in_use_settled(&p.label) {
                        return Err(MoveError::NotEjected {
                            drive: drive.to_string(),
                            label: p.label,
                        });
                    }
                    c.take(&from);
                    Ok(Some((p.label, None)))
                }
            }
        })
    }

    /// MTIO OFF: the drive unloads its tape; the cartridge waits in the drive for the robot
    /// (or `ndmpd vtape unload`).
    pub fn mark_ejected(&self, drive: &str) -> Result<Option<String>, LibraryError> {
        self.transact(|c| {
            Ok(c.at_mut(&Place::Drive(drive.to_string())).map(|p| {
                p.ejected = true;
                p.label.clone()
            }))
        })
    }

    /// `ndmpd vtape import`: an operator puts a cartridge from outside the library into a
    /// free import/export slot. Returns the port.
    pub fn import(&self, label: &str) -> Result<Place, MoveError> {
        if self.file_of(label).is_none() {
            return Err(LibraryError::Refused(format!("no cartridge {label:?}")).into());
        }
        self.transact(|c| {
            if c.prevent_removal {
                return Err(MoveError::RemovalPrevented);
            }
            if let Some(p) = c.find(label) {
                return Err(LibraryError::Refused(format!(
                    "{label} is already in the library ({})",
                    p.at
                ))
                .into());
            }
            let Some(n) = c.free_port(self.ports) else {
                return Err(LibraryError::Refused(
                    "every import/export slot is full: export first".into(),
                )
                .into());
            };
            c.put(label, Place::Port(n), None);
            c.operator_changes += 1;
            Ok(Place::Port(n))
        })
    }

    /// `ndmpd vtape export`: an operator takes cartridges out of the import/export slots
    /// (only `label`, when given). Returns the labels taken out.
    pub fn export(&self, label: Option<&str>) -> Result<Vec<String>, MoveError> {
        self.transact(|c| {
            if c.prevent_removal {
                return Err(MoveError::RemovalPrevented);
            }
            let taken: Vec<String> = c
                .placed
                .iter()
                .filter(|p| matches!(p.at, Place::Port(_)))
                .filter(|p| label.is_none_or(|l| l == p.label))
                .map(|p| p.label.clone())
                .collect();
            if taken.is_empty() {
                return Err(LibraryError::Refused(match label {
                    Some(l) => {
                        format!("{l} is not in an import/export slot: have the DMA export it")
                    }
                    None => "the import/export slots are empty".into(),
                })
                .into());
            }
            for l in &taken {
                c.remove(l);
            }
            c.operator_changes += 1;
            Ok(taken)
        })
    }

    fn cartridge_labels(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.cartridge_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let label = name.to_str()?.strip_suffix(".vtape")?;
                Self::valid_label(label).then(|| label.to_string())
            })
            .collect();
        v.sort();
        v
    }

    /// Every cartridge in the library or outside it.
    pub fn cartridges(&self) -> Vec<Cartridge> {
        let contents = self.contents();
        self.cartridge_labels()
            .into_iter()
            .map(|label| {
                let path = self.cartridge_path(&label);
                let file_size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let placed = contents.find(&label);
                Cartridge {
                    info: Vtape::read_info(&path).ok().map(Into::into),
                    loaded_in: placed.and_then(|p| match &p.at {
                        Place::Drive(d) => Some(d.clone()),
                        _ => None,
                    }),
                    place: placed.map(|p| p.at.to_string()),
                    label,
                    path,
                    file_size,
                }
            })
            .collect()
    }

    /// Resolves a cartridge label, or the name of the drive it is loaded in, to its file.
    pub fn resolve(&self, cart_or_drive: &str) -> Option<PathBuf> {
        if let Some(d) = self.drive(cart_or_drive) {
            return self.drive_cartridge(&d).map(|(p, _)| p);
        }
        self.file_of(cart_or_drive)
    }

    /// The cartridge file a virtual drive holds, and whether it was ejected.
    fn drive_cartridge(&self, d: &TapeConfig) -> Option<(PathBuf, bool)> {
        match (&d.kind, &d.path) {
            (DeviceKind::Virtual, Some(p)) => Some((p.clone(), false)),
            (DeviceKind::Virtual, None) => {
                let c = self.contents();
                let p = c.at(&Place::Drive(d.name.clone()))?;
                Some((self.cartridge_path(&p.label), p.ejected))
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
        // the library state lock keeps the robot from moving the cartridge away between
        // finding it in the drive and locking it
        let state = self.state_lock().map_err(|e| io(e.into()))?;
        let path = match d.kind {
            DeviceKind::Virtual => self
                .drive_cartridge(&d)
                .filter(|(p, ejected)| !ejected && p.exists())
                .map(|(p, _)| p)
                .ok_or_else(|| OpenError::NoTape(name.to_string()))?,
            DeviceKind::Device => d
                .path
                .clone()
                .ok_or_else(|| OpenError::NoDevice(name.to_string()))?,
        };
        // A tape device node may be opened only once (st answers EBUSY), so its lock lives in
        // a lock file; a cartridge is locked itself, which `ndmpd vtape` checks too.
        let lock = match d.kind {
            DeviceKind::Virtual => lock_settled(&path).map_err(|e| match e {
                LockError::Busy => OpenError::Busy(name.to_string()),
                LockError::Io(e) => io(e.into()),
            })?,
            DeviceKind::Device => self.device_lock(name)?,
        };
        drop(state);
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
            device: crate::metrics::tape::metered(name, device),
            _lock: Some(lock),
        })
    }

    /// The lock of a device node (tape drive or changer) named `name`, in a lock file of its
    /// own: device nodes may refuse a second open, and a virtual changer has no file.
    pub fn device_lock(&self, name: &str) -> Result<File, OpenError> {
        let io = |e: std::io::Error| OpenError::Io(name.to_string(), e.into());
        let dir = self.dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(io)?;
        let p = dir.join(format!("{name}.lock"));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io)?;
        lock_exclusive(&p).map_err(|e| match e {
            LockError::Busy => OpenError::Busy(name.to_string()),
            LockError::Io(e) => io(e),
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

/// [`lock_exclusive`], allowing half a second for a lock whose holder just closed it but
/// whose descriptor a forking process still shares until it execs.
fn lock_settled(path: &Path) -> Result<File, LockError> {
    for _ in 0..49 {
        match lock_exclusive(path) {
            Err(LockError::Busy) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other,
        }
    }
    lock_exclusive(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut cfg = Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        };
        cfg.library.cartridge_capacity = 1 << 20;
        cfg.apply_embedded_defaults();
        cfg
    }

    #[test]
    fn an_old_load_map_is_migrated_and_strays_are_shelved() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&config(dir.path()));
        std::fs::create_dir_all(lib.cartridge_dir()).unwrap();
        for l in ["VT0001", "VT0002", "VT0003", "OLD"] {
            Vtape::create(&lib.cartridge_path(l), l, 1 << 20).unwrap();
        }
        std::fs::write(
            dir.path().join("vtl").join(OLD_STATE_FILE),
            "vtape1 = \"VT0002\"\ngone = \"VT0003\"\n",
        )
        .unwrap();
        lib.prepare(2).unwrap();
        let c = lib.contents();
        assert_eq!(c.find("VT0002").unwrap().at, Place::Drive("vtape1".into()));
        // a drive the config no longer has gives its cartridge to a slot
        for l in ["VT0001", "VT0003", "OLD"] {
            assert!(
                matches!(c.find(l).unwrap().at, Place::Slot(_)),
                "{l}: {c:?}"
            );
        }
        assert!(!dir.path().join("vtl").join(OLD_STATE_FILE).exists());
        // a second start changes nothing
        lib.prepare(2).unwrap();
        assert_eq!(lib.contents(), c);
        assert_eq!(
            lib.cartridges().len(),
            4,
            "no spares created on a migration"
        );
    }

    #[test]
    fn a_damaged_state_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&config(dir.path()));
        lib.prepare(2).unwrap();
        let path = dir.path().join("vtl").join(STATE_FILE);
        std::fs::write(&path, "[[cartridge]]\nlabel = 3\n").unwrap();
        let e = lib.unload("vtape0").unwrap_err().to_string();
        assert!(e.contains("library.toml is damaged"), "{e}");
        assert!(
            lib.prepare(2).is_err(),
            "the server does not start over it either"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[[cartridge]]\nlabel = 3\n"
        );
        std::fs::remove_file(&path).unwrap();
        lib.prepare(2).unwrap();
        assert_eq!(
            lib.contents().placed.len(),
            4,
            "rebuilt from the cartridge files"
        );
    }

    #[test]
    fn inventory_forgets_missing_files_and_prevention_ends_at_restart() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&config(dir.path()));
        lib.prepare(2).unwrap();
        std::fs::remove_file(lib.cartridge_path("VT0003")).unwrap();
        lib.transact(|c| {
            c.prevent_removal = true;
            lib.reconcile(c);
            Ok::<_, LibraryError>(())
        })
        .unwrap();
        let c = lib.contents();
        assert!(c.find("VT0003").is_none());
        assert!(c.prevent_removal, "an inventory keeps prevention");
        lib.prepare(2).unwrap();
        assert!(!lib.contents().prevent_removal, "a restart ends it");
    }
}
