//! The virtual media changer: the SMC-3 commands DMAs send to a tape library robot, answered
//! over the library's drives, storage slots and import/export slots, with real sense data.

use super::sense::{cond, Sense};
use super::{ascii_field, op, CdbOutcome, CdbRequest, DataDir};
use crate::tape::library::layout::{DRIVE_BASE, PORT_BASE, SLOT_BASE, TRANSPORT};
use crate::tape::library::{Contents, Library, MoveError, Place};
use std::sync::Arc;

/// SMC element type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ElementType {
    /// The robot that moves cartridges (medium transport element).
    Transport = 1,
    /// A storage slot.
    Storage = 2,
    /// An import/export slot.
    ImportExport = 3,
    /// A tape drive (data transfer element).
    DataTransfer = 4,
}

/// One element of the changer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// The robot; it never holds a cartridge between commands.
    Transport,
    /// A place that holds one cartridge.
    Place(Place),
}

/// How the library's places map to element addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The drives the changer serves, in address order from `DRIVE_BASE`.
    pub drives: Vec<String>,
    /// Storage slots, numbered from `SLOT_BASE`.
    pub slots: u16,
    /// Import/export slots, numbered from `PORT_BASE`.
    pub ports: u16,
}

impl Layout {
    /// The layout of `lib` as configured.
    pub fn of(lib: &Library) -> Layout {
        let (slots, ports) = lib.slot_counts();
        Layout {
            drives: lib.changer_drives(),
            slots,
            ports,
        }
    }

    /// The element at `addr`, if there is one.
    pub fn element(&self, addr: u16) -> Option<Element> {
        let n =
            |base: u16, count: u16| (addr >= base && addr - base < count).then(|| addr - base + 1);
        if addr == TRANSPORT {
            return Some(Element::Transport);
        }
        if let Some(i) = n(DRIVE_BASE, self.drives.len() as u16) {
            return Some(Element::Place(Place::Drive(
                self.drives[usize::from(i) - 1].clone(),
            )));
        }
        if let Some(i) = n(PORT_BASE, self.ports) {
            return Some(Element::Place(Place::Port(i)));
        }
        n(SLOT_BASE, self.slots).map(|i| Element::Place(Place::Slot(i)))
    }

    /// The address of a place; `None` for a drive the changer does not serve.
    pub fn address(&self, p: &Place) -> Option<u16> {
        match p {
            Place::Drive(d) => self
                .drives
                .iter()
                .position(|x| x == d)
                .map(|i| DRIVE_BASE + i as u16),
            // a place this layout does not have (a hand-edited state file) has no address
            Place::Port(n) => (1..=self.ports).contains(n).then(|| PORT_BASE + n - 1),
            Place::Slot(n) => (1..=self.slots).contains(n).then(|| SLOT_BASE + n - 1),
        }
    }

    /// Every element in address order, with its type.
    pub fn all(&self) -> Vec<(u16, ElementType, Element)> {
        let mut v = vec![(TRANSPORT, ElementType::Transport, Element::Transport)];
        for (i, d) in self.drives.iter().enumerate() {
            v.push((
                DRIVE_BASE + i as u16,
                ElementType::DataTransfer,
                Element::Place(Place::Drive(d.clone())),
            ));
        }
        for n in 1..=self.ports {
            v.push((
                PORT_BASE + n - 1,
                ElementType::ImportExport,
                Element::Place(Place::Port(n)),
            ));
        }
        for n in 1..=self.slots {
            v.push((
                SLOT_BASE + n - 1,
                ElementType::Storage,
                Element::Place(Place::Slot(n)),
            ));
        }
        v
    }
}

/// The changer's product name in its INQUIRY data.
pub const CHANGER_PRODUCT: &str = "VIRTUAL CHANGER";
/// The virtual drives' product name: in their INQUIRY data and in the drive identifiers of
/// READ ELEMENT STATUS.
pub const DRIVE_PRODUCT: &str = "VIRTUAL TAPE";

/// A ten-character serial number, stable for one name in one data directory.
pub fn serial(kind: &str, lib: &Library, name: &str) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(lib.cartridge_dir().to_string_lossy().as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    format!("{kind}{:08X}", h.finalize())
}

