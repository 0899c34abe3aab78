//! What every DMA job starts from and reports with: the authentication method, a logged-in
//! control connection, and the progress figures handed to a job's progress callback.

use super::connection::{Client, ClientError};
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
    let mut c = Client::connect(addr).await?;
    c.open(4).await?;
    match auth {
        AuthMethod::Text => c.auth_text(user, password).await?,
        AuthMethod::Md5 => c.auth_md5(user, password).await?,
        AuthMethod::None => c.auth_none().await?,
    }
    Ok(c)
}

/// Where a backup, restore or list is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// What the DATA server has processed so far (DATA_GET_STATE bytes_processed).
    pub bytes: u64,
    /// Time since the job was started.
    pub elapsed: Duration,
}
