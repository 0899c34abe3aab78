//! The file-system side of the tar reader: maps members to destinations by selection,
//! creates them through `fsops` below the destination root, and lists archives.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::header;
use super::read::{Archive, Kind, Member, Next, Sparse, CHUNK};
use crate::format::dump::{FileKind, NodeStat};
use crate::format::finish::{put_at, Finisher, SmallFile, SMALL_FILE};
use crate::format::fsops::{self, Attrs, Obj, ParentDir};
use crate::format::recover::{
    dest_rel, show, split_last, Event, RecoverError, RecoverOptions, Reporter, Sel, Summary,
};

/// One member as `list_tar` reports it: the same path, stat and fh_info as the writer's
/// `Event::File` for it.
#[derive(Debug)]
pub struct ListEntry<'a> {
    /// The history path ("/" for the root).
    pub path: &'a [u8],
    /// Its attributes.
    pub stat: &'a NodeStat,
    /// Archive offset of its first header (its pax header when it has one).
    pub fh_info: u64,
}

/// Most bytes of names kept to resolve hard links (and, listing, their targets' stats).
const MAX_LINK_BYTES: usize = 128 << 20;
/// Most directories whose attributes are kept for the end.
const MAX_DIRS: usize = 1 << 23;
/// Most attribute bytes kept for directories until their attributes are applied.
const MAX_DIR_XATTR_BYTES: usize = 64 << 20;

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A member name as path components: leading "/" and "./" and inner "." dropped; empty
/// names and names with ".." or NUL refused.
fn name_comps(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.contains(&0) {
        return Err("name contains NUL");
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("name contains .."),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(a: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut p = a.to_vec();
    for c in rest {
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(c);
    }
    p
}

/// The numeric id of a user or group name (named ACL entries in text form).
fn lookup_id(user: bool, name: &[u8]) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    if user {
        // SAFETY: passwd is a plain C struct for which all-zero is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid name, struct, buffer of the given length and result pointer.
        let r =
            unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
        (r == 0 && !res.is_null()).then_some(pw.pw_uid)
    } else {
        // SAFETY: group is a plain C struct for which all-zero is a valid value.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid name, struct, buffer of the given length and result pointer.
        let r =
            unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut res) };
        (r == 0 && !res.is_null()).then_some(gr.gr_gid)
    }
}

/// A member's attributes ready for setxattr: its SCHILY.xattr records, plus the ACLs of
/// its SCHILY.acl text records when the raw ACL attribute is not there.
fn xattr_list(m: &Member, warn: &mut dyn FnMut(String)) -> Xattrs {
    let mut v = m.xattrs.clone();
    for (i, name) in [&b"system.posix_acl_access"[..], b"system.posix_acl_default"]
        .iter()
        .enumerate()
    {
        let Some(text) = &m.acl_text[i] else { continue };
        if v.iter().any(|(n, _)| n == name) {
            continue;
        }
        match header::acl_from_text(text, &lookup_id) {
            Ok(val) => v.push((name.to_vec(), val)),
            Err(e) => warn(format!(
                "{}: ACL not restored: {e}",
                String::from_utf8_lossy(&m.name)
            )),
        }
    }
    v
}

/// Why a member is not restored when reading its data failed with `e`.
fn cut_short(e: &RecoverError) -> &'static str {
    match e {
        RecoverError::Truncated { .. } => "the archive ends inside its data",
        _ => "reading the archive failed inside its data",
    }
}

/// A member's owner, mode and times; a member without an access time gets its
/// modification time there too.
fn attrs(m: &Member) -> Attrs {
    Attrs {
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        atime: m.atime.unwrap_or(m.mtime),
        mtime: m.mtime,
    }
}

/// Buffers a file's data into large positioned writes; bytes never written stay holes.
struct FileOut<'f> {
    file: &'f File,
    buf: &'f mut Vec<u8>,
    at: u64,
    /// End of the data written so far: the size needs setting only when a hole ends it.
    end: u64,
    err: Option<io::Error>,
}

