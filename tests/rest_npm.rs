//! The npm.backup 2.0 resources (`/api/npm.backup/2.0/…`) against the real binary: every
//! answer checked against /api/openapi.json, bad input refused in words, a schedule created
//! over REST run now against a second ndmpd, its backup listed with its contents, and
//! restored (whole and one path) through `POST …/restore` as a job, byte for byte.

mod common;
use common::tree::assert_only_file;

use common::daemon::spawn;
use common::openapi::violations;
use common::rest::Answer;
use common::served::{base64, start, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const P: &str = "/api/npm.backup/2.0";
const ADMIN: (&str, &str) = ("boss", "boss-pw");
const VIEWER: (&str, &str) = ("viewer", "view-pw");
/// The NDMP login of the scheduling ndmpd (its tape server), written before it starts.
const DMA_PW: &str = "dma-pw";

/// A config with a one-drive virtual library, two REST accounts and a scheduler that logs in
/// to this ndmpd's tape server as `ndmp` with [`DMA_PW`].
fn write_config(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // the generated login's password file, written first: the DMA login is ndmp/DMA_PW
    std::fs::write(data.join("password"), format!("{DMA_PW}\n")).unwrap();
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [[export]]\npath = \"{}\"\n\
         [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n\
         [[rest.account]]\nname = \"{}\"\npassword = \"{}\"\nrole = \"admin\"\n\
         [[rest.account]]\nname = \"{}\"\npassword = \"{}\"\nrole = \"readonly\"\n\
         [scheduler]\nenabled = true\nuser = \"ndmp\"\npassword_file = \"{}\"\n\
         drive = \"vtape0\"\nchanger = \"changer0\"\n",
        data.display(),
        dir.display(),
        ADMIN.0,
        ADMIN.1,
        VIEWER.0,
        VIEWER.1,
        data.join("password").display(),
    );
    let config = dir.join("ndmpd.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// Where a REST view listens.
trait Rest {
    fn rest(&self) -> SocketAddr;
}

impl Rest for Server {
    fn rest(&self) -> SocketAddr {
        self.rest
    }
}

/// One request on its own connection as `who` (user, password).
fn call_as(
    s: &impl Rest,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    common::rest::call_as(s.rest(), who, method, path, body)
}

fn call(s: &impl Rest, method: &str, path: &str, body: Option<&Value>) -> Answer {
    call_as(s, ADMIN, method, path, body)
}

/// Checks `v` against the document's schema `name`; panics naming every violation.
fn conforms(doc: &Value, name: &str, v: &Value) {
    let mut out = Vec::new();
    let schema = json!({"$ref": format!("#/components/schemas/{name}")});
    violations(v, &schema, doc, name, &mut out);
    assert!(out.is_empty(), "{name} breaks openapi.json: {out:?}\n{v:#}");
}

/// GETs `path` (200 expected) and checks it against `schema`; the body.
fn get_ok(s: &impl Rest, doc: &Value, path: &str, schema: &str) -> Value {
    let a = call(s, "GET", path, None);
    assert_eq!(a.status, 200, "GET {path}: {}", a.raw);
    conforms(doc, schema, &a.body);
    a.body
}

/// Asserts a refusal: the status, and an ONTAP error body whose message holds `words`.
fn refused(a: &Answer, status: u16, words: &str) {
    assert_eq!(a.status, status, "{}", a.raw);
    let m = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains(words),
        "expected \"{words}\" in \"{m}\": {}",
        a.raw
    );
    assert!(a.body["error"]["code"].is_string(), "{}", a.raw);
}

/// Waits for the job a 202 linked to end; its record.
fn job_end(s: &impl Rest, link: &Value) -> Value {
    common::rest::job_end(s.rest(), ADMIN, link, Duration::from_secs(120))
}

/// The job `uuid` as `/api/cluster/jobs` lists it.
fn listed_job(s: &impl Rest, uuid: &str) -> Value {
    let a = call(s, "GET", "/api/cluster/jobs?fields=*", None);
    assert_eq!(a.status, 200, "{}", a.raw);
    a.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["uuid"] == uuid)
        .cloned()
        .unwrap_or_else(|| panic!("job {uuid} is not in /api/cluster/jobs: {}", a.raw))
}

fn openapi(s: &impl Rest) -> Value {
    let a = call(s, "GET", "/api/openapi.json", None);
    assert_eq!(a.status, 200);
    a.body
}

