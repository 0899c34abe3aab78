//! The name tree recover builds from the directory pass: every entry (directory, name,
//! inode), each directory's attributes, and where each selected name goes in the destination.

use std::collections::{HashMap, VecDeque};

use super::header::{Header, Order};
use crate::format::recover::{RecoverError, Sel};

/// Most directory entries kept (about 16 bytes each plus the name).
pub const MAX_ENTRIES: usize = 1 << 25;
/// Most name bytes kept in total.
pub const MAX_NAME_BYTES: usize = 1 << 30;
/// Most attribute-blob bytes kept for directories until their attributes are applied.
pub const MAX_DIR_XATTR_BYTES: usize = 64 << 20;
/// The root directory's inode number (doc §5.7).
pub const ROOTINO: u32 = 2;

/// One directory entry; the name lives in the tree's arena.
pub struct Entry {
    pub dir: u32,
    pub ino: u32,
    name_off: u32,
    name_len: u8,
}

/// A directory of the image.
pub struct Dir {
    pub hdr: Header,
    pub xattr: Option<Vec<u8>>,
    /// Entries of this directory: `first..first + len` in `Tree::entries`.
    first: usize,
    len: usize,
    /// The entry that names it (None for the root and orphans).
    pub naming: Option<u32>,
    pub parent: Option<u32>,
    /// Path in the image ("" for the root), once reachable from the root.
    pub path: Option<Vec<u8>>,
    pub depth: u32,
    /// Destination, relative to the destination root; None = not restored.
    pub target: Option<Vec<u8>>,
    /// The whole subtree goes along (false for directories created only as parents).
    pub whole: bool,
}

/// Where one name of a non-directory goes.
#[derive(Clone, Copy)]
pub enum Target {
    /// Its own entry, inside its directory's target.
    Entry(u32),
    /// Explicitly placed by a selection: (entry, selection index).
    Selected(u32, u32),
}

/// Pass III's result.
#[derive(Default)]
pub struct Tree {
    pub entries: Vec<Entry>,
    names: Vec<u8>,
    pub dirs: HashMap<u32, Dir>,
    /// Directory inode numbers in image order.
    pub dir_order: Vec<u32>,
    xattr_bytes: usize,
    /// Where each selected non-directory inode goes, first name first.
    pub files: Files,
}

/// Where each selected non-directory inode goes: (inode, target) sorted by inode, first
/// name first. Pass IV brings inodes in ascending order, so a cursor finds each one where
/// the last ended; a hash map's lookup per inode was a cache miss or three each (7% of a
/// restore of 200,000 small files). Inodes out of order are found by binary search.
#[derive(Default)]
pub struct Files {
    list: Vec<(u32, Target)>,
    /// Whether the targets of the inode starting at this index were taken.
    taken: Vec<bool>,
    next: usize,
}

impl Files {
    fn push(&mut self, ino: u32, t: Target) {
        self.list.push((ino, t));
    }

    /// Sorts what was pushed (stable: an inode's names keep their order).
    fn seal(&mut self) {
        self.list.sort_by_key(|x| x.0);
        self.taken = vec![false; self.list.len()];
        self.next = 0;
    }

    /// The targets of `ino`, once: empty when it has none or they were taken already.
    pub fn take(&mut self, ino: u32) -> Vec<Target> {
        let start = match self.list.get(self.next) {
            Some(x) if x.0 == ino => self.next,
            _ => self.list.partition_point(|x| x.0 < ino),
        };
        let end = start + self.list[start..].iter().take_while(|x| x.0 == ino).count();
        if start == end || self.taken[start] {
            return Vec::new();
        }
        self.taken[start] = true;
        self.next = end;
        self.list[start..end].iter().map(|x| x.1).collect()
    }

    /// The targets never taken, by inode.
    pub fn rest(&mut self) -> Vec<(u32, Vec<Target>)> {
        let mut out: Vec<(u32, Vec<Target>)> = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            let ino = self.list[i].0;
            let end = i + self.list[i..].iter().take_while(|x| x.0 == ino).count();
            if !self.taken[i] {
                out.push((ino, self.list[i..end].iter().map(|x| x.1).collect()));
                self.taken[i] = true;
            }
            i = end;
        }
        out
    }
}

