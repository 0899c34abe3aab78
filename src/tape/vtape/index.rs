//! Where every item of a cartridge is, kept as runs of equal items so a tape of a million
//! same-size records costs a few dozen bytes and every position lookup is a binary search.

use super::format::{sidecar::RunRec, ITEM_HDR, MAX_RECORD};

/// `count` consecutive items of one kind and length, starting at item `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: u64,
    /// File offset of item `first`.
    off: u64,
    /// Filemarks among items `0..first`.
    fm_before: u64,
    count: u64,
    len: u32,
    filemark: bool,
}

impl Run {
    fn size(&self) -> u64 {
        ITEM_HDR + u64::from(self.len)
    }

    fn fm_after(&self) -> u64 {
        self.fm_before + if self.filemark { self.count } else { 0 }
    }
}

/// One item as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// File offset of its header.
    pub off: u64,
    /// Its payload length; 0 for a filemark.
    pub len: u32,
    /// A filemark rather than a record.
    pub filemark: bool,
}

/// Every item of one cartridge, in tape order.
#[derive(Debug, Clone)]
pub struct Index {
    runs: Vec<Run>,
    items: u64,
    /// File offset just past the last item: end of data.
    end: u64,
    filemarks: u64,
    start: u64,
}

impl Index {
    /// An empty index whose first item will sit at file offset `start`.
    pub fn new(start: u64) -> Index {
        Index {
            runs: Vec::new(),
            items: 0,
            end: start,
            filemarks: 0,
            start,
        }
    }

    /// How many items (records and filemarks) there are.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// File offset just past the last item: end of data.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// How many filemarks there are.
    pub fn filemarks(&self) -> u64 {
        self.filemarks
    }

    /// The run holding item `i` (`i < items`).
    fn run_of(&self, i: u64) -> &Run {
        let j = self.runs.partition_point(|r| r.first <= i) - 1;
        &self.runs[j]
    }

    /// Item `i`, or `None` past the last one.
    pub fn get(&self, i: u64) -> Option<Item> {
        if i >= self.items {
            return None;
        }
        let r = self.run_of(i);
        Some(Item {
            off: r.off + (i - r.first) * r.size(),
            len: r.len,
            filemark: r.filemark,
        })
    }

    /// File offset of item `i`; `end()` for `i == items`.
    pub fn offset(&self, i: u64) -> u64 {
        self.get(i).map_or(self.end, |it| it.off)
    }

    /// Filemarks among items `0..i`: the file number at position `i`.
    pub fn fm_before(&self, i: u64) -> u64 {
        if i >= self.items {
            return self.filemarks;
        }
        let r = self.run_of(i);
        r.fm_before + if r.filemark { i - r.first } else { 0 }
    }

    /// Item number of the filemark with ordinal `ord` (0-based), if there are that many.
    pub fn fm_item(&self, ord: u64) -> Option<u64> {
        if ord >= self.filemarks {
            return None;
        }
        let j = self.runs.partition_point(|r| r.fm_after() <= ord);
        let r = &self.runs[j];
        Some(r.first + (ord - r.fm_before))
    }

    /// First filemark at or after item `i`, or `items` if none.
    pub fn next_fm(&self, i: u64) -> u64 {
        self.fm_item(self.fm_before(i)).unwrap_or(self.items)
    }

    /// Item just after the last filemark before `i`, or 0 (BOT).
    pub fn file_start(&self, i: u64) -> u64 {
        match self.fm_before(i) {
            0 => 0,
            c => self.fm_item(c - 1).map_or(0, |f| f + 1),
        }
    }

    /// Appends one item.
    pub fn push(&mut self, filemark: bool, len: u32) {
        self.push_run(filemark, len, 1);
    }

    /// Appends `count` equal items, merging with the last run when it matches.
    pub fn push_run(&mut self, filemark: bool, len: u32, count: u64) {
        if count == 0 {
            return;
        }
        let size = ITEM_HDR + u64::from(len);
        match self.runs.last_mut() {
            Some(r) if r.filemark == filemark && r.len == len => r.count += count,
            _ => self.runs.push(Run {
                first: self.items,
                off: self.end,
                fm_before: self.filemarks,
                count,
                len,
                filemark,
            }),
        }
        self.items += count;
        self.end += size * count;
        if filemark {
            self.filemarks += count;
        }
    }

