//! The scheduler inside the server. Against the real binary and through its REST view only: a
//! schedule made over REST firing every 3 s backs up a second ndmpd (DATA there, tape here:
//! three-way), and another Amanda's `ndmjob -o daemon`, with retention 2: exactly the last two
//! completed backups kept, cartridges whose images all expired recycled, each kept backup
//! restored identical through `POST …/restore`. In process: a failing run is retried; a run
//! missed while the server was down runs once at start-up.

mod common;

use ndmpd::catalog::{Catalog, Status};
use ndmpd::config::{
    BackupServerConfig, ChangerConfig, DeviceKind, MissedRuns, ScheduleConfig, SchedulerConfig,
    TapeConfig,
};
use ndmpd::scheduler::{self, SchedulerHandle, Settings};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PW: &[u8] = b"sched-pw";

/// The login of `ndmjob -o daemon` (hard-wired there).
const NDMJOB_PW: &[u8] = b"ndmp";

/// The password of the tape site's own login, unlike either filer's.
const TAPE_PW: &[u8] = b"tape-site-pw";

/// The tape server (library, changer, 1 MiB cartridges) with the scheduler configured by
/// `schedules` against `filer` (host:port, path, butype), everything logging in as
/// `ndmp`/`pw`; returns it, its handle and its catalog.
async fn tape_site(
    filer: Option<(std::net::SocketAddr, &Path, &str)>,
    pw: &[u8],
    schedules: Vec<ScheduleConfig>,
    missed: MissedRuns,
    before_start: impl FnOnce(&Catalog),
) -> (common::TestServer, SchedulerHandle, std::path::PathBuf) {
    let t = common::start("ndmp", pw, |cfg| {
        // 3 MiB: an image (about 2.7 MB) spans onto a second cartridge
        cfg.library.cartridge_capacity = 3 << 20;
        cfg.library.slots = 24;
        cfg.library.spare_cartridges = 16;
        cfg.tapes = vec![TapeConfig {
            name: "vtape0".into(),
            kind: DeviceKind::Virtual,
            path: None,
        }];
        cfg.changers = vec![ChangerConfig {
            name: "changer0".into(),
            kind: DeviceKind::Virtual,
            path: None,
        }];
    })
    .await;
    let pw_bytes = pw;
    let pw = t.dir.path().join("pw");
    std::fs::write(&pw, pw_bytes).unwrap();
    let mut cfg = t.cfg.clone();
    let (host, port, path, butype) = match filer {
        Some((a, p, b)) => (a.ip().to_string(), a.port(), p.display().to_string(), b),
        // nothing listens on port 1: every run fails
        None => ("127.0.0.1".to_string(), 1, "/nowhere".to_string(), "dump"),
    };
    cfg.scheduler = Some(SchedulerConfig {
        password_file: Some(pw),
        tape_server: Some(t.addr.to_string()),
        missed,
        record_size: 64 << 10,
        ..SchedulerConfig::default()
    });
    cfg.backup_servers = vec![BackupServerConfig {
        name: "filer1".into(),
        description: String::new(),
        host,
        port,
        path,
        user: None,
        password_file: None,
        butype: butype.into(),
    }];
    cfg.schedules = schedules;
    cfg.validate().unwrap();
    let settings = Settings::from_config(&cfg, &[t.addr]).unwrap().unwrap();
    let catalog = settings.catalog.clone();
    {
        let cat = Catalog::open(&catalog).unwrap();
        scheduler::sync_config(&cat, &cfg, "ndmp").unwrap();
        before_start(&cat);
    }
    let h = scheduler::start(&cfg, settings, t.registry.clone(), t.stop.clone()).unwrap();
    (t, h, catalog)
}

fn schedule(name: &str, rrule: &str, retention: u32, retries: u32) -> ScheduleConfig {
    ScheduleConfig {
        name: name.into(),
        description: "test".into(),
        server: "filer1".into(),
        rrule: rrule.into(),
        retention,
        retry_attempts: retries,
        retry_delay: None,
        retry_delay_secs: Some(1),
        level: 0,
        active: true,
    }
}