impl FileOut<'_> {
    fn put(&mut self, off: u64, data: &[u8]) {
        if self.err.is_some() {
            return;
        }
        self.end = self.end.max(off + data.len() as u64);
        if !self.buf.is_empty()
            && (self.at + self.buf.len() as u64 != off || self.buf.len() + data.len() > CHUNK)
        {
            self.flush();
        }
        if self.buf.is_empty() && data.len() >= CHUNK / 4 {
            if let Err(e) = self.file.write_all_at(data, off) {
                self.err = Some(e);
            }
            return;
        }
        if self.buf.is_empty() {
            self.at = off;
        }
        self.buf.extend_from_slice(data);
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() && self.err.is_none() {
            if let Err(e) = self.file.write_all_at(self.buf, self.at) {
                self.err = Some(e);
            }
        }
        self.buf.clear();
    }

    /// The file at its full size (a trailing hole stays a hole).
    fn finish(mut self, size: u64) -> io::Result<()> {
        self.flush();
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        // A new file is as long as its data; only a trailing hole needs the size set.
        if self.end == size {
            return Ok(());
        }
        self.file.set_len(size)
    }
}

/// A restored directory whose attributes are set at the end.
struct DirAttrs {
    dest: Vec<u8>,
    attrs: Attrs,
    xattrs: Xattrs,
}

struct Restorer<'e> {
    root: OwnedFd,
    owner: bool,
    /// Leave existing non-directories alone (`RecoverOptions::keep_existing`).
    keep: bool,
    /// Events and totals.
    out: Reporter<'e>,
    sels: Vec<Sel>,
    dirs: Vec<DirAttrs>,
    dir_at: HashMap<Vec<u8>, usize>,
    dir_xattr_bytes: usize,
    /// Archive path -> destination of each non-directory restored (empty = the same).
    links: HashMap<Vec<u8>, Vec<u8>>,
    link_bytes: usize,
    links_full: bool,
    /// Parent directories of non-directories.
    parents: fsops::Parents,
    buf: Vec<u8>,
    /// How new files are kept nameless until complete.
    staging: fsops::Staging,
    /// Writes small files on other threads (whole-archive restores only).
    fin: Option<Finisher>,
    /// Destinations of the files with the finisher: a later member of the same name (an
    /// archive may hold a path twice; the last one wins) waits until they are written.
    inflight: std::collections::HashSet<Vec<u8>>,
}

impl<'e> Restorer<'e> {
    fn new(
        root: OwnedFd,
        opts: &RecoverOptions,
        events: &'e mut dyn FnMut(Event),
        sels: Vec<Sel>,
    ) -> Self {
        Restorer {
            root,
            owner: opts.restore_owner && fsops::is_root(),
            keep: opts.keep_existing,
            out: Reporter {
                events,
                sum: Summary::default(),
            },
            sels,
            dirs: Vec::new(),
            dir_at: HashMap::new(),
            dir_xattr_bytes: 0,
            links: HashMap::new(),
            link_bytes: 0,
            links_full: false,
            parents: fsops::Parents::default(),
            buf: Vec::new(),
            staging: fsops::Staging::default(),
            fin: None,
            inflight: std::collections::HashSet::new(),
        }
    }

    /// Reports the files the finisher has written (`wait`: all of them, waiting) and
    /// remembers their names for later hard links.
    fn collect(&mut self, wait: bool) {
        while let Some(d) = self.fin.as_mut().and_then(|f| f.collect(wait)) {
            for w in d.warnings {
                self.warn(w);
            }
            if let Some((key, dest)) = &d.tag {
                self.inflight.remove(dest);
                if d.res.is_ok() {
                    self.remember(key, dest);
                }
            }
            if d.res.is_ok() {
                self.out.sum.files += 1;
            }
            self.report(&d.path, d.res);
        }
    }

    fn warn(&mut self, s: String) {
        self.out.warn(s);
    }

