//! The damaged and hostile input every image reader must survive, run against the dump
//! reader and the tar reader alike: each format builds its images, the scenarios judge.
//!
//! A scenario is a generic function over `Format`; `scenarios!` turns each into one test
//! per format (`dump::name`, `tar::name`). Damage only one format can have (dump volumes
//! and byte orders, tar's pax headers and sparse maps) is tested in dump_reader.rs and
//! tar_format.rs.

use std::collections::BTreeSet;
use std::fs;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;

mod common;
use common::fulltree::{pattern, set_xattr, write};
use common::readers::*;
use common::surgery::*;

use ndmpd::format::dump::reader::{list_dump, read_one};
use ndmpd::format::dump::FileKind;
use ndmpd::format::recover::{RecoverError, RecoverOptions, Summary};
use ndmpd::format::tar::{list_tar, read_one_tar};

type Outcome = Result<Summary, RecoverError>;

/// Our writer's image of a tree, with where each name's object starts.
struct Image {
    bytes: Vec<u8>,
    /// (path relative to the root, "" for the root; kind; offset of the object's first
    /// header, its fh_info).
    names: Vec<(Vec<u8>, FileKind, usize)>,
    /// Offsets of the headers in the image.
    headers: Vec<usize>,
    /// Where the end marker starts: a cut before it leaves the image unfinished.
    end: usize,
}

impl Image {
    fn fh(&self, path: &str) -> usize {
        self.names
            .iter()
            .find(|n| n.0 == path.as_bytes())
            .unwrap_or_else(|| panic!("{path} not in the image"))
            .2
    }

    /// Where the object after `path`'s starts: `path`'s data ends before it.
    fn next_fh(&self, path: &str) -> usize {
        let fh = self.fh(path);
        self.names
            .iter()
            .map(|n| n.2)
            .filter(|&f| f > fh)
            .min()
            .unwrap_or(self.end)
    }
}

/// An image built to attack the reader, and what must come of reading it.
struct Hostile {
    image: Vec<u8>,
    /// Symlinks to outside/ put into the destination before reading.
    planted: Vec<&'static str>,
    /// Names that must be reported not restored ("" is reported as ".").
    refused: Vec<&'static str>,
    /// How many warnings say that a name was refused, for a format that warns about them.
    refused_warnings: Option<usize>,
    /// Files that must be restored inside the destination, with their contents.
    files: Vec<(&'static str, &'static [u8])>,
    /// Names that must be real directories, not symlinks.
    dirs: Vec<&'static str>,
    /// Names that must be symlinks.
    symlinks: Vec<&'static str>,
}

/// One image format as the scenarios see it: our writer's image of a tree, the reader's
/// three ways in, and how to damage an image of that format.
trait Format {
    /// Size of the records or blocks an image is made of.
    const RECORD: usize;
    /// The reader checks the first header before it creates the destination.
    const CHECKS_BEFORE_CREATING: bool;
    /// How many randomly damaged images to read.
    const MUTATIONS: u64;

    fn image(src: &Path) -> Image;
    fn recover(image: &[u8], o: &RecoverOptions) -> (Outcome, Log);
    /// Lists the image for history, dropping what it reports.
    fn list(image: &[u8]) -> Result<u64, RecoverError>;
    /// DAR of the object whose header starts `input`, to `dest`.
    fn read_one(input: &[u8], dest: &Path, o: &RecoverOptions) -> Outcome;
    /// The error for input that is no image of this format at all.
    fn not_image(r: &Outcome) -> bool;
    /// Spoils the header at `at`: its checksum no longer holds.
    fn break_header(image: &mut [u8], at: usize);
    /// The header of `path`'s object that carries its data (not a pax header before it).
    fn data_header(img: &Image, path: &str) -> usize;
    /// Cuts worth trying besides every record boundary and 100 bytes past each.
    fn extra_cuts(img: &Image) -> Vec<usize>;
    /// A randomly damaged copy of `img`, and whether it cannot pass for an image at all.
    fn mutate(img: &Image, rng: &mut Rng, seed: u64) -> (Vec<u8>, bool);
    /// The hostile image, its source (if any) built under `tmp`, attacking `outside`.
    fn hostile(tmp: &Path, outside: &Path) -> Hostile;
}