/// A small tree: its images span 1 MiB cartridges.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for i in 0..3u8 {
        let data: Vec<u8> = (0..50_000u32)
            .map(|n| (n as u8).wrapping_mul(i + 7))
            .collect();
        std::fs::write(root.join(format!("sub/f{i}")), data).unwrap();
    }
    std::fs::write(root.join("sub/deeper/small"), b"hello").unwrap();
}

/// Waits (without a deadline of its own: the test harness has one) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn same_tree(a: &Path, b: &Path) {
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_schedule_against_a_second_ndmpd_keeps_two_recycles_and_restores_identical() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let filer = rt.block_on(common::start("ndmp", PW, |_| {}));
    let src = filer.dir.path().join("tree");
    tree(&src);
    keeps_two_recycles_and_restores(filer.addr, &src, filer.dir.path(), PW, "dump", true);
}

const P: &str = "/api/npm.backup/2.0";
const ADMIN: (&str, &str) = ("admin", "admin-pw");

/// The real `ndmpd serve` as the tape site: a config with a virtual library of 3 MiB
/// cartridges (an image of `tree` spans two), one drive, the changer, a REST admin and the
/// scheduler logging in as `ndmp`/`pw`, then `extra` (config-defined servers and schedules).
fn tape_site_binary(dir: &Path, pw: &[u8], extra: &str) -> common::served::Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // the generated login's password file, written first: the scheduler's tape login
    std::fs::write(data.join("password"), pw).unwrap();
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nrest_listen = \"127.0.0.1:0\"\ndata_dir = \"{d}\"\n\
         [[export]]\npath = \"{x}\"\n\
         [library]\ncartridge_capacity = \"3M\"\nslots = 24\nspare_cartridges = 16\n\
         [[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\
         [[changer]]\nname = \"changer0\"\nkind = \"virtual\"\n\
         [[rest.account]]\nname = \"{u}\"\npassword = \"{p}\"\nrole = \"admin\"\n\
         [scheduler]\nenabled = true\nmissed = \"skip\"\nuser = \"ndmp\"\n\
         password_file = \"{d}/password\"\ndrive = \"vtape0\"\nchanger = \"changer0\"\n\
         record_size = \"64K\"\n{extra}",
        d = data.display(),
        x = dir.display(),
        u = ADMIN.0,
        p = ADMIN.1,
    );
    let config = dir.join("ndmpd.toml");
    std::fs::write(&config, text).unwrap();
    common::served::start(dir, &config)
}

/// A REST call as the admin that must answer `status`; the body.
fn rest_ok(
    s: &common::served::Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    status: u16,
) -> Value {
    let a = common::rest::call_as(s.rest, ADMIN, method, path, body);
    assert_eq!(a.status, status, "{method} {path}: {}", a.raw);
    a.body
}