    fn report(&mut self, path: &[u8], res: Result<(), String>) {
        self.out.report(path, res);
    }

    /// Where a member goes, or None when it is not selected. Selections: the longest
    /// selected path that is a prefix of the member's wins; a directory on the way to an
    /// in-place selection is restored in place (for its attributes), the root excepted.
    fn target(&mut self, comps: &[&[u8]], is_dir: bool) -> Option<Vec<u8>> {
        if self.sels.is_empty() {
            return Some(join(b"", comps));
        }
        let covers = |s: &Sel| {
            s.comps.len() <= comps.len() && s.comps.iter().zip(comps).all(|(a, b)| a == b)
        };
        let best = (0..self.sels.len())
            .filter(|&i| covers(&self.sels[i]))
            .max_by_key(|&i| self.sels[i].comps.len());
        if let Some(i) = best {
            let s = &mut self.sels[i];
            s.found = true;
            return Some(join(&s.dest, &comps[s.comps.len()..]));
        }
        let on_the_way = |s: &Sel| {
            s.in_place
                && s.comps.len() > comps.len()
                && s.comps.iter().zip(comps).all(|(a, b)| a == b)
        };
        (is_dir && !comps.is_empty() && self.sels.iter().any(on_the_way)).then(|| join(b"", comps))
    }

    fn remember(&mut self, key: &[u8], dest: &[u8]) {
        if self.links_full {
            return;
        }
        let val = if key == dest {
            Vec::new()
        } else {
            dest.to_vec()
        };
        self.link_bytes += key.len() + val.len() + 64;
        if self.link_bytes > MAX_LINK_BYTES {
            self.links_full = true;
            self.warn(format!(
                "more than {} MiB of names restored; later hard links to them cannot be made",
                MAX_LINK_BYTES >> 20
            ));
            return;
        }
        self.links.insert(key.to_vec(), val);
    }

    /// A refused member name.
    fn refused(&mut self, name: &[u8], why: &str) {
        if self.sels.is_empty() {
            self.report(name, Err(format!("refused: {why}")));
        } else {
            self.warn(format!(
                "member {:?} refused: {why}",
                String::from_utf8_lossy(name)
            ));
        }
    }

    /// A member whose header was damaged.
    fn lost(&mut self, name: &[u8]) {
        let Ok(comps) = name_comps(name) else { return };
        if self.target(&comps, false).is_some() {
            let path = join(b"", &comps);
            self.report(&path, Err("its header is damaged in the archive".into()));
        }
    }

    fn member(
        &mut self,
        ar: &mut Archive<'_>,
        m: &Member,
        abort: &AtomicBool,
    ) -> Result<(), RecoverError> {
        let comps = match name_comps(&m.name) {
            Ok(c) => c,
            Err(why) => {
                self.refused(&m.name, why);
                return Ok(());
            }
        };
        let path = join(b"", &comps);
        let Some(dest) = self.target(&comps, m.kind == Kind::Dir) else {
            return Ok(());
        };
        if let Some(why) = &m.damage {
            self.report(&path, Err(why.clone()));
            return Ok(());
        }
        if self.inflight.contains(&dest) {
            self.collect(true);
        }
        match m.kind {
            Kind::Dir => self.dir(m, &path, &dest),
            Kind::HardLink => self.hard_link(m, &path, &dest),
            _ => self.object(ar, m, Some(&path), &path, &dest, abort)?,
        }
        Ok(())
    }

