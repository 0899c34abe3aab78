//! Server configuration: the TOML file, command-line overrides, and the embedded defaults that
//! make `ndmpd serve` useful on a fresh machine (loopback only, credentials required).

use crate::tape::library::layout::{MAX_DRIVES, MAX_PORTS, MAX_SLOTS};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where `ndmpd serve` looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ndmpd/ndmpd.toml";
/// The NDMP port.
pub const DEFAULT_PORT: u16 = 10000;
/// How an operator gives the server an export root: what the banner, the log and a refused
/// backup or restore say when there is none.
pub const HOW_TO_EXPORT: &str =
    "start ndmpd serve with --export DIR, or add [[export]] path = \"DIR\" to its config file";
/// The user created on first start when no user is configured.
pub const DEFAULT_USER: &str = "ndmp";

/// The whole server configuration as the TOML file gives it; a key left out takes its default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses the NDMP control port listens on.
    pub listen: Vec<SocketAddr>,
    /// Address of the REST session view.
    pub rest_listen: Option<SocketAddr>,
    /// The SVM name the REST view gives sessions (ONTAP's `svm.name`); default: the host name.
    pub svm_name: Option<String>,
    /// Server state: generated password, host id, virtual tapes.
    pub data_dir: PathBuf,
    /// Control connections held at once; more are refused with NOTIFY_CONNECTION_STATUS(REFUSED).
    pub max_sessions: usize,
    /// Largest NDMP message accepted, in bytes (a number or a size with a unit).
    #[serde(with = "crate::units::serde_size")]
    pub max_record: usize,
    /// How DMAs authenticate, and the users they may log in as.
    pub auth: AuthConfig,
    /// Directory trees the DATA server may back up and restore into.
    #[serde(rename = "export")]
    pub exports: Vec<Export>,
    /// Tape drives offered to DMAs.
    #[serde(rename = "tape")]
    pub tapes: Vec<TapeConfig>,
    /// Media changers offered to DMAs.
    #[serde(rename = "changer")]
    pub changers: Vec<ChangerConfig>,
    /// Virtual cartridges.
    pub library: LibraryConfig,
    /// The mover's data connections and records.
    pub mover: MoverConfig,
    /// Who may connect, for how long before authenticating, and how much memory records take.
    pub admission: AdmissionConfig,
    /// The REST view's transport (HTTPS or plain HTTP) and its accounts.
    pub rest: RestConfig,
    /// The backup scheduler; off unless the section is present.
    pub scheduler: Option<SchedulerConfig>,
    /// The NDMP servers (filers) scheduled backups read.
    #[serde(rename = "backup_server")]
    pub backup_servers: Vec<BackupServerConfig>,
    /// Backup schedules.
    #[serde(rename = "schedule")]
    pub schedules: Vec<ScheduleConfig>,
}

/// The `[scheduler]` table: where scheduled backups go and how missed runs are handled.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// `false` keeps the scheduler off with the section present.
    pub enabled: bool,
    /// The catalog database; default `<data_dir>/catalog.db` (see [`Config::catalog_path`]).
    pub catalog: Option<PathBuf>,
    /// What to do at start-up with runs missed while the server was down.
    pub missed: MissedRuns,
    /// The NDMP server whose drive and changer take the images; default this server's first
    /// listen address.
    pub tape_server: Option<String>,
    /// Login on the tape server, and on backup servers without their own.
    pub user: String,
    /// The file holding that login's password; default the data directory's generated one.
    pub password_file: Option<PathBuf>,
    /// The tape server's drive scheduled backups write to.
    pub drive: String,
    /// The tape server's changer that loads cartridges into `drive`.
    pub changer: String,
    /// Tape record size in bytes (a number or a size with a unit).
    #[serde(with = "crate::units::serde_size")]
    pub record_size: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            catalog: None,
            missed: MissedRuns::Once,
            tape_server: None,
            user: DEFAULT_USER.into(),
            password_file: None,
            drive: "vtape0".into(),
            changer: "changer0".into(),
            record_size: 256 << 10,
        }
    }
}

/// Runs missed while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MissedRuns {
    /// One run at start-up for each schedule that missed any.
    Once,
    /// None: the schedule goes on at its next time.
    Skip,
}

/// A `[[backup_server]]`: an NDMP server (filer) whose path scheduled backups read.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackupServerConfig {
    /// Its name, unique; schedules name it.
    pub name: String,
    /// A description for people.
    #[serde(default)]
    pub description: String,
    /// Host name or address.
    pub host: String,
    /// NDMP port.
    #[serde(default = "default_ndmp_port")]
    pub port: u16,
    /// The path backed up (env FILESYSTEM).
    pub path: String,
    /// Login; default the scheduler's.
    pub user: Option<String>,
    /// The file holding the password; default the scheduler's.
    pub password_file: Option<PathBuf>,
    /// "dump" or "tar".
    #[serde(default = "default_butype")]
    pub butype: String,
}

fn default_ndmp_port() -> u16 {
    DEFAULT_PORT
}

fn default_butype() -> String {
    "dump".into()
}

/// A `[[schedule]]`: when a backup server is backed up and how many backups are kept.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Its name, unique.
    pub name: String,
    /// A description for people.
    #[serde(default)]
    pub description: String,
    /// The `[[backup_server]]` it backs up, by name.
    pub server: String,
    /// RFC 5545 recurrence rule ("FREQ=DAILY;BYHOUR=1;BYMINUTE=0"); DTSTART optional.
    pub rrule: String,
    /// Completed backups kept, 1-9999.
    #[serde(default = "default_retention")]
    pub retention: u32,
    /// Runs after a failed one.
    #[serde(default)]
    pub retry_attempts: u32,
    /// Minutes between a failed run and its retry.
    pub retry_delay: Option<u64>,
    /// Seconds between a failed run and its retry (wins over `retry_delay`).
    pub retry_delay_secs: Option<u64>,
    /// Dump level.
    #[serde(default)]
    pub level: u32,
    /// Whether it runs.
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_retention() -> u32 {
    7
}