/// The T10 vendor ID designator (VPD page 83h, type 1) of a virtual device.
pub fn t10_designator(product: &str, serial: &str) -> Vec<u8> {
    let mut d = ascii_field(super::VENDOR, 8);
    d.extend(ascii_field(product, 16));
    d.extend(serial.as_bytes());
    d
}

/// The INQUIRY answer (standard data and the VPD pages 00h, 80h and 83h) shared by the
/// virtual changer and the virtual drives.
pub fn inquiry(req: &CdbRequest, device_type: u8, product: &str, serial: &str) -> CdbOutcome {
    let c = &req.cdb;
    if c.len() < 6 {
        return CdbOutcome::check(cond::INVALID_FIELD.at(0));
    }
    let alloc = usize::from(u16::from_be_bytes([c[3], c[4]])).min(req.alloc());
    let evpd = c[1] & 0x01 != 0;
    let page = c[2];
    if !evpd {
        if page != 0 {
            return CdbOutcome::check(cond::INVALID_FIELD.at(2));
        }
        let mut d = vec![
            device_type,
            if device_type == 0x01 { 0x80 } else { 0x00 }, // RMB: tapes are removable
            0x05,                                          // SPC-3
            0x02,                                          // response data format
            31,                                            // additional length
            0x00,
            0x00,
            0x00,
        ];
        d.extend(ascii_field(super::VENDOR, 8));
        d.extend(ascii_field(product, 16));
        d.extend(ascii_field(env!("CARGO_PKG_VERSION"), 4));
        return CdbOutcome::good(d, alloc);
    }
    let body: Vec<u8> = match page {
        0x00 => vec![0x00, 0x80, 0x83],
        0x80 => serial.as_bytes().to_vec(),
        0x83 => {
            let t10 = t10_designator(product, serial);
            let mut d = vec![0x02, 0x01, 0x00, t10.len() as u8];
            d.extend(t10);
            // NAA 3 (locally assigned): 60 bits from the serial, so it is as stable
            let h = {
                let mut a = crc32fast::Hasher::new();
                a.update(serial.as_bytes());
                let mut b = crc32fast::Hasher::new();
                b.update(product.as_bytes());
                b.update(serial.as_bytes());
                (u64::from(a.finalize()) << 32) | u64::from(b.finalize())
            };
            let naa = (h & 0x0fff_ffff_ffff_ffff) | (0x3 << 60);
            d.extend([0x01, 0x03, 0x00, 0x08]);
            d.extend(naa.to_be_bytes());
            d
        }
        _ => return CdbOutcome::check(cond::INVALID_FIELD.at(2)),
    };
    let len = body.len() as u16;
    let mut d = vec![device_type, page];
    d.extend(len.to_be_bytes());
    d.extend(body);
    CdbOutcome::good(d, alloc)
}

/// REQUEST SENSE: reports `pending` (or NO SENSE) in fixed or descriptor format.
pub fn request_sense(req: &CdbRequest, pending: Option<Sense>) -> CdbOutcome {
    let c = &req.cdb;
    if c.len() < 6 {
        return CdbOutcome::check(cond::INVALID_FIELD.at(0));
    }
    let s = pending.unwrap_or(cond::NO_SENSE);
    let alloc = usize::from(c[4]).min(req.alloc());
    let data = if c[1] & 0x01 != 0 {
        vec![0x72, s.key, s.asc, s.ascq, 0, 0, 0, 0]
    } else {
        s.fixed()
    };
    CdbOutcome::good(data, alloc)
}

/// REPORT LUNS: a single LUN 0.
pub fn report_luns(req: &CdbRequest) -> CdbOutcome {
    let c = &req.cdb;
    if c.len() < 12 {
        return CdbOutcome::check(cond::INVALID_FIELD.at(0));
    }
    let alloc = u32::from_be_bytes([c[6], c[7], c[8], c[9]]) as usize;
    if alloc < 16 {
        return CdbOutcome::check(cond::INVALID_FIELD.at(6));
    }
    let mut d = vec![0, 0, 0, 8, 0, 0, 0, 0];
    d.extend([0u8; 8]);
    CdbOutcome::good(d, alloc.min(req.alloc()))
}