    fn keep_dir(&mut self, m: &Member, dest: &[u8]) -> bool {
        let mut xattrs = {
            let ev = &mut *self.out.events;
            xattr_list(m, &mut |s| ev(Event::Warning(s)))
        };
        let bytes: usize = xattrs.iter().map(|(n, v)| n.len() + v.len()).sum();
        if self.dir_xattr_bytes + bytes > MAX_DIR_XATTR_BYTES {
            self.warn(format!(
                "{}: too many directory attributes to hold; not restored",
                show(dest)
            ));
            xattrs.clear();
        } else {
            self.dir_xattr_bytes += bytes;
        }
        let d = DirAttrs {
            dest: dest.to_vec(),
            attrs: attrs(m),
            xattrs,
        };
        match self.dir_at.get(dest) {
            Some(&i) => {
                self.dirs[i] = d;
                false
            }
            None if self.dirs.len() >= MAX_DIRS => {
                if self.dirs.len() == MAX_DIRS {
                    self.warn(format!(
                        "more than {MAX_DIRS} directories; the attributes of later ones are not set"
                    ));
                    // The directory reaching the bound is still kept: the warning comes once.
                    self.dirs.push(d);
                }
                true
            }
            None => {
                self.dir_at.insert(dest.to_vec(), self.dirs.len());
                self.dirs.push(d);
                true
            }
        }
    }

    fn dir(&mut self, m: &Member, path: &[u8], dest: &[u8]) {
        match fsops::ensure_dir(self.root.as_fd(), dest, !dest.is_empty()) {
            Ok(_) => {
                if self.keep_dir(m, dest) {
                    self.out.sum.dirs += 1;
                }
                self.report(path, Ok(()));
            }
            Err(e) => self.report(path, Err(e.to_string())),
        }
    }

    fn hard_link(&mut self, m: &Member, path: &[u8], dest: &[u8]) {
        // Its target may be with the finisher still: it must have its name first.
        if self.fin.as_ref().is_some_and(Finisher::busy) {
            self.collect(true);
        }
        let res = self.make_link(m, dest);
        if res.is_ok() {
            self.remember(path, dest);
        }
        self.report(path, res);
    }

    fn make_link(&mut self, m: &Member, dest: &[u8]) -> Result<(), String> {
        let target = match name_comps(&m.link) {
            Ok(c) if !c.is_empty() => join(b"", &c),
            Ok(_) => return Err("links to the archive root".into()),
            Err(why) => return Err(format!("link target refused: {why}")),
        };
        let tdest = match self.links.get(&target) {
            Some(d) if d.is_empty() => target.clone(),
            Some(d) => d.clone(),
            None if self.links_full => {
                return Err("too many names to remember the link target".into())
            }
            None => return Err(format!("its target {} was not restored", show(&target))),
        };
        if tdest == dest {
            return Ok(());
        }
        let (td, tn) = split_last(&tdest);
        let (d, n) = split_last(dest);
        if n.is_empty() {
            return Err("no usable destination name".into());
        }
        let from = fsops::walk(self.root.as_fd(), &td).map_err(|e| format!("hard link: {e}"))?;
        let dir = self
            .parents
            .open(self.root.as_fd(), &d)
            .map_err(|e| e.to_string())?;
        if self.keep && fsops::exists(dir.as_fd(), &n).is_ok_and(|e| e.is_some()) {
            return Err("exists; not replaced (FORCE=Y replaces)".into());
        }
        fsops::link(from.as_fd(), &tn, dir.as_fd(), &n).map_err(|e| format!("hard link: {e}"))
    }