fn default_true() -> bool {
    true
}

impl ScheduleConfig {
    /// Seconds between a failed run and its retry: `retry_delay_secs`, else `retry_delay`
    /// minutes, else 10 minutes.
    pub fn retry_delay_secs(&self) -> u64 {
        self.retry_delay_secs
            .unwrap_or_else(|| self.retry_delay.unwrap_or(10).saturating_mul(60))
    }
}

/// The `[rest]` table: how the REST view is served and who may call it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    /// HTTPS (`true`) or plain HTTP (`false`); left out: HTTPS unless `rest_listen` is a
    /// loopback address and no certificate is configured.
    pub tls: Option<bool>,
    /// PEM certificate chain; without it (and `tls_key`) a self-signed certificate is
    /// generated into the data directory on first start.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Lets `tls = false` serve plain HTTP on an address that is not loopback: passwords
    /// then cross the network readable. Both must be said for it.
    pub allow_plain_http_off_loopback: bool,
    /// Whether the DMA logins (`[[auth.users]]`, `--user`, the NDMP settings' user) are
    /// also REST administrators. Default no: REST accounts are `[[rest.account]]`.
    pub dma_users_are_admins: bool,
    /// REST logins, each with its role.
    #[serde(rename = "account")]
    pub accounts: Vec<RestAccount>,
}

/// A `[[rest.account]]` entry: one login of the REST view.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestAccount {
    /// The HTTP basic authentication user name.
    pub name: String,
    /// The password itself; prefer `password_file`.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A file whose first line is the password; ignored when `password` is set.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// What the account may do.
    pub role: RestRole,
}

/// What a REST account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestRole {
    /// Everything: GET, and kill sessions, cancel jobs, take snapshots, change settings.
    Admin,
    /// GET only.
    Readonly,
}

impl RestConfig {
    /// Whether the REST view on `addr` serves HTTPS, or why the configuration may not serve
    /// plain HTTP there.
    pub fn use_tls(&self, addr: SocketAddr) -> Result<bool, String> {
        let has_cert = self.tls_cert.is_some() || self.tls_key.is_some();
        match self.tls {
            Some(true) => Ok(true),
            None => Ok(has_cert || !addr.ip().is_loopback()),
            Some(false) if has_cert => {
                Err("rest.tls = false contradicts rest.tls_cert/tls_key: drop one".into())
            }
            Some(false) if addr.ip().is_loopback() || self.allow_plain_http_off_loopback => {
                Ok(false)
            }
            Some(false) => Err(format!(
                "rest.tls = false on {addr}, which is not a loopback address: REST passwords \
                 would cross the network in clear; serve HTTPS (drop tls = false), or say \
                 allow_plain_http_off_loopback = true in [rest] as well"
            )),
        }
    }

    /// Resolves every `[[rest.account]]`'s password.
    pub fn load_accounts(&self) -> Result<Vec<(Credentials, RestRole)>, ConfigError> {
        self.accounts
            .iter()
            .map(|a| {
                let password = match (&a.password, &a.password_file) {
                    (Some(p), _) => p.as_bytes().to_vec(),
                    (None, Some(f)) => read_password_file(f)?,
                    (None, None) => {
                        return Err(ConfigError::Invalid(format!(
                            "rest account {:?} has neither password nor password_file",
                            a.name
                        )))
                    }
                };
                let c = Credentials {
                    name: a.name.clone(),
                    password,
                };
                Ok((c, a.role))
            })
            .collect()
    }

    fn validate(&self, rest_listen: Option<SocketAddr>) -> Result<(), String> {
        if let Some(addr) = rest_listen {
            self.use_tls(addr)?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("rest.tls_cert and rest.tls_key go together: give both or neither".into());
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.accounts {
            if a.name.is_empty() || a.name.contains(':') {
                return Err(format!(
                    "rest account name {:?} must be non-empty and without ':'",
                    a.name
                ));
            }
            if !names.insert(a.name.as_str()) {
                return Err(format!("rest account {:?} is configured twice", a.name));
            }
            if a.password.is_none() && a.password_file.is_none() {
                return Err(format!(
                    "rest account {:?} has neither password nor password_file",
                    a.name
                ));
            }
        }
        Ok(())
    }
}

/// Limits that keep a flood of connections or large records from locking DMAs out or
/// growing the server without bound.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Seconds a connection may take to authenticate before it is closed.
    pub preauth_timeout_secs: u64,
    /// Connections not yet authenticated, from all addresses together; more are refused.
    /// They do not count against `max_sessions`, so logged-in DMAs always have room.
    pub max_unauthenticated: usize,
    /// Connections not yet authenticated from any one source address.
    pub max_unauthenticated_per_address: usize,
    /// Bytes of received records that all sessions together may hold at once; a session
    /// whose next record does not fit waits (its socket is not read) until one does. A
    /// number or a size with a unit (`"256M"`).
    #[serde(with = "crate::units::serde_size")]
    pub record_budget: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            preauth_timeout_secs: 30,
            max_unauthenticated: 64,
            max_unauthenticated_per_address: 16,
            record_budget: 256 << 20,
        }
    }
}

/// The `[mover]` table: where data connections listen and how large a record may be.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoverConfig {
    /// First and last TCP port a data connection may listen on (for firewalls); without it
    /// the system picks a free port.
    pub data_ports: Option<[u16; 2]>,
    /// Largest record MOVER_SET_RECORD_SIZE accepts, in bytes (a number or a size with a
    /// unit).
    #[serde(with = "crate::units::serde_size")]
    pub max_record_size: u32,
    /// Seconds MOVER_CONNECT waits for each address the peer offered.
    pub connect_timeout_secs: u64,
}

