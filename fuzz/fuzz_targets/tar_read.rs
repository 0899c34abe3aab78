//! Fuzz target for the tar reader: restore (whole, one selection, DAR) and listing of hostile
//! archives; every restore goes to a fresh root whose sibling canary must stay empty.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use libfuzzer_sys::fuzz_target;
use ndmpd::format::recover::{RecoverOptions, Selection};
use ndmpd::format::tar::{list_tar, read_one_tar, read_tar};
use ndmpd_fuzz::{reseal_tar, Scratch};

/// DAR restores tried per input, spread over the archive: enough to reach the member
/// kinds of a small archive without slowing each run.
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
    reseal_tar(&mut image);
    let abort = AtomicBool::new(false);
    let scratch = Scratch::new();

    // Everything, as a plain recover does.
    let opts = options(scratch.dest.clone(), Vec::new());
    let _ = read_tar(&mut &image[..], &opts, &mut |_| {}, &abort);

    // The history a DATA_START_RECOVER_FILEHIST would send.
    let mut members = Vec::new();
    let mut first = None;
    let ended = AtomicBool::new(false);
    let listed = list_tar(
        &mut &image[..],
        &mut |e| {
            members.push(e.fh_info);
            if first.is_none() && e.path.len() > 1 {
                first = Some(e.path[1..].to_vec());
            }
        },
        &mut |_| {},
        &abort,
        &ended,
    );
    if let Ok(n) = listed {
        // After its end marker the lister drains the input, so a sender never blocks.
        assert_eq!(n, image.len() as u64, "list_tar did not read to the end");
    }
    for &at in &members {
        assert!(at < image.len() as u64, "fh_info {at} beyond the archive");
    }

    // One member moved elsewhere, as a selective recover does.
    if let Some(path) = first {
        let sel = Selection {
            path,
            dest: Some(scratch.dest.join("sel")),
        };
        let opts = options(scratch.dest.clone(), vec![sel]);
        let _ = read_tar(&mut &image[..], &opts, &mut |_| {}, &abort);
    }

    // DAR of a few members, each from its history offset, into the same destination root.
    let opts = options(scratch.dest.clone(), Vec::new());
    for (i, &at) in members
        .iter()
        .step_by(members.len().div_ceil(MAX_DAR).max(1))
        .enumerate()
    {
        let dest = scratch.dest.join(format!("dar{i}"));
        let _ = read_one_tar(
            &mut &image[at as usize..],
            &dest,
            &opts,
            &mut |_| {},
            &abort,
        );
    }

    scratch.check();
});
