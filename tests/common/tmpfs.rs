//! Small filesystems of a chosen size for tests that need a disk to fill up: a tmpfs mounted
//! on a fresh directory and unmounted when dropped (the tests run as root, as CI does).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A mounted tmpfs; dropping it unmounts it (lazily, so an open file cannot keep it) and
/// removes its directory.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes. Panics, saying why, when it cannot: a machine where
    /// root cannot mount one cannot run the test, and that is a failure, not a skip.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={bytes}")).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            r,
            0,
            "cannot mount a {bytes}-byte tmpfs on {}: {} (the tests must run as root)",
            dir.path().display(),
            std::io::Error::last_os_error()
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}