impl Default for MoverConfig {
    fn default() -> Self {
        MoverConfig {
            data_ports: None,
            max_record_size: 4 << 20,
            connect_timeout_secs: 10,
        }
    }
}

/// The `[library]` table: the cartridges and slots of the virtual tape library.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibraryConfig {
    /// Capacity of a new virtual cartridge in bytes (a limit, not an allocation); a number
    /// or a size with a unit (`"64G"`).
    #[serde(with = "crate::units::serde_size")]
    pub cartridge_capacity: u64,
    /// Blank cartridges put in the storage slots besides those loaded in the virtual drives,
    /// created on first start.
    pub spare_cartridges: usize,
    /// Storage slots of the virtual changer.
    pub slots: u16,
    /// Import/export slots (the mail slot operators use) of the virtual changer.
    pub import_export_slots: u16,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            cartridge_capacity: 64 << 30,
            spare_cartridges: 2,
            slots: 8,
            import_export_slots: 1,
        }
    }
}

/// The `[auth]` table: which NDMP authentication methods are offered, and to whom.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Methods offered, strongest first: "md5", "text", and "none" (only when listed).
    pub methods: Vec<AuthMethod>,
    /// Logins DMAs may use. When there are none and a method other than `none` is offered,
    /// `ndmpd serve` adds [`DEFAULT_USER`] with a password generated on first start.
    pub users: Vec<User>,
}

/// An NDMP authentication method: one the server offers (`auth.methods`) or the one the DMA
/// client logs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// NDMP_AUTH_MD5: the password never crosses the wire, only a digest of it and a one-time
    /// server challenge.
    #[default]
    Md5,
    /// NDMP_AUTH_TEXT: the password is sent in clear text.
    Text,
    /// NDMP_AUTH_NONE: no credentials; whoever can connect gets in, so only offered when listed.
    None,
}

impl std::str::FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(AuthMethod::Text),
            "md5" => Ok(AuthMethod::Md5),
            "none" => Ok(AuthMethod::None),
            _ => Err(format!("unknown auth method {s:?} (md5, text or none)")),
        }
    }
}

/// An `[[auth.users]]` entry: one login a DMA may use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The name DMAs give in CONNECT_CLIENT_AUTH.
    pub name: String,
    /// The password itself; prefer `password_file`, which keeps it out of the config.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A file whose first line is the password (see [`read_password_file`]); ignored when
    /// `password` is set.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// An `[[export]]` entry: a directory tree DMAs may back up and restore into.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The tree's root; must be absolute, so the meaning does not depend on where ndmpd starts.
    pub path: PathBuf,
    /// Whether backups read a snapshot of the tree instead of the live files.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Whether a backup with UPDATE=Y keeps its snapshot as the base of the next
    /// incrementals, which then find changed files from it instead of reading every file's
    /// attributes. A kept snapshot holds the space of what changed since.
    #[serde(default = "yes")]
    pub keep_base_snapshots: bool,
}

fn yes() -> bool {
    true
}

impl Export {
    /// An export of `path` with the default snapshot choice (`auto`).
    pub fn new(path: PathBuf) -> Export {
        Export {
            path,
            snapshot: SnapshotMode::default(),
            keep_base_snapshots: true,
        }
    }
}

/// The `snapshot` setting of an `[[export]]`: what a backup of it reads (see
/// [`crate::snapshot`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// A btrfs snapshot when the export is on btrfs, otherwise the live tree.
    #[default]
    Auto,
    /// Always a btrfs snapshot: an export that is not on btrfs is a start-up error.
    Btrfs,
    /// Always the live tree.
    None,
}

/// Whether a configured tape drive or changer is simulated by ndmpd or is real hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A file-backed virtual device under the data directory (or at `path`).
    Virtual,
    /// A Linux SCSI tape (`/dev/nst*`) or generic SCSI (`/dev/sg*`) device.
    Device,
}

/// A `[[tape]]` entry: one tape drive offered to DMAs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TapeConfig {
    /// The name DMAs use in TAPE_OPEN.
    pub name: String,
    /// Virtual drive or real device; a device needs `path`.
    pub kind: DeviceKind,
    /// Device node (`kind = "device"`). For a virtual drive, a cartridge file that stays
    /// loaded in it; without one the drive takes cartridges from the library.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// A `[[changer]]` entry: one media changer offered to DMAs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChangerConfig {
    /// The name DMAs use in SCSI_OPEN.
    pub name: String,
    /// `virtual`: the changer of the virtual tape library; `device`: a real changer reached
    /// through its SCSI generic node (`/dev/sgN`).
    pub kind: DeviceKind,
    /// The device node of a real changer; a virtual one serves the library and takes none.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))],
            rest_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            svm_name: None,
            data_dir: default_data_dir(),
            max_sessions: 256,
            max_record: crate::wire::record::DEFAULT_MAX_RECORD,
            auth: AuthConfig::default(),
            exports: Vec::new(),
            tapes: Vec::new(),
            changers: Vec::new(),
            library: LibraryConfig::default(),
            mover: MoverConfig::default(),
            admission: AdmissionConfig::default(),
            rest: RestConfig::default(),
            scheduler: None,
            backup_servers: Vec::new(),
            schedules: Vec::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            methods: vec![AuthMethod::Md5, AuthMethod::Text],
            users: Vec::new(),
        }
    }
}

/// `/var/lib/ndmpd` for root, `~/.local/share/ndmpd` for anyone else.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("HOME") {
        Some(home) if !root => PathBuf::from(home).join(".local/share/ndmpd"),
        _ => PathBuf::from("/var/lib/ndmpd"),
    }
}

