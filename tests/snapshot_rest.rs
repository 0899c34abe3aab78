//! Operator snapshots over REST (`/api/protocols/ndmp/snapshots`) against the real binary on a
//! btrfs loop image: taken as a job, listed, read by a backup as they are, refused while a
//! backup reads them, removed, kept across a restart; bad requests answered in words.

mod common;

use common::btrfs::{paused_backup, Btrfs};
use common::openapi::violations;
use common::rest::Answer;
use common::served::{start, Server};
use ndmpd::client::Client;
use ndmpd::wire::messages::*;
use ndmpd::wire::Request;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A config with `[[export]]` entries and a one-drive virtual library.
fn write_config(dir: &Path, exports: &[&Path]) -> PathBuf {
    let mut text = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        dir.join("data").display()
    );
    for e in exports {
        text.push_str(&format!("[[export]]\npath = \"{}\"\n", e.display()));
    }
    text.push_str(
        "[[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n",
    );
    let config = dir.join("ndmpd.toml");
    std::fs::write(&config, text).unwrap();
    config
}

impl Server {
    /// One request on its own connection, as the admin (the configured DMA user) or nobody.
    fn call_as(&self, auth: bool, method: &str, path: &str, body: Option<&str>) -> Answer {
        let who = auth.then_some(("ndmp", self.password.as_str()));
        common::rest::request(self.rest, who, method, path, body)
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.call_as(true, method, path, body)
    }

    /// POSTs a snapshot request; the answer.
    fn post(&self, export: &Path, name: &str) -> Answer {
        let body = json!({"export": export, "name": name}).to_string();
        self.call("POST", SNAPS, Some(&body))
    }

