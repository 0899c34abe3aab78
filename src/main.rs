//! The `ndmpd` command line: the NDMP server (`serve`, the default) and its operator tools
//! (`dma` talks to an NDMP server as a DMA, `pcap` decodes captured NDMP conversations).

use clap::{Args, Parser, Subcommand};
use ndmpd::config::{self, Config, Credentials};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ndmpd",
    version,
    about = "NDMP v4 server and tape mover engine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// TOML config file [default: /etc/ndmpd/ndmpd.toml when it exists]
    #[arg(long)]
    config: Option<PathBuf>,
    /// NDMP control address (repeatable) [default: 127.0.0.1:10000]
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// REST session view address
    #[arg(long)]
    rest_listen: Option<SocketAddr>,
    /// Server state directory (password, host id, virtual tapes)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory tree DMAs may back up and restore into (repeatable)
    #[arg(long)]
    export: Vec<PathBuf>,
    /// A DMA login; its password comes from --password-file or NDMPD_PASSWORD
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args, Default)]
struct PasswordArgs {
    /// File whose first line is the password
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The password (prefer --password-file: the environment is visible to the same user)
    #[arg(
        long = "password-env",
        env = "NDMPD_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    password_env: Option<String>,
}

impl PasswordArgs {
    fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.password_file, &self.password_env) {
            (Some(f), _) => config::read_password_file(f)
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, Some(p)) if !p.is_empty() => Ok(Some(p.as_bytes().to_vec())),
            _ => Ok(None),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the NDMP server (what `ndmpd` with no subcommand does)
    Serve(ServeArgs),
    /// Act as a DMA against an NDMP server
    #[command(subcommand)]
    Dma(DmaCommand),
    /// Manage virtual tape cartridges (safe while the server runs)
    Vtape(VtapeArgs),
    /// Decode the NDMP messages in pcap/pcapng captures, one line each.
    Pcap {
        /// Capture files (pcap or pcapng, e.g. from `tcpdump -w` or Wireshark).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// TCP port of the NDMP server in the capture.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// One JSON object per message, with the decoded body.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DmaCommand {
    /// Connect, authenticate and print everything CONFIG_* returns
    Query {
        /// NDMP server address
        #[arg(long, default_value = "127.0.0.1:10000")]
        server: String,
        /// Login name
        #[arg(long, default_value = config::DEFAULT_USER)]
        user: String,
        /// Authentication method
        #[arg(long, value_enum, default_value = "md5")]
        auth: ndmpd::client::AuthMethod,
        /// Print the replies as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Drive a media changer over NDMP: inventory, move, load a drive, unload it
    Changer {
        /// NDMP server address
        #[arg(long, default_value = "127.0.0.1:10000")]
        server: String,
        /// Changer name on the server (CONFIG_GET_SCSI_INFO)
        #[arg(long, default_value = "changer0")]
        changer: String,
        /// Login name
        #[arg(long, default_value = config::DEFAULT_USER)]
        user: String,
        /// Authentication method
        #[arg(long, value_enum, default_value = "md5")]
        auth: ndmpd::client::AuthMethod,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(subcommand)]
        action: Option<ChangerAction>,
    },
    /// Back up a directory tree on the server as a dump or tar image onto one of its tapes
    /// (or, with --tape-server, another server's)
    Backup {
        #[command(flatten)]
        job: JobArgs,
        /// Dump level: 0 = full, N = what changed since the last lower level
        #[arg(long, default_value_t = 0)]
        level: u32,
        /// Do not ask for file history
        #[arg(long)]
        no_history: bool,
        /// Directory on the server to back up (inside one of its export roots)
        path: String,
    },
    /// Restore an image from tape into a directory on the server: everything, or the
    /// paths named
    Restore {
        #[command(flatten)]
        job: JobArgs,
        /// Replace files that already exist at the destination (default: keep them)
        #[arg(long)]
        force: bool,
        /// Directory on the server to restore into (inside one of its export roots)
        dest: String,
        /// Paths inside the image, such as /sub/file; none = everything
        paths: Vec<String>,
    },
    /// List what an image on tape holds, from its file history read back by the server
    List {
        #[command(flatten)]
        job: JobArgs,
    },
}

