//! A DMA's robot over NDMP: SCSI_OPEN of a media changer, its inventory from READ ELEMENT
//! STATUS, MOVE MEDIUM, and tape drives paired with drive elements by serial number.

use super::connection::{Client, ClientError};
use super::session::{login_version, AuthMethod};
use crate::scsi::sense::Sense;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Opaque, Reply, Request};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;

/// Why a robot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangerError {
    /// The NDMP conversation itself failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The device answered CHECK CONDITION (or another non-GOOD status).
    #[error("{what}: {why}")]
    Device {
        /// The command, e.g. "MOVE MEDIUM 1001 -> 1".
        what: String,
        /// The sense data in words, or the SCSI status when there is none.
        why: String,
    },
    /// A reply this robot cannot use (an unexpected body, element status it cannot parse), or
    /// an inventory that rules the request out (no such drive element, an empty drive, no
    /// free slot); the text says which.
    #[error("{0}")]
    Reply(String),
}

/// SMC element types, as the inventory shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementKind {
    /// The robot's picker (medium transport element).
    Transport,
    /// A storage slot.
    Storage,
    /// An import/export slot.
    ImportExport,
    /// A tape drive (data transfer element).
    Drive,
}

/// One element of the changer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Element {
    /// The element address.
    pub address: u16,
    /// What the element is.
    pub kind: ElementKind,
    /// It holds a cartridge.
    pub full: bool,
    /// The volume tag (barcode) of the cartridge in it.
    pub label: Option<String>,
    /// Where the cartridge came from (SVALID).
    pub source: Option<u16>,
    /// A drive's serial number (from its device identifier).
    pub serial: Option<String>,
    /// The tape drive name on the server, when its serial number matched.
    pub drive: Option<String>,
}

/// The changer's elements, in the order it reported them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inventory {
    /// The changer's device name on the server.
    pub changer: String,
    /// Its elements.
    pub elements: Vec<Element>,
}

/// Runs one CDB on the connection's open SCSI device (or tape, with `tape`); GOOD gives the
/// data in, anything else an error naming the sense.
pub async fn execute(
    c: &mut Client,
    what: &str,
    cdb: &[u8],
    datain_len: u32,
    tape: bool,
) -> Result<Vec<u8>, ChangerError> {
    let body = ExecuteCdbRequest {
        flags: if datain_len > 0 {
            scsi_flags::DATA_IN
        } else {
            0
        },
        timeout: 300_000,
        datain_len,
        cdb: Opaque(Bytes::copy_from_slice(cdb)),
        dataout: Opaque(Bytes::new()),
    };
    let req = if tape {
        Request::TapeExecuteCdb(body)
    } else {
        Request::ScsiExecuteCdb(body)
    };
    let r = match c.call_ok(req).await? {
        Reply::ScsiExecuteCdb(r) | Reply::TapeExecuteCdb(r) => r,
        other => return Err(ChangerError::Reply(format!("{what}: unexpected {other:?}"))),
    };
    if r.status != 0 {
        let why = match Sense::parse(&r.ext_sense.0) {
            Some(s) => s.describe(),
            None => format!("SCSI status {:#04x}", r.status),
        };
        return Err(ChangerError::Device {
            what: what.to_string(),
            why,
        });
    }
    Ok(r.datain.0.to_vec())
}

/// READ ELEMENT STATUS of every element, with volume tags and drive identifiers.
pub async fn inventory(c: &mut Client, changer: &str) -> Result<Inventory, ChangerError> {
    const ALLOC: u32 = 1 << 20;
    let cdb = [
        0xb8,
        0x10,
        0,
        0,
        0xff,
        0xff,
        0x01,
        (ALLOC >> 16) as u8,
        (ALLOC >> 8) as u8,
        ALLOC as u8,
        0,
        0,
    ];
    let data = execute(c, "READ ELEMENT STATUS", &cdb, ALLOC, false).await?;
    let elements = parse_element_status(&data).map_err(ChangerError::Reply)?;
    Ok(Inventory {
        changer: changer.to_string(),
        elements,
    })
}