// ------------------------------------------------------------------ dump

struct Dump;

impl Format for Dump {
    const RECORD: usize = DUMP_RECORD;
    const CHECKS_BEFORE_CREATING: bool = false;
    const MUTATIONS: u64 = 40;

    fn image(src: &Path) -> Image {
        let (bytes, hist) = dump_image(src);
        let mut names: Vec<(Vec<u8>, FileKind, usize)> = hist
            .paths()
            .into_iter()
            .chain([(Vec::new(), 2)])
            .map(|(p, ino)| {
                let (_, stat, fh) = hist.node(ino);
                (p, stat.kind, *fh as usize)
            })
            .collect();
        names.sort_by_key(|n| n.2);
        let headers: Vec<usize> = (0..bytes.len() / DUMP_RECORD)
            .map(|i| i * DUMP_RECORD)
            .filter(|&o| is_header(&bytes[o..o + DUMP_RECORD]))
            .collect();
        let end = *headers
            .iter()
            .find(|&&o| word(&bytes[o..], 0) == TS_END)
            .unwrap();
        Image {
            bytes,
            names,
            headers,
            end,
        }
    }

    fn recover(image: &[u8], o: &RecoverOptions) -> (Outcome, Log) {
        recover_dump(image, o)
    }

    fn list(image: &[u8]) -> Result<u64, RecoverError> {
        list_dump(
            &mut Cursor::new(image),
            &mut |_| {},
            &mut |_| {},
            &AtomicBool::new(false),
            &AtomicBool::new(false),
        )
    }

    fn read_one(mut input: &[u8], dest: &Path, o: &RecoverOptions) -> Outcome {
        read_one(
            &mut input,
            None,
            dest,
            o,
            &mut |_| {},
            &AtomicBool::new(false),
        )
    }

    fn not_image(r: &Outcome) -> bool {
        matches!(r, Err(RecoverError::NotDump { offset: 0 }))
    }

    fn break_header(image: &mut [u8], at: usize) {
        image[at + 1000] ^= 0x55;
    }

    fn data_header(img: &Image, path: &str) -> usize {
        img.fh(path)
    }

    fn extra_cuts(img: &Image) -> Vec<usize> {
        let fh = img.fh("sub/b.txt");
        let len = img.bytes.len();
        vec![fh + 1024 + 10, fh + 512, fh, len / 2, 1024, 100]
    }

    /// Random bytes, random bytes after a valid volume header, and valid images with
    /// random header fields (checksums fixed up so the reader believes them) or random
    /// directory data.
    fn mutate(img: &Image, rng: &mut Rng, seed: u64) -> (Vec<u8>, bool) {
        let image = &img.bytes;
        let headers = &img.headers;
        match seed % 4 {
            0 => ((0..64 * 1024).map(|_| rng.next() as u8).collect(), true),
            1 => {
                let mut v = image[..1024].to_vec();
                v.extend((0..32 * 1024).map(|_| rng.next() as u8));
                (v, false)
            }
            2 => {
                let mut v = image.clone();
                for _ in 0..1 + rng.below(6) {
                    let h = headers[rng.below(headers.len())];
                    for _ in 0..1 + rng.below(8) {
                        // Mostly the fields that matter: type, inode, mode, size, count, map.
                        let f = [0, 20, 32, 40, 44, 160, 164, 165, 888, 900][rng.below(10)];
                        let at = if rng.below(4) == 0 {
                            rng.below(1024)
                        } else {
                            f
                        };
                        v[h + at] = rng.next() as u8;
                    }
                    reseal(&mut v[h..h + 1024]);
                }
                (v, false)
            }
            _ => {
                let mut v = image.clone();
                // The root directory's data record.
                let root_fh = img.fh("");
                for _ in 0..1 + rng.below(20) {
                    let at = root_fh + 1024 + rng.below(1024);
                    v[at] = rng.next() as u8;
                }
                (v, false)
            }
        }
    }