/// The virtual changer as one SCSI_OPEN sees it: the shared library plus what SCSI keeps per
/// initiator (medium removal prevention, a pending unit attention).
#[derive(Debug)]
pub struct VirtualChanger {
    lib: Arc<Library>,
    serial: String,
    prevent: bool,
    unit_attention: Option<Sense>,
    /// Operator imports and exports already reported.
    seen_changes: u64,
    /// The library state file as of the last check for operator changes.
    seen_stamp: Option<(std::time::SystemTime, u64)>,
    /// Why the last command ended in CHECK CONDITION, in words, for the DMA's log.
    note: Option<String>,
}

impl VirtualChanger {
    /// The changer for one SCSI_OPEN of the device `name`. Operator changes made before it
    /// opened are taken as seen: only later ones raise a UNIT ATTENTION.
    pub fn open(lib: Arc<Library>, name: &str) -> VirtualChanger {
        let seen_stamp = lib.stamp();
        let seen_changes = lib.contents().operator_changes;
        VirtualChanger {
            seen_stamp,
            serial: serial("CH", &lib, name),
            lib,
            prevent: false,
            unit_attention: None,
            seen_changes,
            note: None,
        }
    }

    /// Its serial number, stable for one name in one data directory (see [`serial`]).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Why the last command failed, if it did.
    pub fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }

    /// SCSI_RESET_DEVICE: drops prevention and reports the reset to the next command.
    pub fn reset(&mut self) {
        self.release();
        self.unit_attention = Some(cond::RESET_OCCURRED);
    }

    /// SCSI_CLOSE or the end of the session: a closed initiator prevents nothing.
    pub fn release(&mut self) {
        if self.prevent {
            self.prevent = false;
            let _ = self.lib.transact(|c: &mut Contents| {
                c.prevent_removal = false;
                Ok::<_, crate::tape::library::LibraryError>(())
            });
        }
    }

    fn fail(&mut self, sense: Sense, why: impl Into<String>) -> CdbOutcome {
        self.note = Some(format!("{}: {}", sense.describe(), why.into()));
        CdbOutcome::check(sense)
    }

    /// Executes one CDB. Never fails: every problem is a CHECK CONDITION with its sense.
    pub fn execute(&mut self, req: &CdbRequest) -> CdbOutcome {
        self.note = None;
        let opcode = req.cdb[0];
        if matches!(req.dir, DataDir::Out(_)) {
            // nothing this changer answers takes parameter data
            return self.fail(cond::INVALID_FIELD.at(0), "no command here takes data out");
        }
        if !matches!(opcode, op::INQUIRY | op::REQUEST_SENSE | op::REPORT_LUNS) {
            // the state file is parsed only when it changed since the last command
            let stamp = self.lib.stamp();
            if stamp != self.seen_stamp {
                self.seen_stamp = stamp;
                let changes = self.lib.contents().operator_changes;
                if changes != self.seen_changes {
                    self.seen_changes = changes;
                    self.unit_attention
                        .get_or_insert(cond::IMPORT_EXPORT_ACCESSED);
                }
            }
            if let Some(ua) = self.unit_attention.take() {
                return self.fail(ua, "reported once; repeat the command");
            }
        }
        match opcode {
            op::TEST_UNIT_READY | 0x16 | 0x17 => CdbOutcome::good(Vec::new(), 0), // RESERVE/RELEASE(6)
            op::INQUIRY => inquiry(req, 0x08, CHANGER_PRODUCT, &self.serial.clone()),
            op::REQUEST_SENSE => {
                let pending = self.unit_attention.take();
                request_sense(req, pending)
            }
            op::REPORT_LUNS => report_luns(req),
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => self.mode_sense(req),
            op::READ_ELEMENT_STATUS => self.read_element_status(req),
            op::MOVE_MEDIUM => self.move_medium(req),
            0x2B => self.position(req), // POSITION TO ELEMENT
            op::INITIALIZE_ELEMENT_STATUS | op::INITIALIZE_ELEMENT_STATUS_WITH_RANGE => {
                match self.lib.transact(|c: &mut Contents| {
                    self.lib.reconcile(c);
                    Ok::<_, crate::tape::library::LibraryError>(())
                }) {
                    Ok(()) => CdbOutcome::good(Vec::new(), 0),
                    Err(e) => self.fail(cond::INTERNAL_FAILURE, e.to_string()),
                }
            }
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => self.prevent_allow(req),
            _ => self.fail(
                cond::INVALID_OPCODE,
                format!("operation code {opcode:02X}h is not a command this changer knows"),
            ),
        }
    }

    fn prevent_allow(&mut self, req: &CdbRequest) -> CdbOutcome {
        let c = &req.cdb;
        if c.len() < 6 {
            return self.fail(cond::INVALID_FIELD.at(0), "short CDB");
        }
        let prevent = match c[4] & 0x03 {
            0 => false,
            1 => true,
            _ => return self.fail(cond::INVALID_FIELD.at_bit(4, 1), "PREVENT must be 0 or 1"),
        };
        let r = self.lib.transact(|s: &mut Contents| {
            s.prevent_removal = prevent;
            Ok::<_, crate::tape::library::LibraryError>(())
        });
        match r {
            Ok(()) => {
                self.prevent = prevent;
                CdbOutcome::good(Vec::new(), 0)
            }
            Err(e) => self.fail(cond::INTERNAL_FAILURE, e.to_string()),
        }
    }

    fn position(&mut self, req: &CdbRequest) -> CdbOutcome {
        let c = &req.cdb;
        if c.len() < 10 {
            return self.fail(cond::INVALID_FIELD.at(0), "short CDB");
        }
        let layout = Layout::of(&self.lib);
        if u16::from_be_bytes([c[2], c[3]]) != TRANSPORT {
            return self.fail(cond::INVALID_ELEMENT.at(2), "no such transport element");
        }
        let dest = u16::from_be_bytes([c[4], c[5]]);
        match layout.element(dest) {
            Some(Element::Place(_)) => CdbOutcome::good(Vec::new(), 0),
            _ => self.fail(
                cond::INVALID_ELEMENT.at(4),
                format!("no element at address {dest}"),
            ),
        }
    }

    fn move_medium(&mut self, req: &CdbRequest) -> CdbOutcome {
        let c = &req.cdb;
        if c.len() < 12 {
            return self.fail(cond::INVALID_FIELD.at(0), "MOVE MEDIUM is a 12-byte CDB");
        }
        if c[10] & 0x01 != 0 {
            return self.fail(
                cond::INVALID_FIELD.at_bit(10, 0),
                "this library does not invert cartridges",
            );
        }
        let addr = |i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
        let layout = Layout::of(&self.lib);
        if addr(2) != TRANSPORT {
            return self.fail(
                cond::INVALID_ELEMENT.at(2),
                format!("no transport element at address {}", addr(2)),
            );
        }
        let place = |i: usize| match layout.element(addr(i)) {
            Some(Element::Place(p)) => Some(p),
            _ => None,
        };
        let Some(from) = place(4) else {
            return self.fail(
                cond::INVALID_ELEMENT.at(4),
                format!("no source element at address {}", addr(4)),
            );
        };
        let Some(to) = place(6) else {
            return self.fail(
                cond::INVALID_ELEMENT.at(6),
                format!("no destination element at address {}", addr(6)),
            );
        };
        match self.lib.move_cartridge(&from, &to) {
            Ok(label) => {
                tracing::info!(cartridge = %label, %from, %to, "changer moved a cartridge");
                CdbOutcome::good(Vec::new(), 0)
            }
            Err(e) => {
                let sense = match &e {
                    MoveError::NoSuchPlace(_) => cond::INVALID_ELEMENT.at(4),
                    MoveError::SourceEmpty(_) => cond::SOURCE_EMPTY,
                    MoveError::DestinationFull(..) => cond::DEST_FULL,
                    MoveError::NotEjected { .. } => cond::NOT_EJECTED,
                    MoveError::RemovalPrevented => cond::REMOVAL_PREVENTED,
                    MoveError::Library(_) => cond::INTERNAL_FAILURE,
                };
                self.fail(sense, e.to_string())
            }
        }
    }

    fn mode_sense(&mut self, req: &CdbRequest) -> CdbOutcome {
        let c = &req.cdb;
        let ten = c[0] == op::MODE_SENSE_10;
        if c.len() < if ten { 10 } else { 6 } {
            return self.fail(cond::INVALID_FIELD.at(0), "short CDB");
        }
        let pc = c[2] >> 6;
        let page = c[2] & 0x3f;
        if pc == 3 {
            return self.fail(
                cond::SAVING_NOT_SUPPORTED.at_bit(2, 7),
                "this changer has no saved mode pages",
            );
        }
        if c[3] != 0 {
            return self.fail(cond::INVALID_FIELD.at(3), "no subpages");
        }
        let layout = Layout::of(&self.lib);
        let changeable = pc == 1;
        let pages: Vec<Vec<u8>> = match page {
            0x1d => vec![eaa_page(&layout, changeable)],
            0x1e => vec![geometry_page(changeable)],
            0x1f => vec![capabilities_page(changeable)],
            0x3f => vec![
                eaa_page(&layout, changeable),
                geometry_page(changeable),
                capabilities_page(changeable),
            ],
            _ => {
                return self.fail(
                    cond::INVALID_FIELD.at(2),
                    format!("mode page {page:02X}h is not one of 1Dh, 1Eh, 1Fh"),
                )
            }
        };
        let body: Vec<u8> = pages.concat();
        let (mut d, alloc) = if ten {
            let len = (body.len() + 6) as u16;
            let mut h = len.to_be_bytes().to_vec();
            h.extend([0, 0, 0, 0, 0, 0]);
            (h, usize::from(u16::from_be_bytes([c[7], c[8]])))
        } else {
            ((vec![(body.len() + 3) as u8, 0, 0, 0]), usize::from(c[4]))
        };
        d.extend(body);
        CdbOutcome::good(d, alloc.min(req.alloc()))
    }

    fn read_element_status(&mut self, req: &CdbRequest) -> CdbOutcome {
        let c = &req.cdb;
        if c.len() < 12 {
            return self.fail(
                cond::INVALID_FIELD.at(0),
                "READ ELEMENT STATUS is a 12-byte CDB",
            );
        }
        let voltag = c[1] & 0x10 != 0;
        let type_code = c[1] & 0x0f;
        let start = u16::from_be_bytes([c[2], c[3]]);
        let count = usize::from(u16::from_be_bytes([c[4], c[5]]));
        let dvcid = c[6] & 0x01 != 0;
        let alloc =
            (usize::from(c[7]) << 16 | usize::from(c[8]) << 8 | usize::from(c[9])).min(req.alloc());
        if type_code > 4 {
            return self.fail(
                cond::INVALID_FIELD.at_bit(1, 3),
                format!("element type code {type_code} is not 0 to 4"),
            );
        }
        let layout = Layout::of(&self.lib);
        let wanted: Vec<(u16, ElementType, Element)> = layout
            .all()
            .into_iter()
            .filter(|(_, t, _)| type_code == 0 || *t as u8 == type_code)
            .collect();
        if wanted.last().is_none_or(|(a, _, _)| *a < start) {
            return self.fail(
                cond::INVALID_ELEMENT.at(2),
                format!("no element of the requested type at or above address {start}"),
            );
        }
        let contents = self.lib.contents();
        let status = ElementStatus {
            lib: &self.lib,
            layout: &layout,
            by_place: contents.placed.iter().map(|p| (&p.at, p)).collect(),
            voltag,
            dvcid,
        };
        let chosen: Vec<&(u16, ElementType, Element)> = wanted
            .iter()
            .filter(|(a, _, _)| *a >= start)
            .take(count)
            .collect();
        let mut pages = Vec::new();
        let mut i = 0;
        while i < chosen.len() {
            let t = chosen[i].1;
            let run: Vec<_> = chosen[i..].iter().take_while(|e| e.1 == t).collect();
            i += run.len();
            let descs: Vec<Vec<u8>> = run
                .iter()
                .map(|(a, _, e)| status.descriptor(*a, t, e))
                .collect();
            let dlen = descs.first().map_or(0, Vec::len);
            let total = dlen * descs.len();
            let mut p = vec![
                t as u8,
                if voltag { 0x80 } else { 0x00 },
                (dlen >> 8) as u8,
                dlen as u8,
                0,
                (total >> 16) as u8,
                (total >> 8) as u8,
                total as u8,
            ];
            for d in descs {
                p.extend(d);
            }
            pages.push(p);
        }
        let body: Vec<u8> = pages.concat();
        let first = chosen.first().map_or(0, |e| e.0);
        let mut d = first.to_be_bytes().to_vec();
        d.extend((chosen.len() as u16).to_be_bytes());
        d.push(0);
        let n = body.len();
        d.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        d.extend(body);
        CdbOutcome::good(d, alloc)
    }
}