    /// Files, symlinks, FIFOs and devices. `key` is the archive path remembered for hard
    /// links (None for DAR); `shown` the path events carry.
    fn object(
        &mut self,
        ar: &mut Archive<'_>,
        m: &Member,
        key: Option<&[u8]>,
        shown: &[u8],
        dest: &[u8],
        abort: &AtomicBool,
    ) -> Result<(), RecoverError> {
        let (d, name) = split_last(dest);
        if name.is_empty() {
            self.report(shown, Err("no usable destination name".into()));
            return Ok(());
        }
        let dir = match self.parents.open(self.root.as_fd(), &d) {
            Ok(fd) => fd,
            Err(e) => {
                self.report(shown, Err(e.to_string()));
                return Ok(());
            }
        };
        if self.keep {
            let exists = fsops::exists(dir.as_fd(), &name);
            let in_way = match m.kind {
                // A directory in the way makes the creation fail anyway, with its reason;
                // a file's name is checked when it is published (its link fails if taken).
                Kind::Symlink | Kind::Fifo | Kind::CharDev | Kind::BlockDev => {
                    matches!(exists, Ok(Some(false)))
                }
                _ => false,
            };
            if in_way {
                self.report(shown, Err("exists; not replaced (FORCE=Y replaces)".into()));
                return Ok(());
            }
        }
        if m.kind == Kind::File
            && self.fin.is_some()
            && m.realsize <= SMALL_FILE
            && matches!(m.sparse, Sparse::No)
        {
            return self.small(ar, m, key, shown, dest, dir, name, abort);
        }
        // A file is written without a name (or under a temporary one) and given its name
        // when complete.
        let mut temp: Option<fsops::Staged> = None;
        let mut fresh = fsops::Fresh::default();
        let made: Result<Option<File>, String> = match m.kind {
            Kind::File => match self.staging.create_fresh(&dir, &name, m.mode) {
                Ok((file, t, f)) => {
                    temp = Some(t);
                    fresh = f;
                    let mut buf = std::mem::take(&mut self.buf);
                    let mut out = FileOut {
                        file: &file,
                        buf: &mut buf,
                        at: 0,
                        end: 0,
                        err: None,
                    };
                    let r = ar.data(m, Some(&mut |off, b| out.put(off, b)), abort);
                    let r = match r {
                        Ok(Ok(())) => out.finish(m.realsize).map_err(|e| e.to_string()),
                        Ok(Err(why)) => Err(why),
                        Err(e) => {
                            drop(out);
                            self.buf = buf;
                            drop(file);
                            if let Some(t) = &temp {
                                fsops::unstage(dir.as_fd(), t);
                            }
                            if !matches!(e, RecoverError::Aborted) {
                                self.report(shown, Err(cut_short(&e).into()));
                            }
                            return Err(e);
                        }
                    };
                    self.buf = buf;
                    r.map(|()| Some(file))
                }
                Err(e) => Err(e.to_string()),
            },
            Kind::Symlink => {
                if m.link.is_empty() || m.link.contains(&0) {
                    Err("empty or damaged symlink target".into())
                } else {
                    fsops::symlink(dir.as_fd(), &name, &m.link)
                        .map(|()| None)
                        .map_err(|e| e.to_string())
                }
            }
            Kind::Fifo | Kind::CharDev | Kind::BlockDev => {
                let (ifmt, rdev) = match m.kind {
                    Kind::Fifo => (libc::S_IFIFO, 0),
                    Kind::CharDev => (libc::S_IFCHR, libc::makedev(m.rdev.0, m.rdev.1)),
                    _ => (libc::S_IFBLK, libc::makedev(m.rdev.0, m.rdev.1)),
                };
                if ifmt != libc::S_IFIFO && !fsops::is_root() {
                    Err("device nodes can only be created as root".into())
                } else {
                    fsops::mknod(dir.as_fd(), &name, ifmt | m.mode, rdev)
                        .map(|()| None)
                        .map_err(|e| e.to_string())
                }
            }
            Kind::Unknown(c) => Err(format!("member type {:?} is not supported", char::from(c))),
            Kind::Dir | Kind::HardLink => Err("not an object".into()),
        };
        let file = match made {
            Ok(f) => f,
            Err(why) => {
                if let Some(t) = &temp {
                    fsops::unstage(dir.as_fd(), t);
                }
                self.report(shown, Err(why));
                return Ok(());
            }
        };
        let symlink = m.kind == Kind::Symlink;
        let obj = match &file {
            Some(f) => Obj::Fd(f.as_raw_fd()),
            None => Obj::At(dir.as_fd(), &name),
        };
        let a = attrs(m);
        let res = match &file {
            Some(f) => fsops::owner_mode_fresh(f, &a, self.owner, fresh),
            None => fsops::owner_mode(&obj, &a, self.owner, symlink),
        };
        let mut res = res.map_err(|e| format!("setting owner or mode: {e}"));
        if res.is_ok() {
            let list = {
                let ev = &mut *self.out.events;
                xattr_list(m, &mut |s| ev(Event::Warning(s)))
            };
            for e in fsops::set_xattrs(&obj, &list) {
                let msg = format!("{}: {e}", show(shown));
                (self.out.events)(Event::Warning(msg));
            }
            res = fsops::times(&obj, &a).map_err(|e| format!("setting times: {e}"));
        }
        if let Some(t) = temp {
            match (&res, &file) {
                (Ok(()), Some(f)) => {
                    res = self
                        .staging
                        .publish_new(dir.as_fd(), f, t, &name, self.keep)
                        .map_err(|e| e.to_string())
                }
                _ => fsops::unstage(dir.as_fd(), &t),
            }
        }
        drop(file);
        if res.is_ok() {
            self.out.sum.files += 1;
            if let Some(k) = key {
                self.remember(k, dest);
            }
        }
        self.report(shown, res);
        Ok(())
    }

