//! What CONFIG_GET_HOST_INFO, _FS_INFO, _TAPE_INFO and _SCSI_INFO report: facts read from this
//! machine (uname, machine id, statvfs, the mount table) and from the configured devices.

use crate::config::{Config, DeviceKind};
use crate::wire::types::{fs_info_uns, DeviceCapability, DeviceInfo, FsInfo, Pval};
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// Host identity, read once at start-up.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The node name from uname; empty if uname failed.
    pub hostname: String,
    /// The system name from uname ("Linux").
    pub os_type: String,
    /// The kernel release from uname.
    pub os_vers: String,
    /// Eight hex digits meant to outlive restarts: the machine id's first eight, else ones
    /// generated once and kept in the data directory.
    pub hostid: String,
}

impl HostInfo {
    /// Reads uname and the host id; the id may be generated and kept in `data_dir`.
    pub fn read(data_dir: &Path) -> HostInfo {
        // SAFETY: uname fills the zeroed struct and NUL-terminates each field.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let field = |f: &[libc::c_char]| -> String {
            if !ok {
                return String::new();
            }
            // SAFETY: uname NUL-terminates every field within its array.
            unsafe { CStr::from_ptr(f.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        HostInfo {
            hostname: field(&u.nodename),
            os_type: field(&u.sysname),
            os_vers: field(&u.release),
            hostid: host_id(data_dir),
        }
    }
}

/// A stable identifier: the systemd machine id when there is one, else one generated once and
/// kept in the data directory.
fn host_id(data_dir: &Path) -> String {
    for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let s = s.trim();
            if s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return s[..8].to_string();
            }
        }
    }
    let path = data_dir.join("hostid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return s.trim().to_string();
        }
    }
    let mut raw = [0u8; 4];
    let id = match getrandom::fill(&mut raw) {
        Ok(()) => crate::wire::xdr::hex(&raw),
        Err(_) => "00000000".into(),
    };
    let _ = std::fs::create_dir_all(data_dir).and_then(|_| std::fs::write(&path, &id));
    id
}

/// One mounted file system from /proc/self/mountinfo.
struct Mount {
    point: PathBuf,
    fs_type: String,
    source: String,
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // fields: id parent major:minor root mount-point options [optional...] - type source ...
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fs_type = r.next()?.to_string();
            let source = r.next().unwrap_or("").to_string();
            Some(Mount {
                point: PathBuf::from(unescape_octal(point)),
                fs_type,
                source: unescape_octal(&source),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CONFIG_GET_FS_INFO entries: one per export root, with the numbers of the file system that
/// holds it. A root that cannot be examined is reported with its sizes marked unsupported and
/// a status saying why, rather than left out.
pub fn fs_info(cfg: &Config) -> Vec<FsInfo> {
    let table = mounts();
    cfg.exports
        .iter()
        .map(|e| {
            let mount = table
                .iter()
                .filter(|m| e.path.starts_with(&m.point))
                .max_by_key(|m| m.point.as_os_str().len());
            let (fs_type, source) = mount
                .map(|m| (m.fs_type.clone(), m.source.clone()))
                .unwrap_or_default();
            let mut info = FsInfo {
                fs_type: fs_type.as_str().into(),
                fs_logical_device: e.path.to_string_lossy().as_ref().into(),
                fs_physical_device: source.as_str().into(),
                fs_env: vec![
                    Pval::new("LOCAL", "y"),
                    Pval::new(
                        "MOUNT_POINT",
                        &mount
                            .map(|m| m.point.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                ],
                ..FsInfo::default()
            };
            match statvfs(&e.path) {
                Ok(s) => {
                    let frsize = s.f_frsize;
                    info.total_size = s.f_blocks * frsize;
                    info.avail_size = s.f_bavail * frsize;
                    info.used_size = s.f_blocks.saturating_sub(s.f_bfree) * frsize;
                    info.total_inodes = s.f_files;
                    info.used_inodes = s.f_files.saturating_sub(s.f_ffree);
                    if s.f_files == 0 {
                        // file systems without an inode table (e.g. some FUSE) report zero
                        info.unsupported |= fs_info_uns::TOTAL_INODES | fs_info_uns::USED_INODES;
                    }
                    info.fs_status = "online".into();
                }
                Err(err) => {
                    info.unsupported = fs_info_uns::TOTAL_SIZE
                        | fs_info_uns::USED_SIZE
                        | fs_info_uns::AVAIL_SIZE
                        | fs_info_uns::TOTAL_INODES
                        | fs_info_uns::USED_INODES;
                    info.fs_status = format!("offline: {err}").into();
                }
            }
            info
        })
        .collect()
}

fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated path and s a properly sized out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0 {
        Ok(s)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// CONFIG_GET_TAPE_INFO: one device model per configured drive.
pub fn tape_info(cfg: &Config) -> Vec<DeviceInfo> {
    cfg.tapes
        .iter()
        .map(|t| {
            let (model, mut capability) = match t.kind {
                DeviceKind::Virtual => ("ndmpd virtual tape", Vec::new()),
                DeviceKind::Device => (
                    "SCSI tape",
                    vec![Pval::new(
                        "PATH",
                        &t.path.clone().unwrap_or_default().to_string_lossy(),
                    )],
                ),
            };
            // CDBs through TAPE_EXECUTE_CDB and through SCSI_OPEN of the drive's name:
            // identification on virtual drives, SG_IO on st drives
            capability.push(Pval::new("EXECUTE_CDB", "b"));
            DeviceInfo {
                model: model.into(),
                caplist: vec![DeviceCapability {
                    device: t.name.as_str().into(),
                    // no-rewind, no-unload-on-close semantics: attr bits stay clear
                    attr: 0,
                    capability,
                }],
            }
        })
        .collect()
}

/// CONFIG_GET_SCSI_INFO: the configured media changers.
pub fn scsi_info(cfg: &Config) -> Vec<DeviceInfo> {
    cfg.changers
        .iter()
        .map(|c| DeviceInfo {
            model: match c.kind {
                DeviceKind::Virtual => "ndmpd virtual changer".into(),
                DeviceKind::Device => "SCSI media changer".into(),
            },
            caplist: vec![DeviceCapability {
                device: c.name.as_str().into(),
                attr: 0,
                capability: Vec::new(),
            }],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Export;

    #[test]
    fn host_info_is_real() {
        let dir = tempfile::tempdir().unwrap();
        let h = HostInfo::read(dir.path());
        assert_eq!(h.os_type, "Linux");
        assert!(!h.hostname.is_empty());
        assert!(!h.os_vers.is_empty());
        assert_eq!(h.hostid, HostInfo::read(dir.path()).hostid, "stable");
    }

    #[test]
    fn fs_info_of_an_export() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            exports: vec![
                Export::new(dir.path().to_owned()),
                Export::new("/nonexistent/ndmpd".into()),
            ],
            ..Config::default()
        };
        let fs = fs_info(&cfg);
        assert_eq!(fs.len(), 2);
        assert!(fs[0].total_size > 0);
        assert!(fs[0].avail_size <= fs[0].total_size);
        assert_eq!(fs[0].fs_status.as_str(), Some("online"));
        assert!(!fs[0].fs_type.is_empty());
        assert_ne!(fs[1].unsupported, 0);
        assert!(fs[1].fs_status.to_string().starts_with("offline"));
    }

    #[test]
    fn octal_escapes_in_mount_points() {
        assert_eq!(unescape_octal("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_octal("/a\\"), "/a\\");
    }
}
