//! `ndmpd vtape`: the operator's view of the virtual tape library (create, list, inspect,
//! erase, cat, append, load, unload, import, export, protect), safe while the server runs.

use super::args::{ServeArgs, VtapeArgs, VtapeCommand};
use super::output::{human, out, outln, print_json, Stdout};
use super::serve::base_config;
use ndmpd::config::{self, Config};
use ndmpd::scsi::changer::inventory;
use ndmpd::tape::library::Cartridge;
use ndmpd::tape::library::Library;
use ndmpd::tape::vtape::{copy, Room, Vtape};
use ndmpd::tape::TapeError;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
    let origin = Origin::of(&args);
    let serve = ServeArgs {
        config: args.config,
        data_dir: args.data_dir,
        ..ServeArgs::default()
    };
    let cfg = library_config(&serve)?;
    let creates = matches!(args.command, VtapeCommand::Create { .. });
    check_data_dir(&cfg.data_dir, &origin, creates)?;
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
            if capacity.is_some_and(|c| c < 1 << 20) {
                return Err("--capacity must be at least 1M (1 MiB)".into());
            }
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
        VtapeCommand::Erase { cart, yes } => {
            let path = find(&cart)?;
            let before = Held::of(&path).map_err(te)?;
            // a write-protected cartridge is refused by erase itself, without a question
            if !yes && before.has_data() && !before.protected {
                confirm(&before)?;
            }
            // the lock is taken after the question, so a slow answer keeps no session out
            let _l = lock(&path)?;
            if !yes && Held::of(&path).map_err(te)? != before {
                return Err(format!(
                    "{} was written to while asking: not erased",
                    before.label
                ));
            }
            Vtape::erase(&path).map_err(te)?;
        }
        VtapeCommand::Protect { cart, off } => {
            let path = find(&cart)?;
            let _l = lock(&path)?;
            Vtape::set_write_protect(&path, !off).map_err(te)?;
        }
        VtapeCommand::Cat { cart, file } => {
            let path = find(&cart)?;
            copy::read_tape_file(&path, file, &mut Stdout::lock())
                .map_err(|e| format!("{cart}: {e}"))?;
        }
        VtapeCommand::Append {
            cart,
            file,
            record_size,
        } => {
            let record_size = record_size as usize;
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

/// How the data directory was chosen, for the words of an error about it.
enum Origin {
    /// `--data-dir`.
    Flag,
    /// The `data_dir` key of this config file.
    ConfigKey(PathBuf),
    /// The built-in default; the config file read, if any, has no `data_dir`.
    Default(Option<PathBuf>),
}

impl Origin {
    /// Finds the config file as `serve` does (`--config`, else the default path when it
    /// exists) and looks for the key in it. A file that cannot be read counts as without
    /// the key: loading it for the library reports that error first.
    fn of(args: &VtapeArgs) -> Origin {
        if args.data_dir.is_some() {
            return Origin::Flag;
        }
        let default_path = PathBuf::from(config::DEFAULT_CONFIG_PATH);
        let file = args
            .config
            .clone()
            .or_else(|| default_path.exists().then_some(default_path));
        let names_it = file.as_ref().is_some_and(|f| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .is_some_and(|t| t.contains_key("data_dir"))
        });
        match file {
            Some(f) if names_it => Origin::ConfigKey(f),
            f => Origin::Default(f),
        }
    }

    /// Whether the operator named the directory, so that `vtape create` may make it.
    fn explicit(&self) -> bool {
        !matches!(self, Origin::Default(_))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => write!(f, "given by --data-dir"),
            Origin::ConfigKey(p) => write!(f, "data_dir in {}", p.display()),
            Origin::Default(file) => {
                write!(f, "the default, as no --data-dir was given and ")?;
                match file {
                    Some(p) => write!(f, "{} sets no data_dir", p.display())?,
                    None => write!(
                        f,
                        "there is no config file (no --config, no {})",
                        config::DEFAULT_CONFIG_PATH
                    )?,
                }
                write!(
                    f,
                    "; the default is /var/lib/ndmpd for root, ~/.local/share/ndmpd for others"
                )
            }
        }
    }
}

/// The data directory must exist: a missing one would show as an empty library. `vtape
/// create` makes it when the operator named it (flag or config), not a default nobody chose.
fn check_data_dir(dir: &Path, origin: &Origin, creates: bool) -> Result<(), String> {
    if dir.is_dir() || (creates && origin.explicit()) {
        return Ok(());
    }
    if dir.exists() {
        return Err(format!(
            "data directory {} ({origin}) is not a directory",
            dir.display()
        ));
    }
    let create_note = if creates {
        "; `vtape create` makes the data directory only when --data-dir or the config's \
         data_dir names it"
    } else {
        ""
    };
    Err(format!(
        "data directory {} does not exist ({origin}). `ndmpd serve` creates it on first \
         start: start the server once, or name the data directory of a server that has run \
         with --data-dir or data_dir in the config file{create_note}",
        dir.display()
    ))
}

/// What a cartridge holds, as an erase confirmation shows it and as it is checked again
/// under the lock.
#[derive(PartialEq, Eq)]
struct Held {
    label: String,
    files: u64,
    used: u64,
    protected: bool,
}

impl Held {
    /// From the cartridge's index (its saved copy when current): no record is read.
    fn of(path: &Path) -> Result<Held, TapeError> {
        let t = Vtape::open(path, false)?;
        let info = t.info();
        Ok(Held {
            label: info.label,
            files: t.tape_files(),
            used: info.used,
            protected: info.write_protected,
        })
    }

    fn has_data(&self) -> bool {
        self.files > 0 || self.used > 0
    }
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.files == 1 { "" } else { "s" };
        write!(
            f,
            "{} ({} file{s}, {})",
            self.label,
            self.files,
            human(self.used)
        )
    }
}

/// Asks on the terminal before erasing a cartridge that holds data; without a terminal
/// there is no one to ask, so the answer is no and `--yes` is the way.
fn confirm(held: &Held) -> Result<(), String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "{held} holds data: not erased. Give --yes to erase it without a question \
             (standard input is not a terminal, so there is no one to ask)"
        ));
    }
    eprint!("erase {held}? [y/N] ");
    let mut answer = String::new();
    stdin
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(format!("{} not erased", held.label)),
    }
}
