//! The objects an incremental may have to write, when a snapshot provider knows them: the
//! image writers then stat only these among the non-directories, not every file of the tree.

/// Inode numbers that may have changed since the base backup: a superset of those whose
/// mtime or ctime moved. The writers still apply the date rule to the ones they stat, so the
/// image is the one a full walk gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    inos: Vec<u64>,
}

impl Changed {
    /// The set of `inos` (any order, repeats allowed).
    pub fn new(mut inos: Vec<u64>) -> Changed {
        inos.sort_unstable();
        inos.dedup();
        Changed { inos }
    }

    /// Whether `ino` may have changed.
    pub fn contains(&self, ino: u64) -> bool {
        self.inos.binary_search(&ino).is_ok()
    }

    /// How many objects may have changed.
    pub fn len(&self) -> usize {
        self.inos.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inos.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let c = Changed::new(vec![9, 3, 3, 300]);
        assert_eq!(c.len(), 3);
        assert!(c.contains(3) && c.contains(9) && c.contains(300));
        assert!(!c.contains(4) && !c.contains(0));
        assert!(Changed::default().is_empty());
    }
}
