//! The SCSI interface of a session (spec §3.3) and TAPE_EXECUTE_CDB: one changer or drive per
//! connection, opened by its configured name only; CDBs go to the virtual device or SG_IO.

use super::outbox::Outbox;
use super::shared::{Ctx, Shared};
use crate::config::DeviceKind;
use crate::error::{cdb_code, sg_open_code, Refusal};
use crate::scsi::changer::VirtualChanger;
use crate::scsi::sg::SgDevice;
use crate::scsi::{vdrive, CdbError, CdbOutcome, CdbRequest};
use crate::tape::library::OpenError;
use crate::wire::header::Header;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{NdmpError, Opaque, Reply, Request};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// The device behind an open SCSI connection.
#[derive(Debug)]
enum Device {
    Virtual(VirtualChanger),
    /// A virtual tape drive: identification commands only.
    VirtualDrive(Arc<crate::tape::library::Library>, String),
    Sg(SgDevice),
}

/// What a SCSI_OPEN name refers to: a configured changer or tape drive (kind, path).
enum Target {
    Changer(DeviceKind, Option<std::path::PathBuf>),
    Tape(DeviceKind, Option<std::path::PathBuf>),
}

type Opened = (Device, (i16, i16, i16), std::fs::File);

/// Opens what SCSI_OPEN named, with its lock; an error is the NDMP code and why.
fn open_target(shared: &Shared, name: &str, target: Target) -> Result<Opened, (NdmpError, String)> {
    // a tape drive's SCSI side has its own lock: TAPE_OPEN of it may go on meanwhile, as
    // a drive's sg and st nodes may be open together ('.' cannot start a configured name)
    let lock_name = match target {
        Target::Changer(..) => name.to_string(),
        Target::Tape(..) => format!(".scsi-{name}"),
    };
    let lock = shared
        .library
        .device_lock(&lock_name)
        .map_err(|e| match e {
            OpenError::Busy(_) => (
                NdmpError::DEVICE_BUSY_ERR,
                format!("{name} is in use by another session"),
            ),
            e => (NdmpError::IO_ERR, e.to_string()),
        })?;
    let sg_path = match &target {
        Target::Changer(DeviceKind::Device, Some(p)) => Some(p.clone()),
        Target::Tape(DeviceKind::Device, Some(p)) => {
            Some(crate::scsi::sg::sg_node_of_tape(p).ok_or_else(|| {
                (
                    NdmpError::NO_DEVICE_ERR,
                    format!(
                        "{} has no SCSI generic node (is the sg driver loaded?)",
                        p.display()
                    ),
                )
            })?)
        }
        _ => None,
    };
    if let Some(path) = sg_path {
        let sg = SgDevice::open(&path).map_err(|e| (sg_open_code(&e), e.to_string()))?;
        if !sg.is_changer_or_tape() {
            return Err((
                NdmpError::NOT_AUTHORIZED_ERR,
                format!(
                    "{} is a SCSI device of type {:#04x}, not a media changer or tape",
                    path.display(),
                    sg.device_type()
                ),
            ));
        }
        let address = sg.scsi_address().map_or((-1, -1, -1), |a| {
            (a.host as i16, a.target as i16, a.lun as i16)
        });
        return Ok((Device::Sg(sg), address, lock));
    }
    let cfg = &shared.config();
    match target {
        Target::Changer(..) => {
            let index = cfg
                .changers
                .iter()
                .position(|c| c.name == name)
                .unwrap_or(0);
            let vc = VirtualChanger::open(shared.library.clone(), name);
            Ok((Device::Virtual(vc), (0, index as i16, 0), lock))
        }
        Target::Tape(..) => {
            // virtual drives sit behind the changers' targets
            let index = cfg.tapes.iter().position(|t| t.name == name).unwrap_or(0);
            let target = (cfg.changers.len() + index) as i16;
            let d = Device::VirtualDrive(shared.library.clone(), name.to_string());
            Ok((d, (0, target, 0), lock))
        }
    }
}

/// The changer a session has open.
#[derive(Debug)]
struct ScsiState {
    name: String,
    device: Arc<Mutex<Device>>,
    /// controller, target, LUN for SCSI_GET_STATE
    address: (i16, i16, i16),
    /// Held while open: no other session may drive the same robot.
    _lock: std::fs::File,
}

impl Device {
    fn execute(&mut self, req: &CdbRequest) -> (Result<CdbOutcome, CdbError>, Option<String>) {
        match self {
            Device::Virtual(c) => {
                let out = c.execute(req);
                (Ok(out), c.take_note())
            }
            Device::VirtualDrive(lib, name) => {
                let loaded = lib
                    .contents()
                    .at(&crate::tape::library::Place::Drive(name.clone()))
                    .is_some_and(|p| !p.ejected)
                    || lib.drive(name).is_some_and(|d| d.path.is_some());
                (Ok(vdrive::execute(lib, name, loaded, req)), None)
            }
            Device::Sg(s) => (s.execute(req), None),
        }
    }
}

