//! The command line as clap parses it: `serve` (the default), `dma`, `vtape` and `pcap`, with
//! their flags. The doc comments of fields and variants are the `--help` texts.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ndmpd::client::AuthMethod;
use ndmpd::units::{parse_size, parse_size_u32};
use ndmpd::{config, units};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole command line: a subcommand, or the flags of `serve` alone.
// `--config` and `--data-dir` may also stand before `serve` or `vtape` (`ndmpd --data-dir D
// vtape list`); `parse` moves them to the subcommand. clap's
// `args_conflicts_with_subcommands` would refuse that spelling, so `parse` refuses the other
// serve flags before a subcommand itself.
#[derive(Parser)]
#[command(
    name = "ndmpd",
    version,
    about = "NDMP v4 server and tape mover engine"
)]
pub struct Cli {
    /// The subcommand; without one, `serve` with the flags below.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, given without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Parses the command line, or exits as clap does (status 2, usage on stderr).
///
/// Without a subcommand the top-level flags are `serve`'s. Before `serve` or `vtape`, only
/// `--config` and `--data-dir` may stand, and are moved to the subcommand; before `dma` or
/// `pcap`, none, since neither reads them.
pub fn parse() -> Command {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    resolve(cli, &matches).unwrap_or_else(|e| e.exit())
}

/// The subcommand to run, with the top-level `--config`/`--data-dir` moved into it.
fn resolve(cli: Cli, matches: &ArgMatches) -> Result<Command, clap::Error> {
    let Some(mut command) = cli.command else {
        return Ok(Command::Serve(cli.serve));
    };
    let mut cmd = Cli::command();
    let given: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| {
            let long = a.get_long().unwrap_or_else(|| a.get_id().as_str());
            (a.get_id().to_string(), format!("--{long}"))
        })
        .collect();
    let name = match &command {
        Command::Serve(_) => "serve",
        Command::Vtape(_) => "vtape",
        Command::Dma(_) => "dma",
        Command::Pcap { .. } => "pcap",
        Command::CheckConfig { .. } => "check-config",
        Command::GenerateAssets { .. } => "generate-assets",
    };
    let refuse = |cmd: &mut clap::Command, msg: String| {
        cmd.error(clap::error::ErrorKind::ArgumentConflict, msg)
    };
    for (id, flag) in &given {
        let movable = id == "config" || id == "data_dir";
        if !movable || !matches!(command, Command::Serve(_) | Command::Vtape(_)) {
            let put = if name == "serve" || !movable {
                "after `ndmpd serve`, or with no subcommand"
            } else {
                "only with serve and vtape"
            };
            return Err(refuse(
                &mut cmd,
                format!("'{flag}' cannot stand before `{name}`: it goes {put}"),
            ));
        }
    }
    let (config, data_dir) = match &mut command {
        Command::Serve(a) => (&mut a.config, &mut a.data_dir),
        Command::Vtape(a) => (&mut a.config, &mut a.data_dir),
        _ => return Ok(command),
    };
    for (flag, top, sub) in [
        ("--config", cli.serve.config, config),
        ("--data-dir", cli.serve.data_dir, data_dir),
    ] {
        match (top, sub.is_some()) {
            (Some(_), true) => {
                return Err(refuse(
                    &mut cmd,
                    format!("'{flag}' is given twice: before and after `{name}`"),
                ))
            }
            (Some(v), false) => *sub = Some(v),
            (None, _) => {}
        }
    }
    Ok(command)
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
    /// Server state directory (password, host id, virtual tapes), created on first start
    /// [default: data_dir of the config, else /var/lib/ndmpd for root, ~/.local/share/ndmpd
    /// for others]
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
    /// Log lines: plain text (for the journal and terminals) or one JSON object per line
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

/// How `serve` writes its log to stderr.
#[derive(Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event; colours only when stderr is a terminal.
    #[default]
    Plain,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
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
    Dma(DmaArgs),
    /// Manage virtual tape cartridges (safe while the server runs)
    Vtape(VtapeArgs),
    /// Check a config file: every problem with its line, exit status 0 when it is usable
    CheckConfig {
        /// The config file
        #[arg(default_value = config::DEFAULT_CONFIG_PATH)]
        file: PathBuf,
    },
    /// Write the man pages and shell completions into DIR (for packaging)
    #[command(hide = true)]
    GenerateAssets {
        /// Where man/ and completions/ are created
        dir: PathBuf,
    },
    /// Decode the NDMP messages in pcap/pcapng captures, one line each.
    Pcap {
        /// Capture files (pcap or pcapng, e.g. from `tcpdump -w` or Wireshark).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// TCP port of the NDMP server in the capture.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// Print one JSON object per message instead of a line (with the decoded body).
        #[arg(long)]
        json: bool,
    },
}