impl Drop for VirtualChanger {
    fn drop(&mut self) {
        self.release();
    }
}

/// Element address assignment page (1Dh).
fn eaa_page(l: &Layout, changeable: bool) -> Vec<u8> {
    let mut p = vec![0x1d, 0x12];
    if changeable {
        p.extend([0u8; 18]);
        return p;
    }
    for (first, n) in [
        (TRANSPORT, 1u16),
        (SLOT_BASE, l.slots),
        (PORT_BASE, l.ports),
        (DRIVE_BASE, l.drives.len() as u16),
    ] {
        p.extend(first.to_be_bytes());
        p.extend(n.to_be_bytes());
    }
    p.extend([0, 0]);
    p
}

/// Transport geometry page (1Eh): one transport that does not rotate media.
fn geometry_page(_changeable: bool) -> Vec<u8> {
    vec![0x1e, 0x02, 0x00, 0x00]
}

/// Device capabilities page (1Fh): every element type stores media, the transport moves
/// between any two of storage, import/export and drives; no exchanges.
fn capabilities_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0x1f, 0x12];
    if changeable {
        p.extend([0u8; 18]);
        return p;
    }
    // StorDT, StorI/E, StorST (the transport holds nothing at rest)
    p.extend([0x0e, 0x00]);
    // from MT, ST, I/E, DT: to DT | I/E | ST
    p.extend([0x0e, 0x0e, 0x0e, 0x0e]);
    p.extend([0u8; 4]);
    p.extend([0u8; 4]); // exchange capabilities: none
    p.extend([0u8; 4]);
    debug_assert_eq!(p.len(), 20);
    p
}