    /// Directory entries renamed in the image: "../escape" and "sym/x" (refused, with a
    /// warning each), and a directory "sym" next to a symlink "sym" to outside/ (the
    /// directory comes first and keeps the name).
    fn hostile(tmp: &Path, outside: &Path) -> Hostile {
        let src = tmp.join("hostile-src");
        fs::create_dir_all(src.join("syn")).unwrap();
        write(&src.join("syn/x"), b"x");
        write(&src.join("zzzescape"), b"bad");
        write(&src.join("symQx"), b"bad");
        write(&src.join("ok.txt"), b"ok");
        std::os::unix::fs::symlink(outside, src.join("sym")).unwrap();
        let (mut image, _) = dump_image(&src);
        rename_entry(&mut image, 4, b"syn", b"sym");
        rename_entry(&mut image, 8, b"zzzescape", b"../escape");
        rename_entry(&mut image, 8, b"symQx", b"sym/x");
        Hostile {
            image,
            planted: vec![],
            // The symlink could not take the directory's place.
            refused: vec!["sym"],
            refused_warnings: Some(2),
            files: vec![("sym/x", b"x"), ("ok.txt", b"ok")],
            dirs: vec!["sym"],
            symlinks: vec![],
        }
    }
}

// ------------------------------------------------------------------ tar

struct Tar;

impl Format for Tar {
    const RECORD: usize = TAR_BLOCK;
    const CHECKS_BEFORE_CREATING: bool = true;
    const MUTATIONS: u64 = 300;

    fn image(src: &Path) -> Image {
        let (bytes, hist) = tar_image(src);
        let names = hist
            .files
            .iter()
            .map(|(p, stat, fh)| (p[1..].to_vec(), stat.kind, *fh as usize))
            .collect();
        let end = bytes.len()
            - bytes
                .rchunks(512)
                .take_while(|b| b.iter().all(|&c| c == 0))
                .count()
                * 512;
        let headers = (0..end / 512)
            .map(|i| i * 512)
            .filter(|&o| &bytes[o + 257..o + 262] == b"ustar")
            .collect();
        Image {
            bytes,
            names,
            headers,
            end,
        }
    }

    fn recover(image: &[u8], o: &RecoverOptions) -> (Outcome, Log) {
        recover_tar(image, o)
    }

    fn list(image: &[u8]) -> Result<u64, RecoverError> {
        list_tar(
            &mut Cursor::new(image),
            &mut |_| {},
            &mut |_| {},
            &AtomicBool::new(false),
            &AtomicBool::new(false),
        )
    }

    fn read_one(mut input: &[u8], dest: &Path, o: &RecoverOptions) -> Outcome {
        read_one_tar(&mut input, dest, o, &mut |_| {}, &AtomicBool::new(false))
    }

    fn not_image(r: &Outcome) -> bool {
        matches!(r, Err(RecoverError::NotTar { offset: 0 }))
    }

    fn break_header(image: &mut [u8], at: usize) {
        image[at + 101] ^= 0x04;
    }

    /// The ustar header of a file member, after its pax header.
    fn data_header(img: &Image, path: &str) -> usize {
        (img.fh(path)..img.next_fh(path))
            .step_by(512)
            .find(|&o| img.bytes[o + 156] == b'0' && &img.bytes[o + 257..o + 262] == b"ustar")
            .unwrap()
    }

    fn extra_cuts(_: &Image) -> Vec<usize> {
        Vec::new()
    }

