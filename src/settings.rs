//! The NDMP settings an administrator changes at run time through the REST view (ONTAP's
//! `/api/protocols/ndmp[/nodes]`), kept as JSON in the data directory across restarts.

use crate::config::{AuthMethod, Credentials};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The file under the data directory that holds the settings.
pub const FILE: &str = "ndmp-settings.json";

/// ONTAP's NDMP mode. ndmpd is one node serving one SVM, so the mode only changes what GET
/// `/api/protocols/ndmp` reports: sessions answer under both UUIDs in either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Node scope (ONTAP's "node"), the default.
    #[default]
    Node,
    /// SVM scope (ONTAP's "svm").
    Svm,
}

impl Mode {
    /// ONTAP's word for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Node => "node",
            Mode::Svm => "svm",
        }
    }
}

/// An ONTAP authentication type: `plaintext` is NDMP's TEXT, `challenge` its MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// NDMP_AUTH_TEXT.
    Plaintext,
    /// NDMP_AUTH_MD5.
    Challenge,
}

impl AuthType {
    /// ONTAP's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Plaintext => "plaintext",
            AuthType::Challenge => "challenge",
        }
    }

    /// The word as ONTAP spells it, or None.
    pub fn parse(s: &str) -> Option<AuthType> {
        match s {
            "plaintext" => Some(AuthType::Plaintext),
            "challenge" => Some(AuthType::Challenge),
            _ => None,
        }
    }
}

/// What the file holds; a key left out keeps its default (the config's behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stored {
    /// ONTAP's NDMP mode.
    pub mode: Mode,
    /// Whether new NDMP connections are accepted.
    pub enabled: bool,
    /// The authentication types offered; None: the config's `auth.methods`.
    pub authentication_types: Option<Vec<AuthType>>,
    /// A DMA login added through the REST view (replaces a configured one of the same name).
    pub user: Option<String>,
    /// Its password: kept in clear, since MD5 authentication needs it (the file is 0600).
    pub password: Option<String>,
}

impl Default for Stored {
    fn default() -> Self {
        Stored {
            mode: Mode::Node,
            enabled: true,
            authentication_types: None,
            user: None,
            password: None,
        }
    }
}

/// The live settings and the file they persist in.
#[derive(Debug)]
pub struct Settings {
    path: Option<PathBuf>,
    state: RwLock<Stored>,
}

impl Settings {
    /// Reads `data_dir/ndmp-settings.json`, or the defaults when there is none. A file that
    /// is not the settings is an error, so a hand edit gone wrong is never silently dropped.
    pub fn load(data_dir: &Path) -> Result<Settings, String> {
        let path = data_dir.join(FILE);
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not NDMP settings: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Settings {
            path: Some(path),
            state: RwLock::new(stored),
        })
    }

    /// Settings that live in memory only (the defaults), for servers built without a data
    /// directory to keep them.
    pub fn in_memory() -> Settings {
        Settings {
            path: None,
            state: RwLock::new(Stored::default()),
        }
    }

    /// A copy of the current settings.
    pub fn get(&self) -> Stored {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether new NDMP connections are accepted.
    pub fn enabled(&self) -> bool {
        self.get().enabled
    }

    /// The NDMP methods offered now: the configured ones, or those the settings name (MD5
    /// first), with `none` kept when the config lists it, since ONTAP has no word for it.
    pub fn methods(&self, configured: &[AuthMethod]) -> Vec<AuthMethod> {
        match self.get().authentication_types {
            None => configured.to_vec(),
            Some(types) => {
                let mut m = Vec::new();
                if types.contains(&AuthType::Challenge) {
                    m.push(AuthMethod::Md5);
                }
                if types.contains(&AuthType::Plaintext) {
                    m.push(AuthMethod::Text);
                }
                if configured.contains(&AuthMethod::None) {
                    m.push(AuthMethod::None);
                }
                m
            }
        }
    }

    /// The authentication types as ONTAP names them, for the REST records.
    pub fn authentication_types(&self, configured: &[AuthMethod]) -> Vec<AuthType> {
        self.methods(configured)
            .iter()
            .filter_map(|m| match m {
                AuthMethod::Md5 => Some(AuthType::Challenge),
                AuthMethod::Text => Some(AuthType::Plaintext),
                AuthMethod::None => None,
            })
            .collect()
    }

    /// The DMA logins: `configured`, with the settings' user added or put in place of the
    /// configured one of the same name.
    pub fn logins(&self, configured: &[Credentials]) -> Vec<Credentials> {
        let s = self.get();
        let mut all = configured.to_vec();
        if let (Some(name), Some(pw)) = (s.user, s.password) {
            all.retain(|u| u.name != name);
            all.push(Credentials {
                name,
                password: pw.into_bytes(),
            });
        }
        all
    }

    /// Changes the settings with `f` and persists them before they take effect: a change
    /// that could not be written changes nothing.
    pub fn update(&self, f: impl FnOnce(&mut Stored)) -> std::io::Result<Stored> {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        f(&mut next);
        if let Some(path) = &self.path {
            write_atomically(path, &serde_json::to_vec_pretty(&next)?)?;
        }
        *guard = next.clone();
        Ok(next)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
/// mix: a private temporary file beside it, synced, renamed over it, the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_persist_privately_and_reload() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert!(s.enabled());
        let conf = [AuthMethod::Md5, AuthMethod::Text];
        assert_eq!(s.methods(&conf), conf);
        s.update(|x| {
            x.enabled = false;
            x.authentication_types = Some(vec![AuthType::Plaintext]);
            x.user = Some("bob".into());
            x.password = Some("pw".into());
        })
        .unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Settings::load(dir.path()).unwrap();
        assert!(!again.enabled());
        assert_eq!(again.methods(&conf), [AuthMethod::Text]);
        let old = Credentials {
            name: "bob".into(),
            password: b"old".to_vec(),
        };
        let logins = again.logins(&[old]);
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].password, b"pw");
        assert!(!dir.path().join("ndmp-settings.json.tmp").exists());
    }

    #[test]
    fn a_broken_file_is_an_error_in_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{\"enabled\": 3}").unwrap();
        let e = Settings::load(dir.path()).unwrap_err();
        assert!(e.contains("not NDMP settings"), "{e}");
    }
}
