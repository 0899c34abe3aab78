//! Linux SCSI generic pass-through (`/dev/sgN`, the sg v3 SG_IO interface): how the SCSI server
//! drives real media changers and how TAPE_EXECUTE_CDB reaches the drive behind an st node.

use super::{op, CdbError, CdbOutcome, CdbRequest, DataDir};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The character major of sg nodes (Documentation/admin-guide/devices.txt).
const SCSI_GENERIC_MAJOR: u64 = 21;
/// The character major of st nodes.
const SCSI_TAPE_MAJOR: u64 = 9;

/// Peripheral device types (SPC, INQUIRY byte 0 bits 0-4) this module cares about.
const TYPE_SEQUENTIAL: u8 = 0x01;
const TYPE_MEDIUM_CHANGER: u8 = 0x08;
/// "Unknown or no device type"; also what a device reports when nothing is attached.
const TYPE_UNKNOWN: u8 = 0x1f;

/// The longest CDB sent. The sg v3 interface of older kernels refuses more than 16 bytes, and
/// many host adapters cannot carry longer CDBs at all, so 16 is what works everywhere.
const MAX_SG_CDB: usize = 16;
/// Sense buffer size: the most `mx_sb_len` can ask for in a multiple of 4, far above the
/// 96 bytes the mid-layer keeps, so sense is never cut by us.
const SENSE_LEN: usize = 252;
/// INQUIRY allocation length: the standard data up to the product revision.
const INQUIRY_LEN: u8 = 36;
/// INQUIRY is answered from the device's memory; a device that takes longer is not usable.
const INQUIRY_TIMEOUT_MS: u32 = 10_000;

// `dxfer_direction` values of <scsi/sg.h>.
const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_TO_DEV: i32 = -2;
const SG_DXFER_FROM_DEV: i32 = -3;
/// The argument of SG_SCSI_RESET that resets the logical unit only, not the bus or host.
const SG_SCSI_RESET_DEVICE: libc::c_int = 1;

// Host adapter results (`host_status`, the kernel's DID_* codes).
const DID_OK: u16 = 0x00;
const DID_TIME_OUT: u16 = 0x03;
// Mid-layer results (`driver_status`, DRIVER_* in the low nibble, SUGGEST_* above it).
const DRIVER_MASK: u16 = 0x0f;
const DRIVER_OK: u16 = 0x00;
const DRIVER_TIMEOUT: u16 = 0x06;
/// Set whenever sense data came back; a CHECK CONDITION carries it, so it is not an error.
const DRIVER_SENSE: u16 = 0x08;

/// `struct sg_io_hdr` of <scsi/sg.h>, the argument of SG_IO.
#[repr(C)]
#[derive(Debug)]
// The kernel reads the inputs and fills fields (duration, info, ...) that nothing here needs.
#[allow(dead_code)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *mut u8,
    sbp: *mut u8,
    /// Milliseconds; u32::MAX means no timeout.
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

/// `struct sg_scsi_id` of <scsi/sg.h>, the result of SG_GET_SCSI_ID.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
// Kept for the kernel's layout; the address is all that is reported.
#[allow(dead_code)]
struct SgScsiId {
    host_no: libc::c_int,
    channel: libc::c_int,
    scsi_id: libc::c_int,
    lun: libc::c_int,
    scsi_type: libc::c_int,
    h_cmd_per_lun: libc::c_short,
    d_queue_depth: libc::c_short,
    unused: [libc::c_int; 2],
}

/// The raw ioctls. sg's request codes predate the _IOC encoding, hence the "bad" variants
/// that pass the number unchanged.
mod sys {
    use super::{SgIoHdr, SgScsiId};

    nix::ioctl_readwrite_bad!(
        /// SG_IO: run one command and wait for it.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to a valid `SgIoHdr` whose buffer pointers
        /// and lengths describe live memory for the whole call.
        sg_io,
        0x2285,
        SgIoHdr
    );
    nix::ioctl_read_bad!(
        /// SG_GET_SCSI_ID.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to writable memory for one `SgScsiId`.
        sg_get_scsi_id,
        0x2276,
        SgScsiId
    );
    nix::ioctl_write_ptr_bad!(
        /// SG_SCSI_RESET.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to a valid `c_int`.
        sg_scsi_reset,
        0x2284,
        libc::c_int
    );
}

