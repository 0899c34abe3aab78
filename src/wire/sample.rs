//! Deterministic random values of every wire type, for property tests, golden-byte checks
//! against the C encoders, fuzz seeds and benchmarks.

// A leaf: the generator, the trait and its impls for plain integers and vectors. Each wire
// type's own impl sits next to that type (xdr.rs, types.rs, messages.rs), which import this.

/// A small seeded generator (xorshift64*): the same seed always gives the same values, so a
/// failing case can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct Gen {
    state: u64,
}

impl Gen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Gen {
            state: seed ^ 0x9e37_79b9_7f4a_7c15 | 1,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A short length: mostly small, sometimes zero, now and then not a multiple of 4.
    pub fn len(&mut self, max: usize) -> usize {
        self.below(max as u64 + 1) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A type that can produce an arbitrary valid value of itself.
pub trait Sample: Sized {
    /// A value drawn from `g`.
    fn sample(g: &mut Gen) -> Self;
}

impl Sample for u32 {
    fn sample(g: &mut Gen) -> Self {
        // Edge values are where encoders go wrong.
        match g.below(8) {
            0 => 0,
            1 => u32::MAX,
            _ => g.next_u32(),
        }
    }
}

impl Sample for u64 {
    fn sample(g: &mut Gen) -> Self {
        match g.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => g.next_u32() as u64,
            _ => g.next_u64(),
        }
    }
}

impl Sample for u16 {
    fn sample(g: &mut Gen) -> Self {
        g.next_u32() as u16
    }
}

impl Sample for u8 {
    fn sample(g: &mut Gen) -> Self {
        g.next_u32() as u8
    }
}

impl Sample for i16 {
    fn sample(g: &mut Gen) -> Self {
        g.next_u32() as i16
    }
}

impl<T: Sample> Sample for Vec<T> {
    fn sample(g: &mut Gen) -> Self {
        let n = g.len(3);
        (0..n).map(|_| T::sample(g)).collect()
    }
}
