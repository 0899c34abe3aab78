//! The stock Linux `dump` run on a tree without mounting anything: the tree goes into an
//! ext4 image file with `mke2fs -d` and `dump -0` reads that (tests of recover use it).

use super::fulltree::is_root;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why [`stock_image`] gives None, and what to install to change that.
pub const CANNOT_DUMP_AN_IMAGE: &str =
    "the stock dump cannot read an image file here: it needs cc (apt-get install gcc) for \
     its LD_PRELOAD shim, or root and losetup (apt-get install mount)";

pub fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Runs the stock `dump -0` of the ext image `fs_img` into `out`. dump takes a path that
/// is not a block device for a directory of a mounted file system when an ext* mount
/// covers it, so its mount-table lookup is hidden with a tiny LD_PRELOAD shim built with
/// cc, or (as root) the image is dumped through a read-only loop device. None when
/// neither is possible.
pub fn stock_dump(dump: &Path, fs_img: &Path, out: &Path, work: &Path) -> Option<String> {
    let run = |cmd: &mut Command| -> Option<String> {
        let o = cmd.output().ok()?;
        let log =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        (o.status.success() && log.contains("DUMP IS DONE") && !log.contains("(dir "))
            .then_some(log)
    };
    if let Some(cc) = tool("cc").or_else(|| tool("gcc")) {
        let c = work.join("nomnt.c");
        let so = work.join("nomnt.so");
        fs::write(
            &c,
            "#include <stdio.h>\n#include <mntent.h>\n\
             FILE *setmntent(const char *f, const char *m) { (void)f; return fopen(\"/dev/null\", m); }\n",
        )
        .unwrap();
        let built = Command::new(cc)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&so)
            .arg(&c)
            .status()
            .is_ok_and(|s| s.success());
        if built {
            let log = run(Command::new(dump)
                .env("LD_PRELOAD", &so)
                .args(["-0", "-b", "10", "-f"])
                .arg(out)
                .arg(fs_img));
            if log.is_some() {
                return log;
            }
        }
    }
    if is_root() {
        let losetup = tool("losetup")?;
        let o = Command::new(&losetup)
            .args(["-r", "-f", "--show"])
            .arg(fs_img)
            .output()
            .ok()?;
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !o.status.success() || dev.is_empty() {
            return None;
        }
        let log = run(Command::new(dump)
            .args(["-0", "-b", "10", "-f"])
            .arg(out)
            .arg(&dev));
        let _ = Command::new(&losetup).arg("-d").arg(&dev).status();
        return log;
    }
    None
}

/// `src` through `mke2fs -d` (block size `block`) and the stock `dump -0`; None when dump
/// cannot be run on an image file here.
pub fn stock_image(
    src: &Path,
    work: &Path,
    block: &str,
    dump: &Path,
    mke2fs: &Path,
    debugfs: &Path,
) -> Option<Vec<u8>> {
    let fs_img = work.join("fs.img");
    let o = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext4", "-b", block, "-N", "256", "-d"])
        .arg(src)
        .arg(&fs_img)
        .arg("32M")
        .output()
        .unwrap();
    assert!(o.status.success(), "mke2fs -d failed: {o:?}");
    let o = Command::new(debugfs)
        .args(["-w", "-R", "rmdir /lost+found"])
        .arg(&fs_img)
        .output()
        .unwrap();
    assert!(o.status.success());
    let image_path = work.join("stock.dump");
    stock_dump(dump, &fs_img, &image_path, work)?;
    Some(fs::read(&image_path).unwrap())
}
