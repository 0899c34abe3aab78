//! The server's dumpdates table: when each FILESYSTEM was last dumped at each level, so an
//! incremental knows its base date. One line per entry in DATA_DIR/dumpdates.

use std::io::{self, Write};
use std::path::Path;

/// One line: `LEVEL DATE PATH` (the path last, so it may hold spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dump level, 0 for a full dump.
    pub level: u32,
    /// When the dump started, in seconds since the Unix epoch.
    pub date: i64,
    /// The FILESYSTEM dumped, as a path with symlinks and `..` resolved.
    pub filesystem: String,
}

fn file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("dumpdates")
}

/// Every entry; a missing table is empty and unreadable lines are skipped.
pub fn read(data_dir: &Path) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(file(data_dir)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            Some(Entry {
                level: it.next()?.parse().ok()?,
                date: it.next()?.parse().ok()?,
                filesystem: it.next()?.to_string(),
            })
        })
        .collect()
}

/// The base date of a level-`level` dump: the newest dump of the same filesystem at a lower
/// level, 0 when there is none (then everything is dumped).
pub fn base_date(data_dir: &Path, filesystem: &str, level: u32) -> i64 {
    read(data_dir)
        .into_iter()
        .filter(|e| e.filesystem == filesystem && e.level < level)
        .map(|e| e.date)
        .max()
        .unwrap_or(0)
}

/// Records a successful dump, replacing the previous one at that level; written to a temporary
/// file and renamed so a crash never leaves half a table. Backups ending together (two drives)
/// take turns on a lock file: each rewrites the whole table, so one would otherwise drop the
/// other's line.
pub fn record(data_dir: &Path, filesystem: &str, level: u32, date: i64) -> io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    // held until the table is renamed into place; threads of this server take turns too
    let _turn = crate::fslock::lock_file(&data_dir.join("dumpdates.lock"))?;
    let mut entries: Vec<Entry> = read(data_dir)
        .into_iter()
        .filter(|e| !(e.filesystem == filesystem && e.level == level))
        .collect();
    entries.push(Entry {
        level,
        date,
        filesystem: filesystem.to_string(),
    });
    let tmp = data_dir.join(format!("dumpdates.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        for e in &entries {
            writeln!(f, "{} {} {}", e.level, e.date, e.filesystem)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, file(data_dir))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dates_come_from_lower_levels_of_the_same_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(base_date(dir, "/srv/a b", 1), 0);
        record(dir, "/srv/a b", 0, 100).unwrap();
        record(dir, "/srv/other", 0, 500).unwrap();
        record(dir, "/srv/a b", 2, 300).unwrap();
        assert_eq!(base_date(dir, "/srv/a b", 0), 0);
        assert_eq!(base_date(dir, "/srv/a b", 1), 100);
        assert_eq!(base_date(dir, "/srv/a b", 3), 300);
        record(dir, "/srv/a b", 0, 400).unwrap();
        assert_eq!(
            base_date(dir, "/srv/a b", 1),
            400,
            "a new level 0 replaces the old"
        );
        assert_eq!(read(dir).len(), 3);
    }

    #[test]
    fn backups_ending_together_all_keep_their_line() {
        // two drives' backups may end in the same instant: each rewrites the whole table, so
        // one must not write over what the other has just added, nor rename its file away
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for round in 0..20 {
            std::thread::scope(|s| {
                for fs in 0..8 {
                    s.spawn(move || {
                        record(dir, &format!("/srv/{fs}"), 0, round * 10 + fs).unwrap()
                    });
                }
            });
            let mut got: Vec<(String, i64)> = read(dir)
                .into_iter()
                .map(|e| (e.filesystem, e.date))
                .collect();
            got.sort();
            let want: Vec<(String, i64)> = (0..8)
                .map(|fs| (format!("/srv/{fs}"), round * 10 + fs))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }
}