fn cdb_reply(error: NdmpError, out: CdbOutcome) -> ExecuteCdbReply {
    ExecuteCdbReply {
        error,
        status: out.status,
        dataout_len: out.dataout_len,
        datain: Opaque(Bytes::from(out.datain)),
        ext_sense: Opaque(Bytes::from(out.sense)),
    }
}

/// The SCSI server of one session: the one changer (or drive's SCSI side) it has open.
pub struct ScsiServer {
    ctx: Ctx,
    open: Option<ScsiState>,
}

impl ScsiServer {
    /// No device open.
    pub fn new(ctx: Ctx) -> ScsiServer {
        ScsiServer { ctx, open: None }
    }

    /// True while a SCSI device is open on this connection.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Answers a SCSI request; `tape_open` while this connection has a tape open.
    pub async fn handle(
        &mut self,
        h: &Header,
        req: Request,
        out: &mut Outbox,
        tape_open: bool,
    ) -> std::io::Result<()> {
        match req {
            Request::ScsiOpen(r) => self.open(h, r, out, tape_open).await,
            Request::ScsiClose(_) => {
                if self.close().await {
                    out.ok(h).await
                } else {
                    out.refuse(h, not_open()).await
                }
            }
            Request::ScsiGetState(_) => {
                let body = Reply::ScsiGetState(self.state());
                if self.open.is_some() {
                    out.reply(h, body).await
                } else {
                    out.refuse_with(h, body, not_open()).await
                }
            }
            Request::ScsiResetDevice(_) => self.reset(h, out).await,
            Request::ScsiExecuteCdb(r) => self.execute_cdb(h, r, out).await,
            other => {
                let why = format!("{:?} is not a SCSI request", other.code());
                out.refuse(h, Refusal::new(NdmpError::NOT_SUPPORTED_ERR, why))
                    .await
            }
        }
    }

    async fn open(
        &mut self,
        h: &Header,
        r: ScsiOpenRequest,
        out: &mut Outbox,
        tape_open: bool,
    ) -> std::io::Result<()> {
        if tape_open || self.open.is_some() {
            let why = "a device is already open on this connection";
            return out
                .refuse(h, Refusal::new(NdmpError::DEVICE_OPENED_ERR, why))
                .await;
        }
        let name = String::from_utf8_lossy(r.device.as_bytes()).into_owned();
        let cfg = &self.ctx.shared.config();
        let target = if let Some(c) = cfg.changers.iter().find(|c| c.name == name) {
            Target::Changer(c.kind, c.path.clone())
        } else if let Some(t) = cfg.tapes.iter().find(|t| t.name == name) {
            // the spec lets SCSI_OPEN name a tape drive too: DMAs read its serial number to
            // pair it with the changer's drive element, also while it holds no tape
            Target::Tape(t.kind, t.path.clone())
        } else {
            let why = no_such_changer(&self.ctx, &name);
            return out
                .refuse(h, Refusal::new(NdmpError::NO_DEVICE_ERR, why))
                .await;
        };
        let shared = self.ctx.shared.clone();
        let opened = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || open_target(&shared, &name, target))
        };
        let opened = opened
            .await
            .unwrap_or_else(|e| Err((NdmpError::IO_ERR, e.to_string())));
        match opened {
            Ok((device, address, lock)) => {
                info!(device = %name, "SCSI device opened");
                self.ctx.entry.update(|i| {
                    i.scsi.device = Some(name.clone());
                    i.scsi.host_adapter = Some(address.0.into());
                    i.scsi.target_id = Some(address.1.into());
                    i.scsi.lun_id = Some(address.2.into());
                });
                self.open = Some(ScsiState {
                    name,
                    device: Arc::new(Mutex::new(device)),
                    address,
                    _lock: lock,
                });
                out.ok(h).await
            }
            Err((code, why)) => out.refuse(h, Refusal::new(code, why)).await,
        }
    }

    /// Closes the session's device (SCSI_CLOSE or the session ending); a virtual changer
    /// stops preventing medium removal. False when none was open.
    pub async fn close(&mut self) -> bool {
        let Some(s) = self.open.take() else {
            return false;
        };
        self.ctx.entry.update(|i| i.scsi = Default::default());
        let _ = tokio::task::spawn_blocking(move || {
            let mut d = s.device.lock().unwrap_or_else(|p| p.into_inner());
            if let Device::Virtual(c) = &mut *d {
                c.release();
            }
        })
        .await;
        info!("changer closed");
        true
    }

    fn state(&self) -> ScsiGetStateReply {
        match &self.open {
            Some(s) => ScsiGetStateReply {
                error: NdmpError::NO_ERR,
                target_controller: s.address.0,
                target_id: s.address.1,
                target_lun: s.address.2,
            },
            None => ScsiGetStateReply {
                error: NdmpError::DEV_NOT_OPEN_ERR,
                target_controller: -1,
                target_id: -1,
                target_lun: -1,
            },
        }
    }

    async fn reset(&mut self, h: &Header, out: &mut Outbox) -> std::io::Result<()> {
        let Some(s) = &self.open else {
            return out.refuse(h, not_open()).await;
        };
        let device = s.device.clone();
        let name = s.name.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut d = device.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *d {
                Device::Virtual(c) => {
                    c.reset();
                    Ok(())
                }
                Device::Sg(s) => s.reset_device(),
                Device::VirtualDrive(..) => Ok(()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(CdbError::Io(e.to_string())));
        match r {
            Ok(()) => {
                info!(changer = %name, "changer reset");
                out.ok(h).await
            }
            Err(e) => out.refuse(h, (&e).into()).await,
        }
    }

    async fn execute_cdb(
        &mut self,
        h: &Header,
        r: ExecuteCdbRequest,
        out: &mut Outbox,
    ) -> std::io::Result<()> {
        let Some(s) = &self.open else {
            let body = cdb_reply(NdmpError::DEV_NOT_OPEN_ERR, CdbOutcome::default());
            return out
                .refuse_with(h, Reply::ScsiExecuteCdb(body), not_open())
                .await;
        };
        let device = s.device.clone();
        let req = match request(r) {
            Ok(req) => req,
            Err(e) => return out.refuse(h, (&e).into()).await,
        };
        let opcode = req.cdb[0];
        let (result, note) = tokio::task::spawn_blocking(move || {
            device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute(&req)
        })
        .await
        .unwrap_or_else(|e| (Err(CdbError::Io(e.to_string())), None));
        cdb_answer(h, opcode, result, note, true, out).await
    }
}