/// Where a backup or restore runs and how to log in.
#[derive(Args)]
struct JobArgs {
    /// NDMP server whose DATA server reads or writes the files
    #[arg(long, default_value = "127.0.0.1:10000")]
    server: String,
    /// NDMP server whose tape drive is used (three-way); default: --server
    #[arg(long)]
    tape_server: Option<String>,
    /// Tape drive name on the tape server
    #[arg(long, default_value = "vtape0")]
    tape: String,
    /// Mover record size in bytes; a restore needs the one the image was written with
    #[arg(long, default_value_t = 256 << 10)]
    record_size: u32,
    /// Backup type (image format): dump or tar
    #[arg(long, default_value = "dump")]
    butype: String,
    /// Login name (the same on both servers)
    #[arg(long, default_value = config::DEFAULT_USER)]
    user: String,
    /// Authentication method
    #[arg(long, value_enum, default_value = "md5")]
    auth: ndmpd::client::AuthMethod,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Subcommand)]
enum ChangerAction {
    /// Every element: address, cartridge, source, and the tape drive behind each drive
    /// element (matched by serial number) [default]
    Status {
        #[arg(long)]
        json: bool,
    },
    /// MOVE MEDIUM from one element address to another
    Move { from: u16, to: u16 },
    /// Load the cartridge at element SLOT into tape drive --tape
    Load {
        slot: u16,
        #[arg(long, default_value = "vtape0")]
        tape: String,
    },
    /// Take the cartridge out of tape drive --tape, back to its slot
    Unload {
        #[arg(long, default_value = "vtape0")]
        tape: String,
    },
}

#[derive(Args)]
struct VtapeArgs {
    /// TOML config file, to find the data directory and drives [default: as for serve]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Server state directory, as for serve
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: VtapeCommand,
}

#[derive(Subcommand)]
enum VtapeCommand {
    /// Create a blank cartridge in the first free storage slot (outside the library when
    /// the slots are full)
    Create {
        /// Label (letters, digits, '-', '_'); default the next free VTnnnn
        #[arg(long)]
        label: Option<String>,
        /// Capacity in bytes [default: library.cartridge_capacity]
        #[arg(long)]
        capacity: Option<u64>,
    },
    /// List cartridges: label, size, files, where each is
    List {
        #[arg(long)]
        json: bool,
    },
    /// Records, filemarks and sizes of a cartridge, with a full CRC check
    Inspect { cart: String },
    /// Erase a cartridge back to blank (keeps label and capacity)
    Erase { cart: String },
    /// Write tape file N of a cartridge to stdout
    Cat {
        cart: String,
        #[arg(long, default_value_t = 0)]
        file: u32,
    },
    /// Append FILE's bytes as records at the end of the cartridge, then a filemark
    Append {
        cart: String,
        file: PathBuf,
        #[arg(long, default_value_t = 256 * 1024)]
        record_size: usize,
    },
    /// Put a cartridge (from a slot, a port or outside) into an empty virtual drive
    Load { drive: String, cart: String },
    /// Take the cartridge out of a virtual drive, back to its home slot
    Unload { drive: String },
    /// Put a cartridge from outside the library into a free import/export slot
    Import { cart: String },
    /// Take cartridges out of the import/export slots (all, or CART)
    Export { cart: Option<String> },
    /// Show the changer's elements: address, type, cartridge, source slot
    Library {
        #[arg(long)]
        json: bool,
    },
    /// Set or clear a cartridge's write protection
    Protect {
        cart: String,
        #[arg(long)]
        off: bool,
    },
}