    /// Header bytes with and without a fixed checksum, data bytes, and cuts.
    fn mutate(img: &Image, rng: &mut Rng, _seed: u64) -> (Vec<u8>, bool) {
        let (used, headers) = (img.end, &img.headers);
        let mut v = img.bytes.clone();
        for _ in 0..1 + rng.below(6) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(used);
                    v[at] = rng.next() as u8;
                }
                _ => {
                    let h = headers[rng.below(headers.len())];
                    // Mostly the fields that matter: name, mode, size, type, link, magic,
                    // and the first data block (pax records, sparse maps).
                    let f =
                        [0, 100, 124, 127, 134, 156, 157, 257, 345, 512, 520, 530][rng.below(12)];
                    let at = h + if rng.below(4) == 0 {
                        rng.below(1024)
                    } else {
                        f + rng.below(8)
                    };
                    if at < v.len() {
                        v[at] = rng.next() as u8;
                    }
                    if rng.below(2) == 0 {
                        seal(&mut v[h..h + 512]);
                    }
                }
            }
        }
        if rng.below(5) == 0 {
            v.truncate(rng.below(used));
        }
        (v, false)
    }

    /// Names that climb out, absolute names, symlinks to outside or to ".." followed by
    /// members through them, hard links to outside, symlinks already in the destination.
    fn hostile(_tmp: &Path, outside: &Path) -> Hostile {
        let mut v = Vec::new();
        add(&mut v, b"../escape", b'0', b"bad", b"");
        add(&mut v, b"/abs/x", b'0', b"abs", b"");
        add(&mut v, b"a/../../x", b'0', b"bad", b"");
        add(&mut v, b"link", b'2', b"", outside.as_os_str().as_bytes());
        add(&mut v, b"link/file", b'0', b"bad", b"");
        add(&mut v, b"up", b'2', b"", b"..");
        add(&mut v, b"up/file2", b'0', b"bad", b"");
        add(&mut v, b"up/", b'5', b"", b"");
        add(&mut v, b"hl", b'1', b"", b"../outside/x");
        add(&mut v, b"hl2", b'1', b"", b"link");
        add(&mut v, b"pre/x", b'0', b"bad", b"");
        add(&mut v, b"pre2/", b'5', b"", b"");
        add(&mut v, b"pre2/y", b'0', b"fine", b"");
        add(&mut v, b"", b'0', b"empty name", b"");
        add(&mut v, b"ok", b'0', b"ok", b"");
        end(&mut v);
        Hostile {
            image: v,
            planted: vec!["pre", "pre2"],
            refused: vec![
                "../escape",
                "a/../../x",
                "link/file",
                "up/file2",
                "hl",
                "pre/x",
                "",
            ],
            refused_warnings: None,
            files: vec![("abs/x", b"abs"), ("ok", b"ok"), ("pre2/y", b"fine")],
            dirs: vec!["pre2"],
            // A hard link to the symlink is a link to the symlink itself.
            symlinks: vec!["link", "hl2"],
        }
    }
}

// ------------------------------------------------------------------ the scenarios

/// `small_tree` in `tmp/src` and our writer's image of it.
fn small_image<F: Format>(tmp: &Path) -> (std::path::PathBuf, Image) {
    let src = tmp.join("src");
    small_tree(&src);
    let img = F::image(&src);
    (src, img)
}

/// Names that climb out and symlink tricks: refused or kept inside as the format says,
/// and nothing lands outside the destination.
fn hostile_names_stay_inside<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (boxdir, dest) = boxed(tmp.path(), "box");
    let outside = boxdir.join("outside");
    let h = F::hostile(tmp.path(), &outside);
    fs::create_dir_all(&dest).unwrap();
    for p in &h.planted {
        std::os::unix::fs::symlink(&outside, dest.join(p)).unwrap();
    }
    let (r, log) = F::recover(&h.image, &opts(&dest));
    r.unwrap();
    assert_confined(&boxdir);
    for p in &h.refused {
        let raw = if p.is_empty() { "." } else { p };
        assert!(
            log.failed_path(raw) || log.failed_path(p),
            "{p} not refused: {:?}",
            log.restored
        );
    }
    if let Some(n) = h.refused_warnings {
        let refused = log
            .warnings
            .iter()
            .filter(|w| w.contains("refused"))
            .count();
        assert_eq!(refused, n, "{:?}", log.warnings);
    }
    for (p, data) in &h.files {
        assert_eq!(fs::read(dest.join(p)).unwrap(), *data, "{p}");
    }
    for d in &h.dirs {
        assert!(fs::symlink_metadata(dest.join(d)).unwrap().is_dir(), "{d}");
    }
    for s in &h.symlinks {
        assert!(
            fs::symlink_metadata(dest.join(s))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{s}"
        );
    }
}