fn not_open() -> Refusal {
    Refusal::new(
        NdmpError::DEV_NOT_OPEN_ERR,
        "no SCSI device is open on this connection (SCSI_OPEN first)",
    )
}

/// "no such changer 'x': changers are changer0", with the drives SCSI_OPEN also takes.
fn no_such_changer(ctx: &Ctx, name: &str) -> String {
    let cfg = &ctx.shared.config();
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let changers = list(cfg.changers.iter().map(|c| c.name.as_str()).collect());
    let drives = list(cfg.tapes.iter().map(|t| t.name.as_str()).collect());
    format!("no such changer '{name}': changers are {changers} (and tape drives {drives})")
}

/// Replies to an execute-CDB request; a CHECK CONDITION the server can explain also goes to
/// the DMA's log.
async fn cdb_answer(
    h: &Header,
    opcode: u8,
    result: Result<CdbOutcome, CdbError>,
    note: Option<String>,
    scsi: bool,
    out: &mut Outbox,
) -> std::io::Result<()> {
    let wrap = |b| {
        if scsi {
            Reply::ScsiExecuteCdb(b)
        } else {
            Reply::TapeExecuteCdb(b)
        }
    };
    match result {
        Ok(res) => {
            if let Some(n) = note {
                warn!("CDB {opcode:02X}h: {n}");
                let msg = format!("CDB {opcode:02X}h: {n}");
                out.log(LogType::WARNING, &msg, Some(h)).await?;
            }
            out.reply(h, wrap(cdb_reply(NdmpError::NO_ERR, res))).await
        }
        Err(e) => {
            let r = Refusal::new(cdb_code(&e), format!("CDB {opcode:02X}h: {e}"));
            out.refuse_with(h, wrap(cdb_reply(r.error, CdbOutcome::default())), r)
                .await
        }
    }
}

/// TAPE_EXECUTE_CDB on the session's open drive `name`: identification from the virtual
/// drive (`ejected`: no cartridge), or SG_IO through an st drive's sg node.
pub async fn tape_execute_cdb(
    ctx: &Ctx,
    h: &Header,
    name: String,
    ejected: bool,
    r: ExecuteCdbRequest,
    out: &mut Outbox,
) -> std::io::Result<()> {
    let req = match request(r) {
        Ok(req) => req,
        Err(e) => return out.refuse(h, (&e).into()).await,
    };
    let opcode = req.cdb[0];
    let shared = ctx.shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let Some(d) = shared.library.drive(&name) else {
            return Err(CdbError::Io(format!("drive {name} is gone")));
        };
        match (&d.kind, &d.path) {
            (DeviceKind::Device, Some(path)) => {
                let Some(node) = crate::scsi::sg::sg_node_of_tape(path) else {
                    return Err(CdbError::Io(format!(
                        "{} has no SCSI generic node (is the sg driver loaded?)",
                        path.display()
                    )));
                };
                let mut sg = SgDevice::open(&node).map_err(|e| CdbError::Io(e.to_string()))?;
                sg.execute(&req)
            }
            _ => Ok(vdrive::execute(&shared.library, &name, !ejected, &req)),
        }
    })
    .await
    .unwrap_or_else(|e| Err(CdbError::Io(e.to_string())));
    cdb_answer(h, opcode, result, None, false, out).await
}

fn request(r: ExecuteCdbRequest) -> Result<CdbRequest, CdbError> {
    CdbRequest::from_wire(
        r.flags,
        r.timeout,
        r.datain_len,
        r.cdb.0.to_vec(),
        r.dataout.0.to_vec(),
    )
}