/// Why a SCSI generic node could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SgOpenError {
    /// The node does not exist, or no device is attached behind it.
    #[error("{}: no such SCSI generic device", .0.display())]
    NotFound(PathBuf),
    /// Another process holds the device open exclusively.
    #[error("{}: busy (another process has the device open exclusively)", .0.display())]
    Busy(PathBuf),
    /// The server may not open the node read-write.
    #[error("{}: permission denied (the server needs read-write access to the node)", .0.display())]
    Permission(PathBuf),
    /// The path is not a SCSI generic character device (major 21).
    #[error(
        "{}: not a SCSI generic device (expected a /dev/sgN character device, major 21)",
        .0.display()
    )]
    NotSg(PathBuf),
    /// The message names the path.
    #[error("{0}")]
    Io(String),
}

/// Where a device sits on the host's SCSI buses (the `[h:c:t:l]` of lsscsi).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiAddress {
    /// The host adapter number.
    pub host: i32,
    /// The bus (channel) on that adapter.
    pub channel: i32,
    /// The target ID on that bus.
    pub target: i32,
    /// The logical unit number.
    pub lun: i32,
}

/// An open `/dev/sgN` node.
///
/// It is opened O_NONBLOCK so that open never waits (for an exclusive holder or for error
/// recovery on the host). The flag does not make SG_IO asynchronous: sg always waits for the
/// command there; it only makes SG_SCSI_RESET refuse instead of wait while the host is in
/// recovery.
#[derive(Debug)]
pub struct SgDevice {
    fd: OwnedFd,
    /// The path it was opened by, for messages.
    name: String,
    device_type: u8,
}

/// The results of a finished SG_IO, apart from the buffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Completion {
    status: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    sb_len_wr: u8,
}

impl SgDevice {
    /// Opens a SCSI generic node read-write and learns its peripheral device type.
    pub fn open(path: &Path) -> Result<SgDevice, SgOpenError> {
        // Check before opening: opening the wrong kind of node can itself act on the device
        // (a rewinding st node rewinds when closed again).
        let meta = std::fs::metadata(path).map_err(|e| open_error(path, &e))?;
        sg_minor(path, &meta)?;
        // SG_IO with an O_RDONLY descriptor only passes a whitelist of commands; changers
        // need MOVE MEDIUM and friends.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_error(path, &e))?;
        // The node may have been replaced between the check and the open; what counts is
        // what we hold.
        let meta = file.metadata().map_err(|e| open_error(path, &e))?;
        let minor = sg_minor(path, &meta)?;
        let mut dev = SgDevice {
            fd: OwnedFd::from(file),
            name: path.display().to_string(),
            device_type: TYPE_UNKNOWN,
        };
        dev.device_type = match sysfs_device_type(Path::new("/sys"), minor) {
            Some(t) => t,
            None => {
                tracing::debug!(
                    device = %dev.name,
                    "no device type in sysfs; asking the device (INQUIRY)"
                );
                dev.inquire_type()?
            }
        };
        Ok(dev)
    }

    /// The peripheral device type (SPC: 0x01 tape, 0x08 media changer, ...).
    pub fn device_type(&self) -> u8 {
        self.device_type
    }

    /// Whether the device is one the NDMP SCSI and TAPE interfaces may drive.
    pub fn is_changer_or_tape(&self) -> bool {
        matches!(self.device_type, TYPE_MEDIUM_CHANGER | TYPE_SEQUENTIAL)
    }

    /// Host, channel, target and LUN as the kernel numbers them; None if sg will not say
    /// (the device is being removed).
    pub fn scsi_address(&self) -> Option<ScsiAddress> {
        let mut id = SgScsiId::default();
        let fd = self.fd.as_raw_fd();
        // SAFETY: `fd` is owned by `self` and open for the whole call; `id` is a live,
        // writable SgScsiId with the C layout (size tested), which is exactly what sg copies
        // out.
        if let Err(e) = unsafe { sys::sg_get_scsi_id(fd, &mut id) } {
            tracing::debug!(device = %self.name, "SG_GET_SCSI_ID: {e}");
            return None;
        }
        Some(ScsiAddress {
            host: id.host_no,
            channel: id.channel,
            target: id.scsi_id,
            lun: id.lun,
        })
    }

