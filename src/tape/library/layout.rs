//! The library's element numbering: the address ranges of drives, import/export slots and
//! storage slots, and the size limits that keep them apart. A leaf: it imports nothing.

/// The one medium transport (the robot arm).
pub const TRANSPORT: u16 = 0;
/// Drive n (from 1) is address `DRIVE_BASE + n - 1`; decimal-friendly so an operator can read
/// addresses: drives from 1, import/export slots from 101, storage slots from 1001.
pub const DRIVE_BASE: u16 = 1;
/// Import/export slot n (from 1) is address `PORT_BASE + n - 1`.
pub const PORT_BASE: u16 = 101;
/// Storage slot n (from 1) is address `SLOT_BASE + n - 1`.
pub const SLOT_BASE: u16 = 1001;

/// Most drives the changer can serve before their addresses run into the ports.
pub const MAX_DRIVES: usize = (PORT_BASE - DRIVE_BASE) as usize;
/// Most import/export slots before their addresses run into the storage slots.
pub const MAX_PORTS: u16 = SLOT_BASE - PORT_BASE;
/// Most storage slots the 16-bit address space holds.
pub const MAX_SLOTS: u16 = u16::MAX - SLOT_BASE + 1;