/// Builds element descriptors from one snapshot of the library.
struct ElementStatus<'a> {
    lib: &'a Library,
    layout: &'a Layout,
    /// The cartridges by place: one lookup per element, not a scan.
    by_place: std::collections::HashMap<&'a Place, &'a crate::tape::library::Placed>,
    voltag: bool,
    dvcid: bool,
}

impl ElementStatus<'_> {
    fn descriptor(&self, addr: u16, t: ElementType, e: &Element) -> Vec<u8> {
        let mut d = vec![0u8; 12];
        d[0..2].copy_from_slice(&addr.to_be_bytes());
        let placed = match e {
            Element::Place(p) => self.by_place.get(p).copied(),
            Element::Transport => None,
        };
        let full = placed.is_some();
        let mut flags = u8::from(full);
        match t {
            ElementType::Transport => {}
            ElementType::Storage => flags |= 0x08,
            ElementType::ImportExport => {
                // IMPEXP: 1 = put there by an operator, 0 = by the robot (an export)
                if placed.is_some_and(|p| p.source.is_none()) {
                    flags |= 0x02;
                }
                flags |= 0x08 | 0x10 | 0x20; // ACCESS, EXENAB, INENAB
            }
            ElementType::DataTransfer => {
                // a tape loaded and open in a session cannot be taken by the robot
                let stuck = placed.is_some_and(|p| !p.ejected && self.lib.in_use(&p.label));
                if !stuck {
                    flags |= 0x08;
                }
            }
        }
        d[2] = flags;
        if let Some(p) = placed {
            d[9] = 0x01; // medium type: data
            if let Some(addr) = p.source.as_ref().and_then(|s| self.layout.address(s)) {
                d[9] |= 0x80; // SVALID
                d[10..12].copy_from_slice(&addr.to_be_bytes());
            }
        }
        if self.voltag {
            let label = placed.map(|p| p.label.as_str()).unwrap_or("");
            let mut tag = if full {
                ascii_field(label, 32)
            } else {
                vec![0u8; 32]
            };
            tag.extend([0u8; 4]); // reserved, volume sequence number 0
            d.extend(tag);
        }
        match (t, e) {
            (ElementType::DataTransfer, Element::Place(Place::Drive(name))) if self.dvcid => {
                let id = t10_designator(DRIVE_PRODUCT, &serial("VT", self.lib, name));
                d.extend([0x02, 0x01, 0x00, id.len() as u8]);
                d.extend(id);
            }
            _ => d.extend([0u8; 4]),
        }
        d
    }
}