/// Why the configuration or a password could not be loaded, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read: the config or a password file; also the first-start password
    /// file (or its directory) could not be created or written.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        err: std::io::Error,
    },
    /// The config file is not TOML or does not fit the schema (an unknown key is an error too);
    /// one line, as the journal shows it. `ndmpd check-config` lists every such problem.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Line of the first problem (1-based; 0 when TOML gives no position).
        line: usize,
        /// Its column.
        column: usize,
        /// What TOML or the schema says.
        message: String,
    },
    /// The configuration parses but breaks a rule of [`Config::validate`], or a password is
    /// missing or empty.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a config file. Unknown keys are errors, so a typo never silently falls back to a
    /// default.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_owned(),
            err,
        })?;
        Self::parse(&text).map_err(|err| {
            let (line, column) = err.span().map_or((0, 0), |s| line_col(&text, s.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().replace('\n', " "),
            }
        })
    }

    /// Parses config text; keys left out take their defaults. Nothing is checked beyond the
    /// schema: call [`Config::validate`] next.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what serde cannot: non-empty lists, unique names, sane limits. Returns the
    /// first problem [`Config::problems`] finds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(p) => Err(ConfigError::Invalid(p.message)),
            None => Ok(()),
        }
    }

    /// Every rule of [`Config::validate`] this configuration breaks, each with the key it is
    /// about (so `check-config` can give its line).
    pub fn problems(&self) -> Vec<Problem> {
        use Key::{Field as F, Index as I};
        let mut out = Vec::new();
        let mut bad = |at: Vec<Key>, m: String| out.push(Problem { at, message: m });
        if self.listen.is_empty() {
            bad(vec![F("listen")], "no listen address".into());
        }
        if self.auth.methods.is_empty() {
            bad(
                vec![F("auth"), F("methods")],
                "auth.methods is empty: no DMA could log in".into(),
            );
        }
        if self.max_sessions == 0 {
            bad(
                vec![F("max_sessions")],
                "max_sessions must be at least 1".into(),
            );
        }
        let a = &self.admission;
        for (key, v) in [
            ("preauth_timeout_secs", a.preauth_timeout_secs as usize),
            ("max_unauthenticated", a.max_unauthenticated),
            (
                "max_unauthenticated_per_address",
                a.max_unauthenticated_per_address,
            ),
        ] {
            if v == 0 {
                bad(
                    vec![F("admission"), F(key)],
                    format!("admission.{key} must be at least 1"),
                );
            }
        }
        if a.record_budget < self.max_record {
            bad(
                vec![F("admission"), F("record_budget")],
                format!(
                    "admission.record_budget ({}) must be at least max_record ({}): one \
                     largest record must fit",
                    a.record_budget, self.max_record
                ),
            );
        }
        if self.library.cartridge_capacity < 1 << 20 {
            bad(
                vec![F("library"), F("cartridge_capacity")],
                "library.cartridge_capacity must be at least 1 MiB".into(),
            );
        }
        for (i, t) in self.tapes.iter().enumerate() {
            if t.kind == DeviceKind::Device && t.path.is_none() {
                bad(
                    vec![F("tape"), I(i)],
                    format!("tape {:?} is a device but has no path", t.name),
                );
            }
            if t.name.is_empty() || t.name.contains('/') || t.name.starts_with('.') {
                bad(
                    vec![F("tape"), I(i), F("name")],
                    format!("tape name {:?} must be a plain name", t.name),
                );
            }
        }
        for (i, c) in self.changers.iter().enumerate() {
            if c.kind == DeviceKind::Device && c.path.is_none() {
                bad(
                    vec![F("changer"), I(i)],
                    format!("changer {:?} is a device but has no path", c.name),
                );
            }
            if c.kind == DeviceKind::Virtual && c.path.is_some() {
                bad(
                    vec![F("changer"), I(i), F("path")],
                    format!(
                        "changer {:?} is virtual: it serves the library and takes no path",
                        c.name
                    ),
                );
            }
            if c.name.is_empty() || c.name.contains('/') || c.name.starts_with('.') {
                bad(
                    vec![F("changer"), I(i), F("name")],
                    format!("changer name {:?} must be a plain name", c.name),
                );
            }
        }
        if let Some((i, _)) = self
            .changers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == DeviceKind::Virtual)
            .nth(1)
        {
            bad(
                vec![F("changer"), I(i)],
                "only one virtual changer can serve the library".into(),
            );
        }
        for (i, b) in self.backup_servers.iter().enumerate() {
            if self.backup_servers[..i].iter().any(|o| o.name == b.name) {
                bad(
                    vec![F("backup_server"), I(i), F("name")],
                    format!("backup_server name {:?} is used twice", b.name),
                );
            }
            if b.butype != "dump" && b.butype != "tar" {
                bad(
                    vec![F("backup_server"), I(i), F("butype")],
                    format!(
                        "backup_server {:?}: butype {:?} must be \"dump\" or \"tar\"",
                        b.name, b.butype
                    ),
                );
            }
        }
        for (i, sc) in self.schedules.iter().enumerate() {
            if self.schedules[..i].iter().any(|o| o.name == sc.name) {
                bad(
                    vec![F("schedule"), I(i), F("name")],
                    format!("schedule name {:?} is used twice", sc.name),
                );
            }
            if !self.backup_servers.iter().any(|b| b.name == sc.server) {
                bad(
                    vec![F("schedule"), I(i), F("server")],
                    format!(
                        "schedule {:?}: no [[backup_server]] named {:?}",
                        sc.name, sc.server
                    ),
                );
            }
            if !(1..=9999).contains(&sc.retention) {
                bad(
                    vec![F("schedule"), I(i), F("retention")],
                    format!("schedule {:?}: retention must be 1 to 9999", sc.name),
                );
            }
            if let Err(e) = crate::scheduler::rule::rrule_from_text(&sc.rrule) {
                bad(
                    vec![F("schedule"), I(i), F("rrule")],
                    format!("schedule {:?}: rrule: {e}", sc.name),
                );
            }
        }
        if !self.schedules.is_empty() && self.scheduler.is_none() {
            bad(
                vec![F("schedule")],
                "[[schedule]] needs a [scheduler] section to run".into(),
            );
        }
        let lib = &self.library;
        if !(1..=MAX_SLOTS).contains(&lib.slots) {
            bad(
                vec![F("library"), F("slots")],
                format!("library.slots must be 1 to {}", MAX_SLOTS),
            );
        }
        if lib.import_export_slots > MAX_PORTS {
            bad(
                vec![F("library"), F("import_export_slots")],
                format!("library.import_export_slots must be at most {}", MAX_PORTS),
            );
        }
        if let Some((i, _)) = self
            .tapes
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == DeviceKind::Virtual && t.path.is_none())
            .nth(MAX_DRIVES)
        {
            bad(
                vec![F("tape"), I(i)],
                format!(
                    "at most {} virtual drives can take library cartridges",
                    MAX_DRIVES
                ),
            );
        }
        if let Some([lo, hi]) = self.mover.data_ports {
            if lo == 0 || lo > hi {
                bad(
                    vec![F("mover"), F("data_ports")],
                    format!("mover.data_ports [{lo}, {hi}] is not a port range"),
                );
            }
        }
        let max_rec = self.mover.max_record_size as usize;
        if !(512..=crate::tape::st::MAX_BLOCK).contains(&max_rec) {
            bad(
                vec![F("mover"), F("max_record_size")],
                format!(
                    "mover.max_record_size must be between 512 and {} bytes",
                    crate::tape::st::MAX_BLOCK
                ),
            );
        }
        if self.max_record < 64 << 10 {
            bad(
                vec![F("max_record")],
                "max_record must be at least 65536 bytes".into(),
            );
        }
        let names = self
            .tapes
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), "tape", i))
            .chain(
                self.changers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.as_str(), "changer", i)),
            );
        let mut seen: Vec<&str> = Vec::new();
        for (name, table, i) in names {
            if seen.contains(&name) {
                bad(
                    vec![F(table), I(i), F("name")],
                    format!("device name {name:?} is configured twice"),
                );
            } else {
                seen.push(name);
            }
        }
        let mut users: Vec<&str> = Vec::new();
        for (i, u) in self.auth.users.iter().enumerate() {
            if u.password.is_none() && u.password_file.is_none() {
                bad(
                    vec![F("auth"), F("users"), I(i)],
                    format!("user {:?} has neither password nor password_file", u.name),
                );
            }
            if users.contains(&u.name.as_str()) {
                bad(
                    vec![F("auth"), F("users"), I(i), F("name")],
                    format!("user {:?} is configured twice", u.name),
                );
            }
            users.push(&u.name);
        }
        if let Err(m) = self.rest.validate(self.rest_listen) {
            bad(vec![F("rest")], m);
        }
        for (i, e) in self.exports.iter().enumerate() {
            if !e.path.is_absolute() {
                bad(
                    vec![F("export"), I(i), F("path")],
                    format!("export {} is not an absolute path", e.path.display()),
                );
            }
        }
        out
    }

    /// What `check-config` finds on this machine beyond the rules: export roots that are not
    /// directories, password files that cannot be read or are empty (errors), device nodes
    /// that do not exist and an empty export list (warnings).
    pub fn environment_problems(&self) -> (Vec<Problem>, Vec<Problem>) {
        use Key::{Field as F, Index as I};
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        if self.exports.is_empty() {
            warnings.push(Problem {
                at: Vec::new(),
                message: format!(
                    "no export root: DMAs can neither back up nor restore; {HOW_TO_EXPORT}"
                ),
            });
        }
        for (i, e) in self.exports.iter().enumerate() {
            if !e.path.is_absolute() {
                continue;
            }
            let at = vec![F("export"), I(i), F("path")];
            match std::fs::metadata(&e.path) {
                Err(err) => errors.push(Problem {
                    at,
                    message: format!("export {}: {err}", e.path.display()),
                }),
                Ok(m) if !m.is_dir() => errors.push(Problem {
                    at,
                    message: format!("export {} is not a directory", e.path.display()),
                }),
                Ok(_) if e.path.parent().is_none() => warnings.push(Problem {
                    at,
                    message: "export /: the whole file system is exported; DMAs may read \
                              every file and restore over any of them"
                        .into(),
                }),
                Ok(_) => {}
            }
        }
        for (i, u) in self.auth.users.iter().enumerate() {
            if let (None, Some(f)) = (&u.password, &u.password_file) {
                if let Err(err) = read_password_file(f) {
                    errors.push(Problem {
                        at: vec![F("auth"), F("users"), I(i), F("password_file")],
                        message: format!("user {:?}: {err}", u.name),
                    });
                }
            }
        }
        let devices = self
            .tapes
            .iter()
            .enumerate()
            .map(|(i, t)| ("tape", i, &t.name, t.kind, &t.path))
            .chain(
                self.changers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ("changer", i, &c.name, c.kind, &c.path)),
            );
        for (table, i, name, kind, path) in devices {
            if let (DeviceKind::Device, Some(p)) = (kind, path) {
                if let Err(err) = std::fs::metadata(p) {
                    warnings.push(Problem {
                        at: vec![F(table), I(i), F("path")],
                        message: format!("{table} {name}: device {}: {err}", p.display()),
                    });
                }
            }
        }
        (errors, warnings)
    }

    /// Fills in what a fresh machine needs: a two-drive virtual tape library with its changer
    /// under the data directory. No export root is ever implied (not the current directory,
    /// not `/`): what DMAs may read and overwrite is the operator's explicit choice.
    pub fn apply_embedded_defaults(&mut self) {
        if self.tapes.is_empty() {
            for i in 0..2 {
                self.tapes.push(TapeConfig {
                    name: format!("vtape{i}"),
                    kind: DeviceKind::Virtual,
                    path: None,
                });
            }
        }
        if self.changers.is_empty() {
            self.changers.push(ChangerConfig {
                name: "changer0".into(),
                kind: DeviceKind::Virtual,
                path: None,
            });
        }
    }
}