    /// A small regular file: its data is read whole, then the finisher writes it (nothing
    /// is created before, so a failure leaves nothing to clean up).
    #[allow(clippy::too_many_arguments)]
    fn small(
        &mut self,
        ar: &mut Archive<'_>,
        m: &Member,
        key: Option<&[u8]>,
        shown: &[u8],
        dest: &[u8],
        dir: std::sync::Arc<ParentDir>,
        name: Vec<u8>,
        abort: &AtomicBool,
    ) -> Result<(), RecoverError> {
        let Some(fin) = &mut self.fin else {
            return Ok(());
        };
        let mut data = fin.buffer();
        data.reserve(m.realsize as usize);
        match ar.data(m, Some(&mut |off, b| put_at(&mut data, off, b)), abort) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                self.report(shown, Err(why));
                return Ok(());
            }
            Err(e) => {
                if !matches!(e, RecoverError::Aborted) {
                    self.report(shown, Err(cut_short(&e).into()));
                }
                return Err(e);
            }
        }
        // as `FileOut::finish` sets the size: what the data leaves out reads as zeros
        data.resize(m.realsize as usize, 0);
        let xattrs = {
            let ev = &mut *self.out.events;
            xattr_list(m, &mut |s| ev(Event::Warning(s)))
        };
        let f = SmallFile {
            dir,
            name,
            path: shown.to_vec(),
            data,
            attrs: attrs(m),
            xattrs,
            owner: self.owner,
            keep: self.keep,
            tag: key.map(|k| (k.to_vec(), dest.to_vec())),
        };
        if key.is_some() {
            self.inflight.insert(dest.to_vec());
        }
        if let Some(fin) = &mut self.fin {
            fin.submit(f);
        }
        self.collect(false);
        Ok(())
    }

    /// Selections that matched nothing.
    fn missing(&mut self) {
        let missing: Vec<Vec<u8>> = self
            .sels
            .iter()
            .filter(|s| !s.found)
            .map(|s| s.comps.join(&b'/'))
            .collect();
        for p in missing {
            self.report(&p, Err("not in the image".into()));
        }
    }

    fn dir_attrs(&mut self, fd: &OwnedFd, d: &DirAttrs) -> Vec<String> {
        let obj = Obj::Fd(fd.as_raw_fd());
        let mut errs = Vec::new();
        if let Err(e) = fsops::owner_mode(&obj, &d.attrs, self.owner, false) {
            errs.push(format!("owner or mode: {e}"));
        }
        errs.extend(fsops::set_xattrs(&obj, &d.xattrs));
        if let Err(e) = fsops::times(&obj, &d.attrs) {
            errs.push(format!("times: {e}"));
        }
        errs
    }

    /// Owner, mode, attributes and times of every restored directory, deepest first.
    fn apply_dir_attrs(&mut self) {
        self.parents.forget();
        let mut dirs = std::mem::take(&mut self.dirs);
        self.dir_at.clear();
        let depth =
            |p: &[u8]| p.iter().filter(|&&b| b == b'/').count() + usize::from(!p.is_empty());
        dirs.sort_by_key(|d| std::cmp::Reverse(depth(&d.dest)));
        for d in dirs {
            let errs = match fsops::walk(self.root.as_fd(), &d.dest) {
                Ok(fd) => self.dir_attrs(&fd, &d),
                Err(e) => vec![format!("directory attributes not set: {e}")],
            };
            for e in errs {
                self.warn(format!("{}: {e}", show(&d.dest)));
            }
        }
    }
}