/// The subcommands of `ndmpd dma`.
#[derive(Subcommand)]
pub enum DmaCommand {
    /// Connect, authenticate and print everything CONFIG_* returns
    Query {
        /// Print the replies as JSON
        #[arg(long)]
        json: bool,
    },
    /// Drive a media changer over NDMP: inventory, move, load a drive, unload it
    Changer {
        /// Changer name on the server (CONFIG_GET_SCSI_INFO)
        #[arg(long, default_value = "changer0")]
        changer: String,
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
        /// A backup environment variable for the server, NAME=VALUE (repeatable): e.g.
        /// UPDATE=N, EXCLUDE=*.tmp, SNAPSHOT=N, FIND_CHANGES=walk
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
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
        /// Paths inside the image, such as /sub/file, raw or as `dma list` prints them
        /// (\\ for a backslash, \xNN for a byte that is not UTF-8); none = everything
        paths: Vec<OsString>,
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

/// `ndmpd dma`: the connection flags, accepted before or after the subcommand and its
/// action, and the subcommand.
#[derive(Args)]
pub struct DmaArgs {
    /// Where to connect and how to log in.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: DmaCommand,
}

/// The servers a `dma` subcommand talks to and the login, the same on both servers.
#[derive(Args)]
// Own ids: clap copies a global's value up to every parent with an argument of the same id,
// and the top level has serve's --user and --password-file.
pub struct ConnArgs {
    /// NDMP server address (the DATA server of a backup, restore or list)
    /// [default: 127.0.0.1:10000]
    #[arg(long, id = "dma_server", global = true)]
    pub server: Option<String>,
    /// NDMP server whose tape drive a backup, restore or list uses (three-way)
    /// [default: --server]
    #[arg(long, id = "dma_tape_server", global = true)]
    pub tape_server: Option<String>,
    /// Login name [default: ndmp]
    #[arg(long, id = "dma_user", global = true)]
    pub user: Option<String>,
    /// Authentication method [default: md5]
    #[arg(long, id = "dma_auth", global = true, value_enum)]
    pub auth: Option<AuthMethod>,
    /// NDMP protocol version asked for in CONNECT_OPEN, on every server [default: 4]
    #[arg(
        long,
        id = "dma_ndmp_version",
        global = true,
        value_name = "3|4",
        value_parser = clap::value_parser!(u16).range(3..=4)
    )]
    pub ndmp_version: Option<u16>,
    /// File whose first line is the password
    #[arg(long, id = "dma_password_file", global = true)]
    pub password_file: Option<PathBuf>,
    /// The password (prefer --password-file: the environment is visible to the same user)
    #[arg(
        long = "password-env",
        id = "dma_password_env",
        env = "NDMPD_PASSWORD",
        hide_env_values = true,
        hide = true,
        global = true
    )]
    pub password_env: Option<String>,
    /// Login name on the tape server of a three-way job, when it is not --user's
    /// [default: --user]
    #[arg(long, id = "dma_tape_user", global = true)]
    pub tape_user: Option<String>,
    /// File whose first line is the tape server's password, when it is not --password-file's
    /// [default: --password-file]
    #[arg(long, id = "dma_tape_password_file", global = true)]
    pub tape_password_file: Option<PathBuf>,
}

