//! Where a restore may write: the checks that keep every recover destination inside one
//! export root, and the plan (selections, destinations) a DATA_START_RECOVER becomes.

use super::env;
use crate::error::{refuse, Refusal};
use crate::format::recover::{RecoverOptions, Selection};
use crate::wire::messages::DataStartRecoverRequest;
use crate::wire::{NdmpError, NdmpString};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a recover request asks for, checked against the export roots.
#[derive(Debug)]
pub struct RecoverPlan {
    /// The selections, and the root the reader creates everything below.
    pub opts: RecoverOptions,
    /// Each nlist entry's path in the image ("sub/b.txt", "." for the root) with its
    /// original path exactly as the DMA sent it, which its LOG_FILE must name.
    pub nlist: Vec<(Vec<u8>, NdmpString)>,
}

/// Checks a DATA_START_RECOVER against the export roots (canonical already). Every nlist
/// destination must lie inside one export root, which becomes the reader's root; without an
/// nlist, PREFIX (or else FILESYSTEM) names the directory the whole image goes into. Names
/// stay bytes throughout: they need not be UTF-8, and are not escaped or replaced.
pub fn recover_plan(
    r: &DataStartRecoverRequest,
    exports: &[PathBuf],
) -> Result<RecoverPlan, Refusal> {
    // existing files are kept unless the DMA says FORCE=Y (README, "Restoring")
    let keep_existing = !env::lookup(&r.env, "FORCE")
        .and_then(env::flag)
        .unwrap_or(false);
    let opts = |select, dest_root| RecoverOptions {
        select,
        dest_root,
        restore_owner: true,
        keep_existing,
        ended: None,
    };
    if r.nlist.is_empty() {
        let found = ["PREFIX", "FILESYSTEM"]
            .into_iter()
            .find_map(|var| env::lookup_bytes(&r.env, var).map(|v| (var, v)));
        let Some((var, value)) = found else {
            return bad("no nlist and no PREFIX or FILESYSTEM to restore into".into());
        };
        let given = Path::new(OsStr::from_bytes(value));
        let (dest, _) = checked_dest(var, given, exports)?;
        // the reader opens its root following symlinks: only a directory, or nothing yet
        if dest.symlink_metadata().is_ok() && !dest.is_dir() {
            return bad(format!("{var} {given:?} is not a directory"));
        }
        return Ok(RecoverPlan {
            opts: opts(Vec::new(), dest),
            nlist: Vec::new(),
        });
    }
    // the export root of the first destination, and that destination, for the refusal
    let mut first: Option<(PathBuf, &Path)> = None;
    let mut select = Vec::new();
    let mut nlist = Vec::new();
    for n in &r.nlist {
        let given = Path::new(OsStr::from_bytes(n.destination_path.as_bytes()));
        let (dest, root) = checked_dest("destination", given, exports)?;
        match &first {
            Some((root0, given0)) if *root0 != root => {
                return bad(format!(
                    "destination {given:?} is in export root {root:?} but destination \
                     {given0:?} is in {root0:?}: one recover restores into one export root"
                ))
            }
            Some(_) => {}
            None => first = Some((root, given)),
        }
        let original = n.original_path.as_bytes();
        let start = original
            .iter()
            .position(|&b| b != b'/')
            .unwrap_or(original.len());
        let path = match &original[start..] {
            b"" => b".".to_vec(),
            p => p.to_vec(),
        };
        nlist.push((path.clone(), n.original_path.clone()));
        select.push(Selection {
            path,
            dest: Some(dest),
        });
    }
    let root = first.map(|(root, _)| root).unwrap_or_default();
    Ok(RecoverPlan {
        opts: opts(select, root),
        nlist,
    })
}

fn bad<T>(why: String) -> Result<T, Refusal> {
    refuse(NdmpError::ILLEGAL_ARGS_ERR, why)
}

/// `given` as a destination: absolute, without `..` or NUL, and inside an export root once
/// its deepest existing ancestor is resolved (symlinks followed). Returns it with that
/// ancestor resolved and the rest appended unchanged: names with nothing behind them, or a
/// dangling symlink, which the readers replace or fail on but never follow; and the
/// outermost export root holding it, so nested roots never split one restore. `what` names
/// it in a refusal.
fn checked_dest(
    what: &str,
    given: &Path,
    exports: &[PathBuf],
) -> Result<(PathBuf, PathBuf), Refusal> {
    if !given.is_absolute() {
        return bad(format!("{what} {given:?} is not an absolute path"));
    }
    if given.components().any(|c| c == Component::ParentDir) {
        return bad(format!("{what} {given:?} contains \"..\""));
    }
    if given.as_os_str().as_bytes().contains(&0) {
        return bad(format!("{what} {given:?} contains a NUL byte"));
    }
    let mut existing = given;
    let mut rest = Vec::new();
    let mut real = loop {
        match existing.canonicalize() {
            Ok(real) => break real,
            // an absolute path without ".." always reaches "/", which resolves
            Err(_) => match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return bad(format!("{what} {given:?} does not resolve")),
            },
        }
    };
    let root = exports
        .iter()
        .filter(|root| real.starts_with(root))
        .min_by_key(|root| root.as_os_str().len())
        .cloned();
    for name in rest.iter().rev() {
        real.push(name);
    }
    match root {
        Some(root) => Ok((real, root)),
        None if real == given => bad(format!(
            "{what} {given:?} is not inside an export root of this server"
        )),
        None => bad(format!(
            "{what} {given:?} is not inside an export root of this server \
             (it resolves to {real:?})"
        )),
    }
}