impl Config {
    /// The catalog database of this server: `[scheduler] catalog` when given, else
    /// `<data_dir>/catalog.db`. The scheduler and the REST view both open this one file.
    pub fn catalog_path(&self) -> PathBuf {
        self.scheduler
            .as_ref()
            .and_then(|s| s.catalog.clone())
            .unwrap_or_else(|| self.data_dir.join("catalog.db"))
    }

    /// What an operator should hear about at start-up, though the server still starts: no
    /// export, `/` exported, an export that is not a directory, and a drive or changer
    /// device node that does not exist.
    pub fn start_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.exports.is_empty() {
            w.push(format!(
                "no export root: DMAs can neither back up nor restore; {HOW_TO_EXPORT}"
            ));
        }
        for e in &self.exports {
            if e.path.parent().is_none() {
                w.push(format!(
                    "export {}: the whole file system is exported; DMAs may read every file \
                     and restore over any of them",
                    e.path.display()
                ));
            } else if !e.path.is_dir() {
                w.push(format!("export {} is not a directory", e.path.display()));
            }
        }
        let missing = |p: &Path| std::fs::metadata(p).err();
        for t in &self.tapes {
            if let (DeviceKind::Device, Some(p)) = (t.kind, &t.path) {
                if let Some(e) = missing(p) {
                    w.push(format!(
                        "tape drive {} is the device {}, which cannot be opened ({e}): TAPE_OPEN \
                         {} will fail",
                        t.name,
                        p.display(),
                        t.name
                    ));
                }
            }
        }
        for c in &self.changers {
            if let (DeviceKind::Device, Some(p)) = (c.kind, &c.path) {
                if let Some(e) = missing(p) {
                    w.push(format!(
                        "changer {} is the device {}, which cannot be opened ({e}): SCSI_OPEN \
                         {} will fail",
                        c.name,
                        p.display(),
                        c.name
                    ));
                }
            }
        }
        w
    }
}