/// A symlink already in the destination where the image has a directory is not followed:
/// the directory replaces it, and its contents land inside.
fn planted_symlink_is_not_followed<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_image::<F>(tmp.path());
    let (boxdir, dest) = boxed(tmp.path(), "box");
    fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(boxdir.join("outside"), dest.join("sub")).unwrap();
    let (r, _) = F::recover(&img.bytes, &opts(&dest));
    r.unwrap();
    assert_confined(&boxdir);
    assert!(fs::symlink_metadata(dest.join("sub")).unwrap().is_dir());
    assert_eq!(
        fs::read(dest.join("sub/b.txt")).unwrap(),
        fs::read(src.join("sub/b.txt")).unwrap()
    );
    assert_eq!(fs::read(dest.join("sub/deep/c.txt")).unwrap(), b"gamma");
}

/// A spoilt header (bad checksum) costs that object only, with a warning naming its
/// offset; reading goes on in step.
fn damaged_header_costs_one_object<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, img) = small_image::<F>(tmp.path());
    let at = F::data_header(&img, "sub/b.txt");
    let mut bad = img.bytes.clone();
    F::break_header(&mut bad, at);
    let dest = tmp.path().join("bad");
    let (r, log) = F::recover(&bad, &opts(&dest));
    r.unwrap();
    assert!(
        log.warnings
            .iter()
            .any(|w| w.contains(&format!("bad header at byte {at}"))),
        "{:?}",
        log.warnings
    );
    assert_eq!(log.failed().len(), 1, "{:?}", log.failed());
    assert!(log.failed()[0].starts_with("sub/b.txt"));
    assert!(log.failed_path("sub/b.txt"));
    assert!(!dest.join("sub/b.txt").exists());
    assert_eq!(fs::read(dest.join("sub/deep/c.txt")).unwrap(), b"gamma");
    assert_eq!(fs::read(dest.join("z.txt")).unwrap(), b"zeta");
}

/// A spoilt first header, no input at all, or noise: not an image of the format (nothing
/// created, for a reader that checks first), or `Truncated` at 0 for empty input.
fn not_an_image<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, img) = small_image::<F>(tmp.path());
    let dest = tmp.path().join("first");
    let mut bad = img.bytes.clone();
    F::break_header(&mut bad, 0);
    let (r, _) = F::recover(&bad, &opts(&dest));
    assert!(F::not_image(&r), "{r:?}");
    if F::CHECKS_BEFORE_CREATING {
        assert!(!dest.exists());
    }
    let (r, _) = F::recover(b"", &opts(&dest));
    assert!(
        matches!(r, Err(RecoverError::Truncated { offset: 0 })),
        "{r:?}"
    );
    let (r, _) = F::recover(&pattern(10240, 4), &opts(&dest));
    assert!(F::not_image(&r), "{r:?}");
    if F::CHECKS_BEFORE_CREATING {
        assert!(!dest.exists());
    }
}

/// Data after the end marker is read to the end of input and reported once.
fn data_after_the_end<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, img) = small_image::<F>(tmp.path());
    let mut more = img.bytes.clone();
    more.extend_from_slice(&pattern(3000, 5));
    let (r, log) = F::recover(&more, &opts(&tmp.path().join("more")));
    assert_eq!(r.unwrap().bytes, more.len() as u64);
    assert_eq!(log.warnings.len(), 1, "{:?}", log.warnings);
}

