//! File-system side of recover: creating objects under the destination root without ever
//! following a symlink found there, and applying owners, modes, times and xattrs.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn openat(dir: BorrowedFd<'_>, name: &[u8], flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name; the result is a fresh descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory the caller trusts (the destination root); symlinks in it are followed.
pub fn open_root(path: &std::path::Path) -> io::Result<OwnedFd> {
    std::fs::create_dir_all(path)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)?;
    Ok(f.into())
}

/// Whether this process runs as root: only root may give objects their owners or create
/// device nodes.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// Opens `rel` ("a/b/c", "" = the root itself) below `root`, refusing any component that
/// is a symlink or not a directory.
pub fn walk(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let mut cur = openat(root, b".", DIR_FLAGS, 0)?;
    for c in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        cur = openat(cur.as_fd(), c, DIR_FLAGS, 0)?;
    }
    Ok(cur)
}

/// Like `walk`, creating missing components. Missing parents get mode 0755; the last
/// component, when `own_last`, is ours to restore: created 0700 (its mode comes at the
/// end) and a non-directory in its place is removed first.
pub fn ensure_dir(root: BorrowedFd<'_>, rel: &[u8], own_last: bool) -> io::Result<OwnedFd> {
    let comps: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut cur = openat(root, b".", DIR_FLAGS, 0)?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mode = if last && own_last { 0o700 } else { 0o755 };
        cur = match openat(cur.as_fd(), c, DIR_FLAGS, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdirat(cur.as_fd(), c, mode)?;
                openat(cur.as_fd(), c, DIR_FLAGS, 0)?
            }
            Err(e)
                if last
                    && own_last
                    && matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) =>
            {
                unlinkat(cur.as_fd(), c, 0)?;
                mkdirat(cur.as_fd(), c, mode)?;
                openat(cur.as_fd(), c, DIR_FLAGS, 0)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// A parent directory of new objects, with what a new object in it gets without being told:
/// `owner_mode_fresh` leaves out the calls that would change nothing.
pub struct ParentDir {
    fd: OwnedFd,
    /// (uid, gid) of a new object here: our effective ids, the directory's group when it
    /// is set-group-ID. None when the directory could not be examined.
    born: Option<(u32, u32)>,
    /// No default ACL: a new object's mode is the one asked for less the umask (a default
    /// ACL would decide it instead).
    plain: bool,
}

impl AsFd for ParentDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl ParentDir {
    fn examine(fd: OwnedFd) -> Self {
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and a stat buffer of the right type.
        let stat_ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
        let born = stat_ok.then(|| {
            // SAFETY: getegid and geteuid have no preconditions.
            let (uid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let setgid = st.st_mode & libc::S_ISGID != 0;
            (uid, if setgid { st.st_gid } else { egid })
        });
        // SAFETY: valid descriptor and NUL-terminated name; a null buffer of size 0 only
        // asks whether the attribute is there.
        let r = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                c"system.posix_acl_default".as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        let none = r < 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::ENODATA | libc::EOPNOTSUPP)
            );
        ParentDir {
            fd,
            born,
            plain: none,
        }
    }
}

/// The parent directories of new objects, opened with `ensure_dir`; the last one stays
/// open because objects come in directory order and mostly share it with the one before.
/// It is handed out shared, not duplicated: a descriptor dup and close per restored file
/// were two of its ten system calls.
#[derive(Default)]
pub struct Parents {
    last: Option<(Vec<u8>, Arc<ParentDir>)>,
}