/// One step of the way to a key in the config file: a table key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A key of a table (`auth`, `users`, `name`).
    Field(&'static str),
    /// The position in an array (`[[tape]]` entries count from 0).
    Index(usize),
}

/// A broken rule or a problem on this machine, with the key it is about (empty: the file as
/// a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the config it is: `[Field("tape"), Index(1), Field("name")]`.
    pub at: Vec<Key>,
    /// What is wrong, in words.
    pub message: String,
}

/// Whether a [`Diagnostic`] makes the config unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// ndmpd would refuse the file, or it would not do what it says.
    Error,
    /// ndmpd starts, but probably not as intended.
    Warning,
}

/// A problem `check-config` reports, with its line and column (1-based) when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Line and column in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

/// Line and column (1-based, columns in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Checks config text as `ndmpd check-config` does: every syntax error, then every schema
/// error (unknown keys, bad values; each one's key is set aside and the rest is read again),
/// then every rule of [`Config::problems`] and, with `environment`, the machine's state
/// ([`Config::environment_problems`]). Returns the config when it has no errors.
pub fn check_text(text: &str, environment: bool) -> (Option<Config>, Vec<Diagnostic>) {
    use serde::Deserialize;
    use toml::de::{DeTable, Deserializer};
    let mut out = Vec::new();
    let at = |span: Option<std::ops::Range<usize>>| span.map(|s| line_col(text, s.start));
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let d = Diagnostic {
                severity: Severity::Error,
                position: at(e.span()),
                message: e.message().trim().to_string(),
            };
            // the parser's recovery can report one mistake twice
            if !out.contains(&d) {
                out.push(d);
            }
        }
        return (None, out);
    }
    let mut pruned = root.clone();
    let mut schema_ok = true;
    // each round sets one offending entry aside, so this ends; the bound is a safety net
    let cfg = loop {
        match Config::deserialize(Deserializer::from(pruned.clone())) {
            Ok(cfg) => break Some(cfg),
            Err(e) => {
                schema_ok = false;
                out.push(Diagnostic {
                    severity: Severity::Error,
                    position: at(e.span()),
                    message: e.message().trim().to_string(),
                });
                let removed = match e.span() {
                    Some(s) if out.len() < 100 => remove_entry_at(pruned.get_mut(), s.start),
                    _ => false,
                };
                if !removed {
                    break None;
                }
            }
        }
    };
    let Some(cfg) = cfg else {
        return (None, out);
    };
    let locate = |p: &Problem| span_of(root.get_ref(), &p.at).map(|s| line_col(text, s.start));
    for p in cfg.problems() {
        out.push(Diagnostic {
            severity: Severity::Error,
            position: locate(&p),
            message: p.message,
        });
    }
    if environment {
        let (errors, warnings) = cfg.environment_problems();
        for (severity, list) in [(Severity::Error, errors), (Severity::Warning, warnings)] {
            for p in list {
                out.push(Diagnostic {
                    severity,
                    position: locate(&p),
                    message: p.message,
                });
            }
        }
    }
    out.sort_by_key(|d| d.position.unwrap_or((usize::MAX, 0)));
    let clean = schema_ok && out.iter().all(|d| d.severity != Severity::Error);
    (clean.then_some(cfg), out)
}

