//! Fuzz target for the dump image reader: restore (whole, one selection, DAR) and listing of
//! hostile images; every restore goes to a fresh root whose sibling canary must stay empty.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use libfuzzer_sys::fuzz_target;
use ndmpd::format::dump::reader::{list_dump, read_dump, read_one, RecoverOptions, Selection};
use ndmpd::format::dump::HistEvent;
use ndmpd_fuzz::{reseal_dump, Scratch};

/// DAR restores tried per input, spread over the image (a dump lists its directories
/// first): enough to reach the object kinds of a small image without slowing each run.
const MAX_DAR: usize = 4;

fn options(dest: PathBuf, select: Vec<Selection>) -> RecoverOptions {
    RecoverOptions {
        select,
        dest_root: dest,
        restore_owner: true,
        keep_existing: false,
        ended: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut image = data.to_vec();
    reseal_dump(&mut image);
    let abort = AtomicBool::new(false);
    let scratch = Scratch::new();

    // Everything, as a plain recover does.
    let opts = options(scratch.dest.clone(), Vec::new());
    let _ = read_dump(&mut &image[..], &opts, &mut |_| {}, &abort);

    // The history a DATA_START_RECOVER_FILEHIST would send.
    let mut nodes = Vec::new();
    let mut top = None;
    let ended = AtomicBool::new(false);
    let listed = list_dump(
        &mut &image[..],
        &mut |ev| match ev {
            HistEvent::Node { inode, fh_info, .. } => nodes.push((inode, fh_info)),
            HistEvent::Dir {
                dir_inode: 2, name, ..
            } if top.is_none() && name != b"." && name != b".." => top = Some(name.to_vec()),
            _ => {}
        },
        &mut |_| {},
        &abort,
        &ended,
    );
    if let Ok(n) = listed {
        // After its end marker the lister drains the input, so a sender never blocks.
        assert_eq!(n, image.len() as u64, "list_dump did not read to the end");
    }
    for &(_, at) in &nodes {
        assert!(at < image.len() as u64, "fh_info {at} beyond the image");
    }

    // One name moved elsewhere, as a selective recover does.
    if let Some(name) = top {
        let sel = Selection {
            path: name,
            dest: Some(scratch.dest.join("sel")),
        };
        let opts = options(scratch.dest.clone(), vec![sel]);
        let _ = read_dump(&mut &image[..], &opts, &mut |_| {}, &abort);
    }

    // DAR of a few inodes, each from its history offset, into the same destination root.
    let opts = options(scratch.dest.clone(), Vec::new());
    for (i, &(inode, at)) in nodes
        .iter()
        .step_by(nodes.len().div_ceil(MAX_DAR).max(1))
        .enumerate()
    {
        let dest = scratch.dest.join(format!("dar{i}"));
        let _ = read_one(
            &mut &image[at as usize..],
            u32::try_from(inode).ok(),
            &dest,
            &opts,
            &mut |_| {},
            &abort,
        );
    }

    scratch.check();
});
