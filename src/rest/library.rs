//! `GET /api/ndmpd/library` (ndmpd's own): the virtual tape library as the web page shows it —
//! drives, storage and import/export slots, each cartridge's fill, and what the catalog says it holds.

use crate::catalog::{Backup, Catalog};
use crate::config::DeviceKind;
use crate::scsi::changer::Layout;
use crate::tape::library::{Cartridge, Library, Place};
use crate::tape::vtape::Vtape;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The path of the resource.
pub const PATH: &str = "/api/ndmpd/library";

/// The catalog the library resource reads: opened at first use once its file exists, then
/// kept open, since opening checks the schema in a write transaction that would queue behind
/// (and hold up) the scheduler's writers on every poll of the page.
pub struct CatalogReader {
    path: PathBuf,
    open: Mutex<Option<Catalog>>,
}

impl CatalogReader {
    /// A reader of the catalog at `path`; nothing is opened or created yet.
    pub fn new(path: PathBuf) -> CatalogReader {
        CatalogReader {
            path,
            open: Mutex::new(None),
        }
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the catalog says each cartridge holds, by label; None while the file does not
    /// exist (nothing is created), `Err` in words when it cannot be read.
    fn holdings(&self) -> Option<Result<BTreeMap<String, Vec<Value>>, String>> {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            if !self.path.exists() {
                return None;
            }
            match Catalog::open(&self.path) {
                Ok(c) => *g = Some(c),
                Err(e) => return Some(Err(e.to_string())),
            }
        }
        let list = g.as_ref().map(|c| c.list())?;
        Some(match list {
            Ok(backups) => Ok(by_cartridge(backups)),
            Err(e) => {
                // opened afresh next time: the file may have been replaced
                *g = None;
                Err(e.to_string())
            }
        })
    }
}

/// Each backup's parts, under the label of the cartridge each is on.
fn by_cartridge(backups: Vec<Backup>) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in backups {
        for (part, m) in b.media.iter().enumerate() {
            let Some(label) = &m.cartridge else { continue };
            out.entry(label.clone()).or_default().push(json!({
                "backup_id": b.id,
                "server": b.server,
                "path": b.path,
                "level": b.level,
                "butype": b.butype,
                "status": b.status.as_str(),
                "started": b.started,
                "bytes": b.bytes,
                "tape_file": m.file,
                "part": part + 1,
                "parts": b.media.len(),
            }));
        }
    }
    out
}

/// One cartridge: its label, the volume tag in its header, how full it is, and the backups on it.
fn cartridge(c: &Cartridge, held: Option<&Vec<Value>>) -> Value {
    let info = Vtape::read_info(&c.path).ok();
    let used = info.as_ref().map(|i| i.used);
    json!({
        "label": c.label,
        "volume_tag": info.as_ref().map(|i| i.label.clone()),
        "capacity": info.as_ref().map(|i| i.capacity),
        "bytes_used": used,
        "write_protected": info.as_ref().map(|i| i.write_protected),
        // past the early-warning mark a writer gets EOM soon: as good as full
        "full": info.as_ref().map(|i| i.used >= i.early_warning),
        "blank": used.map(|u| u == 0),
        "readable": info.is_some(),
        "holds": held.cloned().unwrap_or_default(),
    })
}

/// The whole resource for `lib`, with the holdings from `catalog` when its file exists.
pub fn record(lib: &Library, catalog: Option<&CatalogReader>) -> Value {
    let (held, catalog_v) = match catalog.and_then(|c| Some((c.path(), c.holdings()?))) {
        None => (BTreeMap::new(), Value::Null),
        Some((p, Ok(h))) => (h, json!({"path": p.display().to_string(), "error": null})),
        Some((p, Err(e))) => (
            BTreeMap::new(),
            json!({"path": p.display().to_string(), "error": e}),
        ),
    };
    let carts: BTreeMap<String, Cartridge> = lib
        .cartridges()
        .into_iter()
        .map(|c| (c.label.clone(), c))
        .collect();
    let contents = lib.contents();
    let layout = Layout::of(lib);
    let at = |p: &Place| {
        let placed = contents.at(p)?;
        let c = carts.get(&placed.label)?;
        Some((placed, cartridge(c, held.get(&placed.label))))
    };
    let drives: Vec<Value> = lib
        .drives()
        .iter()
        .map(|d| {
            let place = Place::Drive(d.name.clone());
            let (cart, state) = match (&d.kind, &d.path) {
                (DeviceKind::Device, _) => (Value::Null, "device"),
                (DeviceKind::Virtual, Some(path)) => {
                    let label = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let c = Cartridge {
                        label: label.clone(),
                        path: path.clone(),
                        file_size: 0,
                        info: None,
                        loaded_in: Some(d.name.clone()),
                        place: None,
                    };
                    (cartridge(&c, held.get(&label)), "loaded")
                }
                (DeviceKind::Virtual, None) => match at(&place) {
                    None => (Value::Null, "empty"),
                    Some((p, v)) => {
                        let state = if p.ejected {
                            "ejected"
                        } else if lib.in_use(&p.label) {
                            "in use"
                        } else {
                            "loaded"
                        };
                        (v, state)
                    }
                },
            };
            json!({
                "name": d.name,
                "kind": match d.kind { DeviceKind::Device => "device", DeviceKind::Virtual => "virtual" },
                "device": d.path.as_ref().map(|p| p.display().to_string()),
                "address": layout.address(&place),
                "state": state,
                "cartridge": cart,
            })
        })
        .collect();
    let element = |place: Place, n: u16| {
        let (cart, source) = match at(&place) {
            Some((p, v)) => (v, p.source.as_ref().map(|s| s.to_string())),
            None => (Value::Null, None),
        };
        json!({
            "number": n,
            "name": place.to_string(),
            "address": layout.address(&place),
            "cartridge": cart,
            "source": source,
        })
    };
    let slots: Vec<Value> = (1..=layout.slots)
        .map(|n| element(Place::Slot(n), n))
        .collect();
    let ports: Vec<Value> = (1..=layout.ports)
        .map(|n| element(Place::Port(n), n))
        .collect();
    let outside: Vec<Value> = carts
        .values()
        .filter(|c| c.place.is_none())
        .map(|c| cartridge(c, held.get(&c.label)))
        .collect();
    json!({
        "drives": drives,
        "slots": slots,
        "import_export": ports,
        "outside": outside,
        "catalog": catalog_v,
    })
}

