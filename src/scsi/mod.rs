//! The SCSI server's devices (spec §3.3): a virtual SMC-3 media changer over the tape library,
//! a small SSC responder for virtual drives, and SG_IO pass-through to real changers and drives.

pub mod changer;
pub mod sense;
pub mod sg;
pub mod vdrive;

use sense::Sense;

/// SCSI status bytes (SAM).
pub mod status {
    /// The command completed.
    pub const GOOD: u8 = 0x00;
    /// The command failed; the sense data says why.
    pub const CHECK_CONDITION: u8 = 0x02;
    /// The device cannot take the command now; try again later.
    pub const BUSY: u8 = 0x08;
    /// Another initiator holds a reservation on the device.
    pub const RESERVATION_CONFLICT: u8 = 0x18;
}

/// Operation codes the virtual devices answer.
pub mod op {
    /// TEST UNIT READY (SPC): whether the device can take medium-access commands.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE (SPC): the sense data of a pending condition.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// INITIALIZE ELEMENT STATUS (SMC): re-inventory every element.
    pub const INITIALIZE_ELEMENT_STATUS: u8 = 0x07;
    /// INQUIRY (SPC): device type, vendor, product and vital product data pages.
    pub const INQUIRY: u8 = 0x12;
    /// MODE SENSE(6) (SPC): mode pages with a one-byte allocation length.
    pub const MODE_SENSE_6: u8 = 0x1A;
    /// PREVENT ALLOW MEDIUM REMOVAL (SPC/SMC): lock or unlock the import/export elements.
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    /// MODE SENSE(10) (SPC): mode pages with a two-byte allocation length.
    pub const MODE_SENSE_10: u8 = 0x5A;
    /// REPORT LUNS (SPC): the logical units behind the target.
    pub const REPORT_LUNS: u8 = 0xA0;
    /// MOVE MEDIUM (SMC): carry a cartridge from one element to another.
    pub const MOVE_MEDIUM: u8 = 0xA5;
    /// READ ELEMENT STATUS (SMC): the elements and what they hold.
    pub const READ_ELEMENT_STATUS: u8 = 0xB8;
    /// INITIALIZE ELEMENT STATUS WITH RANGE (SMC): re-inventory some elements.
    pub const INITIALIZE_ELEMENT_STATUS_WITH_RANGE: u8 = 0xE7;
}

/// Which way data moves, from the server's point of view (the NDMP DATA_IN/DATA_OUT flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// No data phase.
    None,
    /// The device may return up to this many bytes.
    In(u32),
    /// These bytes go to the device.
    Out(Vec<u8>),
}

/// One CDB to execute, as SCSI_EXECUTE_CDB and TAPE_EXECUTE_CDB carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdbRequest {
    /// The command descriptor block; byte 0 is the operation code.
    pub cdb: Vec<u8>,
    /// The data phase, if any.
    pub dir: DataDir,
    /// Milliseconds; 0 = wait for as long as it takes (spec §3.3.5).
    pub timeout_ms: u32,
}

/// What the device answered. A CHECK CONDITION carries its sense data (autosense).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdbOutcome {
    /// The SCSI status byte (`status`).
    pub status: u8,
    /// The bytes read from the device; empty unless the request was `DataDir::In`.
    pub datain: Vec<u8>,
    /// How many bytes of `DataDir::Out` data the device took.
    pub dataout_len: u32,
    /// The sense data; empty unless the status is CHECK CONDITION.
    pub sense: Vec<u8>,
}

impl CdbOutcome {
    /// GOOD with `data` cut to what the initiator allowed (`alloc`).
    pub fn good(mut data: Vec<u8>, alloc: usize) -> CdbOutcome {
        data.truncate(alloc);
        CdbOutcome {
            status: status::GOOD,
            datain: data,
            ..Default::default()
        }
    }

    /// CHECK CONDITION with `sense`.
    pub fn check(sense: Sense) -> CdbOutcome {
        CdbOutcome {
            status: status::CHECK_CONDITION,
            sense: sense.fixed(),
            ..Default::default()
        }
    }

    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == status::GOOD
    }
}

/// Why a CDB could not be delivered at all (as opposed to a device that said no, which is a
/// CdbOutcome with CHECK CONDITION). Each maps to one NDMP error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdbError {
    /// The command did not complete within the timeout (NDMP_TIMEOUT_ERR).
    #[error("the command timed out")]
    Timeout,
    /// The request itself is malformed: empty or oversized CDB, inconsistent flags
    /// (NDMP_ILLEGAL_ARGS_ERR).
    #[error("{0}")]
    IllegalArgs(String),
    /// The host adapter or driver failed (NDMP_IO_ERR).
    #[error("I/O error: {0}")]
    Io(String),
}

