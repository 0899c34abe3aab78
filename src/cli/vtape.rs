//! `ndmpd vtape`: the operator's view of the virtual tape library (create, list, inspect,
//! erase, cat, append, load, unload, import, export, protect), safe while the server runs.

use super::args::{ServeArgs, VtapeArgs, VtapeCommand};
use super::output::{human, out, outln, print_json, Stdout};
use super::serve::base_config;
use ndmpd::config::Config;
use ndmpd::scsi::changer::inventory;
use ndmpd::tape::library::Cartridge;
use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::{copy, Room, Vtape};
use ndmpd::tape::TapeError;
use std::process::ExitCode;

/// Runs one `ndmpd vtape` subcommand; exit status 1 (after saying why) when it fails.
pub fn run(args: VtapeArgs) -> ExitCode {
    match vtape(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ndmpd vtape: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One subcommand on the library of the data directory `serve` would use; the error is what
/// the operator is told.
fn vtape(args: VtapeArgs) -> Result<(), String> {
    let serve = ServeArgs {
        config: args.config,
        data_dir: args.data_dir,
        ..ServeArgs::default()
    };
    let cfg = library_config(&serve)?;
    let lib = Library::new(&cfg);
    let find = |cart: &str| {
        lib.resolve(cart)
            .ok_or_else(|| format!("no cartridge or virtual drive named {cart:?}"))
    };
    // Changing a cartridge takes the lock a session holds while the drive is open.
    let lock = |path: &std::path::Path| lib.lock_cartridge(path).map_err(|e| e.to_string());
    let te = |e: TapeError| e.to_string();
    match args.command {
        VtapeCommand::Create { label, capacity } => {
            let lib = match capacity {
                Some(c) => {
                    let mut cfg = cfg.clone();
                    cfg.library.cartridge_capacity = c;
                    Library::new(&cfg)
                }
                None => lib,
            };
            let (label, place) = lib
                .create_cartridge(label.as_deref())
                .map_err(|e| e.to_string())?;
            match place {
                Some(p) => outln!("{label} {p}"),
                None => outln!("{label} outside the library (every slot is full)"),
            }
        }
        VtapeCommand::List { json } => {
            // what each cartridge can still take: its capacity or the disk under it, whichever
            // is smaller (cartridges on one filesystem share its free space)
            let rows: Vec<ListRow> = lib
                .cartridges()
                .into_iter()
                .map(|c| {
                    let room = Vtape::read_info(&c.path)
                        .ok()
                        .map(|i| Room::of(&c.path, &i));
                    ListRow { cart: c, room }
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            outln!(
                "{:<12} {:>12} {:>12} {:>12} {:<8} {:>6} {:<14} flags",
                "label",
                "used",
                "capacity",
                "remaining",
                "limit",
                "files",
                "where"
            );
            for ListRow { cart: c, room } in rows {
                let files = Vtape::inspect(&c.path)
                    .map(|i| i.files.len().to_string())
                    .unwrap_or_else(|_| "?".into());
                let (used, cap, wp) = c
                    .info
                    .as_ref()
                    .map(|i| (i.used, i.capacity, i.write_protected))
                    .unwrap_or_default();
                let (remaining, limit) = room
                    .map(|r| (human(r.remaining), r.limited_by.to_string()))
                    .unwrap_or_else(|| ("?".into(), "?".into()));
                outln!(
                    "{:<12} {:>12} {:>12} {:>12} {:<8} {:>6} {:<14} {}",
                    c.label,
                    human(used),
                    human(cap),
                    remaining,
                    limit,
                    files,
                    c.place.as_deref().unwrap_or("outside"),
                    if wp { "write-protected" } else { "" }
                );
            }
        }
        VtapeCommand::Inspect { cart } => {
            let path = find(&cart)?;
            let i = Vtape::inspect(&path).map_err(te)?;
            out!("{i}");
            if !i.crc_ok() {
                return Err("CRC check failed".into());
            }
        }
        VtapeCommand::Erase { cart } => {
            let path = find(&cart)?;
            let _l = lock(&path)?;
            Vtape::erase(&path).map_err(te)?;
        }
        VtapeCommand::Protect { cart, off } => {
            let path = find(&cart)?;
            let _l = lock(&path)?;
            Vtape::set_write_protect(&path, !off).map_err(te)?;
        }
        VtapeCommand::Cat { cart, file } => {
            let path = find(&cart)?;
            copy::read_tape_file(&path, file, &mut Stdout::lock()).map_err(|e| e.to_string())?;
        }
        VtapeCommand::Append {
            cart,
            file,
            record_size,
        } => {
            if record_size == 0 || record_size > copy::MAX_RECORD_SIZE {
                return Err("--record-size must be 1 byte to 16 MiB".into());
            }
            let path = find(&cart)?;
            let _l = lock(&path)?;
            let mut input =
                std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let records = copy::append_tape_file(&path, &mut input, record_size)
                .map_err(|e| e.to_string())?;
            eprintln!("appended {records} records and a filemark");
        }
        VtapeCommand::Load { drive, cart } => {
            lib.load(&drive, &cart).map_err(|e| e.to_string())?;
            outln!("{cart} drive {drive}");
        }
        VtapeCommand::Unload { drive } => match lib.unload(&drive).map_err(|e| e.to_string())? {
            Some((label, Some(to))) => outln!("{label} {to}"),
            Some((label, None)) => outln!("{label} outside the library (every slot is full)"),
            None => return Err(format!("drive {drive} is empty")),
        },
        VtapeCommand::Import { cart } => {
            let port = lib.import(&cart).map_err(|e| e.to_string())?;
            outln!("{cart} {port}");
        }
        VtapeCommand::Export { cart } => {
            for label in lib.export(cart.as_deref()).map_err(|e| e.to_string())? {
                outln!("{label} outside the library");
            }
        }
        VtapeCommand::Library { json } => {
            let rows = inventory(&lib);
            if json {
                return print_json(&rows);
            }
            outln!(
                "{:>7}  {:<14} {:<10} {:<12} {:<18} flags",
                "address",
                "element",
                "name",
                "cartridge",
                "source"
            );
            for r in rows {
                let line = format!(
                    "{:>7}  {:<14} {:<10} {:<12} {:<18} {}",
                    r.address,
                    r.element_type,
                    r.name,
                    r.cartridge.as_deref().unwrap_or("-"),
                    r.source.as_deref().unwrap_or("-"),
                    r.flags.join(",")
                );
                outln!("{}", line.trim_end());
            }
            let c = lib.contents();
            if c.prevent_removal {
                outln!("import/export slots locked by a DMA (PREVENT MEDIUM REMOVAL)");
            }
        }
    }
    Ok(())
}

/// One line of `vtape list`: the cartridge and, when its header is readable, the room left
/// (`remaining` and `limited_by` in the JSON, next to the cartridge's own fields).
#[derive(serde::Serialize)]
struct ListRow {
    #[serde(flatten)]
    cart: Cartridge,
    #[serde(flatten)]
    room: Option<Room>,
}

/// The configuration `vtape` works on: the same file and data directory `serve` would use.
fn library_config(args: &ServeArgs) -> Result<Config, String> {
    let (mut cfg, from_file) = base_config(args)?;
    if !from_file {
        cfg.apply_embedded_defaults();
    }
    Ok(cfg)
}