impl Parents {
    /// The directory `dir` below `root`, created if missing, never followed.
    pub fn open(&mut self, root: BorrowedFd<'_>, dir: &[u8]) -> io::Result<Arc<ParentDir>> {
        if let Some((d, fd)) = &self.last {
            if d == dir {
                return Ok(fd.clone());
            }
        }
        let fd = Arc::new(ParentDir::examine(ensure_dir(root, dir, false)?));
        self.last = Some((dir.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Closes the directory kept open.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

fn mkdirat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn unlinkat(dir: BorrowedFd<'_>, name: &[u8], flags: libc::c_int) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })
}

/// Removes a non-directory that is in the way of a new object; a directory stays and
/// makes the creation fail.
fn clear(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, name, 0) {
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Runs a creating call, replacing an existing non-directory once on EEXIST.
fn create(
    dir: BorrowedFd<'_>,
    name: &[u8],
    mut f: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    match f() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            clear(dir, name)?;
            f()
        }
        other => other,
    }
}

/// A new regular file (an existing non-directory of that name is replaced).
pub fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let mut out = None;
    create(dir, name, || {
        out = Some(openat(dir, name, flags, 0o600)?);
        Ok(())
    })?;
    out.map(File::from)
        .ok_or_else(|| io::Error::other("file not created"))
}

/// This process's id, asked of the kernel once rather than once per restored file.
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A fresh temporary name for `name`: ".name.ndmpd-PID-N".
fn temp_name(name: &[u8]) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    // A short stem keeps the temporary name within NAME_MAX whatever the real name's length.
    let stem = &name[..name.len().min(200)];
    let mut temp = b".".to_vec();
    temp.extend_from_slice(stem);
    temp.extend_from_slice(format!(".ndmpd-{}-{n}", pid()).as_bytes());
    temp
}

/// A new regular file under a temporary name next to `name` (".name.ndmpd-N", mode 0600),
/// with that name: `commit` renames it into place once it is complete, `discard` removes
/// it, so a failed restore never leaves a half-written file under the real name.
pub fn create_temp(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(File, Vec<u8>)> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    for _ in 0..16 {
        let temp = temp_name(name);
        match openat(dir, &temp, flags, 0o600) {
            Ok(fd) => return Ok((File::from(fd), temp)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}

/// Renames a file made by `create_temp` over `name` (an existing non-directory is replaced
/// in one step; a directory in the way makes it fail and the temporary file goes).
pub fn commit(dir: BorrowedFd<'_>, temp: &[u8], name: &[u8]) -> io::Result<()> {
    let (a, b) = (cstr(temp)?, cstr(name)?);
    // SAFETY: valid descriptor and NUL-terminated names; rename never follows the last
    // component of either name.
    let r =
        check(unsafe { libc::renameat(dir.as_raw_fd(), a.as_ptr(), dir.as_raw_fd(), b.as_ptr()) });
    if r.is_err() {
        discard(dir, temp);
    }
    r.map_err(|e| match e.raw_os_error() {
        Some(libc::EISDIR | libc::ENOTEMPTY | libc::EEXIST) => {
            io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way")
        }
        _ => e,
    })
}

/// Removes a temporary file of `create_temp` (best effort: it is already a failure path).
pub fn discard(dir: BorrowedFd<'_>, temp: &[u8]) {
    let _ = unlinkat(dir, temp, 0);
}

/// How a regular file being restored is kept away from its real name until it is complete.
/// A killed or failed restore must never leave a half-written file under that name.
pub enum Staged {
    /// An unnamed `O_TMPFILE` inode: nothing to clean up (the kernel frees it when its last
    /// descriptor closes, a crash included); `publish` links it in under its name.
    Anon,
    /// A file under this temporary name next to the real one (file systems without
    /// `O_TMPFILE`): `publish` renames it into place, `unstage` removes it.
    Named(Vec<u8>),
}

/// Which of `O_TMPFILE` and its linking are known not to work here, learnt once per restore
/// so a file system that refuses them costs one failed call, not one per file.
#[derive(Debug, Clone, Copy)]
pub struct Staging {
    /// `O_TMPFILE` opens may be tried (false once the file system refused one).
    pub tmpfile: bool,
    /// `linkat(fd, "", AT_EMPTY_PATH)` may be tried (it needs CAP_DAC_READ_SEARCH; without
    /// it the link goes through `/proc/self/fd`).
    pub empty_path: bool,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            tmpfile: true,
            empty_path: true,
        }
    }
}

impl Staging {
    /// A new regular file for `name` in `dir` (mode 0600), not under its real name yet: an
    /// unnamed `O_TMPFILE` inode where the file system supports one, else a file under a
    /// temporary name (`create_temp`).
    ///
    /// `O_TMPFILE` is the cheaper of the two: no temporary directory entry is inserted and
    /// removed again, and nothing is left to clean up after a crash, since an inode without
    /// a name dies with its last descriptor.
    pub fn create(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<(File, Staged)> {
        if self.tmpfile {
            match openat(dir, b".", libc::O_TMPFILE | libc::O_WRONLY, 0o600) {
                Ok(fd) => return Ok((File::from(fd), Staged::Anon)),
                // the file system (or kernel) has no O_TMPFILE: temporary names from now on
                Err(e) if no_tmpfile(&e) => self.tmpfile = false,
                Err(e) => return Err(e),
            }
        }
        let (f, temp) = create_temp(dir, name)?;
        Ok((f, Staged::Named(temp)))
    }

    /// `create` for a regular file about to get mode `perm` in a directory from `Parents`:
    /// an `O_TMPFILE` inode is made with that mode (less the umask) straight away, and
    /// `Fresh` says what it got, so `owner_mode_fresh` can leave out a chown or chmod that
    /// would change nothing. The inode has no name until `publish`, so its mode does not
    /// expose half-written data to anyone.
    ///
    /// Not written in place even in a directory this restore just created: a restore killed
    /// there would leave a short file under its real name, indistinguishable from a complete
    /// one, and the next restore (which keeps existing names unless forced) would keep it.
    /// The unnamed inode costs one `linkat` more than an in-place create, and nothing after
    /// a crash.
    pub fn create_fresh(
        &mut self,
        dir: &ParentDir,
        name: &[u8],
        perm: u32,
    ) -> io::Result<(File, Staged, Fresh)> {
        if self.tmpfile {
            let perm = perm & 0o777;
            match openat(dir.as_fd(), b".", libc::O_TMPFILE | libc::O_WRONLY, perm) {
                Ok(fd) => {
                    let mode = match (dir.plain, umask()) {
                        (true, Some(u)) => Some(perm & !u),
                        _ => None,
                    };
                    let fresh = Fresh {
                        owner: dir.born,
                        mode,
                    };
                    return Ok((File::from(fd), Staged::Anon, fresh));
                }
                Err(e) if no_tmpfile(&e) => self.tmpfile = false,
                Err(e) => return Err(e),
            }
        }
        let (f, temp) = create_temp(dir.as_fd(), name)?;
        Ok((f, Staged::Named(temp), Fresh::default()))
    }

    /// `publish`, but when `keep` an existing non-directory at `name` stays and the file is
    /// not published ("exists; not replaced"). With `O_TMPFILE` that costs nothing until a
    /// name is taken (the link fails), instead of a lookup of every name before its file is
    /// written.
    pub fn publish_new(
        &mut self,
        dir: BorrowedFd<'_>,
        file: &File,
        staged: Staged,
        name: &[u8],
        keep: bool,
    ) -> io::Result<()> {
        let kept = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists; not replaced (FORCE=Y replaces)",
            )
        };
        if !keep {
            return self.publish(dir, file, staged, name);
        }
        match staged {
            Staged::Named(temp) => {
                if exists(dir, name)? == Some(false) {
                    discard(dir, &temp);
                    return Err(kept());
                }
                commit(dir, &temp, name)
            }
            Staged::Anon => match self.link_anon(dir, file, name) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if exists(dir, name)? == Some(false) {
                        return Err(kept());
                    }
                    // a directory in the way: `publish` fails with its reason
                    self.publish(dir, file, Staged::Anon, name)
                }
                other => other,
            },
        }
    }

    /// Gives the complete `file` its real `name` in `dir` (the directory it was created in),
    /// replacing an existing non-directory in one step as `commit` does. On failure nothing
    /// is left under a temporary name.
    pub fn publish(
        &mut self,
        dir: BorrowedFd<'_>,
        file: &File,
        staged: Staged,
        name: &[u8],
    ) -> io::Result<()> {
        match staged {
            Staged::Named(temp) => commit(dir, &temp, name),
            Staged::Anon => match self.link_anon(dir, file, name) {
                // A name already there is replaced atomically: a temporary name, then a
                // rename over it (rare: a restore over an existing tree).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    let temp = self.link_temp(dir, file, name)?;
                    commit(dir, &temp, name)
                }
                other => other,
            },
        }
    }

    /// Links an `O_TMPFILE` inode in at `name` (fails with EEXIST if something is there).
    fn link_anon(&mut self, dir: BorrowedFd<'_>, file: &File, name: &[u8]) -> io::Result<()> {
        let c = cstr(name)?;
        if self.empty_path {
            // SAFETY: valid descriptors, an empty and a NUL-terminated name.
            let r = check(unsafe {
                libc::linkat(
                    file.as_raw_fd(),
                    c"".as_ptr(),
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            });
            match r {
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) => {
                    self.empty_path = false
                }
                other => return other,
            }
        }
        let proc = cstr(format!("/proc/self/fd/{}", file.as_raw_fd()).as_bytes())?;
        // SAFETY: NUL-terminated names and a valid descriptor; following the /proc link
        // reaches the open inode itself, whatever name (none) it has.
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    }

    /// Links an `O_TMPFILE` inode in under a free temporary name next to `name`.
    fn link_temp(&mut self, dir: BorrowedFd<'_>, file: &File, name: &[u8]) -> io::Result<Vec<u8>> {
        for _ in 0..16 {
            let temp = temp_name(name);
            match self.link_anon(dir, file, &temp) {
                Ok(()) => return Ok(temp),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary name",
        ))
    }
}

