//! A btrfs file system in a loop-mounted image for the snapshot tests, and a backup held
//! paused in the middle (so a snapshot is held while a test looks at it).

use ndmpd::client::Client;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Reply, Request};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A btrfs file system in an image file (on a tmpfs), loop-mounted noatime, with one
/// subvolume `vol`; unmounted when dropped.
pub struct Btrfs {
    /// Scratch directory beside the mount point.
    pub dir: tempfile::TempDir,
    /// The mount point.
    pub mnt: PathBuf,
    /// The subvolume.
    pub vol: PathBuf,
    /// Where the image file is: a tmpfs, so that the writer's syncs cost little and it can
    /// lap a backup. Unmounted after the btrfs (fields drop after `drop`).
    _backing: super::tmpfs::Tmpfs,
}

/// Runs `cmd`, which must succeed.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Btrfs {
    /// None (after a note) when btrfs-progs is missing outside CI; under CI that fails.
    pub fn make() -> Option<Btrfs> {
        if !super::require_tool("mkfs.btrfs", "btrfs-progs")
            || !super::require_tool("btrfs", "btrfs-progs")
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let backing = super::tmpfs::Tmpfs::mount(600 << 20);
        let img = backing.path().join("btrfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(Command::new("truncate").args(["-s", "512M"]).arg(&img));
        run(Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&img));
        // noatime: a backup reading the live tree would otherwise change the very directory
        // times the image comparison looks at
        run(Command::new("mount")
            .args(["-o", "loop,noatime"])
            .arg(&img)
            .arg(&mnt));
        let vol = mnt.join("vol");
        run(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&vol));
        Some(Btrfs {
            dir,
            mnt,
            vol,
            _backing: backing,
        })
    }

    /// The names in the subvolume's snapshot directory but the `base-*` ones UPDATE=Y
    /// backups keep on purpose as the bases of incrementals (see [`Btrfs::kept`]).
    pub fn snapshots(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.vol.join(".ndmpd-snap"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with("base-"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The kept base snapshots (`.ndmpd-snap/base-<key>-L<level>-<date>`), as
    /// `L<level>-<date>`, sorted.
    pub fn kept(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.vol.join(".ndmpd-snap"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("base-") && !n.ends_with(".filesystem"))
                    .filter_map(|n| n.split_once("-L").map(|(_, r)| format!("L{r}")))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until the backup thread has dropped its snapshot (it ends at its next check
    /// after an abort); the assertion is on the directory's contents, not on the time.
    pub fn wait_no_snapshots(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.snapshots().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.snapshots(), Vec::<String>::new(), "a snapshot is left");
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        if Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Starts a backup of `fs` on this session with a one-record mover window: the mover
/// pauses at once and the backup waits in the middle, holding its snapshot.
pub async fn paused_backup(c: &mut Client, fs: &Path) {
    super::mover::local_backup_connected(c, 10240).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![Pval::new("FILESYSTEM", fs.to_str().unwrap())],
    }))
    .await
    .unwrap();
    for _ in 0..500 {
        let Reply::MoverGetState(m) = c.call_ok(Request::MoverGetState(Void)).await.unwrap() else {
            panic!()
        };
        if m.state == MoverState::PAUSED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mover never paused");
}