/// One row of `ndmpd vtape library`: an element as the changer reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InventoryRow {
    /// The element address.
    pub address: u16,
    /// "transport", "drive", "storage" or "import/export".
    pub element_type: &'static str,
    /// "vtape0", "slot 3", "port 1", "transport"
    pub name: String,
    /// Label of the cartridge in the element, if any.
    pub cartridge: Option<String>,
    /// The element address and name the cartridge came from.
    pub source: Option<String>,
    /// "ejected", "in-use" (a drive a session has open), and for a port "imported" or
    /// "exported".
    pub flags: Vec<&'static str>,
}

/// The changer's elements, in address order, from one snapshot of the library.
pub fn inventory(lib: &Library) -> Vec<InventoryRow> {
    let layout = Layout::of(lib);
    let contents = lib.contents();
    let by_place: std::collections::HashMap<&Place, &crate::tape::library::Placed> =
        contents.placed.iter().map(|p| (&p.at, p)).collect();
    layout
        .all()
        .into_iter()
        .map(|(address, t, e)| {
            let placed = match &e {
                Element::Place(p) => by_place.get(p).copied(),
                Element::Transport => None,
            };
            let mut flags = Vec::new();
            if let Some(p) = placed {
                if p.ejected {
                    flags.push("ejected");
                } else if matches!(p.at, Place::Drive(_)) && lib.in_use(&p.label) {
                    flags.push("in-use");
                }
                if matches!(p.at, Place::Port(_)) {
                    flags.push(if p.source.is_none() {
                        "imported"
                    } else {
                        "exported"
                    });
                }
            }
            InventoryRow {
                address,
                element_type: match t {
                    ElementType::Transport => "transport",
                    ElementType::Storage => "storage",
                    ElementType::ImportExport => "import/export",
                    ElementType::DataTransfer => "drive",
                },
                name: match &e {
                    Element::Transport => "robot".into(),
                    Element::Place(Place::Drive(d)) => d.clone(),
                    Element::Place(p) => p.to_string(),
                },
                cartridge: placed.map(|p| p.label.clone()),
                source: placed.and_then(|p| {
                    let s = p.source.as_ref()?;
                    Some(match layout.address(s) {
                        Some(a) => format!("{a} ({s})"),
                        None => s.to_string(),
                    })
                }),
                flags,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn layout() -> Layout {
        Layout {
            drives: vec!["a".into(), "b".into()],
            slots: 8,
            ports: 2,
        }
    }

    #[test]
    fn addresses_map_both_ways() {
        let l = layout();
        for (addr, t, e) in l.all() {
            assert_eq!(l.element(addr), Some(e.clone()), "{addr}");
            if let Element::Place(p) = &e {
                assert_eq!(l.address(p), Some(addr));
            }
            let want = match addr {
                0 => ElementType::Transport,
                1..=2 => ElementType::DataTransfer,
                101..=102 => ElementType::ImportExport,
                _ => ElementType::Storage,
            };
            assert_eq!(t, want);
        }
        assert_eq!(l.all().len(), 1 + 2 + 2 + 8);
        for gap in [3, 100, 103, 1000, 1009, u16::MAX] {
            assert_eq!(l.element(gap), None, "{gap}");
        }
        assert_eq!(l.element(1008), Some(Element::Place(Place::Slot(8))));
        assert_eq!(l.address(&Place::Drive("zz".into())), None);
        assert_eq!(l.address(&Place::Slot(u16::MAX)), None);
        assert_eq!(l.address(&Place::Port(3)), None);
    }

    fn changer() -> (tempfile::TempDir, VirtualChanger) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        cfg.library.cartridge_capacity = 1 << 20;
        cfg.apply_embedded_defaults();
        let lib = Library::new(&cfg);
        lib.prepare(2).unwrap();
        (dir, VirtualChanger::open(Arc::new(lib), "changer0"))
    }

    fn cdb_req(c: &[u8], alloc: u32) -> CdbRequest {
        cdb(c, alloc)
    }

    fn cdb(c: &[u8], alloc: u32) -> CdbRequest {
        CdbRequest {
            cdb: c.to_vec(),
            dir: if alloc > 0 {
                DataDir::In(alloc)
            } else {
                DataDir::None
            },
            timeout_ms: 0,
        }
    }

    #[test]
    fn mode_sense_headers_count_their_pages() {
        let (_d, mut c) = changer();
        let six = c.execute(&cdb(&[0x1a, 0x08, 0x3f, 0, 255, 0], 255));
        assert!(six.is_good());
        assert_eq!(six.datain.len(), 4 + 20 + 4 + 20);
        assert_eq!(usize::from(six.datain[0]), six.datain.len() - 1);
        let ten = c.execute(&cdb(&[0x5a, 0x08, 0x1d, 0, 0, 0, 0, 0, 255, 0], 255));
        assert_eq!(ten.datain.len(), 8 + 20);
        assert_eq!(u16::from_be_bytes([ten.datain[0], ten.datain[1]]), 26);
        assert_eq!(&ten.datain[8..10], &[0x1d, 0x12]);
        // the initiator's allocation length caps what comes back
        let short = c.execute(&cdb(&[0x1a, 0x08, 0x1d, 0, 10, 0], 255));
        assert_eq!(short.datain.len(), 10);
        let saved = c.execute(&cdb(&[0x1a, 0x08, 0xdd, 0, 255, 0], 255));
        assert_eq!(
            super::super::sense::Sense::parse(&saved.sense).map(|s| (s.asc, s.ascq)),
            Some((0x39, 0x00))
        );
    }

    #[test]
    fn data_out_and_unknown_opcodes_are_illegal_requests() {
        let (_d, mut c) = changer();
        let out = c.execute(&CdbRequest {
            cdb: vec![0x00, 0, 0, 0, 0, 0],
            dir: DataDir::Out(vec![1, 2, 3]),
            timeout_ms: 0,
        });
        assert_eq!(out.status, super::super::status::CHECK_CONDITION);
        let bad = c.execute(&cdb(&[0xee, 0, 0, 0, 0, 0], 0));
        let s = super::super::sense::Sense::parse(&bad.sense).unwrap();
        assert_eq!((s.key, s.asc), (5, 0x20));
        assert!(c.take_note().unwrap().contains("EEh"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever a DMA sends, the changer answers (never panics) and never returns more
        /// than the initiator allowed.
        #[test]
        fn any_cdb_gets_an_answer(
            cdb in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..20),
            alloc in 0u32..70000,
            opcode in proptest::sample::select(vec![
                0x00u8, 0x03, 0x07, 0x12, 0x1a, 0x1e, 0x2b, 0x5a, 0xa0, 0xa5, 0xb8, 0xe7, 0x16,
            ]),
        ) {
            let (_d, mut c) = changer();
            let mut cdb = cdb;
            cdb[0] = opcode;
            let out = c.execute(&cdb_req(&cdb, alloc));
            proptest::prop_assert!(out.datain.len() <= alloc as usize);
            if !out.is_good() {
                proptest::prop_assert_eq!(out.sense.len(), 18);
            }
        }
    }
}