impl ConnArgs {
    /// `--server`, or the local default.
    pub fn server(&self) -> String {
        self.server
            .clone()
            .unwrap_or_else(|| "127.0.0.1:10000".into())
    }

    /// `--user`, or the login `serve` creates.
    pub fn user(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| config::DEFAULT_USER.into())
    }

    /// `--auth`, or MD5.
    pub fn auth(&self) -> AuthMethod {
        self.auth.unwrap_or(AuthMethod::Md5)
    }

    /// `--ndmp-version`, or 4.
    pub fn ndmp_version(&self) -> u16 {
        self.ndmp_version.unwrap_or(4)
    }

    /// Where the password comes from.
    pub fn password(&self) -> PasswordArgs {
        PasswordArgs {
            password_file: self.password_file.clone(),
            password_env: self.password_env.clone(),
        }
    }

    /// The tape server's own login, when --tape-user or --tape-password-file gives one:
    /// the other half is the DATA server's (`user`, `password`).
    pub fn tape_login(
        &self,
        user: &str,
        password: &[u8],
    ) -> Result<Option<(String, Vec<u8>)>, String> {
        if self.tape_user.is_none() && self.tape_password_file.is_none() {
            return Ok(None);
        }
        let pw = match &self.tape_password_file {
            Some(f) => config::read_password_file(f).map_err(|e| e.to_string())?,
            None => password.to_vec(),
        };
        let who = self.tape_user.clone().unwrap_or_else(|| user.to_string());
        Ok(Some((who, pw)))
    }
}

/// The tape and the image of a backup, restore or list.
#[derive(Args)]
pub struct JobArgs {
    /// Tape drive name on the tape server [default: vtape0, or for --backup the drive the
    /// image was written with]
    #[arg(long)]
    pub tape: Option<String>,
    /// Mover record size (10k, 256K, 1M...) [backup default: 256 KiB]. A restore or list
    /// reads it off the tape (or the catalog's for --backup): given, it must agree
    #[arg(long, value_parser = units::parse_size_u32)]
    pub record_size: Option<u32>,
    /// Backup type (image format): dump or tar [backup default: dump]. A restore or list
    /// reads it off the tape (or the catalog's for --backup): given, it must agree
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
}

/// What `ndmpd dma changer` does with the robot.
#[derive(Subcommand)]
pub enum ChangerAction {
    /// Every element: address, cartridge, source, and the tape drive behind each drive
    /// element (matched by serial number) [default]
    Status {
        /// Print a JSON object instead: the changer's name and its elements (address,
        /// kind, full, label, source, serial, drive)
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

/// `ndmpd vtape`: which data directory, and what to do in it. `--config` and `--data-dir`
/// are global, so they may follow the action too (`ndmpd vtape list --data-dir D`).
#[derive(Args)]
pub struct VtapeArgs {
    /// TOML config file, to find the data directory and drives [default: as for serve]
    // ids of their own: a global's value also shows in its parents' matches, where it would
    // look as if given before `vtape` too
    #[arg(
        long = "config",
        id = "vtape_config",
        value_name = "CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,
    /// Server state directory, as `serve` made it [default: data_dir of the config, else
    /// /var/lib/ndmpd for root, ~/.local/share/ndmpd for others]
    #[arg(
        long = "data-dir",
        id = "vtape_data_dir",
        value_name = "DATA_DIR",
        global = true
    )]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: VtapeCommand,
}