/// The DMA password from --password-file or NDMPD_PASSWORD (none needed for auth none);
/// `None` after saying what is wrong.
fn dma_password(
    cmd: &str,
    password: &PasswordArgs,
    auth: ndmpd::client::AuthMethod,
) -> Option<Vec<u8>> {
    match password.read() {
        Ok(Some(p)) => Some(p),
        Ok(None) if auth == ndmpd::client::AuthMethod::None => Some(Vec::new()),
        Ok(None) => {
            eprintln!("ndmpd dma {cmd}: give the password with --password-file or NDMPD_PASSWORD");
            None
        }
        Err(e) => {
            eprintln!("ndmpd dma {cmd}: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Dma(DmaCommand::Query {
            server,
            user,
            auth,
            json,
            password,
        })) => {
            let Some(password) = dma_password("query", &password, auth) else {
                return ExitCode::from(2);
            };
            runtime().block_on(ndmpd::client::query::run_query_cli(
                &server, &user, &password, auth, json,
            ))
        }
        Some(Command::Dma(DmaCommand::Backup {
            job,
            level,
            no_history,
            path,
        })) => {
            let Some(password) = dma_password("backup", &job.password, job.auth) else {
                return ExitCode::from(2);
            };
            let job = ndmpd::client::backup::BackupJob {
                server: job.server,
                tape_server: job.tape_server,
                user: job.user,
                password,
                auth: job.auth,
                tape: job.tape,
                path,
                level,
                record_size: job.record_size,
                history: !no_history,
                butype: job.butype,
            };
            runtime().block_on(ndmpd::client::backup::run_backup_cli(job))
        }
        Some(Command::Dma(DmaCommand::Restore {
            job,
            force,
            dest,
            paths,
        })) => {
            let Some(job) = recover_job("restore", job, dest, paths, force) else {
                return ExitCode::from(2);
            };
            runtime().block_on(ndmpd::client::restore::run_restore_cli(job))
        }
        Some(Command::Dma(DmaCommand::List { job })) => {
            let Some(job) = recover_job("list", job, String::new(), Vec::new(), false) else {
                return ExitCode::from(2);
            };
            runtime().block_on(ndmpd::client::restore::run_list_cli(job))
        }
        Some(Command::Dma(DmaCommand::Changer {
            server,
            changer,
            user,
            auth,
            password,
            action,
        })) => {
            let Some(password) = dma_password("changer", &password, auth) else {
                return ExitCode::from(2);
            };
            let action = action.unwrap_or(ChangerAction::Status { json: false });
            match runtime().block_on(changer_cli(
                &server, &changer, &user, &password, auth, action,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ndmpd dma changer: {server} {changer}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Pcap { files, port, json }) => pcap(&files, port, json),
        Some(Command::Vtape(args)) => match vtape(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ndmpd vtape: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `ndmpd dma changer`: one robot operation.
async fn changer_cli(
    server: &str,
    changer: &str,
    user: &str,
    password: &[u8],
    auth: ndmpd::client::AuthMethod,
    action: ChangerAction,
) -> Result<(), ndmpd::client::changer::ChangerError> {
    let mut robot =
        ndmpd::client::changer::Robot::open(server, user, password, auth, changer).await?;
    match action {
        ChangerAction::Status { json } => {
            let inv = robot.inventory().await?;
            if json {
                print_json(&inv).map_err(ndmpd::client::changer::ChangerError::Reply)?;
            } else {
                print!("{inv}");
            }
        }
        ChangerAction::Move { from, to } => {
            robot.move_medium(from, to).await?;
            println!("moved {from} -> {to}");
        }
        ChangerAction::Load { slot, tape } => {
            let to = robot.load(slot, &tape).await?;
            println!("loaded {slot} -> {to} ({tape})");
        }
        ChangerAction::Unload { tape } => {
            let (from, to) = robot.unload(&tape).await?;
            println!("unloaded {from} ({tape}) -> {to}");
        }
    }
    Ok(())
}

/// The job of `dma restore` and `dma list`; None (after a message) without a password.
fn recover_job(
    what: &str,
    job: JobArgs,
    dest: String,
    paths: Vec<String>,
    force: bool,
) -> Option<ndmpd::client::restore::RestoreJob> {
    let password = dma_password(what, &job.password, job.auth)?;
    Some(ndmpd::client::restore::RestoreJob {
        server: job.server,
        tape_server: job.tape_server,
        user: job.user,
        password,
        auth: job.auth,
        tape: job.tape,
        dest,
        paths,
        record_size: job.record_size,
        butype: job.butype,
        force,
    })
}

fn vtape(args: VtapeArgs) -> Result<(), String> {
    use ndmpd::tape::library::Library;
    use ndmpd::tape::vtape::{copy, Vtape};
    use ndmpd::tape::TapeError;
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
                Some(p) => println!("{label} {p}"),
                None => println!("{label} outside the library (every slot is full)"),
            }
        }
        VtapeCommand::List { json } => {
            let carts = lib.cartridges();
            if json {
                return print_json(&carts);
            }
            println!(
                "{:<12} {:>12} {:>12} {:>6} {:<14} flags",
                "label", "used", "capacity", "files", "where"
            );
            for c in carts {
                let files = Vtape::inspect(&c.path)
                    .map(|i| i.files.len().to_string())
                    .unwrap_or_else(|_| "?".into());
                let (used, cap, wp) = c
                    .info
                    .as_ref()
                    .map(|i| (i.used, i.capacity, i.write_protected))
                    .unwrap_or_default();
                println!(
                    "{:<12} {:>12} {:>12} {:>6} {:<14} {}",
                    c.label,
                    human(used),
                    human(cap),
                    files,
                    c.place.as_deref().unwrap_or("outside"),
                    if wp { "write-protected" } else { "" }
                );
            }
        }
        VtapeCommand::Inspect { cart } => {
            let path = find(&cart)?;
            let i = Vtape::inspect(&path).map_err(te)?;
            print!("{i}");
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
            copy::read_tape_file(&path, file, &mut std::io::stdout().lock())
                .map_err(|e| e.to_string())?;
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
            println!("{cart} drive {drive}");
        }
        VtapeCommand::Unload { drive } => match lib.unload(&drive).map_err(|e| e.to_string())? {
            Some((label, Some(to))) => println!("{label} {to}"),
            Some((label, None)) => println!("{label} outside the library (every slot is full)"),
            None => return Err(format!("drive {drive} is empty")),
        },
        VtapeCommand::Import { cart } => {
            let port = lib.import(&cart).map_err(|e| e.to_string())?;
            println!("{cart} {port}");
        }
        VtapeCommand::Export { cart } => {
            for label in lib.export(cart.as_deref()).map_err(|e| e.to_string())? {
                println!("{label} outside the library");
            }
        }
        VtapeCommand::Library { json } => {
            let rows = ndmpd::scsi::changer::inventory(&lib);
            if json {
                return print_json(&rows);
            }
            println!(
                "{:>7}  {:<14} {:<10} {:<12} {:<18} flags",
                "address", "element", "name", "cartridge", "source"
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
                println!("{}", line.trim_end());
            }
            let c = lib.contents();
            if c.prevent_removal {
                println!("import/export slots locked by a DMA (PREVENT MEDIUM REMOVAL)");
            }
        }
    }
    Ok(())
}

/// Prints `v` as pretty JSON (the `--json` of the operator commands).
fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format!("cannot format JSON: {e}"))?;
    println!("{text}");
    Ok(())
}