/// An image cut anywhere before its end marker (on a record boundary, inside a record) is
/// `Truncated`, and nothing lands outside the destination.
fn cut_anywhere_is_truncated<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, img) = small_image::<F>(tmp.path());
    let mut cuts: BTreeSet<usize> = (0..img.end).step_by(F::RECORD).collect();
    cuts.extend((0..img.end).step_by(F::RECORD).map(|c| c + 100));
    cuts.extend(F::extra_cuts(&img));
    for cut in cuts {
        let (boxdir, dest) = boxed(tmp.path(), &format!("cut{cut}"));
        let (r, _) = F::recover(&img.bytes[..cut], &opts(&dest));
        assert!(
            matches!(r, Err(RecoverError::Truncated { .. })),
            "cut {cut}: {r:?}"
        );
        assert_confined(&boxdir);
    }
}

/// Cut inside sub/b.txt's data: what came before it is there, b.txt is reported and not
/// left behind (nor its temporary file), and the directories still got their attributes.
fn cut_inside_a_file<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_image::<F>(tmp.path());
    let cut = img.next_fh("sub/b.txt") - 600;
    let dest = tmp.path().join("mid");
    let (r, log) = F::recover(&img.bytes[..cut], &opts(&dest));
    assert!(matches!(r, Err(RecoverError::Truncated { .. })), "{r:?}");
    assert!(log.failed_path("sub/b.txt"), "{:?}", log.failed());
    assert!(!dest.join("sub/b.txt").exists());
    let b = img.fh("sub/b.txt");
    for (p, kind, fh) in &img.names {
        if *kind == FileKind::File && *fh < b {
            let p = std::ffi::OsStr::from_bytes(p);
            assert_eq!(
                fs::read(dest.join(p)).unwrap(),
                fs::read(src.join(p)).unwrap(),
                "{p:?}"
            );
        }
    }
    assert_eq!(
        fs::metadata(dest.join("sub")).unwrap().mtime(),
        fs::metadata(src.join("sub")).unwrap().mtime()
    );
    let leftovers: Vec<_> = fs::read_dir(dest.join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b"."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Randomly damaged images, read whole, listed and read from a random header as DAR:
/// errors or warnings, never a panic, nothing outside the destination.
fn random_damage_never_escapes<F: Format>() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src);
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.write_all_at(b"data", 1 << 20).unwrap();
    f.set_len(2 << 20).unwrap();
    drop(f);
    write(&src.join("x".repeat(150)), b"long");
    set_xattr(&src.join("z.txt"), "user.k", b"v");
    let img = F::image(&src);
    for seed in 1..=F::MUTATIONS {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (v, junk) = F::mutate(&img, &mut rng, seed);
        let (boxdir, dest) = boxed(tmp.path(), &format!("m{seed}"));
        let (r, _) = F::recover(&v, &opts(&dest));
        if junk {
            assert!(F::not_image(&r), "seed {seed}: {r:?}");
        }
        let _ = F::list(&v);
        let at = img.headers[rng.below(img.headers.len())].min(v.len());
        let _ = F::read_one(&v[at..], &dest.join("one"), &opts(&dest));
        assert_confined(&boxdir);
        fs::remove_dir_all(&boxdir).unwrap();
    }
}

/// One test per scenario and format: `dump::name` and `tar::name`.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod dump {
            $(#[test] fn $name() { super::$name::<super::Dump>() })*
        }
        mod tar {
            $(#[test] fn $name() { super::$name::<super::Tar>() })*
        }
    };
}

scenarios!(
    hostile_names_stay_inside,
    planted_symlink_is_not_followed,
    damaged_header_costs_one_object,
    not_an_image,
    data_after_the_end,
    cut_anywhere_is_truncated,
    cut_inside_a_file,
    random_damage_never_escapes,
);