/// The REST view in this process over a catalog holding a config-defined server and schedule
/// (as the scheduler copies them at start-up), with the two REST accounts; no scheduler.
struct InProcess {
    rest: SocketAddr,
    registry: Arc<ndmpd::registry::Registry>,
    catalog: PathBuf,
    /// The config-defined server's id.
    server_id: i64,
    stop: tokio_util::sync::CancellationToken,
    _rt: tokio::runtime::Runtime,
}

impl Rest for InProcess {
    fn rest(&self) -> SocketAddr {
        self.rest
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const FILER_PORT: u16 = 10999;
const FILER_PW: &str = "filer-pw";

fn in_process(dir: &Path) -> InProcess {
    use ndmpd::catalog::{Catalog, NewSchedule, NewServer};
    use ndmpd::config::{Config, RestAccount, RestRole};
    let data = dir.join("data");
    let catalog = data.join("catalog.db");
    let c = Catalog::open(&catalog).unwrap();
    let pw = dir.join("filer.pw");
    std::fs::write(&pw, format!("{FILER_PW}\n")).unwrap();
    let server_id = c
        .insert_server(&NewServer {
            name: "cfg-filer".into(),
            description: "from the config".into(),
            host: "127.0.0.1".into(),
            port: FILER_PORT,
            path: dir.display().to_string(),
            user: "ndmp".into(),
            password_file: Some(pw),
            butype: "dump".into(),
            source: "config".into(),
        })
        .unwrap();
    c.insert_schedule(&NewSchedule {
        name: "cfg-nightly".into(),
        description: String::new(),
        active: true,
        server_id,
        rrule: "FREQ=DAILY;BYHOUR=1;BYMINUTE=0".into(),
        retention: 3,
        retry_attempts: 0,
        retry_delay_secs: 0,
        level: 0,
        source: "config".into(),
    })
    .unwrap();
    drop(c);
    let mut cfg = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    for (who, role) in [(ADMIN, RestRole::Admin), (VIEWER, RestRole::Readonly)] {
        cfg.rest.accounts.push(RestAccount {
            name: who.0.into(),
            password: Some(who.1.into()),
            password_file: None,
            role,
        });
    }
    let settings = Arc::new(ndmpd::settings::Settings::in_memory());
    let identity = ndmpd::rest::Identity::load(&data, "npm-test", None);
    let npm = ndmpd::rest::npm::Npm::new(catalog.clone(), &data, None, identity.node_uuid.clone());
    let registry = Arc::new(ndmpd::registry::Registry::new());
    let state = Arc::new(ndmpd::rest::RestState {
        registry: registry.clone(),
        accounts: ndmpd::rest::accounts::Accounts::new(&cfg, &[], settings.clone()).unwrap(),
        identity,
        throttle: Default::default(),
        settings,
        auth_methods: Vec::new(),
        library: None,
        catalog: None,
        npm: Some(Arc::new(npm)),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let rest = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(ndmpd::rest::serve(l, state, stop.clone()));
        addr
    });
    InProcess {
        rest,
        registry,
        catalog,
        server_id,
        stop,
        _rt: rt,
    }
}

/// Servers and schedules: CRUD with their answers checked against openapi.json, bad input
/// refused with 400 and the words, config-defined entries 409 on change, a readonly account
/// 403 on every change, the password never returned and kept in a 0600 file.
#[test]
fn servers_and_schedules_crud_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = in_process(dir.path());
    let doc = openapi(&s);
    for p in ["servers", "scheduled_backups", "device_status", "files"] {
        assert!(
            doc["paths"][format!("{P}/{p}")].is_object(),
            "{p} not in openapi.json"
        );
    }

    // the config-defined server and schedule are there, and are not REST's to change
    let list = get_ok(&s, &doc, &format!("{P}/servers"), "npm_servers");
    let cfg = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "cfg-filer")
        .cloned()
        .unwrap_or_else(|| panic!("no cfg-filer in {list}"));
    assert_eq!(cfg["source"], "config");
    assert_eq!(cfg["port"], FILER_PORT);
    let cfg_id = cfg["id"].as_i64().unwrap();
    let a = call(
        &s,
        "PATCH",
        &format!("{P}/servers/items/{cfg_id}"),
        Some(&json!({"desc": "x"})),
    );
    refused(&a, 409, "defined in the config file");
    let a = call(&s, "DELETE", &format!("{P}/servers/items/{cfg_id}"), None);
    refused(&a, 409, "defined in the config file");
    let scheds = get_ok(
        &s,
        &doc,
        &format!("{P}/scheduled_backups"),
        "npm_scheduled_backups",
    );
    let nightly = scheds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "cfg-nightly")
        .cloned()
        .unwrap_or_else(|| panic!("no cfg-nightly in {scheds}"));
    assert_eq!(nightly["rrule"]["freq"], "DAILY");
    assert_eq!(nightly["rrule"]["byhour"], json!([1]));
    assert_eq!(nightly["server_id"], cfg_id);
    let nid = nightly["id"].as_str().unwrap();
    let a = call(
        &s,
        "DELETE",
        &format!("{P}/scheduled_backups/items/{nid}"),
        None,
    );
    refused(&a, 409, "defined in the config file");

    // servers: bad input in words
    let good = json!({"name": "filer2", "desc": "the second", "host": "127.0.0.1",
                      "port": FILER_PORT, "path": dir.path(), "user": "ndmp",
                      "password": FILER_PW});
    let servers = format!("{P}/servers");
    for (change, words) in [
        (json!({"port": 0}), "port 0 is out of range 1-65535"),
        (json!({"port": "ten"}), "port must be an integer"),
        (json!({"path": "relative/dir"}), "must be absolute"),
        (
            json!({"butype": "cpio"}),
            "butype \"cpio\" must be dump or tar",
        ),
        (json!({"host": ""}), "is not a host name"),
        (
            json!({"name": "cfg-filer"}),
            "a backup server named \"cfg-filer\" exists",
        ),
        (
            json!({"password_file": "/nonexistent/pw"}),
            "cannot be read",
        ),
    ] {
        let mut body = good.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        if body.get("password_file").is_some() {
            body.as_object_mut().unwrap().remove("password");
        }
        let a = call(&s, "POST", &servers, Some(&body));
        let status = if words.contains("exists") { 409 } else { 400 };
        refused(&a, status, words);
    }
    let mut no_host = good.clone();
    no_host.as_object_mut().unwrap().remove("host");
    refused(
        &call(&s, "POST", &servers, Some(&no_host)),
        400,
        "host is required",
    );
    refused(
        &call(
            &s,
            "POST",
            &servers,
            Some(&json!({"name": "x", "colour": 1})),
        ),
        400,
        "Unexpected argument \"colour\"",
    );
    refused(
        &call_as(&s, VIEWER, "POST", &servers, Some(&good)),
        403,
        "not authorized",
    );

    // a good one: 201, the password never comes back and sits in a 0600 file
    let a = call(&s, "POST", &servers, Some(&good));
    assert_eq!(a.status, 201, "{}", a.raw);
    conforms(&doc, "npm_server", &a.body);
    assert!(
        !a.raw.contains(FILER_PW),
        "the password came back: {}",
        a.raw
    );
    assert!(a.body.get("password").is_none());
    assert_eq!(a.body["source"], "rest");
    let id = a.body["id"].as_i64().unwrap();
    let pwfile = PathBuf::from(a.body["password_file"].as_str().unwrap());
    assert!(
        pwfile.starts_with(dir.path().join("data")),
        "{}",
        pwfile.display()
    );
    let mode = std::fs::metadata(&pwfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", pwfile.display());
    assert_eq!(std::fs::read_to_string(&pwfile).unwrap().trim(), FILER_PW);
    let item = format!("{P}/servers/items/{id}");
    let got = get_ok(&s, &doc, &item, "npm_server");
    assert_eq!(
        (got["name"].clone(), got["desc"].clone()),
        (json!("filer2"), json!("the second"))
    );
    let viewed = call_as(&s, VIEWER, "GET", &item, None);
    assert_eq!(viewed.status, 200, "{}", viewed.raw);
    refused(
        &call_as(&s, VIEWER, "PATCH", &item, Some(&json!({"desc": "y"}))),
        403,
        "not authorized",
    );
    refused(
        &call_as(&s, VIEWER, "DELETE", &item, None),
        403,
        "not authorized",
    );
    let a = call(
        &s,
        "PATCH",
        &item,
        Some(&json!({"desc": "changed", "butype": "tar"})),
    );
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(
        (a.body["desc"].clone(), a.body["butype"].clone()),
        (json!("changed"), json!("tar"))
    );
    refused(
        &call(&s, "PATCH", &item, Some(&json!({"port": 70000}))),
        400,
        "port 70000 is out of range",
    );
    refused(
        &call(&s, "GET", &format!("{P}/servers/items/999"), None),
        404,
        "does not exist",
    );
    refused(
        &call(&s, "GET", &format!("{P}/servers/items/abc"), None),
        400,
        "not a positive integer",
    );

    // schedules: the rule checked by the scheduler's parser, the range checks, the server
    let schedules = format!("{P}/scheduled_backups");
    let sgood = json!({"name": "hourly", "desc": "every hour", "active": true, "retention": 2,
                       "retry_attempts": 1, "retry_delay": 5, "server_id": id,
                       "rrule": {"freq": "HOURLY", "byminute": [15]},
                       "contents": {"config_only": false}});
    for (change, status, words) in [
        (
            json!({"retention": 0}),
            400,
            "retention 0 is out of range 1-9999",
        ),
        (
            json!({"retention": 10000}),
            400,
            "retention 10000 is out of range 1-9999",
        ),
        (
            json!({"retry_attempts": -1}),
            400,
            "retry_attempts -1 is out of range 0-9999",
        ),
        (
            json!({"server_id": 999}),
            400,
            "server_id 999: no backup server has that id",
        ),
        (json!({"rrule": "FREQ=FORTNIGHTLY"}), 400, "rrule: "),
        (
            json!({"rrule": {"freq": "DAILY", "byhour": [25]}}),
            400,
            "byhour",
        ),
        (json!({"rrule": {"interval": 2}}), 400, "freq"),
        (
            json!({"rrule": 7}),
            400,
            "rrule must be a recurrence_rule object or RFC 5545 text",
        ),
        (
            json!({"contents": {"config_only": true}}),
            400,
            "config_only must be false",
        ),
    ] {
        let mut body = sgood.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        refused(&call(&s, "POST", &schedules, Some(&body)), status, words);
    }
    refused(
        &call_as(&s, VIEWER, "POST", &schedules, Some(&sgood)),
        403,
        "not authorized",
    );
    let a = call(&s, "POST", &schedules, Some(&sgood));
    assert_eq!(a.status, 201, "{}", a.raw);
    conforms(&doc, "npm_scheduled_backup", &a.body);
    assert_eq!(a.body["rrule"], json!({"freq": "HOURLY", "byminute": [15]}));
    assert_eq!(
        (a.body["retry_delay"].clone(), a.body["retention"].clone()),
        (json!(5), json!(2))
    );
    assert_eq!(a.body["contents"]["modules"][0]["module"], "tar");
    let sid = a.body["id"].as_str().unwrap().to_string();
    let sitem = format!("{schedules}/items/{sid}");
    let got = get_ok(&s, &doc, &sitem, "npm_scheduled_backup");
    assert_eq!(got["name"], "hourly");
    // RFC 5545 text is taken too, and PATCH changes only what it names
    let a = call(
        &s,
        "PATCH",
        &sitem,
        Some(&json!({"rrule": "FREQ=WEEKLY;BYDAY=MO,FR", "retention": 7})),
    );
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(
        a.body["rrule"],
        json!({"freq": "WEEKLY", "byday": ["MO", "FR"]})
    );
    assert_eq!(
        (a.body["retention"].clone(), a.body["name"].clone()),
        (json!(7), json!("hourly"))
    );
    refused(
        &call(&s, "PATCH", &sitem, Some(&json!({"retention": 0}))),
        400,
        "retention 0 is out of range",
    );
    refused(
        &call(&s, "PATCH", &sitem, Some(&json!({"server_id": 4242}))),
        400,
        "server_id 4242",
    );
    // a server a schedule uses stays
    refused(
        &call(&s, "DELETE", &item, None),
        409,
        "is used by scheduled backup \"hourly\"",
    );
    let a = call(&s, "DELETE", &sitem, None);
    assert_eq!(a.status, 200, "{}", a.raw);
    refused(&call(&s, "GET", &sitem, None), 404, "does not exist");
    let a = call(&s, "DELETE", &item, None);
    assert_eq!(a.status, 200, "{}", a.raw);
    assert!(!pwfile.exists(), "the password file stayed after DELETE");
    refused(&call(&s, "GET", &item, None), 404, "does not exist");

    // the rest of the resources answer in their documented shapes
    let ds = get_ok(&s, &doc, &format!("{P}/device_status"), "device_status");
    let names: Vec<&str> = ds["available_backup_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["short_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dump", "tar"]);
    assert!(ds["system_id"].as_str().is_some_and(|x| !x.is_empty()));
    let b = get_ok(
        &s,
        &doc,
        &format!("{P}/backups/server/{cfg_id}"),
        "npm_backups",
    );
    assert_eq!(b, json!({"server_id": cfg_id, "completed": []}));
    refused(
        &call(&s, "GET", &format!("{P}/backups/server/999"), None),
        404,
        "does not exist",
    );
    refused(
        &call(&s, "GET", &format!("{P}/files"), None),
        400,
        "name (a part of a file name) is required",
    );
    refused(
        &call(&s, "GET", &format!("{P}/files?name=a&limit=x"), None),
        400,
        "limit \"x\" must be an integer",
    );
    let f = get_ok(&s, &doc, &format!("{P}/files?name=zzz"), "npm_files");
    assert_eq!(f["items"], json!([]));
    let missing =
        format!("{P}/completed_backups/server/{cfg_id}/items/0a0a0a0a-0000-4000-8000-000000000000");
    refused(&call(&s, "GET", &missing, None), 404, "does not exist");
    refused(
        &call(
            &s,
            "POST",
            &format!("{missing}/restore"),
            Some(&json!({"destination": "/tmp/x"})),
        ),
        404,
        "does not exist",
    );
}

/// Completed backups as the scheduler records them (catalog rows with file history): listed
/// per server, one by id, its contents filtered by glob and prefix and paged, found by the
/// file search, named by device_status with the running job's progress, expired by DELETE;
/// a restore without a scheduler is a 503 in words.
#[test]
fn completed_backups_contents_search_status_and_expire() {
    use ndmpd::catalog::{Catalog, FileEntry, MediaPart, NewBackup, Outcome, Status};
    let dir = tempfile::tempdir().unwrap();
    let s = in_process(dir.path());
    let doc = openapi(&s);
    let mut c = Catalog::open(&s.catalog).unwrap();
    let schedule = c.schedules().unwrap()[0].id.clone();
    let mut record = |started: u64, status: Status, files: &[(&str, &str, u64)]| {
        let id = c
            .insert(&NewBackup {
                server: format!("127.0.0.1:{FILER_PORT}"),
                tape_server: Some("127.0.0.1:10000".into()),
                path: "/srv/data".into(),
                drive: "vtape0".into(),
                level: 0,
                butype: "dump".into(),
                record_size: 65536,
                started,
                schedule_id: Some(schedule.clone()),
                server_id: Some(s.server_id),
                name: format!("cfg-nightly {started}"),
                description: "nightly".into(),
                hostname: "filer1".into(),
            })
            .unwrap();
        let entries: Vec<FileEntry> = files
            .iter()
            .map(|(p, k, size)| FileEntry {
                path: (*p).into(),
                kind: (*k).into(),
                size: *size,
                mtime: started - 100,
                fh_info: None,
            })
            .collect();
        c.add_files(id, &entries).unwrap();
        c.finish(
            id,
            &Outcome {
                status,
                complete: status == Status::Completed,
                bytes: 123_456,
                dump_date: Some(started.to_string()),
                message: (status == Status::Failed).then(|| "the filer went away".into()),
                ended: started + 5,
                media: vec![MediaPart {
                    cartridge: Some("VT0001".into()),
                    file: 0,
                    offset: 0,
                }],
            },
        )
        .unwrap();
        c.get(id).unwrap().unwrap().uuid
    };
    let first = record(
        1_000_000,
        Status::Completed,
        &[
            ("/etc", "dir", 0),
            ("/etc/hosts", "file", 120),
            ("/etc/ssh/sshd_config", "file", 3000),
            ("/home/ann/notes.txt", "file", 42),
        ],
    );
    let second = record(2_000_000, Status::Failed, &[("/etc/motd", "file", 7)]);
    drop(c);

    let list = get_ok(
        &s,
        &doc,
        &format!("{P}/backups/server/{}", s.server_id),
        "npm_backups",
    );
    let done = list["completed"].as_array().unwrap();
    let ids: Vec<&str> = done.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "{list:#}");
    assert_eq!(done[0]["status"], "completed");
    assert_eq!(done[1]["status"], "failed");
    assert_eq!(done[1]["message"], "the filer went away");
    let item = format!("{P}/completed_backups/server/{}/items/{first}", s.server_id);
    let b = get_ok(&s, &doc, &item, "completed_backup");
    assert_eq!(
        (
            b["sid"].clone(),
            b["size"].clone(),
            b["created_on"].clone(),
            b["files"].clone()
        ),
        (json!(schedule), json!(123_456), json!(1_000_000), json!(4))
    );
    assert_eq!(
        b["media"],
        json!([{"cartridge": "VT0001", "file": 0, "offset": 0}])
    );
    assert_eq!(b["hostname"], "filer1");
    assert_eq!(b["contents"]["modules"][0]["module"], "dump");
    // the backup of another server is not found under this one
    refused(
        &call(
            &s,
            "GET",
            &format!("{P}/completed_backups/server/999/items/{first}"),
            None,
        ),
        404,
        "does not exist",
    );

    let paths = |q: &str| -> Vec<String> {
        let v = get_ok(&s, &doc, &format!("{item}/contents{q}"), "npm_contents");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        paths(""),
        [
            "/etc",
            "/etc/hosts",
            "/etc/ssh/sshd_config",
            "/home/ann/notes.txt"
        ]
    );
    assert_eq!(
        paths("?path=/etc"),
        ["/etc", "/etc/hosts", "/etc/ssh/sshd_config"]
    );
    assert_eq!(paths("?path=*.txt"), ["/home/ann/notes.txt"]);
    assert_eq!(
        paths("?path=/etc/*&limit=1&offset=1"),
        ["/etc/ssh/sshd_config"]
    );
    refused(
        &call(&s, "GET", &format!("{item}/contents?limit=-1"), None),
        400,
        "limit \"-1\" must be an integer",
    );
    refused(
        &call(&s, "GET", &format!("{item}/contents?depth=2"), None),
        400,
        "Unexpected argument \"depth\"",
    );

    let found = get_ok(&s, &doc, &format!("{P}/files?name=HOSTS"), "npm_files");
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found:#}");
    let hit = &found["items"][0];
    assert_eq!(
        (
            hit["backup_id"].clone(),
            hit["server_id"].clone(),
            hit["path"].clone(),
            hit["size"].clone(),
            hit["mtime"].clone()
        ),
        (
            json!(first),
            json!(s.server_id),
            json!("/etc/hosts"),
            json!(120),
            json!(999_900)
        )
    );
    let found = get_ok(
        &s,
        &doc,
        &format!("{P}/files?name=etc&limit=2"),
        "npm_files",
    );
    assert_eq!(found["items"].as_array().unwrap().len(), 2, "{found:#}");

    // device_status: the latest backup from the catalog, the running job's byte progress
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(4096));
    let job = s
        .registry
        .job_start(0, "Scheduled backup cfg-nightly".into(), bytes.clone());
    s.registry.job_estimate(&job, 10_000);
    let ds = get_ok(&s, &doc, &format!("{P}/device_status"), "device_status");
    assert_eq!(ds["latest_backup"]["backup_id"], second.as_str(), "{ds:#}");
    assert_eq!(ds["latest_backup"]["status"], "failed");
    assert_eq!(ds["latest_backup"]["server_name"], "cfg-filer");
    let cur = &ds["current_operation"];
    assert_eq!(cur["info"]["operation_type"], "backup", "{ds:#}");
    assert_eq!(cur["info"]["job_uuid"], job.as_str());
    assert_eq!(
        (
            cur["progress"]["completed"].clone(),
            cur["progress"]["total"].clone()
        ),
        (json!(4096), json!(10_000))
    );
    assert!(cur["backup_details"].is_object(), "{ds:#}");
    s.registry.job_end(&job, 0, "success".into());
    let ds = get_ok(&s, &doc, &format!("{P}/device_status"), "device_status");
    assert!(ds.get("current_operation").is_none(), "{ds:#}");

    // a restore needs the scheduler: 503 in words (after the body and the backup are checked)
    refused(
        &call(
            &s,
            "POST",
            &format!("{item}/restore"),
            Some(&json!({"paths": 3, "destination": "/x"})),
        ),
        400,
        "paths must be an array of strings",
    );
    let a = call(
        &s,
        "POST",
        &format!("{item}/restore"),
        Some(&json!({"destination": "/x"})),
    );
    refused(&a, 503, "the scheduler is not running");
    let failed = format!(
        "{P}/completed_backups/server/{}/items/{second}",
        s.server_id
    );
    refused(
        &call(
            &s,
            "POST",
            &format!("{failed}/restore"),
            Some(&json!({"destination": "/x"})),
        ),
        409,
        "only a completed backup can be restored",
    );

    // DELETE expires: out of the list, the search and GET; a readonly account may not
    refused(
        &call_as(&s, VIEWER, "DELETE", &item, None),
        403,
        "not authorized",
    );
    let a = call(&s, "DELETE", &item, None);
    assert_eq!(a.status, 200, "{}", a.raw);
    let list = get_ok(
        &s,
        &doc,
        &format!("{P}/backups/server/{}", s.server_id),
        "npm_backups",
    );
    assert_eq!(list["completed"].as_array().unwrap().len(), 1);
    assert_eq!(list["completed"][0]["id"], second.as_str());
    refused(&call(&s, "GET", &item, None), 404, "does not exist");
    let found = get_ok(&s, &doc, &format!("{P}/files?name=hosts"), "npm_files");
    assert_eq!(
        found["items"],
        json!([]),
        "an expired backup's files are still found"
    );
}