    /// Sends one CDB and waits for it. A device that answers with a status (CHECK CONDITION
    /// included) is an `Ok`; `Err` means the command did not complete.
    pub fn execute(&mut self, req: &CdbRequest) -> Result<CdbOutcome, CdbError> {
        req.validate()?;
        if req.cdb.len() > MAX_SG_CDB {
            return Err(CdbError::IllegalArgs(format!(
                "a {} byte CDB is longer than the {MAX_SG_CDB} bytes SCSI generic pass-through \
                 carries reliably",
                req.cdb.len()
            )));
        }
        // The kernel wants mutable pointers for every buffer; private copies keep it from
        // ever being handed memory the caller still reads.
        let mut cdb = [0u8; MAX_SG_CDB];
        cdb[..req.cdb.len()].copy_from_slice(&req.cdb);
        let (direction, mut data) = match &req.dir {
            DataDir::In(n) if *n > 0 => (SG_DXFER_FROM_DEV, vec![0u8; *n as usize]),
            DataDir::Out(d) if !d.is_empty() => (SG_DXFER_TO_DEV, d.clone()),
            _ => (SG_DXFER_NONE, Vec::new()),
        };
        let mut sense = [0u8; SENSE_LEN];
        let mut hdr = SgIoHdr {
            interface_id: i32::from(b'S'),
            dxfer_direction: direction,
            // Both fit: checked against MAX_SG_CDB above, SENSE_LEN is a constant below 256.
            cmd_len: req.cdb.len() as u8,
            mx_sb_len: SENSE_LEN as u8,
            iovec_count: 0,
            // validate() bounds every transfer by MAX_TRANSFER.
            dxfer_len: data.len() as u32,
            dxferp: data.as_mut_ptr().cast(),
            cmdp: cdb.as_mut_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: sg_timeout(req.timeout_ms),
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        let fd = self.fd.as_raw_fd();
        // SAFETY: `fd` is owned by `self` and open for the whole call. `hdr` has the layout of
        // struct sg_io_hdr (size and offsets tested). Its pointers refer to `cdb` (cmd_len <=
        // 16 bytes of it), `data` (dxfer_len bytes; dangling but never dereferenced when the
        // length is 0 and the direction NONE) and `sense` (mx_sb_len bytes), all owned by this
        // frame, not moved or dropped until after the call, and SG_IO completes (or is
        // orphaned by the kernel, which then no longer touches user memory) before returning.
        let r = unsafe { sys::sg_io(fd, &mut hdr) };
        if let Err(e) = r {
            return Err(self.errno_error("SG_IO", e));
        }
        let done = Completion {
            status: hdr.status,
            host_status: hdr.host_status,
            driver_status: hdr.driver_status,
            resid: hdr.resid,
            sb_len_wr: hdr.sb_len_wr,
        };
        outcome(done, &req.dir, data, &sense).map_err(|e| match e {
            CdbError::Io(m) => CdbError::Io(format!("{}: {m}", self.name)),
            e => e,
        })
    }

    /// Resets the logical unit (SG_SCSI_RESET_DEVICE), as SCSI_RESET_DEVICE asks.
    pub fn reset_device(&mut self) -> Result<(), CdbError> {
        let what: libc::c_int = SG_SCSI_RESET_DEVICE;
        let fd = self.fd.as_raw_fd();
        // SAFETY: `fd` is owned by `self` and open for the whole call; `what` is an
        // initialised c_int the kernel only reads.
        match unsafe { sys::sg_scsi_reset(fd, &what) } {
            Ok(_) => Ok(()),
            // The kernel checks both capabilities for any reset, whatever the node's mode.
            Err(e @ (Errno::EACCES | Errno::EPERM)) => Err(CdbError::Io(format!(
                "{}: SG_SCSI_RESET: the server needs CAP_SYS_ADMIN and CAP_SYS_RAWIO ({e:?})",
                self.name
            ))),
            Err(e) => Err(self.errno_error("SG_SCSI_RESET", e)),
        }
    }

    /// Byte 0 of the standard INQUIRY data, for systems without sysfs.
    fn inquire_type(&mut self) -> Result<u8, SgOpenError> {
        let req = CdbRequest {
            cdb: vec![op::INQUIRY, 0, 0, 0, INQUIRY_LEN, 0],
            dir: DataDir::In(u32::from(INQUIRY_LEN)),
            timeout_ms: INQUIRY_TIMEOUT_MS,
        };
        let out = self
            .execute(&req)
            .map_err(|e| SgOpenError::Io(format!("{}: INQUIRY: {e}", self.name)))?;
        if !out.is_good() {
            return Err(SgOpenError::Io(format!(
                "{}: INQUIRY answered SCSI status {:#04x}",
                self.name, out.status
            )));
        }
        match out.datain.first() {
            Some(b) => Ok(b & 0x1f),
            None => Err(SgOpenError::Io(format!(
                "{}: INQUIRY returned no data",
                self.name
            ))),
        }
    }

    /// An ioctl failure as a CdbError naming the device, the call and the errno.
    fn errno_error(&self, call: &str, e: Errno) -> CdbError {
        let why = match e {
            // The kernel orphans the command: it may still reach or have reached the device,
            // so nothing here repeats it.
            Errno::EINTR => "interrupted; the command may still complete on the device",
            Errno::ENODEV | Errno::ENXIO => "the device is gone",
            Errno::ENOMEM => "the transfer is too large for the sg driver's buffers",
            Errno::EINVAL => "the driver rejected the request (transfer length or CDB)",
            Errno::EDOM => "too many commands queued on this descriptor",
            Errno::EACCES | Errno::EPERM => "not permitted",
            Errno::EBUSY | Errno::EAGAIN => "the host adapter is in error recovery",
            Errno::ENOTTY => "not a SCSI generic device",
            Errno::EIO => "the operation failed",
            _ => e.desc(),
        };
        CdbError::Io(format!("{}: {call}: {why} ({e:?})", self.name))
    }
}

/// The sg timeout for an NDMP one: NDMP's 0 is "no limit", while sg would take 0 as "the
/// device's default timeout"; u32::MAX is sg's "no timeout".
fn sg_timeout(ms: u32) -> u32 {
    if ms == 0 {
        u32::MAX
    } else {
        ms
    }
}

/// Turns what SG_IO reported into the server's answer. `datain` is the buffer handed to the
/// kernel for `DataDir::In` (empty otherwise) and `sense` the whole sense buffer.
fn outcome(
    c: Completion,
    dir: &DataDir,
    mut datain: Vec<u8>,
    sense: &[u8],
) -> Result<CdbOutcome, CdbError> {
    let driver = c.driver_status & DRIVER_MASK;
    if c.host_status == DID_TIME_OUT || driver == DRIVER_TIMEOUT {
        return Err(CdbError::Timeout);
    }
    if c.host_status != DID_OK {
        return Err(CdbError::Io(format!(
            "the host adapter reported {} ({:#04x})",
            host_status_name(c.host_status),
            c.host_status
        )));
    }
    if driver != DRIVER_OK && driver != DRIVER_SENSE {
        return Err(CdbError::Io(format!(
            "the SCSI mid-layer reported {} ({:#04x})",
            driver_status_name(driver),
            c.driver_status
        )));
    }
    // A negative residue is an adapter's overrun report; nothing is taken away then.
    let resid = usize::try_from(c.resid).unwrap_or(0);
    let dataout_len = match dir {
        DataDir::In(n) => {
            let n = datain.len().min(*n as usize);
            datain.truncate(n.saturating_sub(resid));
            0
        }
        DataDir::Out(d) => {
            datain.clear();
            u32::try_from(d.len().saturating_sub(resid)).unwrap_or(u32::MAX)
        }
        DataDir::None => {
            datain.clear();
            0
        }
    };
    let sense_len = usize::from(c.sb_len_wr).min(sense.len());
    Ok(CdbOutcome {
        status: c.status,
        datain,
        dataout_len,
        sense: sense[..sense_len].to_vec(),
    })
}

fn host_status_name(h: u16) -> &'static str {
    match h {
        0x01 => "DID_NO_CONNECT (no device at this address)",
        0x02 => "DID_BUS_BUSY",
        0x03 => "DID_TIME_OUT",
        0x04 => "DID_BAD_TARGET (the device is not responding)",
        0x05 => "DID_ABORT (the command was aborted)",
        0x06 => "DID_PARITY (bus parity error)",
        0x07 => "DID_ERROR (internal host adapter error)",
        0x08 => "DID_RESET (the bus or device was reset)",
        0x09 => "DID_BAD_INTR",
        0x0a => "DID_PASSTHROUGH",
        0x0b => "DID_SOFT_ERROR",
        0x0c => "DID_IMM_RETRY",
        0x0d => "DID_REQUEUE",
        0x0e => "DID_TRANSPORT_DISRUPTED",
        0x0f => "DID_TRANSPORT_FAILFAST",
        0x10 => "DID_TARGET_FAILURE",
        0x11 => "DID_NEXUS_FAILURE",
        0x12 => "DID_ALLOC_FAILURE",
        0x13 => "DID_MEDIUM_ERROR",
        0x14 => "DID_TRANSPORT_MARGINAL",
        _ => "an unknown host status",
    }
}

