//! The REST view over HTTPS and its roles, driven with `curl` against the real binary: the
//! generated certificate and its fingerprint, plain HTTP refused on the TLS port and off
//! loopback, read-only and admin accounts, DMA logins kept out of REST by default.

mod common;

use common::daemon::{spawn, spawn_in, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one curl run gave: its exit code, the HTTP status (0 when there was none) and the
/// body as JSON (Null when it was not JSON).
struct Answer {
    exit: i32,
    status: u16,
    body: Value,
}

fn curl(url: &str, cacert: Option<&Path>, method: &str, auth: &str, body: Option<&str>) -> Answer {
    let mut c = Command::new("curl");
    c.args(["-s", "-g", "-X", method, "-w", "\n%{http_code}", "-u", auth]);
    c.args(["--max-time", "20"]);
    if let Some(ca) = cacert {
        c.arg("--cacert").arg(ca);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Answer {
        exit: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A config file in the daemon's directory-to-be; returns its path (kept until the test ends).
fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ndmpd.toml");
    std::fs::write(&p, text).unwrap();
    (d, p)
}

fn cert_of(d: &Daemon) -> PathBuf {
    d.dir.path().join("data/rest-cert.pem")
}

/// The fingerprint the banner printed, and whether it said "first start".
fn printed_fingerprint(d: &Daemon) -> (String, bool) {
    let line = d
        .banner
        .iter()
        .find(|l| l.contains("SHA-256 fingerprint "))
        .unwrap_or_else(|| panic!("no fingerprint in the banner: {:?}", d.banner));
    let fp = line
        .split("SHA-256 fingerprint ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_string();
    (fp, line.contains("first start"))
}

/// With `tls = true` and no certificate configured, the first start generates one into the
/// data directory (key 0600), prints its SHA-256 fingerprint (the one openssl computes), and
/// serves HTTPS that curl trusts with --cacert, under 127.0.0.1 and localhost alike. Plain
/// HTTP to that port gets no HTTP answer, curl without the CA refuses the server, and a
/// restart keeps the certificate and says so without "first start".
#[test]
fn https_with_the_generated_certificate() {
    if !common::require_tool("openssl", "openssl") {
        return;
    }
    let (_c, conf) = config("[rest]\ntls = true\n");
    let d = spawn(&["--config", conf.to_str().unwrap()]);
    let rest = d.rest.expect("the REST view listens");
    assert!(
        d.banner.iter().any(
            |l| l == &format!("ndmpd: REST view on https://{rest}/api/protocols/ndmp/sessions")
        ),
        "{:?}",
        d.banner
    );
    let cert = cert_of(&d);
    let (fp, first) = printed_fingerprint(&d);
    assert!(first, "the first start says so: {:?}", d.banner);
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(d.dir.path().join("data/rest-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs = text.trim().split('=').nth(1).unwrap().to_ascii_uppercase();
    assert_eq!(fp, theirs, "the printed fingerprint is openssl's");

    let auth = format!("ndmp:{}", d.password);
    let path = "/api/protocols/ndmp/sessions";
    for host in [
        format!("127.0.0.1:{}", rest.port()),
        format!("localhost:{}", rest.port()),
    ] {
        let a = curl(
            &format!("https://{host}{path}"),
            Some(&cert),
            "GET",
            &auth,
            None,
        );
        assert_eq!((a.exit, a.status), (0, 200), "{host}: {}", a.body);
        assert_eq!(a.body["num_records"], 0, "{}", a.body);
    }
    // without the CA, curl cannot verify the server (exit 60)
    let a = curl(&format!("https://{rest}{path}"), None, "GET", &auth, None);
    assert_eq!((a.exit, a.status), (60, 0));
    // plain HTTP on the TLS port: the handshake fails and no HTTP status comes back
    let a = curl(&format!("http://{rest}{path}"), None, "GET", &auth, None);
    assert_ne!(a.exit, 0, "plain HTTP must not be answered");
    assert_eq!(a.status, 0);

    // a restart serves the same certificate, and no longer says "first start"
    let mut d = d;
    let _ = d.child.kill();
    let _ = d.child.wait();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let again = spawn_in(dir, &["--config", conf.to_str().unwrap()]);
    let (fp2, first) = printed_fingerprint(&again);
    assert_eq!(fp2, fp);
    assert!(!first, "{:?}", again.banner);
    let rest = again.rest.unwrap();
    let a = curl(
        &format!("https://{rest}{path}"),
        Some(&cert_of(&again)),
        "GET",
        &auth,
        None,
    );
    assert_eq!((a.exit, a.status), (0, 200), "{}", a.body);
}

/// Plain HTTP is the default on loopback only: `tls = false` with a REST address that is not
/// loopback stops the start with words (exit 2), unless allow_plain_http_off_loopback says so
/// too; a certificate without its key is refused the same way.
#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |conf: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, conf).unwrap();
        Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&p)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap()
    };
    let out = run("rest_listen = \"192.0.2.1:8443\"\n[rest]\ntls = false\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rest.tls = false on 192.0.2.1:8443, which is not a loopback address")
            && err.contains("allow_plain_http_off_loopback = true"),
        "{err}"
    );
    let out = run("[rest]\ntls_cert = \"/etc/ndmpd/cert.pem\"\n");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rest.tls_cert and rest.tls_key go together"),
        "{err}"
    );
}

/// A configured certificate and key are served as they are; a key that does not parse is a
/// start-up failure that names the file.
#[test]
fn a_configured_certificate_is_served() {
    if !common::require_tool("openssl", "openssl") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let (cert, key) = (keys.path().join("c.pem"), keys.path().join("k.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = format!(
        "[rest]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (_c, conf) = config(&text);
    let d = spawn(&["--config", conf.to_str().unwrap()]);
    let rest = d.rest.unwrap();
    assert!(!cert_of(&d).exists(), "nothing generated");
    let a = curl(
        &format!("https://{rest}/api/protocols/ndmp"),
        Some(&cert),
        "GET",
        &format!("ndmp:{}", d.password),
        None,
    );
    assert_eq!((a.exit, a.status), (0, 200), "{}", a.body);
    assert_eq!(a.body["mode"], "node");

    std::fs::write(&key, "not a key\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rest-listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&conf)
        .arg("--data-dir")
        .arg(keys.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("REST key {}", key.display())),
        "{err}"
    );
}

/// Roles: a read-only account reads (200) and is refused every change with 403 and ONTAP's
/// error body (code 6), the settings left as they were; an admin account changes them; a DMA
/// login is no REST login unless `dma_users_are_admins` says so.
#[test]
fn readonly_reads_admin_writes_and_dma_logins_stay_out() {
    let pwfile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pwfile.path(), "boss-pw\n").unwrap();
    let text = format!(
        "[[auth.users]]\nname = \"dma\"\npassword = \"dma-pw\"\n\
         [rest]\ntls = true\n\
         [[rest.account]]\nname = \"viewer\"\npassword = \"view-pw\"\nrole = \"readonly\"\n\
         [[rest.account]]\nname = \"boss\"\npassword_file = \"{}\"\nrole = \"admin\"\n",
        pwfile.path().display()
    );
    let (_c, conf) = config(&text);
    let d = spawn(&["--config", conf.to_str().unwrap()]);
    let rest = d.rest.unwrap();
    let cert = cert_of(&d);
    let url = |p: &str| format!("https://{rest}{p}");
    for l in [
        "ndmpd: REST login: user viewer (readonly)",
        "ndmpd: REST login: user boss (admin)",
    ] {
        assert!(d.banner.iter().any(|b| b == l), "{l}: {:?}", d.banner);
    }

    let a = curl(
        &url("/api/protocols/ndmp/nodes?fields=*"),
        Some(&cert),
        "GET",
        "viewer:view-pw",
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let node = a.body["records"][0]["node"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.body["records"][0]["enabled"], true);

    let refused = [
        (
            "PATCH",
            format!("/api/protocols/ndmp/nodes/{node}"),
            Some(r#"{"enabled": false}"#),
        ),
        (
            "PATCH",
            "/api/protocols/ndmp".to_string(),
            Some(r#"{"mode": "svm"}"#),
        ),
        (
            "DELETE",
            format!("/api/protocols/ndmp/sessions/{node}/1"),
            None,
        ),
        (
            "POST",
            "/api/protocols/ndmp/snapshots".to_string(),
            Some(r#"{"export": "/x", "name": "n"}"#),
        ),
    ];
    for (method, path, body) in &refused {
        let a = curl(&url(path), Some(&cert), method, "viewer:view-pw", *body);
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "6", "{}", a.body);
        assert_eq!(
            a.body["error"]["message"], "not authorized for that command",
            "{}",
            a.body
        );
        assert_eq!(a.body["error"]["arguments"][0]["message"], *method);
    }
    let a = curl(
        &url("/api/protocols/ndmp/nodes?fields=enabled"),
        Some(&cert),
        "GET",
        "viewer:view-pw",
        None,
    );
    assert_eq!(
        a.body["records"][0]["enabled"], true,
        "unchanged: {}",
        a.body
    );
    let a = curl(
        &url("/api/protocols/ndmp"),
        Some(&cert),
        "GET",
        "viewer:view-pw",
        None,
    );
    assert_eq!(a.body["mode"], "node");

    // the DMA login is not a REST login by default, with the same answer as a wrong password
    let a = curl(
        &url("/api/protocols/ndmp/sessions"),
        Some(&cert),
        "GET",
        "dma:dma-pw",
        None,
    );
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "6");
    let wrong = curl(
        &url("/api/protocols/ndmp/sessions"),
        Some(&cert),
        "GET",
        "viewer:nope",
        None,
    );
    assert_eq!((wrong.status, &wrong.body), (401, &a.body));

    // the admin changes what the read-only account could not
    let a = curl(
        &url(&format!("/api/protocols/ndmp/nodes/{node}")),
        Some(&cert),
        "PATCH",
        "boss:boss-pw",
        Some(r#"{"enabled": false}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = curl(
        &url("/api/protocols/ndmp/nodes?fields=enabled"),
        Some(&cert),
        "GET",
        "viewer:view-pw",
        None,
    );
    assert_eq!(a.body["records"][0]["enabled"], false, "{}", a.body);
}

/// `dma_users_are_admins = true` makes the DMA logins REST administrators.
#[test]
fn dma_logins_are_admins_when_configured() {
    let (_c, conf) = config(
        "[[auth.users]]\nname = \"dma\"\npassword = \"dma-pw\"\n[rest]\ndma_users_are_admins = true\n",
    );
    let d = spawn(&["--config", conf.to_str().unwrap()]);
    let rest = d.rest.unwrap();
    let a = curl(
        &format!("http://{rest}/api/protocols/ndmp"),
        None,
        "PATCH",
        "dma:dma-pw",
        Some(r#"{"mode": "svm"}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = curl(
        &format!("http://{rest}/api/protocols/ndmp"),
        None,
        "GET",
        "dma:dma-pw",
        None,
    );
    assert_eq!(a.body["mode"], "svm");
}