/// What a file from `Staging::create_fresh` already has; None where unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fresh {
    /// (uid, gid).
    pub owner: Option<(u32, u32)>,
    /// Permission bits (never set-ID or sticky bits).
    pub mode: Option<u32>,
}

/// This process's umask, read once from `/proc/self/status` (asking `umask(2)` would set it
/// for every thread meanwhile); None when the kernel does not say.
pub fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let v = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(v.trim(), 8).ok()
    })
}

/// Drops a staged file that will not be published (best effort: a failure path already).
pub fn unstage(dir: BorrowedFd<'_>, staged: &Staged) {
    if let Staged::Named(temp) = staged {
        discard(dir, temp);
    }
}

/// What is at `name` in `dir` without following a symlink: None when nothing, else
/// whether it is a directory.
pub fn exists(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<bool>> {
    let c = cstr(name)?;
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name and a stat buffer of the right type.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(r) {
        Ok(()) => Ok(Some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A symlink `name` in `dir` pointing at `target` (an existing non-directory of that name is
/// replaced); the target is stored as given, never resolved.
pub fn symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    let (c, t) = (cstr(name)?, cstr(target)?);
    create(dir, name, || {
        // SAFETY: valid descriptor and NUL-terminated strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
    })
}

/// FIFOs, sockets and (as root) devices; `mode` carries the type bits.
pub fn mknod(dir: BorrowedFd<'_>, name: &[u8], mode: u32, rdev: libc::dev_t) -> io::Result<()> {
    let c = cstr(name)?;
    create(dir, name, || {
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                c.as_ptr(),
                (mode & (libc::S_IFMT | 0o600)) as libc::mode_t,
                rdev,
            )
        })
    })
}

/// A further name for an object created at (`from_dir`, `from`).
pub fn link(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<()> {
    let (a, b) = (cstr(from)?, cstr(name)?);
    create(dir, name, || {
        // SAFETY: valid descriptors and NUL-terminated names; flags 0 does not follow.
        check(unsafe {
            libc::linkat(
                from_dir.as_raw_fd(),
                a.as_ptr(),
                dir.as_raw_fd(),
                b.as_ptr(),
                0,
            )
        })
    })
}

/// Decodes the "huge" dev_t encoding dump stores (doc §5.4).
pub fn decode_rdev(v: u32) -> libc::dev_t {
    let major = (v >> 8) & 0xfff;
    let minor = (v & 0xff) | ((v >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

/// The object attributes a header carries.
pub struct Attrs {
    /// Mode as the header has it; only the permission bits (07777) are applied.
    pub mode: u32,
    /// Owner's user id, applied when owners are restored.
    pub uid: u32,
    /// Owner's group id, likewise.
    pub gid: u32,
    /// (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Modification time, in the same form.
    pub mtime: (i64, u32),
}

fn timespec((s, ns): (i64, u32)) -> libc::timespec {
    libc::timespec {
        tv_sec: s as libc::time_t,
        // A nonsense sub-second field is dropped rather than rejected by the kernel.
        tv_nsec: if ns < 1_000_000_000 {
            ns as libc::c_long
        } else {
            0
        },
    }
}

/// How to reach an object for attribute calls.
pub enum Obj<'a> {
    /// An open regular file or directory.
    Fd(RawFd),
    /// A name in a directory, never followed if it is a symlink.
    At(BorrowedFd<'a>, &'a [u8]),
}

/// chown (when `owner`), then chmod (not on symlinks: their bits mean nothing), in the
/// order restore uses so chown cannot clear setuid bits afterwards.
pub fn owner_mode(obj: &Obj<'_>, a: &Attrs, owner: bool, symlink: bool) -> io::Result<()> {
    if owner {
        match obj {
            // SAFETY: valid descriptor.
            Obj::Fd(fd) => check(unsafe { libc::fchown(*fd, a.uid, a.gid) })?,
            Obj::At(dir, name) => {
                let c = cstr(name)?;
                // SAFETY: valid descriptor, NUL-terminated name, no following.
                check(unsafe {
                    libc::fchownat(
                        dir.as_raw_fd(),
                        c.as_ptr(),
                        a.uid,
                        a.gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })?
            }
        }
    }
    if symlink {
        return Ok(());
    }
    let mode = (a.mode & 0o7777) as libc::mode_t;
    match obj {
        // SAFETY: valid descriptor.
        Obj::Fd(fd) => check(unsafe { libc::fchmod(*fd, mode) }),
        Obj::At(dir, name) => {
            let c = cstr(name)?;
            // SAFETY: valid descriptor and NUL-terminated name; the name was just created
            // by us as a non-symlink.
            check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode, 0) })
        }
    }
}

/// `owner_mode` for a regular file from `Staging::create_fresh`: the chown is left out when
/// the file already has the owner, the chmod when it already has the mode. A fresh file has
/// no set-ID bits for a chown to clear, so its mode after a chown is still `fresh.mode`.
pub fn owner_mode_fresh(file: &File, a: &Attrs, owner: bool, fresh: Fresh) -> io::Result<()> {
    let fd = file.as_raw_fd();
    if owner && fresh.owner != Some((a.uid, a.gid)) {
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchown(fd, a.uid, a.gid) })?;
    }
    let mode = a.mode & 0o7777;
    if fresh.mode != Some(mode) {
        // SAFETY: valid descriptor.
        check(unsafe { libc::fchmod(fd, mode as libc::mode_t) })?;
    }
    Ok(())
}