fn driver_status_name(d: u16) -> &'static str {
    match d {
        0x01 => "DRIVER_BUSY",
        0x02 => "DRIVER_SOFT",
        0x03 => "DRIVER_MEDIA",
        0x04 => "DRIVER_ERROR",
        0x05 => "DRIVER_INVALID",
        0x07 => "DRIVER_HARD",
        _ => "an unknown driver status",
    }
}

fn open_error(path: &Path, e: &std::io::Error) -> SgOpenError {
    match e.raw_os_error().map(Errno::from_raw) {
        // ENXIO/ENODEV: the sg minor has no device behind it (removed, or never attached).
        Some(Errno::ENOENT | Errno::ENOTDIR | Errno::ENXIO | Errno::ENODEV) => {
            SgOpenError::NotFound(path.to_path_buf())
        }
        // With O_NONBLOCK sg answers EBUSY instead of waiting for an O_EXCL holder.
        Some(Errno::EBUSY) => SgOpenError::Busy(path.to_path_buf()),
        Some(Errno::EACCES | Errno::EPERM) => SgOpenError::Permission(path.to_path_buf()),
        _ => SgOpenError::Io(format!("{}: {e}", path.display())),
    }
}

/// The sg minor of `meta`, or NotSg.
fn sg_minor(path: &Path, meta: &std::fs::Metadata) -> Result<u64, SgOpenError> {
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device() || nix::sys::stat::major(rdev) != SCSI_GENERIC_MAJOR {
        return Err(SgOpenError::NotSg(path.to_path_buf()));
    }
    Ok(nix::sys::stat::minor(rdev))
}

