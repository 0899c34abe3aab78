//! The scheduler inside the server: a schedule firing every few seconds backs up a second
//! ndmpd (DATA there, tape here: three-way) with retention 2, recycling cartridges whose
//! images all expired; kept backups restore identical; a failing run is retried; a run missed
//! while the server was down runs once at start-up.

mod common;

use ndmpd::catalog::{Catalog, Status};
use ndmpd::config::{
    BackupServerConfig, ChangerConfig, DeviceKind, MissedRuns, ScheduleConfig, SchedulerConfig,
    TapeConfig,
};
use ndmpd::scheduler::{self, SchedulerHandle, Settings};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const PW: &[u8] = b"sched-pw";

/// The tape server (library, changer, 1 MiB cartridges) with the scheduler configured by
/// `schedules` against `filer` (host:port, path); returns it, its handle and its catalog.
async fn tape_site(
    filer: Option<(std::net::SocketAddr, &Path)>,
    schedules: Vec<ScheduleConfig>,
    missed: MissedRuns,
    before_start: impl FnOnce(&Catalog),
) -> (common::TestServer, SchedulerHandle, std::path::PathBuf) {
    let t = common::start("ndmp", PW, |cfg| {
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
    let pw = t.dir.path().join("pw");
    std::fs::write(&pw, PW).unwrap();
    let mut cfg = t.cfg.clone();
    let (host, port, path) = match filer {
        Some((a, p)) => (a.ip().to_string(), a.port(), p.display().to_string()),
        // nothing listens on port 1: every run fails
        None => ("127.0.0.1".to_string(), 1, "/nowhere".to_string()),
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
        butype: "dump".into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_against_a_second_ndmpd_keeps_two_recycles_and_restores_identical() {
    let filer = common::start("ndmp", PW, |_| {}).await;
    let src = filer.dir.path().join("tree");
    tree(&src);
    let (_t, h, catalog) = tape_site(
        Some((filer.addr, &src)),
        vec![schedule("every3", "FREQ=SECONDLY;INTERVAL=3", 2, 0)],
        MissedRuns::Skip,
        |_| {},
    )
    .await;
    let cat = Catalog::open(&catalog).unwrap();
    let sid = cat.schedule_by_name("every3").unwrap().unwrap().id;
    // the cartridges each backup was first written to, seen while it was kept
    let mut first_on: HashMap<i64, String> = HashMap::new();
    until(|| {
        let all = cat.backups_of_schedule(&sid).unwrap();
        for b in &all {
            if let Some(m) = b.media.first() {
                first_on.entry(b.id).or_insert(m.cartridge.clone().unwrap());
            }
        }
        all.iter().filter(|b| b.status == Status::Completed).count() >= 6 && h.current().is_none()
    })
    .await;
    // stop the schedule: what follows reads a catalog that no longer changes
    let mut def = cat.schedule(&sid).unwrap().unwrap();
    def.active = false;
    cat.update_schedule(
        &sid,
        &ndmpd::catalog::NewSchedule {
            name: def.name.clone(),
            description: def.description.clone(),
            active: false,
            server_id: def.server_id,
            rrule: def.rrule.clone(),
            retention: def.retention,
            retry_attempts: def.retry_attempts,
            retry_delay_secs: def.retry_delay_secs,
            level: def.level,
            source: def.source.clone(),
        },
    )
    .unwrap();
    h.changed();
    // a planner pass that read the schedule before the change may still launch one run:
    // give it a pass, then wait for every job (registered at launch) to end
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reg = _t.registry.clone();
    until(|| reg.jobs().iter().all(|j| j.state != "running")).await;
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
    // each kept backup has its file history and restores identical
    for (i, b) in kept.iter().enumerate() {
        assert!(
            !cat.files(b.id, Some("/sub/deeper/small"), 10, 0)
                .unwrap()
                .is_empty(),
            "no history for backup {}",
            b.id
        );
        let dest = filer.dir.path().join(format!("restored{i}"));
        std::fs::create_dir_all(&dest).unwrap();
        let job = h
            .restore(&b.uuid, Vec::new(), dest.display().to_string())
            .unwrap();
        let treg = _t.registry.clone();
        until(|| {
            treg.jobs()
                .iter()
                .any(|j| j.uuid == job && j.state != "running")
        })
        .await;
        let j = treg.jobs().into_iter().find(|j| j.uuid == job).unwrap();
        assert_eq!(j.state, "success", "{}", j.message);
        same_tree(&src, &dest);
    }
    let r = cat.restores().unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.status == Status::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_then_recorded_failed() {
    let (t, h, catalog) = tape_site(
        None,
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
        Some((filer.addr, &src)),
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