/// Sets access and modification times to the nanosecond; a symlink gets its own times,
/// not its target's.
pub fn times(obj: &Obj<'_>, a: &Attrs) -> io::Result<()> {
    let ts = [timespec(a.atime), timespec(a.mtime)];
    match obj {
        // SAFETY: valid descriptor and two timespecs.
        Obj::Fd(fd) => check(unsafe { libc::futimens(*fd, ts.as_ptr()) }),
        Obj::At(dir, name) => {
            let c = cstr(name)?;
            // SAFETY: valid descriptor, NUL-terminated name and two timespecs.
            check(unsafe {
                libc::utimensat(
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }
    }
}

/// Sets each attribute; returns one message per attribute that could not be set.
pub fn set_xattrs(obj: &Obj<'_>, attrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    let mut errs = Vec::new();
    for (name, value) in attrs {
        let r = (|| {
            let n = cstr(name)?;
            match obj {
                // SAFETY: valid descriptor, NUL-terminated name, value valid for its length.
                Obj::Fd(fd) => check(unsafe {
                    libc::fsetxattr(*fd, n.as_ptr(), value.as_ptr().cast(), value.len(), 0)
                }),
                Obj::At(dir, file) => {
                    // The directory is reached through its descriptor; only the last
                    // component is looked up, and lsetxattr does not follow it.
                    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                    p.extend_from_slice(file);
                    let p = cstr(&p)?;
                    // SAFETY: NUL-terminated path and name, value valid for its length.
                    check(unsafe {
                        libc::lsetxattr(
                            p.as_ptr(),
                            n.as_ptr(),
                            value.as_ptr().cast(),
                            value.len(),
                            0,
                        )
                    })
                }
            }
        })();
        if let Err(e) = r {
            errs.push(format!(
                "extended attribute {}: {e}",
                String::from_utf8_lossy(name)
            ));
        }
    }
    errs
}

/// (full name, value) pairs ready for setxattr.
pub type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

const MAGIC_IN_INODE: u32 = 0xEA02_0001;
const MAGIC_BLOCK: u32 = 0xEA02_0000;
/// Largest attribute blob restore accepts (doc §5.6).
pub const MAX_XATTR_BLOB: u64 = 4096;

/// Decodes an ext2 attribute blob (in-inode or block flavour) into (name, value) pairs
/// ready for setxattr; ACLs are converted back to the kernel's format. Entries that
/// cannot be used are reported in the second list; a blob that cannot be read at all
/// is an error.
pub fn decode_xattrs(blob: &[u8]) -> Result<(XattrList, Vec<String>), String> {
    let le = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(blob.get(o..o + 4)?.try_into().ok()?))
    };
    let (mut off, base) = match le(0) {
        Some(MAGIC_IN_INODE) => (4usize, 4usize),
        Some(MAGIC_BLOCK) => (32, 0),
        _ => return Err("unknown attribute blob magic".into()),
    };
    let mut out = Vec::new();
    let mut bad = Vec::new();
    loop {
        match le(off) {
            None => return Err("attribute list runs past the blob".into()),
            Some(0) => break,
            Some(_) => {}
        }
        let Some(head) = blob.get(off..off + 16) else {
            return Err("attribute entry runs past the blob".into());
        };
        let name_len = head[0] as usize;
        let index = head[1];
        let voff = u16::from_le_bytes([head[2], head[3]]) as usize;
        let vsize = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let Some(name) = blob.get(off + 16..off + 16 + name_len) else {
            return Err("attribute name runs past the blob".into());
        };
        off += (16 + name_len + 3) & !3;
        let Some(value) = blob.get(base + voff..(base + voff).saturating_add(vsize)) else {
            bad.push(format!(
                "attribute {}: value outside the blob",
                String::from_utf8_lossy(name)
            ));
            continue;
        };
        let prefix: &[u8] = match index {
            1 => b"user.",
            2 => b"system.posix_acl_access",
            3 => b"system.posix_acl_default",
            4 => b"trusted.",
            5 => b"lustre.",
            6 => b"security.",
            _ => {
                bad.push(format!(
                    "attribute {}: unknown name index {index}",
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
        };
        let mut full = prefix.to_vec();
        if index == 2 || index == 3 {
            match acl_from_disk(value) {
                Some(v) => out.push((full, v)),
                None => bad.push(format!(
                    "{}: malformed ACL",
                    String::from_utf8_lossy(prefix)
                )),
            }
            continue;
        }
        full.extend_from_slice(name);
        out.push((full, value.to_vec()));
    }
    Ok((out, bad))
}

/// ext3 on-disk ACL (version 1, ids only on named entries) to the kernel's xattr form
/// (version 2, 8-byte entries). None if malformed.
fn acl_from_disk(v: &[u8]) -> Option<Vec<u8>> {
    if u32::from_le_bytes(v.get(..4)?.try_into().ok()?) != 1 {
        return None;
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut off = 4;
    while off < v.len() {
        let e = v.get(off..off + 4)?;
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(e);
        match tag {
            0x02 | 0x08 => {
                out.extend_from_slice(v.get(off + 4..off + 8)?);
                off += 8;
            }
            0x01 | 0x04 | 0x10 | 0x20 => {
                out.extend_from_slice(&u32::MAX.to_le_bytes());
                off += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Whether `e`, from an `O_TMPFILE` open, says the file system (or kernel) has none: then
/// temporary names are used from that point on.
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Stages "f" with `staging`, checks what the directory shows before it is published,
    /// publishes it (over an old "f" when `replace`) and checks the result.
    fn stage_and_publish(mut staging: Staging, replace: bool) -> (Staging, Vec<String>) {
        let t = tempfile::tempdir().unwrap();
        if replace {
            std::fs::write(t.path().join("f"), b"old contents").unwrap();
        }
        let dir = open_root(t.path()).unwrap();
        let (mut f, staged) = staging.create(dir.as_fd(), b"f").unwrap();
        f.write_all(b"new").unwrap();
        let before = names(t.path());
        staging.publish(dir.as_fd(), &f, staged, b"f").unwrap();
        drop(f);
        assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"new");
        assert_eq!(names(t.path()), vec!["f".to_string()]);
        (staging, before)
    }

    #[test]
    fn an_o_tmpfile_file_has_no_name_until_published() {
        for replace in [false, true] {
            let (staging, before) = stage_and_publish(Staging::default(), replace);
            // the test directory is on a file system with O_TMPFILE (ext4, tmpfs, btrfs)
            assert!(staging.tmpfile, "O_TMPFILE was refused");
            let want: Vec<String> = if replace { vec!["f".into()] } else { vec![] };
            assert_eq!(before, want, "replace {replace}");
        }
    }

    #[test]
    fn without_linkat_empty_path_the_link_goes_through_proc() {
        let no_empty = Staging {
            tmpfile: true,
            empty_path: false,
        };
        for replace in [false, true] {
            let (staging, before) = stage_and_publish(no_empty, replace);
            assert!(staging.tmpfile && !staging.empty_path);
            assert_eq!(before.iter().filter(|n| n.contains("ndmpd")).count(), 0);
        }
    }

    #[test]
    fn without_o_tmpfile_a_temporary_name_is_renamed_into_place() {
        let named = Staging {
            tmpfile: false,
            empty_path: true,
        };
        for replace in [false, true] {
            let (_, before) = stage_and_publish(named, replace);
            let temps: Vec<&String> = before
                .iter()
                .filter(|n| n.starts_with(".f.ndmpd-"))
                .collect();
            assert_eq!(temps.len(), 1, "{before:?}");
            assert_eq!(before.len(), 1 + usize::from(replace), "{before:?}");
        }
    }

    #[test]
    fn an_unpublished_file_leaves_nothing_behind() {
        for tmpfile in [true, false] {
            let t = tempfile::tempdir().unwrap();
            let dir = open_root(t.path()).unwrap();
            let mut staging = Staging {
                tmpfile,
                empty_path: true,
            };
            let (mut f, staged) = staging.create(dir.as_fd(), b"f").unwrap();
            f.write_all(b"half").unwrap();
            unstage(dir.as_fd(), &staged);
            drop(f);
            assert!(names(t.path()).is_empty(), "tmpfile {tmpfile}");
        }
    }

    #[test]
    fn publishing_onto_a_directory_fails_and_leaves_no_temporary_name() {
        for tmpfile in [true, false] {
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir(t.path().join("f")).unwrap();
            let dir = open_root(t.path()).unwrap();
            let mut staging = Staging {
                tmpfile,
                empty_path: true,
            };
            let (f, staged) = staging.create(dir.as_fd(), b"f").unwrap();
            let e = staging.publish(dir.as_fd(), &f, staged, b"f").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
            assert_eq!(names(t.path()), vec!["f".to_string()], "tmpfile {tmpfile}");
            assert!(t.path().join("f").is_dir());
        }
    }

    fn mode_of(p: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_fresh_file_ends_with_the_mode_asked_for_whatever_the_umask_took() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        let dir = Parents::default().open(root.as_fd(), b"").unwrap();
        let umask = umask().expect("/proc/self/status has Umask");
        for (i, perm) in [0o640, 0o666, 0o4755, 0o400, 0o777].into_iter().enumerate() {
            let name = format!("f{i}");
            let mut staging = Staging::default();
            let (mut f, staged, fresh) = staging.create_fresh(&dir, name.as_bytes(), perm).unwrap();
            assert!(matches!(staged, Staged::Anon));
            // what the kernel gave the new inode, known without asking it
            assert_eq!(fresh.mode, Some(perm & 0o777 & !umask), "{perm:o}");
            f.write_all(b"data").unwrap();
            let a = Attrs {
                mode: libc::S_IFREG | perm,
                uid: 0,
                gid: 0,
                atime: (1, 0),
                mtime: (2, 0),
            };
            owner_mode_fresh(&f, &a, false, fresh).unwrap();
            staging
                .publish_new(dir.as_fd(), &f, staged, name.as_bytes(), true)
                .unwrap();
            assert_eq!(mode_of(&t.path().join(&name)), perm, "{perm:o}");
            assert_eq!(std::fs::read(t.path().join(&name)).unwrap(), b"data");
        }
    }

    #[test]
    fn keeping_existing_names_refuses_at_publication_and_leaves_the_old_file() {
        for tmpfile in [true, false] {
            let t = tempfile::tempdir().unwrap();
            std::fs::write(t.path().join("f"), b"old contents").unwrap();
            std::fs::create_dir(t.path().join("d")).unwrap();
            let root = open_root(t.path()).unwrap();
            let dir = Parents::default().open(root.as_fd(), b"").unwrap();
            let mut staging = Staging {
                tmpfile,
                empty_path: true,
            };
            let (mut f, staged, _) = staging.create_fresh(&dir, b"f", 0o644).unwrap();
            f.write_all(b"new").unwrap();
            let e = staging
                .publish_new(dir.as_fd(), &f, staged, b"f", true)
                .unwrap_err();
            assert_eq!(e.to_string(), "exists; not replaced (FORCE=Y replaces)");
            drop(f);
            assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"old contents");
            let (f, staged, _) = staging.create_fresh(&dir, b"d", 0o644).unwrap();
            let e = staging
                .publish_new(dir.as_fd(), &f, staged, b"d", true)
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "a directory is in the way",
                "tmpfile {tmpfile}"
            );
            drop(f);
            assert_eq!(names(t.path()), vec!["d".to_string(), "f".to_string()]);
        }
    }

    #[test]
    fn acl_round_trip_shape() {
        let mut disk = 1u32.to_le_bytes().to_vec();
        disk.extend_from_slice(&[1, 0, 6, 0]);
        disk.extend_from_slice(&[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        disk.extend_from_slice(&[0x20, 0, 0, 0]);
        let k = acl_from_disk(&disk).unwrap();
        assert_eq!(k.len(), 4 + 3 * 8);
        assert_eq!(&k[12..20], &[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        assert!(acl_from_disk(&disk[..6]).is_none());
    }

    #[test]
    fn hostile_blobs_do_not_panic() {
        for blob in [vec![], vec![1, 0, 2, 0xea], {
            let mut b = MAGIC_IN_INODE.to_le_bytes().to_vec();
            b.extend_from_slice(&[200, 1, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
            b
        }] {
            let _ = decode_xattrs(&blob);
        }
        assert_eq!(decode_rdev(0x0801), libc::makedev(8, 1));
    }
}