/// The device type sysfs shows for sg minor `minor` (sg names its class devices `sg<minor>`).
fn sysfs_device_type(sysfs: &Path, minor: u64) -> Option<u8> {
    let path = sysfs
        .join("class/scsi_generic")
        .join(format!("sg{minor}"))
        .join("device/type");
    let text = std::fs::read_to_string(path).ok()?;
    let t: u8 = text.trim().parse().ok()?;
    (t <= TYPE_UNKNOWN).then_some(t)
}

/// The drive number in an st minor: st keeps the low 5 bits in place, puts the rewind bit and
/// two mode bits above them, and shifts the rest of the number past bit 7.
fn st_drive_number(minor: u64) -> u64 {
    ((minor & !0xff) >> 3) | (minor & 0x1f)
}

/// The SCSI generic node of a Linux tape drive given by its st node (`/dev/nst0`, `/dev/st0`
/// or a symlink to one), for CDBs st cannot pass. A generic node is its own answer. None when
/// the path is neither or the sg driver has no node for the drive.
pub fn sg_node_of_tape(st_path: &Path) -> Option<PathBuf> {
    let meta = std::fs::metadata(st_path).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    match nix::sys::stat::major(rdev) {
        SCSI_GENERIC_MAJOR => Some(st_path.to_path_buf()),
        SCSI_TAPE_MAJOR => {
            // Every mode and rewind variant links to the same SCSI device; `stN` always exists.
            let name = format!("st{}", st_drive_number(nix::sys::stat::minor(rdev)));
            sg_node_of_tape_in(Path::new("/sys"), Path::new("/dev"), &name)
        }
        _ => None,
    }
}

/// `sg_node_of_tape` over a given sysfs root and device directory.
fn sg_node_of_tape_in(sysfs: &Path, dev: &Path, tape_name: &str) -> Option<PathBuf> {
    let dir = sysfs
        .join("class/scsi_tape")
        .join(tape_name)
        .join("device/scsi_generic");
    // A SCSI device has one generic node; sorting only makes a surprise deterministic.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_sg_name(n))
        .collect();
    names.sort();
    let node = dev.join(names.first()?);
    node.exists().then_some(node)
}