pub fn read_tar(
    input: &mut dyn Read,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    read_tar_buffered(
        &mut BufReader::with_capacity(CHUNK, input),
        opts,
        events,
        abort,
    )
}

/// `read_tar` over buffered input, member data written straight from its buffers.
pub fn read_tar_buffered(
    input: &mut dyn BufRead,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    let sels = opts.selections()?;
    let mut ar = Archive::buffered(input);
    // The first header is checked before anything is created.
    let first = ar.next(&mut |s| events(Event::Warning(s)), abort)?;
    let root = opts.open_dest()?;
    let mut r = Restorer::new(root, opts, events, sels);
    r.fin = Finisher::configured();
    let res = run(&mut ar, &mut r, first, abort);
    // Files handed over are complete: they are written and reported whatever came after.
    r.collect(true);
    let res = match res {
        Ok(()) => {
            r.missing();
            r.apply_dir_attrs();
            if let Some(f) = &opts.ended {
                f.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let other = ar.drain();
            if other > 0 {
                r.warn(format!(
                    "{other} bytes of other data after the end of the archive ignored"
                ));
            }
            Ok(())
        }
        Err(e @ (RecoverError::Truncated { .. } | RecoverError::Input(_))) => {
            // Keep what was read: the directories get their attributes.
            r.apply_dir_attrs();
            Err(e)
        }
        Err(e) => Err(e),
    };
    r.out.sum.bytes = ar.offset();
    res.map(|()| r.out.sum)
}

fn run(
    ar: &mut Archive<'_>,
    r: &mut Restorer<'_>,
    first: Next,
    abort: &AtomicBool,
) -> Result<(), RecoverError> {
    let mut next = first;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(RecoverError::Aborted);
        }
        match next {
            Next::End => return Ok(()),
            Next::Lost(Some(name)) => r.lost(&name),
            Next::Lost(None) => {}
            Next::Member(m) => r.member(ar, &m, abort)?,
        }
        next = {
            let ev = &mut *r.out.events;
            ar.next(&mut |s| ev(Event::Warning(s)), abort)?
        };
    }
}

pub fn read_one_tar(
    input: &mut dyn Read,
    dest: &Path,
    opts: &RecoverOptions,
    events: &mut dyn FnMut(Event),
    abort: &AtomicBool,
) -> Result<Summary, RecoverError> {
    let rel = dest_rel(dest, &opts.dest_root)?;
    if rel.is_empty() {
        return Err(RecoverError::BadSelection(format!(
            "{}: the destination root itself",
            dest.display()
        )));
    }
    let root = opts.open_dest()?;
    let mut ar = Archive::new(input, true);
    let m = match ar.next(&mut |s| events(Event::Warning(s)), abort)? {
        Next::Member(m) => m,
        Next::End | Next::Lost(_) => return Err(RecoverError::NotTar { offset: 0 }),
    };
    let shown = dest.as_os_str().as_bytes().to_vec();
    let mut r = Restorer::new(root, opts, events, Vec::new());
    let res = (|| {
        if let Some(why) = &m.damage {
            r.report(&shown, Err(why.clone()));
        } else {
            match m.kind {
                Kind::HardLink => r.report(
                    &shown,
                    Err(format!(
                        "a hard link to {}; restore that name instead",
                        String::from_utf8_lossy(&m.link)
                    )),
                ),
                Kind::Dir => r.dar_dir(&m, &shown, &rel),
                _ => r.object(&mut ar, &m, None, &shown, &rel, abort)?,
            }
        }
        ar.skip_rest(abort)
    })();
    r.out.sum.bytes = ar.offset();
    res.map(|()| r.out.sum)
}

