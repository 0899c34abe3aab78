//! The command line as clap parses it: `serve` (the default), `dma`, `vtape` and `pcap`, with
//! their flags. The doc comments of fields and variants are the `--help` texts.

use clap::{Args, Parser, Subcommand};
use ndmpd::client::AuthMethod;
use ndmpd::config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole command line: a subcommand, or the flags of `serve` alone.
#[derive(Parser)]
#[command(
    name = "ndmpd",
    version,
    about = "NDMP v4 server and tape mover engine",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The subcommand; without one, `serve` with the flags below.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, given without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How `serve` starts: config file and the settings that override it.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// TOML config file [default: /etc/ndmpd/ndmpd.toml when it exists]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// NDMP control address (repeatable) [default: 127.0.0.1:10000]
    #[arg(long)]
    pub listen: Vec<SocketAddr>,
    /// REST session view address
    #[arg(long)]
    pub rest_listen: Option<SocketAddr>,
    /// Server state directory (password, host id, virtual tapes)
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory tree DMAs may back up and restore into (repeatable)
    #[arg(long)]
    pub export: Vec<PathBuf>,
    /// A DMA login; its password comes from --password-file or NDMPD_PASSWORD
    #[arg(long)]
    pub user: Option<String>,
    /// The password of `--user`.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// Where a password comes from: a file, or the NDMPD_PASSWORD environment variable.
#[derive(Args, Default)]
pub struct PasswordArgs {
    /// File whose first line is the password
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The password (prefer --password-file: the environment is visible to the same user)
    #[arg(
        long = "password-env",
        env = "NDMPD_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub password_env: Option<String>,
}

impl PasswordArgs {
    /// The password given, if any; a file that cannot be read is an error.
    pub fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.password_file, &self.password_env) {
            (Some(f), _) => config::read_password_file(f)
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, Some(p)) if !p.is_empty() => Ok(Some(p.as_bytes().to_vec())),
            _ => Ok(None),
        }
    }
}

/// The subcommands of `ndmpd`.
#[derive(Subcommand)]
pub enum Command {
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
        files: Vec<PathBuf>,
        /// TCP port of the NDMP server in the capture.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// One JSON object per message, with the decoded body.
        #[arg(long)]
        json: bool,
    },
}

/// The subcommands of `ndmpd dma`.
#[derive(Subcommand)]
pub enum DmaCommand {
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
        auth: AuthMethod,
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
        auth: AuthMethod,
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
        /// Write at the beginning of the cartridge, destroying what it holds (default: append
        /// after its last file)
        #[arg(long)]
        overwrite: bool,
        /// Write only if the cartridge has this label (ndmjob label, else changer volume tag)
        #[arg(long)]
        label: Option<String>,
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
        #[command(flatten)]
        from: ImageArgs,
        /// Directory on the server to restore into (inside one of its export roots)
        dest: String,
        /// Paths inside the image, such as /sub/file; none = everything
        paths: Vec<String>,
    },
    /// List what an image on tape holds, from its file history read back by the server
    List {
        #[command(flatten)]
        job: JobArgs,
        #[command(flatten)]
        from: ImageArgs,
    },
    /// List the backups of the catalog: id, when, server:path, level, butype, cartridges
    /// and tape files, size, status
    Backups {
        /// Backup catalog [default: as for backup]
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// One JSON array with every field
        #[arg(long)]
        json: bool,
    },
}

/// Which image `restore` and `list` read.
#[derive(Args)]
pub struct ImageArgs {
    /// Tape file number the image is in [default: the file --backup names, else the last
    /// file on the cartridge]
    #[arg(long)]
    pub file: Option<u32>,
    /// A backup id from `ndmpd dma backups`: its cartridges (loaded through the changer),
    /// tape file, butype and record size
    #[arg(long)]
    pub backup: Option<i64>,
}

/// Where a backup or restore runs and how to log in.
#[derive(Args)]
pub struct JobArgs {
    /// NDMP server whose DATA server reads or writes the files
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub server: String,
    /// NDMP server whose tape drive is used (three-way); default: --server
    #[arg(long)]
    pub tape_server: Option<String>,
    /// Tape drive name on the tape server [default: vtape0, or for --backup the drive the
    /// image was written with]
    #[arg(long)]
    pub tape: Option<String>,
    /// Mover record size (bytes, or with a unit: 256K, 1M); a restore needs the one the
    /// image was written with [default: 256K, or the catalog's for --backup]
    #[arg(long, value_parser = ndmpd::units::parse_size_u32)]
    pub record_size: Option<u32>,
    /// Backup type (image format): dump or tar [default: dump, or the catalog's for --backup]
    #[arg(long)]
    pub butype: Option<String>,
    /// Media changer on the tape server that changes cartridges (end of tape, restores from
    /// the catalog)
    #[arg(long, default_value = "changer0")]
    pub changer: String,
    /// Backup catalog (SQLite) [default: $NDMPD_CATALOG, $XDG_DATA_HOME/ndmpd/catalog.db or
    /// ~/.local/share/ndmpd/catalog.db]
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Login name (the same on both servers)
    #[arg(long, default_value = config::DEFAULT_USER)]
    pub user: String,
    /// Authentication method
    #[arg(long, value_enum, default_value = "md5")]
    pub auth: AuthMethod,
    /// The password of `--user`, on both servers.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// What `ndmpd dma changer` does with the robot.
#[derive(Subcommand)]
pub enum ChangerAction {
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

/// `ndmpd vtape`: which data directory, and what to do in it.
#[derive(Args)]
pub struct VtapeArgs {
    /// TOML config file, to find the data directory and drives [default: as for serve]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Server state directory, as for serve
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: VtapeCommand,
}

/// The subcommands of `ndmpd vtape`.
#[derive(Subcommand)]
pub enum VtapeCommand {
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
