//! What every DMA job starts from and reports with: the authentication method, a logged-in
//! control connection, and the progress figures handed to a job's progress callback.

use super::connection::{Client, ClientError};
use crate::wire::messages::DataGetStateReply;
use crate::wire::types::data_state_uns;
use std::fmt::{self, Display, Formatter};
use std::time::Duration;

/// How the DMA authenticates: the same methods the server's config offers.
pub use crate::config::AuthMethod;

impl Display for AuthMethod {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMethod::Text => "TEXT",
            AuthMethod::Md5 => "MD5",
            AuthMethod::None => "NONE",
        })
    }
}

/// Connects, asks for version 4 and authenticates.
pub async fn login(
    addr: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
) -> Result<Client, ClientError> {
    login_version(addr, user, password, auth, 4).await
}

/// Connects, asks for protocol `version` (3 or 4) and authenticates; a server that refuses
/// the version gets an error that names it.
pub async fn login_version(
    addr: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
    version: u16,
) -> Result<Client, ClientError> {
    let mut c = Client::connect(addr).await?;
    c.open(version).await.map_err(|e| match e {
        ClientError::Ndmp { code, error, why } => {
            let refused = format!("the server does not speak NDMP version {version}");
            ClientError::Ndmp {
                code,
                error,
                why: Some(match why {
                    Some(w) => format!("{refused} ({w})"),
                    None => refused,
                }),
            }
        }
        e => e,
    })?;
    match auth {
        AuthMethod::Text => c.auth_text(user, password).await?,
        AuthMethod::Md5 => c.auth_md5(user, password).await?,
        AuthMethod::None => c.auth_none().await?,
    }
    Ok(c)
}

/// Where a backup, restore or list is, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// What the DATA server has processed so far (DATA_GET_STATE bytes_processed).
    pub bytes: u64,
    /// Time since the job was started.
    pub elapsed: Duration,
    /// Image bytes still to go, when the server gave an estimate.
    pub est_bytes_remain: Option<u64>,
    /// Time still to go, when the server gave an estimate.
    pub est_time_remain: Option<Duration>,
}

impl Progress {
    /// The progress a DATA_GET_STATE reply reports, `elapsed` into the job; an estimate the
    /// server flags as unsupported is `None`.
    pub fn from_state(s: &DataGetStateReply, elapsed: Duration) -> Progress {
        let given = |bit| s.unsupported & bit == 0;
        Progress {
            bytes: s.bytes_processed,
            elapsed,
            est_bytes_remain: given(data_state_uns::EST_BYTES_REMAIN).then_some(s.est_bytes_remain),
            est_time_remain: given(data_state_uns::EST_TIME_REMAIN)
                .then(|| Duration::from_secs(u64::from(s.est_time_remain))),
        }
    }

    /// How much is done, in percent, when the server estimated what is left.
    pub fn percent(&self) -> Option<f64> {
        let left = self.est_bytes_remain?;
        let total = self.bytes.saturating_add(left);
        (total > 0).then(|| self.bytes as f64 * 100.0 / total as f64)
    }
}