/// Why a name from directory data is refused, or None if it is usable.
pub fn bad_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains NUL")
    } else if name == b"." || name == b".." {
        Some("name is . or ..")
    } else {
        None
    }
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(a.len() + 1 + b.len());
    p.extend_from_slice(a);
    if !a.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(b);
    p
}

impl Tree {
    pub fn name(&self, e: u32) -> &[u8] {
        let e = &self.entries[e as usize];
        &self.names[e.name_off as usize..e.name_off as usize + e.name_len as usize]
    }

    /// Starts a directory whose entries follow through `add_block`.
    pub fn begin_dir(&mut self, hdr: Header) {
        let ino = hdr.inumber;
        let dir = Dir {
            hdr,
            xattr: None,
            first: self.entries.len(),
            len: 0,
            naming: None,
            parent: None,
            path: None,
            depth: 0,
            target: None,
            whole: false,
        };
        if self.dirs.insert(ino, dir).is_none() {
            self.dir_order.push(ino);
        }
    }

    /// Keeps a directory's attribute blob for the final attribute pass (bounded in total).
    pub fn dir_xattr(&mut self, ino: u32, blob: Vec<u8>) -> Result<(), &'static str> {
        let Some(d) = self.dirs.get_mut(&ino) else {
            return Err("no such directory");
        };
        if self.xattr_bytes + blob.len() > MAX_DIR_XATTR_BYTES {
            return Err("too many directory attributes to hold");
        }
        self.xattr_bytes += blob.len();
        d.xattr = Some(blob);
        Ok(())
    }

    /// Parses one 1 KiB block (or the used part of the last one) of directory `dir`.
    /// Refused names are reported through `warn`.
    pub fn add_block(
        &mut self,
        dir: u32,
        block: &[u8],
        order: Order,
        newfmt: bool,
        warn: &mut dyn FnMut(String),
    ) -> Result<(), RecoverError> {
        let mut res = Ok(());
        let mut refused = Vec::new();
        dir_entries(dir, block, order, newfmt, warn, &mut |ino, name| {
            if res.is_ok() && name != b"." && name != b".." {
                match bad_name(name) {
                    Some(why) => refused.push(warn_name(dir, name, why)),
                    None => res = self.push(dir, ino, name),
                }
            }
        });
        refused.into_iter().for_each(&mut *warn);
        res
    }

    fn push(&mut self, dir: u32, ino: u32, name: &[u8]) -> Result<(), RecoverError> {
        if self.entries.len() >= MAX_ENTRIES || self.names.len() + name.len() > MAX_NAME_BYTES {
            return Err(RecoverError::TooLarge(format!(
                "more than {MAX_ENTRIES} directory entries or {MAX_NAME_BYTES} name bytes"
            )));
        }
        let name_off = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.entries.push(Entry {
            dir,
            ino,
            name_off,
            name_len: name.len() as u8,
        });
        if let Some(d) = self.dirs.get_mut(&dir) {
            d.len += 1;
        }
        Ok(())
    }

    /// Links directories to their parents, gives each reachable one its image path, and
    /// decides every destination. `dumped` says whether an inode is on this dump (TS_BITS).
    pub fn resolve(
        &mut self,
        sels: &mut [Sel],
        dumped: &dyn Fn(u32) -> bool,
        warn: &mut dyn FnMut(String),
    ) -> Result<(), RecoverError> {
        if !self.dirs.contains_key(&ROOTINO) {
            return Err(RecoverError::NoRoot);
        }
        // Name each directory by the first entry pointing at it.
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.ino == ROOTINO || e.ino == e.dir {
                continue;
            }
            if let Some(d) = self.dirs.get_mut(&e.ino) {
                if d.naming.is_none() {
                    d.naming = Some(i as u32);
                    d.parent = Some(e.dir);
                    children.entry(e.dir).or_default().push(e.ino);
                } else {
                    warn(format!(
                        "directory inode {} has more than one name; only the first is used",
                        e.ino
                    ));
                }
            }
        }
        // Breadth-first from the root: paths, depths; cycles and orphans are never reached.
        let mut order = Vec::with_capacity(self.dirs.len());
        let mut queue = VecDeque::from([ROOTINO]);
        if let Some(r) = self.dirs.get_mut(&ROOTINO) {
            r.path = Some(Vec::new());
        }
        while let Some(d) = queue.pop_front() {
            order.push(d);
            let (path, depth) = {
                let dd = &self.dirs[&d];
                (dd.path.clone().unwrap_or_default(), dd.depth)
            };
            for c in children.remove(&d).unwrap_or_default() {
                let naming = self.dirs[&c].naming.unwrap_or(0);
                let p = join(&path, self.name(naming));
                // children are built from entries naming known directories only
                let Some(cd) = self.dirs.get_mut(&c) else {
                    continue;
                };
                if cd.path.is_none() {
                    cd.path = Some(p);
                    cd.depth = depth + 1;
                    queue.push_back(c);
                }
            }
        }
        let unreachable = self.dirs.len() - order.len();
        if unreachable > 0 {
            warn(format!(
                "{unreachable} directories are not reachable from the root; not restored"
            ));
        }
        self.dir_order = order;

        // Exact matches of the selections.
        let mut sel_dir: HashMap<u32, u32> = HashMap::new();
        let mut sel_entry: HashMap<u32, u32> = HashMap::new();
        for (si, s) in sels.iter_mut().enumerate() {
            match self.lookup(&s.comps) {
                Some(Found::Dir(d)) => {
                    s.found = true;
                    sel_dir.insert(d, si as u32);
                }
                Some(Found::Entry(e)) => {
                    s.found = true;
                    sel_entry.insert(e, si as u32);
                }
                None => {}
            }
        }
        let everything = sels.is_empty();

        // Targets of directories, parents first.
        for i in 0..self.dir_order.len() {
            let d = self.dir_order[i];
            let (parent, naming) = (self.dirs[&d].parent, self.dirs[&d].naming);
            let inherited = match (parent, naming) {
                (Some(p), Some(n)) => {
                    let pd = &self.dirs[&p];
                    match &pd.target {
                        Some(t) if pd.whole => Some(join(t, self.name(n))),
                        _ => None,
                    }
                }
                _ => None,
            };
            let Some(dd) = self.dirs.get_mut(&d) else {
                continue;
            };
            if let Some(&si) = sel_dir.get(&d) {
                dd.target = Some(sels[si as usize].dest.clone());
                dd.whole = true;
            } else if d == ROOTINO && everything {
                dd.target = Some(Vec::new());
                dd.whole = true;
            } else if let Some(t) = inherited {
                dd.target = Some(t);
                dd.whole = true;
            }
        }
        // In-place selections bring their parent directories along (attributes only).
        let mut implied: Vec<u32> = Vec::new();
        for (&d, &si) in &sel_dir {
            if sels[si as usize].in_place {
                implied.extend(self.dirs[&d].parent);
            }
        }
        for (&e, &si) in &sel_entry {
            if sels[si as usize].in_place {
                implied.push(self.entries[e as usize].dir);
            }
        }
        for mut d in implied {
            // Bounded by depth: each step moves to a parent already reached from the root.
            for _ in 0..=self.dirs.len() {
                let Some(dd) = self.dirs.get_mut(&d) else {
                    break;
                };
                if dd.target.is_some() {
                    break;
                }
                dd.target = dd.path.clone();
                match dd.parent {
                    Some(p) => d = p,
                    None => break,
                }
            }
        }

        // Non-directories: every name in a wholly restored directory, plus selected names.
        for (i, e) in self.entries.iter().enumerate() {
            let i = i as u32;
            if self.dirs.contains_key(&e.ino) || !dumped(e.ino) {
                continue;
            }
            let t = if let Some(&si) = sel_entry.get(&i) {
                Target::Selected(i, si)
            } else {
                match self.dirs.get(&e.dir) {
                    Some(d) if d.whole && d.target.is_some() => Target::Entry(i),
                    _ => continue,
                }
            };
            self.files.push(e.ino, t);
        }
        self.files.seal();
        Ok(())
    }

    /// Finds an image path: a directory, or an entry naming a non-directory.
    fn lookup(&self, comps: &[Vec<u8>]) -> Option<Found> {
        let mut dir = ROOTINO;
        for (k, c) in comps.iter().enumerate() {
            let d = self.dirs.get(&dir)?;
            d.path.as_ref()?;
            let e = (d.first..d.first + d.len).find(|&e| self.name(e as u32) == c.as_slice())?;
            let ino = self.entries[e].ino;
            match self.dirs.get(&ino) {
                Some(cd) if cd.naming == Some(e as u32) => dir = ino,
                Some(_) => return None,
                None if k + 1 == comps.len() => return Some(Found::Entry(e as u32)),
                None => return None,
            }
        }
        Some(Found::Dir(dir))
    }

    /// Image path of an entry.
    pub fn entry_path(&self, e: u32) -> Vec<u8> {
        let dir = self.entries[e as usize].dir;
        let base = self
            .dirs
            .get(&dir)
            .and_then(|d| d.path.clone())
            .unwrap_or_default();
        join(&base, self.name(e))
    }

    /// Destination (directory relative path, name) of one name of a non-directory.
    pub fn file_target(&self, t: Target, sels: &[Sel]) -> Option<(Vec<u8>, Vec<u8>)> {
        match t {
            Target::Entry(e) => {
                let d = self.dirs.get(&self.entries[e as usize].dir)?;
                Some((d.target.clone()?, self.name(e).to_vec()))
            }
            Target::Selected(_, si) => {
                let dest = &sels[si as usize].dest;
                let cut = dest.iter().rposition(|&b| b == b'/');
                let (dir, name) = match cut {
                    Some(i) => (dest[..i].to_vec(), dest[i + 1..].to_vec()),
                    None => (Vec::new(), dest.clone()),
                };
                (!name.is_empty()).then_some((dir, name))
            }
        }
    }

    pub fn target_entry(t: Target) -> u32 {
        match t {
            Target::Entry(e) | Target::Selected(e, _) => e,
        }
    }
}