/// Decodes READ ELEMENT STATUS data (SMC-3): the report header, then element status pages.
pub fn parse_element_status(d: &[u8]) -> Result<Vec<Element>, String> {
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be24 = |b: &[u8], i: usize| u32::from_be_bytes([0, b[i], b[i + 1], b[i + 2]]) as usize;
    if d.len() < 8 {
        return Err(format!("element status of {} bytes has no header", d.len()));
    }
    let end = (8 + be24(d, 5)).min(d.len());
    let mut out = Vec::new();
    let mut p = 8;
    while p + 8 <= end {
        let kind = match d[p] & 0x0f {
            1 => ElementKind::Transport,
            2 => ElementKind::Storage,
            3 => ElementKind::ImportExport,
            4 => ElementKind::Drive,
            t => return Err(format!("element type {t} at byte {p}")),
        };
        let (pvoltag, avoltag) = (d[p + 1] & 0x80 != 0, d[p + 1] & 0x40 != 0);
        let dlen = usize::from(be16(d, p + 2));
        let page_end = (p + 8 + be24(d, p + 5)).min(end);
        if dlen < 12 {
            return Err(format!("descriptor length {dlen} at byte {p}"));
        }
        let mut q = p + 8;
        while q + dlen <= page_end {
            let e = &d[q..q + dlen];
            let full = e[2] & 0x01 != 0;
            let mut k = 12;
            let mut label = None;
            if pvoltag && e.len() >= k + 36 {
                let tag = String::from_utf8_lossy(&e[k..k + 32]);
                let tag = tag.trim_end_matches([' ', '\0']);
                label = (full && !tag.is_empty()).then(|| tag.to_string());
                k += 36;
            }
            if avoltag {
                k += 36;
            }
            let serial = (kind == ElementKind::Drive && e.len() >= k + 4)
                .then(|| {
                    let n = usize::from(e[k + 3]);
                    let id = e.get(k + 4..k + 4 + n)?;
                    // T10 vendor ID designator: vendor (8) and product (16), then the serial
                    let id = if e[k + 1] & 0x0f == 1 && id.len() > 24 {
                        &id[24..]
                    } else {
                        id
                    };
                    let s = String::from_utf8_lossy(id).trim().to_string();
                    (!s.is_empty()).then_some(s)
                })
                .flatten();
            out.push(Element {
                address: be16(e, 0),
                kind,
                full,
                label,
                source: (e[9] & 0x80 != 0).then(|| be16(e, 10)),
                serial,
                drive: None,
            });
            q += dlen;
        }
        p = page_end;
    }
    Ok(out)
}

/// The serial number a tape drive reports (INQUIRY page 80h through SCSI_OPEN of its name).
pub async fn drive_serial(c: &mut Client, drive: &str) -> Result<String, ChangerError> {
    c.call_ok(Request::ScsiOpen(ScsiOpenRequest {
        device: drive.into(),
    }))
    .await?;
    let page = execute(c, "INQUIRY", &[0x12, 0x01, 0x80, 0, 255, 0], 255, false).await;
    let _ = c.call(Request::ScsiClose(Void)).await;
    let page = page?;
    let n = page
        .get(2..4)
        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let serial = page.get(4..4 + n).unwrap_or_default();
    Ok(String::from_utf8_lossy(serial).trim().to_string())
}

/// MOVE MEDIUM with the changer's default transport.
pub async fn move_medium(c: &mut Client, from: u16, to: u16) -> Result<(), ChangerError> {
    let [fh, fl] = from.to_be_bytes();
    let [th, tl] = to.to_be_bytes();
    let cdb = [0xa5, 0, 0, 0, fh, fl, th, tl, 0, 0, 0, 0];
    execute(c, &format!("MOVE MEDIUM {from} -> {to}"), &cdb, 0, false).await?;
    Ok(())
}

/// A changer session: one connection holding the changer, one for asking the drives.
pub struct Robot {
    changer: Client,
    drives: Client,
    name: String,
}

