//! File history regenerated from a dump image (DATA_START_RECOVER_FILEHIST): every inode with
//! its attributes and `fh_info`, every directory entry, and nothing written anywhere.

use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use super::header::{skip_blocks, Header, Tape, CHUNK, MAX_MAP_RECORDS};
use super::header::{TS_ADDR, TS_BITS, TS_CLRI, TS_END, TS_INODE, TS_TAPE};
use super::names::dir_entries;
use crate::format::dump::record::TP_BSIZE;
use crate::format::dump::{FileKind, HistEvent, NodeStat};
use crate::format::recover::RecoverError;

fn stat(h: &Header) -> Option<NodeStat> {
    Some(NodeStat {
        kind: FileKind::of_mode(h.mode)?,
        mode: h.mode & 0o7777,
        uid: h.uid,
        gid: h.gid,
        size: h.size,
        atime: i64::from(h.atime.0),
        mtime: i64::from(h.mtime.0),
        ctime: i64::from(h.ctime.0),
        nlink: u32::from(h.nlink),
    })
}

/// Reads the dump image `input` front to back and reports its history as the writer does:
/// a `Node` per inode (`fh_info` = byte offset of its TS_INODE header) and a `Dir` per entry
/// of each directory, "." and ".." included. Stops after the first TS_END, sets `ended`,
/// and then reads the input to its end, so a sender is never left blocked. Returns the
/// bytes read.
pub fn list_dump(
    input: &mut dyn Read,
    events: &mut dyn FnMut(HistEvent<'_>),
    warn: &mut dyn FnMut(String),
    abort: &AtomicBool,
    ended: &AtomicBool,
) -> Result<u64, RecoverError> {
    let mut input = BufReader::with_capacity(CHUNK, input);
    let mut tape = Tape::new(&mut input);
    let first = tape.first()?;
    if first.volume != 1 {
        return Err(RecoverError::NotVolume1(first.volume));
    }
    let mut next = Some(first);
    // The directory whose data blocks are being read: (inode, size, bytes seen).
    let mut dir: Option<(u32, u64, u64)> = None;
    let mut buf = [0u8; TP_BSIZE];
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(RecoverError::Aborted);
        }
        let h = match next.take() {
            Some(h) => h,
            None => match tape.next(warn)? {
                Some(h) => h,
                None => {
                    return Err(RecoverError::Truncated {
                        offset: tape.offset,
                    })
                }
            },
        };
        let at = tape.offset - TP_BSIZE as u64;
        if h.ctype != TS_ADDR {
            dir = None;
        }
        match h.ctype {
            TS_TAPE => {}
            TS_CLRI | TS_BITS => {
                if h.count > MAX_MAP_RECORDS {
                    return Err(RecoverError::TooLarge(format!(
                        "inode map of {} records",
                        h.count
                    )));
                }
                for _ in 0..h.count {
                    tape.data(&mut buf)?;
                }
            }
            TS_INODE if h.is_xattr() => skip_blocks(&mut tape, &h)?,
            TS_INODE | TS_ADDR => {
                if h.ctype == TS_INODE {
                    match stat(&h) {
                        Some(s) => events(HistEvent::Node {
                            inode: u64::from(h.inumber),
                            stat: &s,
                            fh_info: at,
                        }),
                        None => warn(format!(
                            "inode {} at byte {at}: unknown file type {:o}; not listed",
                            h.inumber,
                            h.mode & libc::S_IFMT
                        )),
                    }
                    if h.ifmt() == libc::S_IFDIR {
                        dir = Some((h.inumber, h.size, 0));
                    }
                }
                let Some((ino, size, seen)) = dir.as_mut() else {
                    skip_blocks(&mut tape, &h)?;
                    continue;
                };
                for i in 0..h.entries() {
                    let off = *seen;
                    *seen += TP_BSIZE as u64;
                    if h.addr[i] == 0 {
                        continue;
                    }
                    tape.data(&mut buf)?;
                    if off >= *size {
                        continue;
                    }
                    let len = (*size - off).min(TP_BSIZE as u64) as usize;
                    let (order, newfmt, d) = (tape.order, tape.newfmt, *ino);
                    let mut bad = Vec::new();
                    dir_entries(
                        d,
                        &buf[..len],
                        order,
                        newfmt,
                        &mut |w| bad.push(w),
                        &mut |i, name| {
                            events(HistEvent::Dir {
                                dir_inode: u64::from(d),
                                name,
                                inode: u64::from(i),
                            })
                        },
                    );
                    bad.into_iter().for_each(&mut *warn);
                }
            }
            TS_END => {
                ended.store(true, Ordering::Relaxed);
                tape.drain();
                return Ok(tape.offset);
            }
            other => warn(format!("unknown header type {other} at byte {at}; skipped")),
        }
    }
}