/// `sg` followed by a decimal number, nothing else.
fn is_sg_name(n: &str) -> bool {
    n.strip_prefix("sg")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::status;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_scsi_sg_h() {
        // Offsets as a C program prints them against <scsi/sg.h> on x86_64.
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(size_of::<SgIoHdr>(), 88);
            assert_eq!(offset_of!(SgIoHdr, cmd_len), 8);
            assert_eq!(offset_of!(SgIoHdr, dxfer_len), 12);
            assert_eq!(offset_of!(SgIoHdr, dxferp), 16);
            assert_eq!(offset_of!(SgIoHdr, cmdp), 24);
            assert_eq!(offset_of!(SgIoHdr, sbp), 32);
            assert_eq!(offset_of!(SgIoHdr, timeout), 40);
            assert_eq!(offset_of!(SgIoHdr, usr_ptr), 56);
            assert_eq!(offset_of!(SgIoHdr, status), 64);
            assert_eq!(offset_of!(SgIoHdr, sb_len_wr), 67);
            assert_eq!(offset_of!(SgIoHdr, host_status), 68);
            assert_eq!(offset_of!(SgIoHdr, driver_status), 70);
            assert_eq!(offset_of!(SgIoHdr, resid), 72);
            assert_eq!(offset_of!(SgIoHdr, info), 80);
        }
        #[cfg(target_pointer_width = "32")]
        assert_eq!(size_of::<SgIoHdr>(), 64);
        assert_eq!(size_of::<SgScsiId>(), 32);
        assert_eq!(offset_of!(SgScsiId, h_cmd_per_lun), 20);
        assert_eq!(offset_of!(SgScsiId, unused), 24);
    }

    /// `#define NAME number` lines of a C header.
    fn header_defines(text: &str) -> HashMap<String, i64> {
        let mut out = HashMap::new();
        for line in text.lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 3 || t[0] != "#define" {
                continue;
            }
            let v = match t[2].strip_prefix("0x") {
                Some(h) => i64::from_str_radix(h, 16).ok(),
                None => t[2].parse().ok(),
            };
            if let Some(v) = v {
                out.insert(t[1].to_string(), v);
            }
        }
        out
    }

    #[test]
    fn constants_match_scsi_sg_h_when_installed() {
        // The C header is only on machines with libc headers; the values are also spelled
        // out here so the test means something without it.
        let expected: [(&str, i64); 7] = [
            ("SG_IO", 0x2285),
            ("SG_GET_SCSI_ID", 0x2276),
            ("SG_SCSI_RESET", 0x2284),
            ("SG_SCSI_RESET_DEVICE", i64::from(SG_SCSI_RESET_DEVICE)),
            ("SG_DXFER_NONE", i64::from(SG_DXFER_NONE)),
            ("SG_DXFER_TO_DEV", i64::from(SG_DXFER_TO_DEV)),
            ("SG_DXFER_FROM_DEV", i64::from(SG_DXFER_FROM_DEV)),
        ];
        let Ok(text) = std::fs::read_to_string("/usr/include/scsi/sg.h") else {
            return;
        };
        let defs = header_defines(&text);
        for (name, v) in expected {
            assert_eq!(defs.get(name), Some(&v), "{name}");
        }
    }

    #[test]
    fn ndmp_timeout_zero_is_no_timeout() {
        assert_eq!(sg_timeout(0), u32::MAX);
        assert_eq!(sg_timeout(1), 1);
        assert_eq!(sg_timeout(30_000), 30_000);
    }

    fn done(status: u8, host: u16, driver: u16, resid: i32, sb_len_wr: u8) -> Completion {
        Completion {
            status,
            host_status: host,
            driver_status: driver,
            resid,
            sb_len_wr,
        }
    }

    #[test]
    fn good_data_in_is_cut_by_the_residue() {
        let buf: Vec<u8> = (0..36).collect();
        let out = outcome(done(0, 0, 0, 10, 0), &DataDir::In(36), buf, &[0; SENSE_LEN]).unwrap();
        assert_eq!(out.status, status::GOOD);
        assert_eq!(out.datain, (0..26).collect::<Vec<u8>>());
        assert_eq!(out.dataout_len, 0);
        assert!(out.sense.is_empty());

        // A residue beyond the buffer leaves nothing; a negative one (overrun) takes nothing.
        let out = outcome(done(0, 0, 0, 100, 0), &DataDir::In(4), vec![1; 4], &[]).unwrap();
        assert!(out.datain.is_empty());
        let out = outcome(done(0, 0, 0, -5, 0), &DataDir::In(4), vec![1; 4], &[]).unwrap();
        assert_eq!(out.datain, vec![1; 4]);
    }

    #[test]
    fn data_out_length_is_what_the_device_took() {
        let dir = DataDir::Out(vec![7; 100]);
        let out = outcome(done(0, 0, 0, 20, 0), &dir, Vec::new(), &[]).unwrap();
        assert_eq!(out.dataout_len, 80);
        assert!(out.datain.is_empty());
        let out = outcome(done(0, 0, 0, 0, 0), &dir, Vec::new(), &[]).unwrap();
        assert_eq!(out.dataout_len, 100);
        let out = outcome(done(0, 0, 0, 1000, 0), &dir, Vec::new(), &[]).unwrap();
        assert_eq!(out.dataout_len, 0);
        let out = outcome(done(0, 0, 0, 0, 0), &DataDir::None, Vec::new(), &[]).unwrap();
        assert_eq!((out.dataout_len, out.datain.len()), (0, 0));
    }

    #[test]
    fn check_condition_carries_its_sense() {
        let mut sense = [0u8; SENSE_LEN];
        // Fixed format, NOT READY, MEDIUM NOT PRESENT.
        sense[..18].copy_from_slice(&[
            0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0, 0, 0, 0, 0,
        ]);
        sense[18] = 0xee; // beyond sb_len_wr: must not be returned
        let out = outcome(
            done(status::CHECK_CONDITION, 0, DRIVER_SENSE, 36, 18),
            &DataDir::In(36),
            vec![0; 36],
            &sense,
        )
        .unwrap();
        assert_eq!(out.status, status::CHECK_CONDITION);
        assert_eq!(out.sense, sense[..18].to_vec());
        assert!(out.datain.is_empty());
        assert!(!out.is_good());

        // A count larger than the buffer (never from a sane kernel) is clamped, not a panic.
        let out = outcome(
            done(status::CHECK_CONDITION, 0, DRIVER_SENSE, 0, 255),
            &DataDir::None,
            Vec::new(),
            &sense[..20],
        )
        .unwrap();
        assert_eq!(out.sense.len(), 20);
    }

    #[test]
    fn driver_sense_with_good_status_is_not_an_error() {
        // DRIVER_SENSE plus a SUGGEST_* bit in the high nibble, as older kernels report.
        let out = outcome(done(0, 0, 0x18, 0, 0), &DataDir::In(8), vec![5; 8], &[]).unwrap();
        assert_eq!(out.status, status::GOOD);
        assert_eq!(out.datain, vec![5; 8]);
        let out = outcome(done(status::BUSY, 0, 0, 0, 0), &DataDir::None, vec![], &[]).unwrap();
        assert_eq!(out.status, status::BUSY);
    }

    #[test]
    fn timeouts_are_timeouts() {
        let none = &DataDir::None;
        assert_eq!(
            outcome(done(0, DID_TIME_OUT, 0, 0, 0), none, vec![], &[]),
            Err(CdbError::Timeout)
        );
        assert_eq!(
            outcome(done(0, 0, DRIVER_TIMEOUT, 0, 0), none, vec![], &[]),
            Err(CdbError::Timeout)
        );
        // SUGGEST_ABORT | DRIVER_TIMEOUT
        assert_eq!(
            outcome(done(0, 0, 0x46, 0, 0), none, vec![], &[]),
            Err(CdbError::Timeout)
        );
    }

    #[test]
    fn host_and_driver_failures_are_io_errors_naming_the_cause() {
        let none = &DataDir::None;
        let Err(CdbError::Io(m)) = outcome(done(0, 0x01, 0, 0, 0), none, vec![], &[]) else {
            panic!("DID_NO_CONNECT must be an I/O error");
        };
        assert!(m.contains("DID_NO_CONNECT"), "{m}");
        let Err(CdbError::Io(m)) = outcome(done(0, 0x08, DRIVER_SENSE, 0, 0), none, vec![], &[])
        else {
            panic!("DID_RESET must be an I/O error");
        };
        assert!(m.contains("DID_RESET"), "{m}");
        let Err(CdbError::Io(m)) = outcome(done(0, 0x7f, 0, 0, 0), none, vec![], &[]) else {
            panic!("an unknown host status must be an I/O error");
        };
        assert!(m.contains("0x7f"), "{m}");
        let Err(CdbError::Io(m)) = outcome(done(0, 0, 0x04, 0, 0), none, vec![], &[]) else {
            panic!("DRIVER_ERROR must be an I/O error");
        };
        assert!(m.contains("DRIVER_ERROR"), "{m}");
    }

    #[test]
    fn open_refuses_what_is_not_sg() {
        let null = Path::new("/dev/null");
        if null.exists() {
            assert_eq!(
                SgDevice::open(null).unwrap_err(),
                SgOpenError::NotSg(null.to_path_buf())
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"not a device").unwrap();
        assert!(matches!(SgDevice::open(&file), Err(SgOpenError::NotSg(_))));
        assert!(matches!(
            SgDevice::open(dir.path()),
            Err(SgOpenError::NotSg(_))
        ));
        let missing = dir.path().join("sg99");
        let e = SgDevice::open(&missing).unwrap_err();
        assert_eq!(e, SgOpenError::NotFound(missing.clone()));
        assert!(e.to_string().contains(&missing.display().to_string()));
    }

    /// A device around a descriptor that is not sg, to exercise the ioctl error paths.
    fn not_sg_device() -> Option<SgDevice> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .ok()?;
        Some(SgDevice {
            fd: OwnedFd::from(f),
            name: "/dev/null".into(),
            device_type: TYPE_UNKNOWN,
        })
    }

    #[test]
    fn execute_checks_the_request_and_reports_ioctl_failures() {
        let Some(mut dev) = not_sg_device() else {
            return;
        };
        let long = CdbRequest {
            cdb: vec![0x7f; 17],
            dir: DataDir::None,
            timeout_ms: 0,
        };
        assert!(matches!(dev.execute(&long), Err(CdbError::IllegalArgs(_))));
        let empty = CdbRequest {
            cdb: vec![],
            dir: DataDir::None,
            timeout_ms: 0,
        };
        assert!(matches!(dev.execute(&empty), Err(CdbError::IllegalArgs(_))));
        let tur = CdbRequest {
            cdb: vec![op::TEST_UNIT_READY, 0, 0, 0, 0, 0],
            dir: DataDir::In(16),
            timeout_ms: 1000,
        };
        let Err(CdbError::Io(m)) = dev.execute(&tur) else {
            panic!("SG_IO on /dev/null must fail");
        };
        assert!(m.contains("/dev/null") && m.contains("ENOTTY"), "{m}");
        assert!(matches!(dev.reset_device(), Err(CdbError::Io(_))));
        assert_eq!(dev.scsi_address(), None);
        assert!(!dev.is_changer_or_tape());
        assert_eq!(dev.device_type(), TYPE_UNKNOWN);
    }

    #[test]
    fn device_type_comes_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("class/scsi_generic/sg2/device");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("type"), "8\n").unwrap();
        assert_eq!(sysfs_device_type(root.path(), 2), Some(TYPE_MEDIUM_CHANGER));
        assert_eq!(sysfs_device_type(root.path(), 3), None);
        std::fs::write(dev.join("type"), "tape\n").unwrap();
        assert_eq!(sysfs_device_type(root.path(), 2), None);
        std::fs::write(dev.join("type"), "200").unwrap();
        assert_eq!(sysfs_device_type(root.path(), 2), None);
    }

    #[test]
    fn st_minors_give_drive_numbers() {
        assert_eq!(st_drive_number(0), 0); // st0
        assert_eq!(st_drive_number(0x80), 0); // nst0
        assert_eq!(st_drive_number(0x80 | 0x60 | 5), 5); // nst5a
        assert_eq!(st_drive_number(0x20 | 1), 1); // st1l
        assert_eq!(st_drive_number(0x1f), 31);
        assert_eq!(st_drive_number(256), 32);
        assert_eq!(st_drive_number(256 | 0x80 | 3), 35);
    }

    #[test]
    fn tape_generic_node_from_fake_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let sysfs = root.path().join("sys");
        let dev = root.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let generic = sysfs.join("class/scsi_tape/st0/device/scsi_generic");
        std::fs::create_dir_all(generic.join("sg3")).unwrap();
        std::fs::create_dir_all(generic.join("power")).unwrap();

        // sysfs knows the node but /dev does not have it (yet).
        assert_eq!(sg_node_of_tape_in(&sysfs, &dev, "st0"), None);
        std::fs::write(dev.join("sg3"), b"").unwrap();
        assert_eq!(
            sg_node_of_tape_in(&sysfs, &dev, "st0"),
            Some(dev.join("sg3"))
        );
        // No such drive, and a drive whose device has no scsi_generic directory.
        assert_eq!(sg_node_of_tape_in(&sysfs, &dev, "st1"), None);
        std::fs::create_dir_all(sysfs.join("class/scsi_tape/st2/device")).unwrap();
        assert_eq!(sg_node_of_tape_in(&sysfs, &dev, "st2"), None);
    }

    #[test]
    fn only_sg_names_count() {
        assert!(is_sg_name("sg0"));
        assert!(is_sg_name("sg123"));
        assert!(!is_sg_name("sg"));
        assert!(!is_sg_name("sg1a"));
        assert!(!is_sg_name("../sg1"));
        assert!(!is_sg_name("power"));
    }

    #[test]
    fn tape_lookup_of_other_nodes_is_none() {
        assert_eq!(sg_node_of_tape(Path::new("/nonexistent/nst0")), None);
        if Path::new("/dev/null").exists() {
            assert_eq!(sg_node_of_tape(Path::new("/dev/null")), None);
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(sg_node_of_tape(dir.path()), None);
    }
}