/// The subcommands of `ndmpd vtape`.
#[derive(Subcommand)]
pub enum VtapeCommand {
    /// Create a blank cartridge in the first free storage slot (outside the library when
    /// the slots are full); makes the data directory only when --data-dir or the config's
    /// data_dir names it
    Create {
        /// Label (letters, digits, '-', '_'); default the next free VTnnnn
        #[arg(long)]
        label: Option<String>,
        /// Capacity: bytes, or a size with a unit such as 10M, 64G, 1TiB
        /// [default: library.cartridge_capacity]
        #[arg(long, value_parser = parse_size)]
        capacity: Option<u64>,
    },
    /// List cartridges: label, size, files, where each is
    List {
        /// Print a JSON array instead: per cartridge label, path, file_size, info
        /// (capacity, used, write_protected), loaded_in, place, remaining, limited_by
        #[arg(long)]
        json: bool,
    },
    /// Records, filemarks and sizes of a cartridge, with a full CRC check
    Inspect { cart: String },
    /// Erase a cartridge back to blank (keeps label and capacity); one holding data needs
    /// a "y" at the prompt, or --yes
    Erase {
        cart: String,
        /// Erase without asking (needed when stdin is not a terminal and the cartridge
        /// holds data)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Write tape file N of a cartridge to stdout
    Cat {
        cart: String,
        /// Which tape file: 0 is the first
        #[arg(long, default_value_t = 0)]
        file: u32,
    },
    /// Append FILE's bytes as records at the end of the cartridge, then a filemark
    Append {
        cart: String,
        file: PathBuf,
        /// Record size: bytes, or a size with a unit such as 10k, 256K, 1M (at most 16M)
        #[arg(long, default_value = "256K", value_parser = parse_size_u32)]
        record_size: u32,
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
        /// Print a JSON array instead: per element address, element_type, name,
        /// cartridge, source, flags
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

/// `NAME=VALUE` of `--env`: a name of letters, digits and `_`, then anything.
fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{name:?} is not a variable name (letters, digits, _)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("UPDATE=N"), Ok(("UPDATE".into(), "N".into())));
        assert_eq!(
            parse_env("EXCLUDE=a=b"),
            Ok(("EXCLUDE".into(), "a=b".into()))
        );
        assert_eq!(parse_env("X="), Ok(("X".into(), String::new())));
        assert!(parse_env("UPDATE").unwrap_err().contains("not NAME=VALUE"));
        assert!(parse_env("=N").unwrap_err().contains("not a variable name"));
        assert!(parse_env("A B=1")
            .unwrap_err()
            .contains("not a variable name"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The connection flags of `dma`, wherever they are given.
    fn conn(args: &[&str]) -> (Option<String>, Option<String>, Option<AuthMethod>) {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Some(Command::Dma(d)) = cli.command else {
            panic!("not dma")
        };
        (d.conn.server, d.conn.tape_server, d.conn.auth)
    }

    #[test]
    fn connection_flags_before_or_after_the_subcommand_and_action() {
        let want = (Some("x:1".to_string()), None, Some(AuthMethod::Text));
        for args in [
            &[
                "ndmpd", "dma", "--server", "x:1", "--auth", "text", "changer", "load", "3",
            ][..],
            &[
                "ndmpd", "dma", "changer", "--server", "x:1", "--auth", "text", "load", "3",
            ],
            &[
                "ndmpd", "dma", "changer", "load", "3", "--server", "x:1", "--auth", "text",
            ],
            &[
                "ndmpd", "dma", "--auth", "text", "backup", "/srv", "--server", "x:1",
            ],
            &["ndmpd", "dma", "list", "--auth", "text", "--server", "x:1"],
        ] {
            assert_eq!(conn(args), want, "{args:?}");
        }
        let (_, tape, _) = conn(&["ndmpd", "dma", "restore", "/d", "--tape-server", "t:2"]);
        assert_eq!(tape.as_deref(), Some("t:2"));
        assert_eq!(conn(&["ndmpd", "dma", "query"]), (None, None, None));
    }

    #[test]
    fn record_sizes_take_units() {
        let cli = Cli::try_parse_from(["ndmpd", "dma", "backup", "--record-size", "10k", "/s"]);
        let Some(Command::Dma(DmaArgs {
            command: DmaCommand::Backup { job, .. },
            ..
        })) = cli.unwrap().command
        else {
            panic!("not backup")
        };
        assert_eq!(job.record_size, Some(10240));
        let e = Cli::try_parse_from(["ndmpd", "dma", "list", "--record-size", "ten"]);
        assert!(e.is_err());
    }
}