/// The largest CDB accepted (SPC variable-length CDBs stop at 260 bytes).
pub const MAX_CDB: usize = 260;
/// The most data one CDB may move either way: enough for READ ELEMENT STATUS of a large
/// library and for tape blocks, small enough that a hostile datain_len costs nothing.
pub const MAX_TRANSFER: u32 = 16 << 20;

impl CdbRequest {
    /// Checks what every device needs: a CDB of sane length and a transfer within bounds.
    pub fn validate(&self) -> Result<(), CdbError> {
        if self.cdb.is_empty() || self.cdb.len() > MAX_CDB {
            return Err(CdbError::IllegalArgs(format!(
                "a CDB is 1 to {MAX_CDB} bytes, not {}",
                self.cdb.len()
            )));
        }
        let n = match &self.dir {
            DataDir::None => 0,
            DataDir::In(n) => *n,
            DataDir::Out(d) => d.len() as u32,
        };
        if n > MAX_TRANSFER {
            return Err(CdbError::IllegalArgs(format!(
                "a transfer of {n} bytes is more than the {MAX_TRANSFER} this server moves per CDB"
            )));
        }
        Ok(())
    }

    /// The request from its NDMP form: DATA_IN and DATA_OUT together are refused.
    pub fn from_wire(
        flags: u32,
        timeout_ms: u32,
        datain_len: u32,
        cdb: Vec<u8>,
        dataout: Vec<u8>,
    ) -> Result<CdbRequest, CdbError> {
        use crate::wire::types::scsi_flags::{DATA_IN, DATA_OUT};
        let dir = match (flags & DATA_IN != 0, flags & DATA_OUT != 0) {
            (true, true) => {
                return Err(CdbError::IllegalArgs(
                    "DATA_IN and DATA_OUT are both set; a CDB moves data one way".into(),
                ))
            }
            (true, false) => DataDir::In(datain_len),
            (false, true) => DataDir::Out(dataout),
            (false, false) => DataDir::None,
        };
        if flags & !(DATA_IN | DATA_OUT) != 0 {
            return Err(CdbError::IllegalArgs(format!(
                "unknown execute-CDB flags {flags:#x}"
            )));
        }
        let r = CdbRequest {
            cdb,
            dir,
            timeout_ms,
        };
        r.validate()?;
        Ok(r)
    }

    /// The allocation length the initiator gave for data in (0 when none is expected).
    pub fn alloc(&self) -> usize {
        match self.dir {
            DataDir::In(n) => n as usize,
            _ => 0,
        }
    }
}

/// Pads or cuts `s` to exactly `n` ASCII bytes, space filled (INQUIRY and volume tag fields).
pub fn ascii_field(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .take(n)
        .collect();
    v.resize(n, b' ');
    v
}

/// The vendor identification every virtual device reports (8 bytes, T10 style).
pub const VENDOR: &str = "NDMPD";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::types::scsi_flags::{DATA_IN, DATA_OUT};

    #[test]
    fn wire_requests_are_checked() {
        let r = CdbRequest::from_wire(DATA_IN, 0, 96, vec![0x12, 0, 0, 0, 96, 0], vec![]).unwrap();
        assert_eq!(r.dir, DataDir::In(96));
        assert_eq!(r.alloc(), 96);
        assert!(matches!(
            CdbRequest::from_wire(DATA_IN | DATA_OUT, 0, 1, vec![0], vec![]),
            Err(CdbError::IllegalArgs(_))
        ));
        assert!(CdbRequest::from_wire(0, 0, 0, vec![], vec![]).is_err());
        assert!(CdbRequest::from_wire(0, 0, 0, vec![0; 261], vec![]).is_err());
        assert!(CdbRequest::from_wire(DATA_IN, 0, u32::MAX, vec![0], vec![]).is_err());
        assert!(CdbRequest::from_wire(0x10, 0, 0, vec![0], vec![]).is_err());
        let w = CdbRequest::from_wire(DATA_OUT, 5, 0, vec![0x15], vec![1, 2]).unwrap();
        assert_eq!(w.dir, DataDir::Out(vec![1, 2]));
    }

    #[test]
    fn ascii_fields_pad_and_cut() {
        assert_eq!(ascii_field("AB", 4), b"AB  ");
        assert_eq!(ascii_field("ABCDEF", 4), b"ABCD");
        assert_eq!(ascii_field("A\u{e9}", 4), b"A?? ");
    }
}