impl Restorer<'_> {
    /// DAR of a directory: the directory itself with its attributes, set at once.
    fn dar_dir(&mut self, m: &Member, shown: &[u8], rel: &[u8]) {
        let fd = match fsops::ensure_dir(self.root.as_fd(), rel, true) {
            Ok(fd) => fd,
            Err(e) => {
                self.report(shown, Err(e.to_string()));
                return;
            }
        };
        let xattrs = {
            let ev = &mut *self.out.events;
            xattr_list(m, &mut |s| ev(Event::Warning(s)))
        };
        let d = DirAttrs {
            dest: rel.to_vec(),
            attrs: attrs(m),
            xattrs,
        };
        let errs = self.dir_attrs(&fd, &d);
        self.out.sum.dirs += 1;
        for e in errs {
            self.warn(format!("{}: {e}", show(shown)));
        }
        self.report(shown, Ok(()));
    }
}

/// The history stat of a member; `links` gives (kind, size) of hard-link targets.
fn member_stat(m: &Member, links: &HashMap<Vec<u8>, (FileKind, u64)>) -> NodeStat {
    let (kind, size) = match m.kind {
        Kind::File | Kind::Unknown(_) => (FileKind::File, m.realsize),
        Kind::Dir => (FileKind::Dir, 0),
        Kind::Symlink => (FileKind::Symlink, m.link.len() as u64),
        Kind::CharDev => (FileKind::CharDev, 0),
        Kind::BlockDev => (FileKind::BlockDev, 0),
        Kind::Fifo => (FileKind::Fifo, 0),
        Kind::HardLink => name_comps(&m.link)
            .ok()
            .and_then(|c| links.get(&join(b"", &c)).copied())
            .unwrap_or((FileKind::File, 0)),
    };
    NodeStat {
        kind,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size,
        atime: m.atime.unwrap_or(m.mtime).0,
        mtime: m.mtime.0,
        ctime: m.ctime.unwrap_or(m.mtime).0,
        nlink: 1,
    }
}

pub fn list_tar(
    input: &mut dyn Read,
    events: &mut dyn FnMut(ListEntry<'_>),
    warn: &mut dyn FnMut(String),
    abort: &AtomicBool,
    ended: &AtomicBool,
) -> Result<u64, RecoverError> {
    let mut input = BufReader::with_capacity(CHUNK, input);
    let mut ar = Archive::buffered(&mut input);
    let mut links: HashMap<Vec<u8>, (FileKind, u64)> = HashMap::new();
    let mut link_bytes = 0usize;
    loop {
        let m = match ar.next(warn, abort)? {
            Next::End => break,
            Next::Lost(_) => continue,
            Next::Member(m) => m,
        };
        let comps = match name_comps(&m.name) {
            Ok(c) => c,
            Err(why) => {
                warn(format!(
                    "member {:?} not listed: {why}",
                    String::from_utf8_lossy(&m.name)
                ));
                continue;
            }
        };
        let key = join(b"", &comps);
        let stat = member_stat(&m, &links);
        let mut path = b"/".to_vec();
        path.extend_from_slice(&key);
        events(ListEntry {
            path: &path,
            stat: &stat,
            fh_info: m.offset,
        });
        if stat.kind != FileKind::Dir && link_bytes < MAX_LINK_BYTES {
            link_bytes += key.len() + 64;
            links.insert(key, (stat.kind, stat.size));
        }
    }
    ended.store(true, std::sync::atomic::Ordering::Relaxed);
    let other = ar.drain();
    if other > 0 {
        warn(format!(
            "{other} bytes of other data after the end of the archive ignored"
        ));
    }
    Ok(ar.offset())
}