fn contains(span: &std::ops::Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

/// Removes from `table` the innermost entry (or array element) whose key or value covers
/// byte `pos`; false when none does. Every table is searched: a `[section]` table's span is
/// its header, not its keys.
fn remove_entry_at(table: &mut toml::de::DeTable<'_>, pos: usize) -> bool {
    use toml::de::DeValue;
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in keys {
        let Some(v) = table.get_mut(&key) else {
            continue;
        };
        let hit = contains(&key.span(), pos);
        let nested = !hit
            && match v.get_mut() {
                DeValue::Table(t) => remove_entry_at(t, pos),
                DeValue::Array(a) => remove_element_at(a, pos),
                _ => false,
            };
        if nested {
            return true;
        }
        if hit || contains(&v.span(), pos) {
            table.remove(&key);
            return true;
        }
    }
    false
}

/// [`remove_entry_at`] for the elements of an array: a table element is searched, a plain
/// value that covers `pos` is dropped.
fn remove_element_at(a: &mut toml::de::DeArray<'_>, pos: usize) -> bool {
    use toml::de::DeValue;
    let mut found = false;
    let mut drop_at = None;
    for (i, e) in a.iter_mut().enumerate() {
        let covers = contains(&e.span(), pos);
        if let DeValue::Table(t) = e.get_mut() {
            if remove_entry_at(t, pos) {
                found = true;
                break;
            }
        }
        if covers {
            drop_at = Some(i);
            break;
        }
    }
    if let Some(i) = drop_at {
        let items: Vec<_> = std::mem::replace(a, toml::de::DeArray::new())
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e)
            .collect();
        for e in items {
            a.push(e);
        }
        found = true;
    }
    found
}

/// Where the value at `path` is in the file: the key itself for a table key, the element
/// for an array index; the nearest enclosing entry when the key was left out.
fn span_of(table: &toml::de::DeTable<'_>, path: &[Key]) -> Option<std::ops::Range<usize>> {
    use toml::de::DeValue;
    let (Key::Field(first), rest) = path.split_first()? else {
        return None;
    };
    let (k, v) = table.iter().find(|(k, _)| k.get_ref() == first)?;
    let mut best = k.span();
    let mut value = v;
    let mut rest = rest;
    loop {
        let Some((step, tail)) = rest.split_first() else {
            return Some(best);
        };
        match (step, value.get_ref()) {
            (Key::Index(i), DeValue::Array(a)) => match a.get(*i) {
                Some(e) => {
                    best = e.span();
                    value = e;
                }
                None => return Some(best),
            },
            (Key::Field(f), DeValue::Table(t)) => match t.iter().find(|(k, _)| k.get_ref() == f) {
                Some((k, v)) => {
                    best = k.span();
                    value = v;
                }
                None => return Some(best),
            },
            _ => return Some(best),
        }
        rest = tail;
    }
}

/// A user whose password has been read.
#[derive(Clone)]
pub struct Credentials {
    /// The login name.
    pub name: String,
    /// The password's bytes; `Debug` never shows them.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.name)
    }
}

/// Reads a password file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let data = std::fs::read(path).map_err(|err| ConfigError::Read {
        path: path.to_owned(),
        err,
    })?;
    let line = data.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "password file {} is empty",
            path.display()
        )));
    }
    Ok(line.to_vec())
}

/// Resolves every configured user's password.
pub fn load_credentials(cfg: &Config) -> Result<Vec<Credentials>, ConfigError> {
    cfg.auth
        .users
        .iter()
        .map(|u| {
            let password = match (&u.password, &u.password_file) {
                (Some(p), _) => p.as_bytes().to_vec(),
                (None, Some(f)) => read_password_file(f)?,
                (None, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "user {:?} has no password",
                        u.name
                    )))
                }
            };
            Ok(Credentials {
                name: u.name.clone(),
                password,
            })
        })
        .collect()
}

/// The password of the default user: read from `DATA_DIR/password`, or generated there (mode
/// 0600) on first start. Returns the password and whether it was just created.
pub fn first_start_password(data_dir: &Path) -> Result<(Vec<u8>, bool), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("password");
    if path.exists() {
        return read_password_file(&path).map(|p| (p, false));
    }
    let io = |err| ConfigError::Read {
        path: path.clone(),
        err,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let password = random_password(24);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(&password)
        .and_then(|_| f.write_all(b"\n"))
        .map_err(io)?;
    Ok((password, true))
}