/// Without a `[scheduler]` section the npm.backup paths answer 404 in words (the web page
/// shows "not configured").
#[test]
fn without_a_scheduler_the_resources_say_not_configured() {
    let d = spawn(&[]);
    let rest = d.rest.unwrap();
    let mut c = TcpStream::connect(rest).unwrap();
    let cred = base64(format!("ndmp:{}", d.password).as_bytes());
    write!(
        c,
        "GET {P}/servers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {cred}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains("npm.backup is not configured"), "{raw}");
}

/// A schedule created over REST runs now against a second ndmpd (DATA there, tape here); the
/// backup shows in completed_backups with its contents and in the file search; a POST restore
/// of it, whole and of one path, runs as a job that /api/cluster/jobs shows ending `success`,
/// and restores the files byte for byte.
#[test]
fn run_now_then_restore_whole_and_one_path() {
    // the filer takes the same login as the tape server: one DMA login reaches both
    let pwdir = tempfile::tempdir().unwrap();
    let pw = pwdir.path().join("pw");
    std::fs::write(&pw, format!("{DMA_PW}\n")).unwrap();
    let filer = spawn(&["--user", "ndmp", "--password-file", pw.to_str().unwrap()]);
    let tree = filer.dir.path().join("tree");
    common::tree::build(&tree);
    let dir = tempfile::tempdir().unwrap();
    let conf = write_config(dir.path());
    let s = start(dir.path(), &conf);
    let doc = openapi(&s);

    let a = call(
        &s,
        "POST",
        &format!("{P}/servers"),
        Some(
            &json!({"name": "filer", "desc": "", "host": "127.0.0.1", "port": filer.addr.port(),
                     "path": tree, "user": "ndmp", "password": DMA_PW}),
        ),
    );
    assert_eq!(a.status, 201, "{}", a.raw);
    let server_id = a.body["id"].as_i64().unwrap();
    // a rule that will not fire during the test: the run is the REST "run now"
    let a = call(
        &s,
        "POST",
        &format!("{P}/scheduled_backups"),
        Some(
            &json!({"name": "manual", "desc": "run by hand", "active": true, "retention": 3,
                     "retry_attempts": 0, "retry_delay": 0, "server_id": server_id,
                     "rrule": "FREQ=YEARLY;BYMONTH=1;BYMONTHDAY=1", "contents": {"config_only": false}}),
        ),
    );
    assert_eq!(a.status, 201, "{}", a.raw);
    let sid = a.body["id"].as_str().unwrap().to_string();
    let run = format!("{P}/scheduled_backups/items/{sid}/run");
    refused(
        &call_as(&s, VIEWER, "POST", &run, None),
        403,
        "not authorized",
    );
    let a = call(&s, "POST", &run, None);
    assert_eq!(a.status, 202, "{}", a.raw);
    conforms(&doc, "job_link", &a.body);
    let job = job_end(&s, &a.body);
    assert_eq!(job["state"], "success", "{job:#}");

    // the backup: listed for its server, with its schedule, media and file history
    let list = get_ok(
        &s,
        &doc,
        &format!("{P}/backups/server/{server_id}"),
        "npm_backups",
    );
    let done = list["completed"].as_array().unwrap();
    assert_eq!(done.len(), 1, "{list:#}");
    let b = &done[0];
    assert_eq!(b["status"], "completed", "{b:#}");
    assert_eq!(b["sid"], sid.as_str());
    assert_eq!(b["server_id"], server_id);
    assert!(b["size"].as_u64().unwrap() > 70_000, "{b:#}");
    assert!(!b["media"].as_array().unwrap().is_empty(), "{b:#}");
    assert!(b["files"].as_u64().unwrap() > 3, "{b:#}");
    let bid = b["id"].as_str().unwrap().to_string();
    let item = format!("{P}/completed_backups/server/{server_id}/items/{bid}");
    let one = get_ok(&s, &doc, &item, "completed_backup");
    assert_eq!(one["id"], bid.as_str());
    let sched = get_ok(
        &s,
        &doc,
        &format!("{P}/scheduled_backups/items/{sid}"),
        "npm_scheduled_backup",
    );
    assert!(sched["last_backup"].as_u64().is_some(), "{sched:#}");

    let contents = get_ok(&s, &doc, &format!("{item}/contents"), "npm_contents");
    let paths: Vec<String> = contents["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let b_txt = paths
        .iter()
        .find(|p| p.ends_with("sub/b.txt"))
        .unwrap_or_else(|| panic!("no sub/b.txt in the contents: {paths:?}"))
        .clone();
    let hit = contents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == b_txt.as_str())
        .unwrap();
    assert_eq!(hit["size"], 70_000);
    let globbed = get_ok(
        &s,
        &doc,
        &format!("{item}/contents?path=*.txt&limit=100"),
        "npm_contents",
    );
    let g: Vec<&str> = globbed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        !g.is_empty() && g.iter().all(|p| p.ends_with(".txt")),
        "{g:?}"
    );
    assert!(g.contains(&b_txt.as_str()), "{g:?}");
    let paged = get_ok(
        &s,
        &doc,
        &format!("{item}/contents?limit=1&offset=1"),
        "npm_contents",
    );
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);
    assert_eq!(paged["items"][0]["path"], paths[1].as_str());
    let found = get_ok(
        &s,
        &doc,
        &format!("{P}/files?name=b.txt&limit=10"),
        "npm_files",
    );
    let hit = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == b_txt.as_str())
        .unwrap_or_else(|| panic!("the search missed {b_txt}: {found:#}"));
    assert_eq!(
        (hit["backup_id"].clone(), hit["server_id"].clone()),
        (json!(bid), json!(server_id))
    );

    // restore everything: a job in /api/cluster/jobs ending success, the tree identical
    let restore = format!("{item}/restore");
    let whole = filer.dir.path().join("whole");
    refused(
        &call(
            &s,
            "POST",
            &restore,
            Some(&json!({"destination": "relative"})),
        ),
        400,
        "must be an absolute path",
    );
    refused(
        &call_as(
            &s,
            VIEWER,
            "POST",
            &restore,
            Some(&json!({"destination": whole})),
        ),
        403,
        "not authorized",
    );
    let a = call(
        &s,
        "POST",
        &restore,
        Some(&json!({"paths": [], "destination": whole})),
    );
    assert_eq!(a.status, 202, "{}", a.raw);
    conforms(&doc, "job_link", &a.body);
    let uuid = a.body["job"]["uuid"].as_str().unwrap().to_string();
    let end = job_end(&s, &a.body);
    assert_eq!(end["state"], "success", "{end:#}");
    assert_eq!(listed_job(&s, &uuid)["state"], "success");
    common::tree::assert_same(&tree, &whole);

    // one named path: only that file comes back, byte for byte
    let part = filer.dir.path().join("part");
    let a = call(
        &s,
        "POST",
        &restore,
        Some(&json!({"paths": [b_txt], "destination": part})),
    );
    assert_eq!(a.status, 202, "{}", a.raw);
    let uuid = a.body["job"]["uuid"].as_str().unwrap().to_string();
    let end = job_end(&s, &a.body);
    assert_eq!(end["state"], "success", "{end:#}");
    assert_eq!(listed_job(&s, &uuid)["state"], "success");
    assert_only_file(&part, &tree, "sub/b.txt");

    // device_status names the latest backup and restore
    let ds = get_ok(&s, &doc, &format!("{P}/device_status"), "device_status");
    assert_eq!(ds["latest_backup"]["backup_id"], bid.as_str(), "{ds:#}");
    assert_eq!(ds["latest_backup"]["status"], "completed");
    assert_eq!(ds["latest_restore"]["status"], "completed", "{ds:#}");
    assert_eq!(ds["latest_restore"]["backup_id"], bid.as_str());

    // DELETE expires it: gone from the list, 404 after
    refused(
        &call_as(&s, VIEWER, "DELETE", &item, None),
        403,
        "not authorized",
    );
    let a = call(&s, "DELETE", &item, None);
    assert_eq!(a.status, 200, "{}", a.raw);
    let list = get_ok(
        &s,
        &doc,
        &format!("{P}/backups/server/{server_id}"),
        "npm_backups",
    );
    assert_eq!(list["completed"], json!([]));
    refused(&call(&s, "GET", &item, None), 404, "does not exist");
}