/// The schema of the resource, for openapi.json.
pub fn schema() -> Value {
    let s = || json!({"type": "string"});
    let sn = || json!({"type": "string", "nullable": true});
    let i = || json!({"type": "integer"});
    let inn = || json!({"type": "integer", "nullable": true});
    let b = || json!({"type": "boolean", "nullable": true});
    let obj = |p: Value| json!({"type": "object", "properties": p});
    let held = obj(json!({
        "backup_id": i(), "server": s(), "path": s(), "level": i(), "butype": s(),
        "status": {"type": "string", "enum": ["running", "completed", "failed", "aborted"]},
        "started": i(), "bytes": i(),
        "tape_file": {"type": "integer", "description": "The tape file of this cartridge (from 0) that holds the part."},
        "part": {"type": "integer", "description": "Which part of the image this is (from 1), of parts."},
        "parts": i(),
    }));
    let mut cart = obj(json!({
        "label": {"type": "string", "description": "The cartridge's name in the library (its file name)."},
        "volume_tag": {"type": "string", "nullable": true, "description": "The label in the cartridge header: the barcode a changer reports."},
        "capacity": inn(),
        "bytes_used": inn(),
        "write_protected": b(),
        "full": {"type": "boolean", "nullable": true, "description": "Written past the early-warning mark."},
        "blank": {"type": "boolean", "nullable": true, "description": "Nothing written."},
        "readable": {"type": "boolean", "description": "false when the cartridge file cannot be read; the other facts are then null."},
        "holds": {"type": "array", "items": held, "description": "The catalog's backups with a part on this cartridge; empty without a catalog."},
    }));
    cart["nullable"] = json!(true);
    let element = obj(json!({
        "number": i(), "name": s(), "address": inn(), "cartridge": cart.clone(),
        "source": {"type": "string", "nullable": true, "description": "Where the robot last took the cartridge from."},
    }));
    json!({
        "type": "object",
        "x-ndmpd-extension": true,
        "description": "ndmpd extension (not in ONTAP): the virtual tape library",
        "properties": {
            "drives": {"type": "array", "items": obj(json!({
                "name": s(),
                "kind": {"type": "string", "enum": ["virtual", "device"]},
                "device": sn(),
                "address": {"type": "integer", "nullable": true, "description": "The changer's element address; null for a drive outside the changer."},
                "state": {"type": "string", "enum": ["empty", "loaded", "in use", "ejected", "device"]},
                "cartridge": cart.clone(),
            }))},
            "slots": {"type": "array", "items": element.clone()},
            "import_export": {"type": "array", "items": element},
            "outside": {"type": "array", "items": cart, "description": "Cartridges outside the library (exported)."},
            "catalog": {"type": "object", "nullable": true, "properties": {"path": s(), "error": sn()},
                        "description": "The catalog the holdings come from; null when there is none."},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_fresh_library_shows_its_places_and_blank_cartridges() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        cfg.library.cartridge_capacity = 1 << 20;
        cfg.apply_embedded_defaults();
        let lib = Library::new(&cfg);
        lib.prepare(cfg.library.spare_cartridges).unwrap();
        let reader = CatalogReader::new(dir.path().join("no-catalog.db"));
        let v = record(&lib, Some(&reader));
        assert_eq!(v["catalog"], Value::Null);
        assert!(
            !dir.path().join("no-catalog.db").exists(),
            "nothing created"
        );
        let drives = v["drives"].as_array().unwrap();
        assert_eq!(drives.len(), cfg.tapes.len());
        assert_eq!(drives[0]["name"], cfg.tapes[0].name);
        assert_eq!(drives[0]["address"], 1);
        let (slots, ports) = lib.slot_counts();
        assert_eq!(v["slots"].as_array().unwrap().len(), usize::from(slots));
        assert_eq!(
            v["import_export"].as_array().unwrap().len(),
            usize::from(ports)
        );
        assert_eq!(v["slots"][0]["address"], 1001);
        // every cartridge of a first start is blank, wherever it is
        let mut seen = 0;
        for d in drives.iter().chain(v["slots"].as_array().unwrap()) {
            let c = d.get("cartridge").unwrap_or(&Value::Null);
            if c.is_null() {
                continue;
            }
            seen += 1;
            assert_eq!(c["blank"], true, "{c}");
            assert_eq!(c["full"], false, "{c}");
            assert_eq!(c["volume_tag"], c["label"], "{c}");
            assert_eq!(c["holds"], json!([]));
        }
        assert_eq!(seen, lib.cartridges().len());
    }
}
