//! Who may call the REST view and with which role: `[[rest.account]]` entries, the DMA logins
//! when `[rest] dma_users_are_admins` says so, and the first-start login of a bare `ndmpd serve`.

use crate::config::{Config, Credentials, RestRole};
use crate::settings::Settings;
use std::sync::Arc;

/// The REST logins, checked on every request.
pub struct Accounts {
    /// Configured accounts, and the first-start login when it stands in for them.
    fixed: Vec<(Credentials, RestRole)>,
    /// The DMA logins, when they are REST administrators too.
    dma: Option<Vec<Credentials>>,
    /// Where a DMA login added at run time lives (read per request).
    settings: Arc<Settings>,
}

impl Accounts {
    /// The accounts of `config`. `dma_users` are the DMA logins. Without any
    /// `[[rest.account]]` and without configured DMA users, the login ndmpd generated on first
    /// start (user `ndmp`, password in `DATA_DIR/password`) is an administrator, so a bare
    /// `ndmpd serve` can be used at once.
    pub fn new(
        config: &Config,
        dma_users: &[Credentials],
        settings: Arc<Settings>,
    ) -> Result<Accounts, String> {
        let mut fixed = config.rest.load_accounts().map_err(|e| e.to_string())?;
        if fixed.is_empty() && config.auth.users.is_empty() {
            let file = config.data_dir.join("password");
            if let Ok(pw) = crate::config::read_password_file(&file) {
                // only when the DMA login really is that generated one (not --user ndmp)
                if dma_users
                    .iter()
                    .any(|u| u.name == crate::config::DEFAULT_USER && u.password == pw)
                {
                    let c = Credentials {
                        name: crate::config::DEFAULT_USER.into(),
                        password: pw,
                    };
                    fixed.push((c, RestRole::Admin));
                }
            }
        }
        let dma = config.rest.dma_users_are_admins.then(|| dma_users.to_vec());
        Ok(Accounts {
            fixed,
            dma,
            settings,
        })
    }

    /// Accounts for a router built without a server (benches): the given logins as
    /// administrators.
    pub fn admins(users: Vec<Credentials>) -> Accounts {
        Accounts {
            fixed: users.into_iter().map(|u| (u, RestRole::Admin)).collect(),
            dma: None,
            settings: Arc::new(Settings::in_memory()),
        }
    }

    /// What the banner says about who may log in.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fixed
            .iter()
            .map(|(c, r)| format!("REST login: user {} ({})", c.name, role_name(*r)))
            .collect();
        if self.dma.is_some() {
            out.push("REST login: every DMA login (admin: dma_users_are_admins)".into());
        }
        if out.is_empty() {
            out.push(
                "REST view: no account can log in; add [[rest.account]] name, password_file, \
                 role to the config"
                    .into(),
            );
        }
        out
    }

    /// The role of `user` with `password`, or None. Every account is compared in full, so
    /// the time taken does not tell which names exist.
    pub fn check(&self, user: &[u8], password: &[u8]) -> Option<RestRole> {
        let ct = crate::auth::ct_eq;
        let mut found: Option<RestRole> = None;
        let mut consider = |c: &Credentials, role: RestRole| {
            let ok = ct(c.name.as_bytes(), user) & ct(&c.password, password);
            if ok && !c.password.is_empty() && found != Some(RestRole::Admin) {
                found = Some(role);
            }
        };
        for (c, r) in &self.fixed {
            consider(c, *r);
        }
        if let Some(dma) = &self.dma {
            for c in self.settings.logins(dma) {
                consider(&c, RestRole::Admin);
            }
        }
        found
    }
}

/// The role as the config spells it.
pub fn role_name(r: RestRole) -> &'static str {
    match r {
        RestRole::Admin => "admin",
        RestRole::Readonly => "readonly",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(n: &str, p: &str) -> Credentials {
        Credentials {
            name: n.into(),
            password: p.as_bytes().to_vec(),
        }
    }

    #[test]
    fn roles_and_the_dma_switch() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::parse(
            "[[rest.account]]\nname = \"ro\"\npassword = \"a\"\nrole = \"readonly\"\n\
             [[rest.account]]\nname = \"op\"\npassword = \"b\"\nrole = \"admin\"\n",
        )
        .unwrap();
        cfg.data_dir = dir.path().to_owned();
        let settings = Arc::new(Settings::in_memory());
        let dma = [cred("bob", "c")];
        let a = Accounts::new(&cfg, &dma, settings.clone()).unwrap();
        assert_eq!(a.check(b"ro", b"a"), Some(RestRole::Readonly));
        assert_eq!(a.check(b"op", b"b"), Some(RestRole::Admin));
        assert_eq!(a.check(b"op", b"a"), None);
        assert_eq!(
            a.check(b"bob", b"c"),
            None,
            "DMA logins are not REST logins"
        );
        cfg.rest.dma_users_are_admins = true;
        let a = Accounts::new(&cfg, &dma, settings).unwrap();
        assert_eq!(a.check(b"bob", b"c"), Some(RestRole::Admin));
    }

    #[test]
    fn the_generated_login_stands_in_only_when_nothing_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let (pw, _) = crate::config::first_start_password(dir.path()).unwrap();
        let pws = String::from_utf8(pw.clone()).unwrap();
        let settings = Arc::new(Settings::in_memory());
        let generated = [cred("ndmp", &pws)];
        let a = Accounts::new(&cfg, &generated, settings.clone()).unwrap();
        assert_eq!(a.check(b"ndmp", &pw), Some(RestRole::Admin));
        // `--user ndmp` with another password is a DMA login, not the generated one
        let a = Accounts::new(&cfg, &[cred("ndmp", "other")], settings).unwrap();
        assert_eq!(a.check(b"ndmp", &pw), None);
        assert_eq!(a.check(b"ndmp", b"other"), None);
    }
}
