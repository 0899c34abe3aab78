//! Where each virtual cartridge is: in a drive, a storage slot, an import/export slot, or
//! outside the library. Kept in `DATA_DIR/vtl/library.toml`, changed under a file lock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A place in the library that holds one cartridge. Slots and ports count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// A changer drive, by its configured name.
    Drive(String),
    /// A storage slot.
    Slot(u16),
    /// An import/export slot (the mail slot an operator reaches from outside).
    Port(u16),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Drive(d) => write!(f, "drive {d}"),
            Place::Slot(n) => write!(f, "slot {n}"),
            Place::Port(n) => write!(f, "port {n}"),
        }
    }
}

impl FromStr for Place {
    type Err = String;
    fn from_str(s: &str) -> Result<Place, String> {
        let (kind, rest) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{s:?} is not a place (drive NAME, slot N or port N)"))?;
        let num = || {
            rest.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s:?}: {rest:?} is not a slot number"))
        };
        match kind {
            "drive" => Ok(Place::Drive(rest.trim().to_string())),
            "slot" => num().map(Place::Slot),
            "port" => num().map(Place::Port),
            _ => Err(format!(
                "{s:?} is not a place (drive NAME, slot N or port N)"
            )),
        }
    }
}

impl Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Place {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Place, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One cartridge inside the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placed {
    /// The cartridge's label.
    pub label: String,
    /// Where it is now.
    pub at: Place,
    /// Where the robot last took it from (SMC's source storage element).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Place>,
    /// In a drive: unloaded (MTIO OFF), waiting for the robot to take it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ejected: bool,
}

/// The whole library state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    /// PREVENT MEDIUM REMOVAL is in effect: operators may not use the import/export slots.
    #[serde(default)]
    pub prevent_removal: bool,
    /// Counts operator imports and exports, so open changers can report the UNIT ATTENTION
    /// that tells a DMA its inventory is stale.
    #[serde(default)]
    pub operator_changes: u64,
    /// Every cartridge in the library; one outside it has no entry.
    #[serde(default, rename = "cartridge")]
    pub placed: Vec<Placed>,
}

impl Contents {
    /// The cartridge at `place`.
    pub fn at(&self, place: &Place) -> Option<&Placed> {
        self.placed.iter().find(|p| &p.at == place)
    }

    /// [`Contents::at`], to change the cartridge in place.
    pub fn at_mut(&mut self, place: &Place) -> Option<&mut Placed> {
        self.placed.iter_mut().find(|p| &p.at == place)
    }

    /// Where the cartridge `label` is, if it is in the library.
    pub fn find(&self, label: &str) -> Option<&Placed> {
        self.placed.iter().find(|p| p.label == label)
    }

    /// Takes the cartridge out of `place`.
    pub fn take(&mut self, place: &Place) -> Option<Placed> {
        let i = self.placed.iter().position(|p| &p.at == place)?;
        Some(self.placed.remove(i))
    }

    /// Puts a cartridge at an empty place (the caller checked it is empty).
    pub fn put(&mut self, label: &str, at: Place, source: Option<Place>) {
        self.placed.push(Placed {
            label: label.to_string(),
            at,
            source,
            ejected: false,
        });
        self.placed.sort_by(|a, b| a.at.cmp(&b.at));
    }

    /// Removes `label` from the library (it is now outside).
    pub fn remove(&mut self, label: &str) -> Option<Placed> {
        let i = self.placed.iter().position(|p| p.label == label)?;
        Some(self.placed.remove(i))
    }

    /// The first empty storage slot of `slots`, skipping those in `reserved`.
    pub fn free_slot(&self, slots: u16, reserved: &[u16]) -> Option<u16> {
        // one pass over the cartridges, not one per slot: libraries have thousands of slots
        let mut taken = vec![false; usize::from(slots) + 1];
        for p in &self.placed {
            if let Place::Slot(n) = p.at {
                if let Some(t) = taken.get_mut(usize::from(n)) {
                    *t = true;
                }
            }
        }
        for &n in reserved {
            if let Some(t) = taken.get_mut(usize::from(n)) {
                *t = true;
            }
        }
        (1..=slots).find(|n| !taken[usize::from(*n)])
    }

    /// The first empty import/export slot.
    pub fn free_port(&self, ports: u16) -> Option<u16> {
        (1..=ports).find(|n| self.at(&Place::Port(*n)).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_read_and_print() {
        for s in ["drive vtape0", "slot 3", "port 1"] {
            assert_eq!(s.parse::<Place>().unwrap().to_string(), s);
        }
        assert!("slot 0".parse::<Place>().is_err());
        assert!("slot x".parse::<Place>().is_err());
        assert!("shelf 1".parse::<Place>().is_err());
        assert!("slot".parse::<Place>().is_err());
    }

    #[test]
    fn contents_round_trip_through_toml() {
        let mut c = Contents::default();
        c.put("VT0002", Place::Slot(2), None);
        c.put(
            "VT0001",
            Place::Drive("vtape0".into()),
            Some(Place::Slot(1)),
        );
        c.at_mut(&Place::Drive("vtape0".into())).unwrap().ejected = true;
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("at = \"drive vtape0\""), "{text}");
        let back: Contents = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.free_slot(8, &[1]), Some(3));
        assert_eq!(back.free_port(1), Some(1));
        assert_eq!(back.find("VT0002").unwrap().at, Place::Slot(2));
    }
}