enum Found {
    Dir(u32),
    Entry(u32),
}

fn warn_name(dir: u32, name: &[u8], why: &str) -> String {
    format!(
        "directory inode {dir}: entry {:?} refused: {why}",
        String::from_utf8_lossy(name)
    )
}

/// Every used entry (inode, name) of one 1 KiB block of directory `dir`, "." and ".."
/// included. Entries must not cross the block; a bad entry loses the rest of the block, as
/// with restore, and `warn` hears of it.
pub fn dir_entries(
    dir: u32,
    block: &[u8],
    order: Order,
    newfmt: bool,
    warn: &mut dyn FnMut(String),
    each: &mut dyn FnMut(u32, &[u8]),
) {
    let mut off = 0;
    while off + 8 <= block.len() {
        let ino = order.u32(block, off);
        let reclen = order.u16(block, off + 4) as usize;
        // Old (pre-4.4BSD) entries have a 16-bit name length and no type byte.
        let namlen = if newfmt {
            block[off + 7] as usize
        } else {
            order.u16(block, off + 6) as usize
        };
        if reclen < 8
            || !reclen.is_multiple_of(4)
            || off + reclen > block.len()
            || 8 + namlen > reclen
        {
            warn(format!(
                "directory inode {dir}: mangled entry at byte {off} of a block; rest of the \
                 block skipped"
            ));
            break;
        }
        if ino != 0 && namlen <= 255 {
            each(ino, &block[off + 8..off + 8 + namlen]);
        }
        off += reclen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(v: &[Target]) -> Vec<u32> {
        v.iter().map(|&t| Tree::target_entry(t)).collect()
    }

    #[test]
    fn files_are_taken_once_in_or_out_of_order_first_name_first() {
        let mut f = Files::default();
        for (ino, e) in [(5, 0), (3, 1), (5, 2), (9, 3), (7, 4)] {
            f.push(ino, Target::Entry(e));
        }
        f.seal();
        assert_eq!(entries(&f.take(3)), vec![1]);
        assert_eq!(entries(&f.take(5)), vec![0, 2]);
        assert!(f.take(5).is_empty(), "taken twice");
        assert!(f.take(4).is_empty() && f.take(1).is_empty() && f.take(10).is_empty());
        // out of order: found by search, the cursor goes on from there
        assert_eq!(entries(&f.take(9)), vec![3]);
        let rest: Vec<(u32, Vec<u32>)> = f
            .rest()
            .into_iter()
            .map(|(i, v)| (i, entries(&v)))
            .collect();
        assert_eq!(rest, vec![(7, vec![4])]);
        assert!(f.rest().is_empty());
    }
}