/// The config file (`--config`, else the default path when it exists, else the defaults)
/// with `--data-dir` applied, and whether it came from a file.
fn base_config(args: &ServeArgs) -> Result<(Config, bool), String> {
    let default_path = PathBuf::from(config::DEFAULT_CONFIG_PATH);
    let path = args
        .config
        .clone()
        .or_else(|| default_path.exists().then_some(default_path));
    let mut cfg = match &path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok((cfg, path.is_some()))
}

/// The configuration `vtape` works on: the same file and data directory `serve` would use.
fn library_config(args: &ServeArgs) -> Result<Config, String> {
    let (mut cfg, from_file) = base_config(args)?;
    if !from_file {
        cfg.apply_embedded_defaults();
    }
    Ok(cfg)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("ndmpd: cannot start the async runtime: {e}");
            std::process::exit(1)
        })
}

/// Builds the effective configuration: file, then command-line overrides, then the embedded
/// defaults that make a fresh machine work. Returns it with the DMA logins.
fn effective_config(args: &ServeArgs) -> Result<(Config, Vec<Credentials>), String> {
    let (mut cfg, from_file) = base_config(args)?;
    if !args.listen.is_empty() {
        cfg.listen = args.listen.clone();
    }
    if let Some(r) = args.rest_listen {
        cfg.rest_listen = Some(r);
    }
    for e in &args.export {
        let abs =
            std::path::absolute(e).map_err(|err| format!("--export {}: {err}", e.display()))?;
        cfg.exports.push(config::Export { path: abs });
    }
    if !from_file {
        cfg.apply_embedded_defaults();
    }
    cfg.validate().map_err(|e| e.to_string())?;
    let mut users = config::load_credentials(&cfg).map_err(|e| e.to_string())?;
    if let Some(name) = &args.user {
        let password = args.password.read()?.ok_or_else(|| {
            format!("--user {name}: give the password with --password-file or NDMPD_PASSWORD")
        })?;
        users.retain(|u| &u.name != name);
        users.push(Credentials {
            name: name.clone(),
            password,
        });
    }
    if users.is_empty()
        && !cfg
            .auth
            .methods
            .iter()
            .all(|m| *m == config::AuthMethod::None)
    {
        let (password, created) =
            config::first_start_password(&cfg.data_dir).map_err(|e| e.to_string())?;
        let file = cfg.data_dir.join("password");
        if created {
            println!(
                "ndmpd: first start. DMA login: user {}, password {} (kept in {}, mode 0600)",
                config::DEFAULT_USER,
                String::from_utf8_lossy(&password),
                file.display()
            );
        } else {
            println!(
                "ndmpd: DMA login: user {}, password in {}",
                config::DEFAULT_USER,
                file.display()
            );
        }
        users.push(Credentials {
            name: config::DEFAULT_USER.into(),
            password,
        });
    }
    Ok((cfg, users))
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NDMPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (cfg, users) = match effective_config(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ndmpd: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &cfg.exports {
        if !e.path.is_dir() {
            tracing::warn!("export {} is not a directory", e.path.display());
        }
    }
    runtime().block_on(async move {
        let server = match ndmpd::server::Server::bind(cfg, users).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(a) = server.rest_addr() {
            println!("ndmpd: REST view on http://{a}/api/protocols/ndmp/sessions");
        }
        for a in server.local_addrs() {
            println!("ndmpd: NDMP v4 listening on {a}");
        }
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            token.cancel();
        });
        match server.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // without signal handlers, Ctrl-C still ends the process the default way
            std::future::pending::<()>().await
        }
    }
}