impl Robot {
    /// Logs in twice: one connection opens the changer (SCSI_OPEN) and holds it, the other
    /// asks the tape drives for their serial numbers. A changer another session holds is
    /// waited for up to 5 s.
    pub async fn open(
        server: &str,
        user: &str,
        password: &[u8],
        auth: AuthMethod,
        version: u16,
        changer: &str,
    ) -> Result<Robot, ChangerError> {
        let mut c = login_version(server, user, password, auth, version).await?;
        // another DMA's robot holds the changer for a move or an inventory: wait for it a little
        let mut tries = 0;
        loop {
            let r = c
                .call_ok(Request::ScsiOpen(ScsiOpenRequest {
                    device: changer.into(),
                }))
                .await;
            match r {
                Err(e) if e.ndmp_error() == Some(NdmpError::DEVICE_BUSY_ERR) && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                r => {
                    r?;
                    break;
                }
            }
        }
        let drives = login_version(server, user, password, auth, version).await?;
        Ok(Robot {
            changer: c,
            drives,
            name: changer.to_string(),
        })
    }

    /// The inventory, with each drive element named after the server's tape drive whose
    /// serial number it reports.
    pub async fn inventory(&mut self) -> Result<Inventory, ChangerError> {
        let mut inv = inventory(&mut self.changer, &self.name).await?;
        let tapes = match self
            .drives
            .call_ok(Request::ConfigGetTapeInfo(Void))
            .await?
        {
            Reply::ConfigGetTapeInfo(r) => r.tape_info,
            _ => Vec::new(),
        };
        let mut by_serial = BTreeMap::new();
        for t in tapes.iter().flat_map(|t| &t.caplist) {
            let name = t.device.to_string();
            if let Ok(s) = drive_serial(&mut self.drives, &name).await {
                by_serial.insert(s, name);
            }
        }
        for e in inv.elements.iter_mut() {
            e.drive = e.serial.as_ref().and_then(|s| by_serial.get(s).cloned());
        }
        Ok(inv)
    }

    /// MOVE MEDIUM from one element address to another.
    pub async fn move_medium(&mut self, from: u16, to: u16) -> Result<(), ChangerError> {
        move_medium(&mut self.changer, from, to).await
    }

    /// The drive element of tape drive `drive`.
    fn drive_element<'a>(inv: &'a Inventory, drive: &str) -> Result<&'a Element, ChangerError> {
        inv.elements
            .iter()
            .find(|e| e.drive.as_deref() == Some(drive))
            .ok_or_else(|| {
                ChangerError::Reply(format!(
                    "no drive element of the changer reports the serial number of {drive}"
                ))
            })
    }

    /// Loads the cartridge at `slot` into tape drive `drive`. Returns the drive's address.
    pub async fn load(&mut self, slot: u16, drive: &str) -> Result<u16, ChangerError> {
        let inv = self.inventory().await?;
        let to = Self::drive_element(&inv, drive)?.address;
        self.move_medium(slot, to).await?;
        Ok(to)
    }

    /// Takes the cartridge out of tape drive `drive`, back to where it came from if that slot
    /// is free, else to the first free storage slot. Returns (from, to).
    pub async fn unload(&mut self, drive: &str) -> Result<(u16, u16), ChangerError> {
        let inv = self.inventory().await?;
        let d = Self::drive_element(&inv, drive)?;
        if !d.full {
            return Err(ChangerError::Reply(format!("drive {drive} is empty")));
        }
        let free = |a: u16| {
            inv.elements
                .iter()
                .any(|e| e.address == a && e.kind == ElementKind::Storage && !e.full)
        };
        let to = d
            .source
            .filter(|s| free(*s))
            .or_else(|| {
                inv.elements
                    .iter()
                    .find(|e| e.kind == ElementKind::Storage && !e.full)
                    .map(|e| e.address)
            })
            .ok_or_else(|| ChangerError::Reply("every storage slot is full".into()))?;
        let from = d.address;
        self.move_medium(from, to).await?;
        Ok((from, to))
    }
}

impl Robot {
    /// The drive element of tape drive `drive` now: whether it is full, and the volume tag
    /// of the cartridge in it.
    pub async fn drive_status(&mut self, drive: &str) -> Result<Element, ChangerError> {
        let inv = self.inventory().await?;
        Self::drive_element(&inv, drive).cloned()
    }

