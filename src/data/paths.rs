//! Where a restore may write: the checks that keep every recover destination inside one
//! export root, and the plan (selections, destinations) a DATA_START_RECOVER becomes.

use super::env;
use crate::error::Refusal;
use crate::format::recover::{RecoverOptions, Selection};
use crate::wire::messages::DataStartRecoverRequest;
use crate::wire::NdmpError;
use std::path::{Path, PathBuf};

/// What a recover request asks for, checked against the export roots.
pub struct RecoverPlan {
    /// The selections and the root the reader restores under.
    pub opts: RecoverOptions,
    /// Each nlist entry's path in the image, with the name the DMA sent (for LOG_FILE).
    pub nlist: Vec<(Vec<u8>, String)>,
}

/// Every destination must lie inside one export root, which becomes the reader's root; without
/// an nlist, PREFIX (or FILESYSTEM) names the destination of the whole image.
pub fn recover_plan(r: &DataStartRecoverRequest, exports: &[PathBuf]) -> Result<RecoverPlan, Refusal> {
    let bad = |why: String| Refusal {
        error: NdmpError::ILLEGAL_ARGS_ERR,
        why,
    };
    let inside = |p: &Path| exports.iter().find(|root| p.starts_with(root)).cloned();
    // existing files are kept unless the DMA says FORCE=Y (README, "Restoring")
    let keep_existing = !env::lookup(&r.env, "FORCE")
        .and_then(env::flag)
        .unwrap_or(false);
    if r.nlist.is_empty() {
        let dest = env::lookup(&r.env, "PREFIX")
            .or_else(|| env::lookup(&r.env, "FILESYSTEM"))
            .ok_or_else(|| bad("no nlist and no PREFIX or FILESYSTEM to restore into".into()))?;
        let dest = checked_dest(Path::new(dest), &inside).ok_or_else(|| {
            bad(format!(
                "destination {dest:?} is not inside an export root of this server"
            ))
        })?;
        return Ok(RecoverPlan {
            opts: RecoverOptions {
                select: Vec::new(),
                dest_root: dest,
                restore_owner: true,
                keep_existing,
                ended: None,
            },
            nlist: Vec::new(),
        });
    }
    let mut root: Option<PathBuf> = None;
    let mut select = Vec::new();
    let mut nlist = Vec::new();
    for n in &r.nlist {
        let original = n.original_path.to_string();
        let dest_s = n.destination_path.to_string();
        let dest = checked_dest(Path::new(&dest_s), &inside).ok_or_else(|| {
            bad(format!(
                "destination {dest_s:?} is not inside an export root of this server"
            ))
        })?;
        let this_root = inside(&dest).ok_or_else(|| {
            bad(format!(
                "destination {dest_s:?} is not inside an export root of this server"
            ))
        })?;
        match &root {
            Some(r0) if *r0 != this_root => {
                return Err(bad(
                    "the nlist's destinations span several export roots".into()
                ))
            }
            _ => root = Some(this_root),
        }
        let path: Vec<u8> = original.trim_start_matches('/').as_bytes().to_vec();
        let path = if path.is_empty() { b".".to_vec() } else { path };
        nlist.push((path.clone(), original));
        select.push(Selection {
            path,
            dest: Some(dest),
        });
    }
    Ok(RecoverPlan {
        opts: RecoverOptions {
            select,
            dest_root: root.unwrap_or_default(),
            restore_owner: true,
            keep_existing,
            ended: None,
        },
        nlist,
    })
}

/// An absolute destination without `..`, whose deepest existing ancestor (symlinks resolved)
/// lies inside an export root; returned with that ancestor resolved.
fn checked_dest(p: &Path, inside: &dyn Fn(&Path) -> Option<PathBuf>) -> Option<PathBuf> {
    use std::path::Component;
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while existing.canonicalize().is_err() {
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?.to_path_buf();
    }
    let mut real = existing.canonicalize().ok()?;
    inside(&real)?;
    for part in rest.iter().rev() {
        real.push(part);
    }
    Some(real)
}