fn pcap(files: &[std::path::PathBuf], port: u16, json: bool) -> ExitCode {
    use std::io::Write;
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in files {
        let name = path.display().to_string();
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
                continue;
            }
        };
        let conv = ndmpd::pcap::decode_capture(&data, port);
        if let Some(e) = &conv.file_error {
            eprintln!(
                "{name}: {e} ({} message(s) decoded before it)",
                conv.events.len()
            );
        }
        if json {
            for e in &conv.events {
                let _ = writeln!(out, "{}", ndmpd::pcap::format_json(e, &name));
            }
        } else {
            let _ = writeln!(
                out,
                "{name}: {} NDMP connection(s) on port {port}, {} message(s)",
                conv.connections,
                conv.events.len()
            );
            if let Some(first) = conv.events.first() {
                let t0 = first.time;
                let _ = writeln!(out, "{}", ndmpd::pcap::header_line());
                for e in &conv.events {
                    let _ = writeln!(out, "{}", ndmpd::pcap::format_line(e, t0));
                }
            }
        }
        for e in conv.events.iter().filter(|e| e.outcome.is_err()) {
            if let Err(err) = &e.outcome {
                eprintln!(
                    "{name}: packet {}: connection {} {}: {err}",
                    e.packet,
                    e.conn,
                    e.direction.arrow()
                );
            }
        }
        for err in &conv.stream_errors {
            eprintln!("{name}: {err}");
        }
        if conv.failures() > 0 {
            failed = true;
        }
        if !json && conv.connections == 0 {
            eprintln!("{name}: no TCP traffic on port {port} (try --port)");
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
