//! SCSI sense data (SPC fixed format, response code 70h): the sense keys and additional sense
//! codes the virtual devices report, with the field pointer that names the bad CDB byte.

/// Sense keys (SPC table "Sense key descriptions").
pub mod key {
    /// Nothing to report.
    pub const NO_SENSE: u8 = 0x0;
    /// The device cannot be accessed now (no medium, becoming ready).
    pub const NOT_READY: u8 = 0x2;
    /// The medium failed: a flaw, or an unrecoverable read or write error.
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// The device itself failed.
    pub const HARDWARE_ERROR: u8 = 0x4;
    /// The command or its parameters are wrong; nothing was done.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// Something changed behind the initiator's back (a reset, an operator at the mail
    /// slot); reported once, then the command can be repeated.
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// The device gave the command up; it may be retried.
    pub const ABORTED_COMMAND: u8 = 0xB;
}

/// One condition: sense key, ASC, ASCQ and, for ILLEGAL REQUEST, which CDB byte was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// The sense key (`key`).
    pub key: u8,
    /// The additional sense code.
    pub asc: u8,
    /// The additional sense code qualifier.
    pub ascq: u8,
    /// The CDB byte (and bit) in error, reported in the sense-key specific bytes.
    pub field: Option<FieldPointer>,
}

/// SPC "field pointer" sense-key specific data for ILLEGAL REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// true = the error is in the CDB, false = in the parameter data sent with it.
    pub in_cdb: bool,
    /// The byte in error, counted from 0.
    pub byte: u16,
    /// The bit in error within that byte (0 to 7), if one bit is to blame.
    pub bit: Option<u8>,
}

/// The fixed-format sense length this server returns (additional sense length 10).
pub const FIXED_LEN: usize = 18;