/// A random password of unambiguous letters and digits.
pub fn random_password(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = vec![0u8; len];
    // The OS RNG failing at start-up leaves no safe way to make a password.
    getrandom::fill(&mut raw).expect("operating system random number generator");
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("ndmpd.example.toml"),
        )
        .unwrap();
        let cfg = Config::parse(&text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen[0].port(), 10000);
        assert!(!cfg.tapes.is_empty());
        assert!(!cfg.auth.users.is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("listen = [\"127.0.0.1:10000\"]\nmax_sesions = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_sesions"), "{err}");
    }

    #[test]
    fn defaults_are_loopback_with_credentials() {
        let cfg = Config::default();
        assert!(cfg.listen.iter().all(|a| a.ip().is_loopback()));
        assert!(!cfg.auth.methods.contains(&AuthMethod::None));
        let mut cfg = cfg;
        cfg.apply_embedded_defaults();
        assert_eq!(cfg.tapes.len(), 2);
        assert!(
            cfg.exports.is_empty(),
            "no implicit export: {:?}",
            cfg.exports
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn start_warnings_name_what_is_missing() {
        let mut cfg = Config::default();
        cfg.apply_embedded_defaults();
        let w = cfg.start_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("no export root") && w[0].contains("--export DIR"),
            "{w:?}"
        );
        let d = tempfile::tempdir().unwrap();
        cfg.exports = vec![Export::new("/".into()), Export::new(d.path().to_owned())];
        cfg.tapes.push(TapeConfig {
            name: "st9".into(),
            kind: DeviceKind::Device,
            path: Some(d.path().join("nst9")),
        });
        cfg.changers.push(ChangerConfig {
            name: "robot".into(),
            kind: DeviceKind::Device,
            path: Some(d.path().join("sg9")),
        });
        let w = cfg.start_warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("export /: the whole file system"), "{w:?}");
        let nst9 = d.path().join("nst9").display().to_string();
        assert!(
            w[1].contains("tape drive st9") && w[1].contains(&nst9),
            "{w:?}"
        );
        let sg9 = d.path().join("sg9").display().to_string();
        assert!(
            w[2].contains("changer robot") && w[2].contains(&sg9),
            "{w:?}"
        );
    }

    #[test]
    fn validation_catches_mistakes() {
        let cfg = Config {
            tapes: vec![
                TapeConfig {
                    name: "t".into(),
                    kind: DeviceKind::Virtual,
                    path: None,
                };
                2
            ],
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let mut cfg = Config::default();
        cfg.auth.methods.clear();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn export_snapshot_choice() {
        let cfg = Config::parse("[[export]]\npath = \"/srv/a\"\n[[export]]\npath = \"/srv/b\"\nsnapshot = \"none\"\n[[export]]\npath = \"/srv/c\"\nsnapshot = \"btrfs\"\n").unwrap();
        let modes: Vec<SnapshotMode> = cfg.exports.iter().map(|e| e.snapshot).collect();
        assert_eq!(
            modes,
            [SnapshotMode::Auto, SnapshotMode::None, SnapshotMode::Btrfs]
        );
        let err = Config::parse("[[export]]\npath = \"/srv/a\"\nsnapshot = \"lvm\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lvm") && err.contains("`auto`, `btrfs`"),
            "{err}"
        );
    }

    #[test]
    fn rest_transport_follows_the_address_and_the_words() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let wide: SocketAddr = "192.0.2.7:8443".parse().unwrap();
        let parse = |t: &str| Config::parse(t).unwrap().rest;
        let plain = parse("");
        assert_eq!(
            plain.use_tls(lo),
            Ok(false),
            "loopback: plain HTTP by default"
        );
        assert_eq!(plain.use_tls(wide), Ok(true), "elsewhere: HTTPS by default");
        assert_eq!(parse("[rest]\ntls = true\n").use_tls(lo), Ok(true));
        let off = parse("[rest]\ntls = false\n");
        assert!(off
            .use_tls(wide)
            .unwrap_err()
            .contains("not a loopback address"));
        let both = parse("[rest]\ntls = false\nallow_plain_http_off_loopback = true\n");
        assert_eq!(both.use_tls(wide), Ok(false));
        let cert = parse("[rest]\ntls_cert = \"/c\"\ntls_key = \"/k\"\n");
        assert_eq!(cert.use_tls(lo), Ok(true), "a certificate means HTTPS");
        let mut cfg = Config::parse("[[rest.account]]\nname = \"a\"\nrole = \"admin\"\n").unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("neither password"));
        cfg.rest.accounts[0].password = Some("x".into());
        cfg.validate().unwrap();
        let err =
            Config::parse("[[rest.account]]\nname = \"a\"\npassword = \"x\"\nrole = \"root\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("unknown variant `root`, expected `admin` or `readonly`"),
            "{err}"
        );
    }

    #[test]
    fn first_start_password_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (p1, created) = first_start_password(dir.path()).unwrap();
        assert!(created);
        assert_eq!(p1.len(), 24);
        let mode = std::fs::metadata(dir.path().join("password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (p2, created) = first_start_password(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(p1, p2);
    }

    fn positions(text: &str) -> Vec<(Option<(usize, usize)>, String)> {
        let (_, d) = check_text(text, false);
        d.into_iter().map(|d| (d.position, d.message)).collect()
    }

    #[test]
    fn check_text_reports_every_schema_and_rule_problem_with_its_line() {
        let text = "listen = [\"127.0.0.1:10000\"]\nmax_sesions = 3\nmax_sessions = 0\n\n\
                    [auth]\nmethods = [\"md5\", \"rot13\"]\n\n[[tape]]\nname = \"t0\"\n\
                    kind = \"virtual\"\n\n[[tape]]\nname = \"t0\"\nkind = \"virtual\"\n\n\
                    [mover]\ncolour = \"blue\"\n";
        let got = positions(text);
        let lines: Vec<_> = got.iter().map(|(p, _)| p.unwrap()).collect();
        assert_eq!(
            lines,
            [(2, 1), (3, 1), (6, 19), (13, 1), (17, 1)],
            "{got:?}"
        );
        assert!(
            got[0].1.starts_with("unknown field `max_sesions`"),
            "{got:?}"
        );
        assert_eq!(got[1].1, "max_sessions must be at least 1");
        assert!(got[2].1.starts_with("unknown variant `rot13`"), "{got:?}");
        assert_eq!(got[3].1, "device name \"t0\" is configured twice");
        assert!(got[4].1.starts_with("unknown field `colour`"), "{got:?}");
        let (cfg, _) = check_text(text, false);
        assert!(cfg.is_none());
    }

    #[test]
    fn check_text_syntax_errors_and_missing_fields() {
        let got = positions("listen = [\"127.0.0.1:1\"\nmax_sessions = 3\n");
        assert!(!got.is_empty());
        assert_eq!(got[0].0, Some((2, 1)), "{got:?}");
        let got = positions("[[tape]]\nname = \"a\"\n\n[[tape]]\nkind = \"virtual\"\n");
        assert_eq!(
            got,
            [
                (Some((1, 1)), "missing field `kind`".to_string()),
                (Some((4, 1)), "missing field `name`".to_string())
            ]
        );
    }

    #[test]
    fn check_text_accepts_a_clean_config() {
        let (cfg, d) = check_text("max_sessions = 4\n", false);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(cfg.unwrap().max_sessions, 4);
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab\ncé\nx", 6), (2, 3));
    }
}
