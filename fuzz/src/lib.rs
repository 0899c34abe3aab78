//! What the fuzz targets share: a fresh scratch directory per input for the readers that
//! restore files, and the check that a restore created nothing outside its root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The directory all scratch directories of this process live in; it holds only the
/// scratch directory of the input being run, so anything else found there escaped.
fn parent() -> &'static Path {
    static PARENT: OnceLock<PathBuf> = OnceLock::new();
    PARENT.get_or_init(|| {
        let base = std::env::var_os("NDMPD_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        keep_heap();
        let dir = base.join(format!("ndmpd-fuzz-{}", std::process::id()));
        // A crash leaves the previous run's directory behind; an old one of the same pid
        // would otherwise fail the first check.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the scratch parent");
        dir
    })
}

/// Keeps freed memory in the heap: the readers allocate and zero buffers of up to 1 MiB
/// per input, and glibc would otherwise return them to the kernel after every input and
/// fault them in again on the next, which costs more than the parsing itself.
fn keep_heap() {
    // SAFETY: mallopt only tunes the allocator; it is called once, before the buffers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// One input's scratch directory: `dest` is the restore root; `canary`, its sibling, must
/// stay empty, and the scratch directory must hold nothing but the two.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Where the reader restores to.
    pub dest: PathBuf,
    canary: PathBuf,
}

impl Scratch {
    /// Creates `<parent>/<random>/{dest,canary}`.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("in")
            .tempdir_in(parent())
            .expect("creating a scratch directory");
        let dest = dir.path().join("dest");
        let canary = dir.path().join("canary");
        fs::create_dir(&dest).expect("creating dest");
        fs::create_dir(&canary).expect("creating canary");
        Scratch { dir, dest, canary }
    }

    /// Panics when anything was created beside `dest`: in the canary, in the scratch
    /// directory, or in the parent of all scratch directories.
    pub fn check(&self) {
        let names = |p: &Path| -> Vec<_> {
            let mut v: Vec<_> = fs::read_dir(p)
                .expect("listing a scratch directory")
                .map(|e| e.expect("reading a scratch entry").file_name())
                .collect();
            v.sort();
            v
        };
        assert!(
            names(&self.canary).is_empty(),
            "a restore wrote into the canary beside its root: {:?}",
            names(&self.canary)
        );
        assert_eq!(
            names(self.dir.path()),
            ["canary", "dest"],
            "a restore created something beside its root"
        );
        let own = self.dir.path().file_name().expect("scratch name");
        assert_eq!(
            names(parent()),
            [own],
            "a restore created something outside its scratch directory"
        );
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// Makes every directory under `p` writable and searchable again (without following
/// symlinks), so that removing the tree works as a non-root user too: restored
/// directories may carry modes like 0500.
fn unlock(p: &Path) {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(p) {
        for e in entries.flatten() {
            unlock(&e.path());
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if fs::remove_dir_all(self.dir.path()).is_err() {
            unlock(self.dir.path());
        }
        // TempDir's own drop removes what is left, ignoring errors.
    }
}

/// Dump header layout (doc §2): the magic word, the checksum word, and the sum of all 256
/// words a header has. The reader's constants are private to it.
const DUMP_RECORD: usize = 1024;
const DUMP_OFF_MAGIC: usize = 24;
const DUMP_OFF_CHECKSUM: usize = 28;
const DUMP_CHECKSUM: u32 = 84446;
/// NFS (Linux dump), FreeBSD UFS2 and 4.2BSD magics: the reader tells all three apart.
const DUMP_MAGICS: [u32; 3] = [60012, 0x1954_0119, 60011];

/// Rewrites the checksum of every 1 KiB record that carries a dump magic in either byte
/// order, so that a mutated header field still reaches the code that reads it instead of
/// being skipped as damage at the checksum test.
pub fn reseal_dump(image: &mut [u8]) {
    type Word = fn([u8; 4]) -> u32;
    type Bytes = fn(u32) -> [u8; 4];
    let orders: [(Word, Bytes); 2] = [
        (u32::from_le_bytes, u32::to_le_bytes),
        (u32::from_be_bytes, u32::to_be_bytes),
    ];
    for rec in image.chunks_exact_mut(DUMP_RECORD) {
        for (get, put) in orders {
            let word = |r: &[u8], off: usize| get([r[off], r[off + 1], r[off + 2], r[off + 3]]);
            if !DUMP_MAGICS.contains(&word(rec, DUMP_OFF_MAGIC)) {
                continue;
            }
            rec[DUMP_OFF_CHECKSUM..DUMP_OFF_CHECKSUM + 4].fill(0);
            let sum = (0..DUMP_RECORD)
                .step_by(4)
                .fold(0u32, |acc, off| acc.wrapping_add(word(rec, off)));
            rec[DUMP_OFF_CHECKSUM..DUMP_OFF_CHECKSUM + 4]
                .copy_from_slice(&put(DUMP_CHECKSUM.wrapping_sub(sum)));
            break;
        }
    }
}

/// ustar block layout: the checksum field and the magic field.
const TAR_BLOCK: usize = 512;
const TAR_CHKSUM: usize = 148;
const TAR_MAGIC: usize = 257;

/// Rewrites the checksum of every 512-byte block with a ustar or GNU magic, for the same
/// reason as `reseal_dump`: mutations then reach the header decoder.
pub fn reseal_tar(image: &mut [u8]) {
    for b in image.chunks_exact_mut(TAR_BLOCK) {
        let magic = &b[TAR_MAGIC..TAR_MAGIC + 6];
        if magic != b"ustar\0" && magic != b"ustar " {
            continue;
        }
        b[TAR_CHKSUM..TAR_CHKSUM + 8].fill(b' ');
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        let digits = format!("{sum:06o}\0");
        b[TAR_CHKSUM..TAR_CHKSUM + 7].copy_from_slice(&digits.as_bytes()[digits.len() - 7..]);
    }
}