impl Sense {
    /// A condition without a field pointer.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            field: None,
        }
    }

    /// The same condition, pointing at CDB byte `byte`.
    pub const fn at(mut self, byte: u16) -> Sense {
        self.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit: None,
        });
        self
    }

    /// The same condition, pointing at bit `bit` of CDB byte `byte`.
    pub const fn at_bit(mut self, byte: u16, bit: u8) -> Sense {
        self.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit: Some(bit),
        });
        self
    }

    /// The 18 bytes of fixed-format sense data.
    pub fn fixed(&self) -> Vec<u8> {
        let mut s = vec![0u8; FIXED_LEN];
        s[0] = 0x70; // current error, fixed format, INFORMATION not valid
        s[2] = self.key & 0x0f;
        s[7] = (FIXED_LEN - 8) as u8;
        s[12] = self.asc;
        s[13] = self.ascq;
        if let Some(f) = self.field {
            s[15] = 0x80 | if f.in_cdb { 0x40 } else { 0 };
            if let Some(bit) = f.bit {
                s[15] |= 0x08 | (bit & 0x07);
            }
            s[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        s
    }

    /// Decodes fixed (70h/71h) or descriptor (72h/73h) sense data; `None` if too short or of
    /// another format.
    pub fn parse(b: &[u8]) -> Option<Sense> {
        match b.first()? & 0x7f {
            0x70 | 0x71 if b.len() >= 14 => {
                let field = (b.len() >= 18 && b[15] & 0x80 != 0).then(|| FieldPointer {
                    in_cdb: b[15] & 0x40 != 0,
                    byte: u16::from_be_bytes([b[16], b[17]]),
                    bit: (b[15] & 0x08 != 0).then_some(b[15] & 0x07),
                });
                Some(Sense {
                    key: b[2] & 0x0f,
                    asc: b[12],
                    ascq: b[13],
                    field,
                })
            }
            0x72 | 0x73 if b.len() >= 4 => Some(Sense::new(b[1] & 0x0f, b[2], b[3])),
            _ => None,
        }
    }

    /// What the condition means, for LOG_MESSAGEs and CLI output.
    pub fn describe(&self) -> String {
        let what = match (self.asc, self.ascq) {
            (0x00, 0x00) => "no additional sense information",
            (0x04, 0x01) => "logical unit is in process of becoming ready",
            (0x20, 0x00) => "invalid command operation code",
            (0x21, 0x01) => "invalid element address",
            (0x24, 0x00) => "invalid field in CDB",
            (0x25, 0x00) => "logical unit not supported",
            (0x26, 0x00) => "invalid field in parameter list",
            (0x28, 0x01) => "import or export element accessed",
            (0x29, 0x00) => "power on, reset, or bus device reset occurred",
            (0x3a, 0x00) => "medium not present",
            (0x3b, 0x0d) => "medium destination element full",
            (0x3b, 0x0e) => "medium source element empty",
            (0x3b, 0x90) => "medium not ejected from the drive",
            (0x39, 0x00) => "saving parameters not supported",
            (0x44, 0x00) => "internal target failure",
            (0x53, 0x02) => "medium removal prevented",
            _ => "",
        };
        let key = match self.key {
            key::NO_SENSE => "NO SENSE",
            key::NOT_READY => "NOT READY",
            key::MEDIUM_ERROR => "MEDIUM ERROR",
            key::HARDWARE_ERROR => "HARDWARE ERROR",
            key::ILLEGAL_REQUEST => "ILLEGAL REQUEST",
            key::UNIT_ATTENTION => "UNIT ATTENTION",
            key::ABORTED_COMMAND => "ABORTED COMMAND",
            _ => "sense key",
        };
        let mut s = format!("{key} {:02X}h/{:02X}h", self.asc, self.ascq);
        if !what.is_empty() {
            s.push_str(&format!(" ({what})"));
        }
        if let Some(f) = self.field {
            s.push_str(&format!(
                ", {} byte {}",
                if f.in_cdb { "CDB" } else { "parameter" },
                f.byte
            ));
        }
        s
    }
}

/// The conditions the virtual devices report.
pub mod cond {
    use super::{key, Sense};
    /// Nothing pending: what REQUEST SENSE returns when all is well.
    pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0x00, 0x00);
    /// An operation code the device does not implement; points at CDB byte 0.
    pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00).at(0);
    /// An element address the changer does not have (MOVE MEDIUM, POSITION TO ELEMENT).
    pub const INVALID_ELEMENT: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x01);
    /// A CDB field with a value the device does not accept; pair with [`Sense::at`].
    pub const INVALID_FIELD: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
    /// A logical unit the target does not have.
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    /// MODE SENSE asked for saved values, which the virtual changer does not keep.
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    /// MOVE MEDIUM into an element that already holds a cartridge.
    pub const DEST_FULL: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x3b, 0x0d);
    /// MOVE MEDIUM from an element that holds no cartridge.
    pub const SOURCE_EMPTY: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x3b, 0x0e);
    /// A MOVE MEDIUM out of a drive whose tape is still loaded and in use by a session. The
    /// ASCQ is in the vendor-specific range; several libraries report this one for it.
    pub const NOT_EJECTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x3b, 0x90);
    /// A cartridge may not leave the library: PREVENT MEDIUM REMOVAL holds.
    pub const REMOVAL_PREVENTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02);
    /// TEST UNIT READY on a drive without a loaded cartridge.
    pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(key::NOT_READY, 0x3a, 0x00);
    /// The first command after SCSI_RESET_DEVICE.
    pub const RESET_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
    /// The first command after an operator imported or exported cartridges (`ndmpd vtape
    /// import`, `export`).
    pub const IMPORT_EXPORT_ACCESSED: Sense = Sense::new(key::UNIT_ATTENTION, 0x28, 0x01);
    /// The library's state could not be read or written.
    pub const INTERNAL_FAILURE: Sense = Sense::new(key::HARDWARE_ERROR, 0x44, 0x00);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let s = cond::INVALID_ELEMENT.at(4).fixed();
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x70);
        assert_eq!(s[2], 0x05);
        assert_eq!(s[7], 10);
        assert_eq!((s[12], s[13]), (0x21, 0x01));
        assert_eq!(s[15], 0xc0, "SKSV and C/D");
        assert_eq!(&s[16..18], &[0, 4]);
        assert_eq!(Sense::parse(&s), Some(cond::INVALID_ELEMENT.at(4)));
        let b = cond::INVALID_FIELD.at_bit(10, 0).fixed();
        assert_eq!(b[15], 0xc8);
        assert_eq!(Sense::parse(&b).unwrap().field.unwrap().bit, Some(0));
        let plain = cond::SOURCE_EMPTY.fixed();
        assert_eq!(&plain[15..18], &[0, 0, 0]);
        assert_eq!(Sense::parse(&plain), Some(cond::SOURCE_EMPTY));
    }

    #[test]
    fn descriptor_format_and_junk() {
        assert_eq!(
            Sense::parse(&[0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]),
            Some(cond::RESET_OCCURRED)
        );
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x70, 0, 5]), None);
        assert_eq!(Sense::parse(&[0x00; 18]), None);
    }

    #[test]
    fn descriptions_name_the_condition() {
        assert_eq!(
            cond::SOURCE_EMPTY.describe(),
            "ILLEGAL REQUEST 3Bh/0Eh (medium source element empty)"
        );
        assert!(cond::INVALID_ELEMENT
            .at(6)
            .describe()
            .ends_with("CDB byte 6"));
    }
}