/// Whether any job in /api/cluster/jobs is still running.
fn jobs_running(s: &common::served::Server) -> bool {
    let all = rest_ok(s, "GET", "/api/cluster/jobs?fields=*", None, 200);
    all["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["state"] == "running" || j["state"] == "queued")
}

/// Against the real binary, all through its REST view as an operator would: defines the DATA
/// server `filer` (backing up `src` in `butype`) and a schedule firing every 3 s with retention
/// 2, lets it complete six backups, deactivates it, then checks: exactly the last two completed
/// backups are kept (in the catalog and in `completed_backups`), the first backup's cartridge
/// was recycled and re-written from file 0, and each kept backup (with its file history when
/// the server sends one: `history`) restores identical through `POST …/restore` into a new
/// directory under `restore_root` (a path on the DATA server's host).
fn keeps_two_recycles_and_restores(
    filer: std::net::SocketAddr,
    src: &Path,
    restore_root: &Path,
    pw: &[u8],
    butype: &str,
    history: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    // the tape site has a login of its own: the filer's is given with the server
    let s = tape_site_binary(dir.path(), TAPE_PW, "");
    let pw = std::str::from_utf8(pw).unwrap();
    let server = rest_ok(
        &s,
        "POST",
        &format!("{P}/servers"),
        Some(
            &json!({"name": "filer1", "desc": "", "host": filer.ip().to_string(),
                     "port": filer.port(), "path": src, "user": "ndmp", "password": pw,
                     "butype": butype}),
        ),
        201,
    );
    let server_id = server["id"].as_i64().unwrap();
    let sched = rest_ok(
        &s,
        "POST",
        &format!("{P}/scheduled_backups"),
        Some(
            &json!({"name": "every3", "desc": "test", "active": true, "retention": 2,
                     "retry_attempts": 0, "retry_delay": 0, "server_id": server_id,
                     "rrule": "FREQ=SECONDLY;INTERVAL=3", "contents": {"config_only": false}}),
        ),
        201,
    );
    let sid = sched["id"].as_str().unwrap().to_string();
    let cat = Catalog::open(&dir.path().join("data/catalog.db")).unwrap();
    // the cartridges each backup was first written to, seen while it was kept
    let mut first_on: HashMap<i64, String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let all = cat.backups_of_schedule(&sid).unwrap();
        for b in &all {
            if let Some(m) = b.media.first() {
                first_on.entry(b.id).or_insert(m.cartridge.clone().unwrap());
            }
        }
        // a failed run ends the wait too: the assertion below says why, instead of a hang
        let completed = all.iter().filter(|b| b.status == Status::Completed).count();
        if completed >= 6 || all.iter().any(|b| b.status == Status::Failed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "six runs did not complete: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // stop the schedule: what follows reads a catalog that no longer changes
    let item = format!("{P}/scheduled_backups/items/{sid}");
    let off = rest_ok(&s, "PATCH", &item, Some(&json!({"active": false})), 200);
    assert_eq!(off["active"], false, "{off:#}");
    // a planner pass that read the schedule before the change may still launch one run:
    // give it a pass, then wait for every job (registered at launch) to end
    std::thread::sleep(Duration::from_millis(500));
    while jobs_running(&s) {
        assert!(Instant::now() < deadline, "a job did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = cat.backups_of_schedule(&sid).unwrap();
    let failed: Vec<_> = all.iter().filter(|b| b.status == Status::Failed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let kept: Vec<_> = all.iter().filter(|b| !b.expired).collect();
    let completed: Vec<_> = all
        .iter()
        .filter(|b| b.status == Status::Completed)
        .collect();
    assert_eq!(kept.len(), 2, "{all:#?}");
    assert_eq!(
        kept.iter().map(|b| b.id).collect::<Vec<_>>(),
        completed[completed.len() - 2..]
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>()
    );
    // REST lists the same two, and only them
    let listed = rest_ok(
        &s,
        "GET",
        &format!("{P}/backups/server/{server_id}"),
        None,
        200,
    );
    let mut ids: Vec<&str> = listed["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = kept.iter().map(|b| b.uuid.as_str()).collect();
    want.sort();
    assert_eq!(ids, want, "{listed:#}");
    // the first backup's cartridge held only expired images: recycled (its rows gone) and
    // written again from file 0 by a later backup
    let first = &all[0];
    assert!(first.expired && first.media.is_empty(), "{first:?}");
    let label = &first_on[&first.id];
    let reused = all.iter().any(|b| {
        b.id > first.id
            && b.media
                .iter()
                .any(|m| m.cartridge.as_deref() == Some(label.as_str()) && m.file == 0)
    });
    assert!(
        reused,
        "cartridge {label} was not re-used from file 0: {all:#?}"
    );
    // each kept backup has its file history and restores identical through POST restore,
    // a job that /api/cluster/jobs shows ending success
    for (i, b) in kept.iter().enumerate() {
        assert!(
            !history
                || !cat
                    .files(b.id, Some("/sub/deeper/small"), 10, 0)
                    .unwrap()
                    .is_empty(),
            "no history for backup {}",
            b.id
        );
        let dest = restore_root.join(format!("restored{i}"));
        std::fs::create_dir_all(&dest).unwrap();
        let link = rest_ok(
            &s,
            "POST",
            &format!(
                "{P}/completed_backups/server/{server_id}/items/{}/restore",
                b.uuid
            ),
            Some(&json!({"paths": [], "destination": dest})),
            202,
        );
        let end = common::rest::job_end(s.rest, ADMIN, &link, Duration::from_secs(300));
        assert_eq!(end["state"], "success", "{end:#}");
        same_tree(src, &dest);
    }
    let r = cat.restores().unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.status == Status::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_then_recorded_failed() {
    let (t, h, catalog) = tape_site(
        None,
        PW,
        vec![schedule("doomed", "FREQ=YEARLY", 2, 1)],
        MissedRuns::Skip,
        |_| {},
    )
    .await;
    let cat = Catalog::open(&catalog).unwrap();
    let sid = cat.schedule_by_name("doomed").unwrap().unwrap().id;
    let job = h.run_now(&sid).unwrap();
    until(|| {
        t.registry
            .jobs()
            .iter()
            .any(|j| j.uuid == job && j.state != "running")
    })
    .await;
    let j = t
        .registry
        .jobs()
        .into_iter()
        .find(|j| j.uuid == job)
        .unwrap();
    assert_eq!(j.state, "failure");
    assert!(
        j.message.starts_with("failed after 2 attempt(s):"),
        "{}",
        j.message
    );
    let all = cat.backups_of_schedule(&sid).unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|b| b.status == Status::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_missed_while_down_runs_once_at_start_up() {
    let filer = common::start("ndmp", PW, |_| {}).await;
    let src = filer.dir.path().join("tree");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    let two_hours_ago = ndmpd::catalog::now() - 7200;
    let (_t, h, catalog) = tape_site(
        Some((filer.addr, &src, "dump")),
        PW,
        vec![schedule("hourly", "FREQ=HOURLY", 2, 0)],
        MissedRuns::Once,
        |cat| {
            let s = cat.schedule_by_name("hourly").unwrap().unwrap();
            cat.set_schedule_times(&s.id, Some(two_hours_ago), None)
                .unwrap();
        },
    )
    .await;
    let cat = Catalog::open(&catalog).unwrap();
    let sid = cat.schedule_by_name("hourly").unwrap().unwrap().id;
    until(|| {
        cat.backups_of_schedule(&sid)
            .unwrap()
            .iter()
            .any(|b| b.status == Status::Completed)
    })
    .await;
    until(|| h.current().is_none()).await;
    assert_eq!(cat.backups_of_schedule(&sid).unwrap().len(), 1);
    let s = cat.schedule(&sid).unwrap().unwrap();
    assert!(s.last_backup.unwrap() > two_hours_ago);
}

/// The config `ndmjob -o daemon` needs to accept butype tar (it has no default config).
const NDMJOB_CONF: &str = "[butype tar]\n\tv4attr 0x0E16\n\tdefault_env HIST y\n\n\
[fs /]\n\tfs_status Online\n\tfs_physical_device none\n\tfs_type local\n";

/// The formatter ndmjob's DATA agent runs as `sh -c "wrap_tar -c|-x -I#3 -E NAME=VALUE..."`
/// (Debian ships none): fd 1 is the image out on a backup, fd 0 the image in on a recover,
/// fd 3 its messages to the agent. A recover must ask for the image (`DR` = NOTIFY_DATA_READ)
/// and ends when fd 3 closes. No file history: the scheduler asks for it, ndmjob sends none.
const WRAP_TAR: &str = r#"#!/bin/bash
op=; fs=; prefix=
while [ $# -gt 0 ]; do
    case "$1" in
        -c) op=c ;;
        -x) op=x ;;
        -t) op=t ;;
        -E) shift; kv=$1 ;;
        -E*) kv=${1#-E} ;;
    esac
    case "${kv:-}" in
        FILESYSTEM=*) fs=${kv#*=} ;;
        PREFIX=*) prefix=${kv#*=} ;;
    esac
    kv=
    shift
done
case $op in
    c) exec tar -c -f - -b 20 -C "$fs" . ;;
    x) echo "DR 0 9223372036854775807" >&3
       mkdir -p "$prefix" && tar -x -f - -b 20 -C "$prefix" ;;
    *) echo "wrap_tar: unsupported operation" >&2; exit 1 ;;
esac
"#;

/// `ndmjob -o daemon` on a free local port with `wrap_tar` on its PATH, in its own process
/// group (it forks a session per connection); the group is killed on drop.
struct NdmjobDaemon {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl NdmjobDaemon {
    fn start(dir: &Path) -> NdmjobDaemon {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let wrap = bin.join("wrap_tar");
        std::fs::write(&wrap, WRAP_TAR).unwrap();
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.join("ndmjob.conf");
        std::fs::write(&conf, NDMJOB_CONF).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(common::NDMJOB)
            .args(["-o", "daemon", "-p", &port.to_string(), "-d", "0"])
            .arg("-o")
            .arg(format!("config-file={}", conf.display()))
            .env("PATH", path)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut d = NdmjobDaemon { child, addr };
        // listening once a connection is accepted; the harness bounds a daemon that never is
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("ndmjob -o daemon exited: {st}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d.addr = addr;
        d
    }
}

impl Drop for NdmjobDaemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created; no memory involved.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A SIGHUP puts the config file's schedules in force without a restart: one added shows in
/// `scheduled_backups`, one taken out is gone, and one made over REST stays.
#[test]
fn a_sighup_reloads_the_config_schedules() {
    let server = "[[backup_server]]\nname = \"filer1\"\nhost = \"127.0.0.1\"\nport = 1\n\
                  path = \"/nowhere\"\n";
    let sched = |name: &str| {
        format!("[[schedule]]\nname = \"{name}\"\nserver = \"filer1\"\nrrule = \"FREQ=YEARLY\"\nretention = 2\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let s = tape_site_binary(dir.path(), PW, &format!("{server}{}", sched("first")));
    let names = |s: &common::served::Server| -> Vec<String> {
        let mut v: Vec<String> = rest_ok(s, "GET", &format!("{P}/scheduled_backups"), None, 200)
            ["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&s), ["first"]);
    let server_id =
        rest_ok(&s, "GET", &format!("{P}/servers"), None, 200)["items"][0]["id"].clone();
    rest_ok(
        &s,
        "POST",
        &format!("{P}/scheduled_backups"),
        Some(
            &json!({"name": "by-rest", "desc": "", "active": true, "retention": 1,
                     "retry_attempts": 0, "retry_delay": 0, "server_id": server_id,
                     "rrule": "FREQ=YEARLY", "contents": {"config_only": false}}),
        ),
        201,
    );
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replace(&sched("first"), &sched("second"));
    std::fs::write(&s.config, text).unwrap();
    // SAFETY: kill(2) on the child this test started; no memory involved.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while names(&s) != ["by-rest", "second"] {
        assert!(
            Instant::now() < deadline,
            "after SIGHUP: {:?}\n{}",
            names(&s),
            std::fs::read_to_string(&s.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_schedule_against_ndmjob_daemon_keeps_two_recycles_and_restores_identical() {
    // ndmjob lives off PATH, so require_tool cannot find it: the same rule by hand
    if !Path::new(common::NDMJOB).exists() {
        common::skip(&format!(
            "{} is not installed: apt-get install amanda-common (scripts/test.sh installs it)",
            common::NDMJOB
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    tree(&src);
    // the ndmpd filer's dump images of `tree` span 3 MiB cartridges; a tar image of it is
    // small and many would share one cartridge, which then never holds only expired ones
    let big: Vec<u8> = (0..2_700_000u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(src.join("big"), big).unwrap();
    let d = NdmjobDaemon::start(dir.path());
    keeps_two_recycles_and_restores(d.addr, &src, dir.path(), NDMJOB_PW, "tar", false);
}