    /// Drops items `i..`.
    pub fn truncate(&mut self, i: u64) {
        if i >= self.items {
            return;
        }
        let end = self.offset(i);
        let filemarks = self.fm_before(i);
        let j = self.runs.partition_point(|r| r.first <= i) - 1;
        let keep = i - self.runs[j].first;
        if keep == 0 {
            self.runs.truncate(j);
        } else {
            self.runs[j].count = keep;
            self.runs.truncate(j + 1);
        }
        self.items = i;
        self.end = end;
        self.filemarks = filemarks;
    }

    /// The runs, for the sidecar index.
    pub fn to_runs(&self) -> Vec<RunRec> {
        self.runs
            .iter()
            .map(|r| RunRec {
                filemark: r.filemark,
                len: r.len,
                count: r.count,
            })
            .collect()
    }

    /// Rebuilds from a sidecar's runs, refusing anything a writer could not have produced or
    /// that would overflow or reach past `limit` (the file length).
    pub fn from_runs(start: u64, runs: &[RunRec], limit: u64) -> Option<Index> {
        let mut ix = Index::new(start);
        for r in runs {
            let ok = if r.filemark {
                r.len == 0
            } else {
                r.len > 0 && r.len as usize <= MAX_RECORD
            };
            if !ok || r.count == 0 {
                return None;
            }
            let bytes = (ITEM_HDR + u64::from(r.len)).checked_mul(r.count)?;
            if ix.end.checked_add(bytes)? > limit {
                return None;
            }
            ix.push_run(r.filemark, r.len, r.count);
        }
        Some(ix)
    }

    #[cfg(test)]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes of items on the tape.
    pub fn used(&self) -> u64 {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same questions answered by walking a flat list.
    fn check(ix: &Index, flat: &[(bool, u32)]) {
        assert_eq!(ix.items(), flat.len() as u64);
        let mut off = ix.start();
        let mut fms = 0;
        for (i, &(fm, len)) in flat.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                ix.get(i),
                Some(Item {
                    off,
                    len,
                    filemark: fm
                })
            );
            assert_eq!(ix.fm_before(i), fms);
            if fm {
                assert_eq!(ix.fm_item(fms), Some(i));
                fms += 1;
            }
            off += ITEM_HDR + u64::from(len);
        }
        assert_eq!(ix.end(), off);
        assert_eq!(ix.filemarks(), fms);
        assert_eq!(ix.fm_item(fms), None);
        assert_eq!(ix.get(flat.len() as u64), None);
    }

    #[test]
    fn runs_merge_lookup_and_truncate() {
        let mut flat = Vec::new();
        let mut ix = Index::new(4096);
        for k in 0..200u32 {
            let item = match k % 17 {
                0 | 1 => (true, 0),
                2..=9 => (false, 1000),
                _ => (false, k),
            };
            ix.push(item.0, item.1);
            flat.push(item);
        }
        check(&ix, &flat);
        for cut in [199, 150, 101, 100, 37, 2, 1, 0] {
            ix.truncate(cut);
            flat.truncate(cut as usize);
            check(&ix, &flat);
        }
        let ix2 = Index::from_runs(4096, &ix.to_runs(), u64::MAX).unwrap();
        check(&ix2, &flat);
    }

    #[test]
    fn hostile_runs_are_refused() {
        let bad = [
            RunRec {
                filemark: false,
                len: u32::MAX,
                count: 1,
            },
            RunRec {
                filemark: true,
                len: 5,
                count: 1,
            },
            RunRec {
                filemark: false,
                len: 10,
                count: u64::MAX,
            },
            RunRec {
                filemark: false,
                len: 10,
                count: 0,
            },
        ];
        for r in bad {
            assert!(Index::from_runs(4096, &[r], u64::MAX).is_none(), "{r:?}");
        }
        let big = RunRec {
            filemark: false,
            len: 100,
            count: 10,
        };
        assert!(Index::from_runs(0, &[big], 1319).is_none());
        assert!(Index::from_runs(0, &[big], 1320).is_some());
    }
}