    /// Puts the cartridge with volume tag `label` into tape drive `drive`: nothing to do when
    /// it is there; else what the drive holds goes back to a slot first, and `label` comes
    /// from wherever it waits (storage or import/export slot).
    pub async fn mount(&mut self, label: &str, drive: &str) -> Result<(), ChangerError> {
        let inv = self.inventory().await?;
        let d = Self::drive_element(&inv, drive)?.clone();
        if d.label.as_deref() == Some(label) {
            return Ok(());
        }
        let from = inv
            .elements
            .iter()
            .find(|e| e.kind != ElementKind::Drive && e.label.as_deref() == Some(label))
            .map(|e| e.address)
            .ok_or_else(|| {
                ChangerError::Reply(format!(
                    "cartridge {label} is in no slot of changer {}",
                    self.name
                ))
            })?;
        if d.full {
            self.unload(drive).await?;
        }
        self.move_medium(from, d.address).await
    }

    /// Ends the session: the changer is free for other DMAs again.
    pub async fn close(self) {
        let _ = self.changer.close().await;
        let _ = self.drives.close().await;
    }
}

impl fmt::Display for Inventory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>7}  {:<14} {:<12} {:<8} drive",
            "address", "element", "cartridge", "source"
        )?;
        for e in &self.elements {
            let kind = match e.kind {
                ElementKind::Transport => "transport",
                ElementKind::Storage => "storage",
                ElementKind::ImportExport => "import/export",
                ElementKind::Drive => "drive",
            };
            let cart = match (&e.label, e.full) {
                (Some(l), _) => l.clone(),
                (None, true) => "(no label)".into(),
                (None, false) => "-".into(),
            };
            let src = e.source.map_or("-".to_string(), |s| s.to_string());
            let line = format!(
                "{:>7}  {:<14} {:<12} {:<8} {}",
                e.address,
                kind,
                cart,
                src,
                e.drive.as_deref().unwrap_or("")
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_status_with_tags_and_identifiers() {
        // one storage page (voltag) with two slots, one drive page with an identifier
        let mut d = vec![0u8; 8];
        let slot = |addr: u16, label: Option<&str>, src: Option<u16>| {
            let mut e = vec![0u8; 12];
            e[0..2].copy_from_slice(&addr.to_be_bytes());
            e[2] = u8::from(label.is_some());
            if let Some(s) = src {
                e[9] = 0x80;
                e[10..12].copy_from_slice(&s.to_be_bytes());
            }
            let mut tag = label.map_or(vec![0; 32], |l| format!("{l:<32}").into_bytes());
            tag.extend([0; 4]);
            e.extend(tag);
            e.extend([0; 4]);
            e
        };
        let s1 = slot(1001, Some("VT0003"), None);
        let s2 = slot(1002, None, None);
        d.extend([2, 0x80, 0, 52, 0, 0, 0, 104]);
        d.extend(s1);
        d.extend(s2);
        let mut drive = slot(1, Some("VT0001"), Some(1001));
        drive.truncate(48);
        let id = b"NDMPD   VIRTUAL TAPE    VT12345678";
        drive.extend([2, 1, 0, id.len() as u8]);
        drive.extend(id);
        d.extend([4, 0x80, 0, drive.len() as u8, 0, 0, 0, drive.len() as u8]);
        d.extend(drive);
        let n = d.len() - 8;
        d[5..8].copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        let e = parse_element_status(&d).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].label.as_deref(), Some("VT0003"));
        assert!(!e[1].full && e[1].label.is_none());
        assert_eq!(e[2].kind, ElementKind::Drive);
        assert_eq!(e[2].source, Some(1001));
        assert_eq!(e[2].serial.as_deref(), Some("VT12345678"));
        assert!(parse_element_status(&d[..5]).is_err());
        // a cut report gives what is whole, and never panics
        for cut in 0..d.len() {
            let _ = parse_element_status(&d[..cut]);
        }
    }
}
