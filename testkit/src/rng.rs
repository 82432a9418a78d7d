//! Deterministic pseudo-random numbers for test graphs and data.

use ndarray::{ArrayD, IxDyn};

/// A 64-bit linear congruential generator (Knuth's MMIX constants).
pub struct Lcg(u64);

impl Lcg {
    /// A generator for `seed` (scrambled first, so that small seeds differ from the start).
    pub fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// A generator whose state is `state` as is (no scrambling): for the tests that step the
    /// raw LCG from their seed.
    pub fn with_state(state: u64) -> Self {
        Lcg(state)
    }

    /// Steps the generator and returns its whole new state.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 33) % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.uniform(0.0, 1.0) < p
    }

    /// Uniform in `[lo, hi)` (24 random bits).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + u * (hi - lo)
    }

    /// A tensor of this shape with values from [`Lcg::uniform`], row-major.
    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| self.uniform(lo, hi)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape")
    }

    /// An integer tensor of this shape with values from [`Lcg::int`], row-major.
    pub fn ints(&mut self, shape: &[usize], lo: i64, hi: i64) -> ArrayD<i64> {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| self.int(lo, hi)).collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape")
    }
}

/// Deterministic pseudo-random values in `[lo, hi)`: [`Lcg::tensor`] from `Lcg::new(seed)`.
pub fn random(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    Lcg::new(seed).tensor(shape, lo, hi)
}