    /// Waits until the job at `href` has ended; its record.
    fn job_end(&self, href: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let a = self.call("GET", &format!("{href}?fields=*"), None);
            assert_eq!(a.status, 200, "{}", a.raw);
            if a.body["state"] != "running" || Instant::now() > deadline {
                return a.body;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The snapshot records GET lists.
    fn list(&self) -> Vec<Value> {
        let a = self.call("GET", SNAPS, None);
        assert_eq!(a.status, 200, "{}", a.raw);
        a.body["records"].as_array().cloned().unwrap_or_default()
    }

    /// An ndmjob backup (dump, LOCAL) of `tree` onto vtape0; ndmjob's output.
    fn ndmjob_backup(&self, tree: &Path) -> String {
        let agent = format!("127.0.0.1:{}/4t,ndmp,{}", self.addr.port(), self.password);
        common::ndmjob(&[
            "-c",
            "-v",
            "-D",
            &agent,
            "-B",
            "dump",
            "-f",
            "vtape0",
            "-C",
            tree.to_str().unwrap(),
        ])
    }

    /// Tape file 0 of vtape0, through `ndmpd vtape cat`.
    fn image(&self) -> Vec<u8> {
        let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("vtape")
            .arg("--config")
            .arg(&self.config)
            .args(["cat", "vtape0"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

const SNAPS: &str = "/api/protocols/ndmp/snapshots";

/// Asserts an ONTAP error body: status, code, target and words in the message.
#[track_caller]
fn assert_error(a: &Answer, status: u16, code: &str, target: &str, words: &str, arg: &str) {
    assert_eq!(a.status, status, "{}", a.raw);
    let e = &a.body["error"];
    assert_eq!(e["code"], code, "{}", a.raw);
    assert_eq!(e["target"], target, "{}", a.raw);
    assert!(e["message"].as_str().unwrap().contains(words), "{}", a.raw);
    assert_eq!(
        e["arguments"],
        json!([{"code": code, "message": arg}]),
        "{}",
        a.raw
    );
}

/// Restores `image` with the stock `restore -rf` into `dest`.
fn restore_r(dir: &Path, dest: &Path, image: &[u8]) {
    let img = dir.join("image.dump");
    std::fs::write(&img, image).unwrap();
    std::fs::create_dir(dest).unwrap();
    let out = Command::new("restore")
        .arg("-rf")
        .arg(&img)
        .current_dir(dest)
        .output()
        .expect("restore is missing: apt-get install dump");
    assert!(
        out.status.success(),
        "restore -rf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_read_only_subvolume(p: &Path) -> bool {
    let out = Command::new("btrfs")
        .args(["property", "get", "-ts"])
        .arg(p)
        .arg("ro")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "ro=true"
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_snapshot_is_taken_listed_backed_up_refused_while_read_and_removed() {
    let Some(fs) = Btrfs::make() else { return };
    std::fs::create_dir_all(fs.vol.join("data/sub")).unwrap();
    for i in 0..4u8 {
        std::fs::write(fs.vol.join(format!("data/f{i}")), vec![b'a' + i; 2 << 20]).unwrap();
    }
    std::fs::write(fs.vol.join("data/sub/note"), b"before the upgrade\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &[&fs.vol]);
    let s = start(work.path(), &config);

    let a = s.post(&fs.vol, "before-upgrade");
    assert_eq!(a.status, 202, "{}", a.raw);
    let uuid = a.body["job"]["uuid"].as_str().unwrap().to_string();
    let href = a.body["job"]["_links"]["self"]["href"].as_str().unwrap();
    assert_eq!(href, format!("/api/cluster/jobs/{uuid}"));
    let job = s.job_end(href);
    assert_eq!(job["state"], "success", "{job}");
    assert_eq!(job["message"], "success", "{job}");
    let listed = s.call("GET", "/api/cluster/jobs?fields=uuid", None);
    assert!(
        listed.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uuid"] == uuid.as_str()),
        "{}",
        listed.raw
    );

    // the live tree changes afterwards; the snapshot keeps the moment it was taken
    std::fs::write(fs.vol.join("data/sub/note"), b"after the upgrade\n").unwrap();
    let snap = fs.vol.join(".ndmpd-snap/operator/before-upgrade");
    let records = s.list();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["name"], "before-upgrade");
    assert_eq!(r["export"], fs.vol.to_str().unwrap());
    assert_eq!(r["path"], snap.to_str().unwrap());
    assert_eq!(r["held_by"], "operator");
    assert!(
        r["created"]
            .as_str()
            .is_some_and(|c| c.ends_with('Z') || c.contains('+')),
        "{r}"
    );
    assert!(
        is_read_only_subvolume(&snap),
        "{} is not read-only",
        snap.display()
    );
    let e = std::fs::write(snap.join("data/new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert_eq!(
        std::fs::read(snap.join("data/sub/note")).unwrap(),
        b"before the upgrade\n"
    );

    // a backup of a path inside it reads it as it is: no second snapshot
    let text = s.ndmjob_backup(&snap.join("data"));
    assert!(text.contains("Operation ended OKAY"), "{text}");
    assert!(text.contains("read as it is"), "{text}");
    let dest = work.path().join("restored");
    restore_r(work.path(), &dest, &s.image());
    assert_eq!(
        std::fs::read(dest.join("sub/note")).unwrap(),
        b"before the upgrade\n"
    );
    for i in 0..4u8 {
        assert_eq!(
            std::fs::read(dest.join(format!("f{i}"))).unwrap(),
            vec![b'a' + i; 2 << 20]
        );
    }

    // while a backup reads it: DELETE is 409, and GET shows the backup's own snapshot apart
    let mut c = Client::connect(s.addr).await.unwrap();
    c.auth_md5("ndmp", s.password.as_bytes()).await.unwrap();
    paused_backup(&mut c, &snap.join("data")).await;
    let a = s.call("DELETE", &format!("{SNAPS}/before-upgrade"), None);
    assert_error(
        &a,
        409,
        "1",
        "name",
        "is being read by a backup",
        "before-upgrade",
    );
    assert!(snap.exists());
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut a = s.call("DELETE", &format!("{SNAPS}/before-upgrade"), None);
    while a.status == 409 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        a = s.call("DELETE", &format!("{SNAPS}/before-upgrade"), None);
    }
    assert_eq!(a.status, 200, "{}", a.raw);
    assert!(!snap.exists());
    assert_eq!(s.list(), Vec::<Value>::new());
    assert!(s.log_text().contains("operator snapshot"));
    let a = s.call("DELETE", &format!("{SNAPS}/before-upgrade"), None);
    assert_error(&a, 404, "4", "name", "no snapshot named", "before-upgrade");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_holds_its_own_snapshot_which_get_shows_and_delete_refuses() {
    let Some(fs) = Btrfs::make() else { return };
    std::fs::create_dir_all(fs.vol.join("data")).unwrap();
    for i in 0..4u8 {
        std::fs::write(fs.vol.join(format!("data/f{i}")), vec![i; 2 << 20]).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let s = start(work.path(), &write_config(work.path(), &[&fs.vol]));
    let mut c = Client::connect(s.addr).await.unwrap();
    c.auth_md5("ndmp", s.password.as_bytes()).await.unwrap();
    paused_backup(&mut c, &fs.vol).await;
    let records = s.list();
    assert_eq!(records.len(), 1, "{records:?}");
    let name = records[0]["name"].as_str().unwrap().to_string();
    let session = name.split('-').next().unwrap();
    assert_eq!(records[0]["held_by"], format!("backup {session}"));
    assert_eq!(records[0]["export"], fs.vol.to_str().unwrap());
    let a = s.call("DELETE", &format!("{SNAPS}/{name}"), None);
    assert_error(&a, 409, "1", "name", "not by the operator", &name);
    // the REST session shows the snapshot its backup reads
    let a = s.call(
        "GET",
        "/api/protocols/ndmp/sessions?fields=data.snapshot,data_path",
        None,
    );
    assert_eq!(a.status, 200, "{}", a.raw);
    let recs = a.body["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{}", a.raw);
    assert_eq!(recs[0]["data_path"], fs.vol.to_str().unwrap());
    assert_eq!(
        recs[0]["data"]["snapshot"],
        fs.vol.join(".ndmpd-snap").join(&name).to_str().unwrap()
    );
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
}

#[test]
fn bad_requests_are_refused_in_words_and_snapshots_outlive_a_restart() {
    let Some(fs) = Btrfs::make() else { return };
    std::fs::write(fs.vol.join("file"), b"kept\n").unwrap();
    let plain = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &[&fs.vol, plain.path()]);
    let s = start(work.path(), &config);

    for bad in ["a/b", "", "..", "sp ace", &"x".repeat(65)] {
        let a = s.post(&fs.vol, bad);
        assert_error(&a, 400, "262197", "name", "letters, digits", bad);
    }
    let a = s.post(Path::new("/nowhere/at/all"), "n1");
    assert_error(
        &a,
        400,
        "262197",
        "export",
        "is not a configured export",
        "/nowhere/at/all",
    );
    let a = s.post(plain.path(), "n1");
    assert_error(
        &a,
        409,
        "1",
        "export",
        "cannot have snapshots",
        plain.path().to_str().unwrap(),
    );
    let a = s.call("POST", SNAPS, Some("{\"export\": 3}"));
    assert_eq!(a.status, 400, "{}", a.raw);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("must be a string"));
    let a = s.call("POST", SNAPS, Some("not json"));
    assert_eq!(a.status, 400, "{}", a.raw);
    // only the admin (an authenticated DMA user) may take or remove one
    let a = s.call_as(false, "POST", SNAPS, Some("{}"));
    assert_eq!(a.status, 401, "{}", a.raw);
    let a = s.call_as(false, "DELETE", &format!("{SNAPS}/x"), None);
    assert_eq!(a.status, 401, "{}", a.raw);

    let a = s.post(&fs.vol, "keep.me_1");
    assert_eq!(a.status, 202, "{}", a.raw);
    let job = s.job_end(a.body["job"]["_links"]["self"]["href"].as_str().unwrap());
    assert_eq!(job["state"], "success", "{job}");
    let a = s.post(&fs.vol, "keep.me_1");
    assert_error(&a, 409, "1", "name", "already exists", "keep.me_1");
    let a = s.call("DELETE", &format!("{SNAPS}/unknown"), None);
    assert_error(&a, 404, "4", "name", "no snapshot named", "unknown");

    // every answer conforms to openapi.json
    let doc = s.call("GET", "/api/openapi.json", None).body;
    let mut bad = Vec::new();
    let schema = |n: &str| json!({"$ref": format!("#/components/schemas/{n}")});
    violations(
        &s.call("GET", SNAPS, None).body,
        &schema("ndmp_snapshot_response"),
        &doc,
        "list",
        &mut bad,
    );
    violations(
        &s.post(&fs.vol, "a/b").body,
        &schema("error_response"),
        &doc,
        "400",
        &mut bad,
    );
    violations(
        &s.post(&fs.vol, "other").body,
        &schema("job_link"),
        &doc,
        "202",
        &mut bad,
    );
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(doc["paths"][SNAPS]["post"]["responses"]["202"].is_object());
    assert!(doc["paths"][format!("{SNAPS}/{{name}}")]["delete"].is_object());

    // a restart keeps operator snapshots and finds them again
    let wait_two = Instant::now() + Duration::from_secs(60);
    while s.list().len() < 2 && Instant::now() < wait_two {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let s = start(work.path(), &config);
    let names: Vec<String> = s
        .list()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["name"].as_str().unwrap(),
                r["held_by"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["keep.me_1 operator", "other operator"]);
    // the start-up cleanup neither removes them nor mistakes their directory for a stray
    let log = s.log_text();
    assert!(!log.contains("removed leftover snapshot"), "{log}");
    assert!(!log.contains("not a snapshot, left alone"), "{log}");
    assert_eq!(
        std::fs::read(fs.vol.join(".ndmpd-snap/operator/keep.me_1/file")).unwrap(),
        b"kept\n"
    );
    for n in ["keep.me_1", "other"] {
        let a = s.call("DELETE", &format!("{SNAPS}/{n}"), None);
        assert_eq!(a.status, 200, "{}", a.raw);
    }
    assert_eq!(s.list(), Vec::<Value>::new());
}
