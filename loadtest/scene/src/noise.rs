//! Seeded randomness for the scene renderer: a SplitMix64 generator for layout
//! decisions and hash-based value noise (with fractal sums) for textures, ridges,
//! clouds, smoke and water. Everything is a pure function of the seed, so the
//! same seed renders the same bytes on every machine; nothing here reads a clock
//! or the OS random source.

/// SplitMix64: tiny, fast, and good enough to place hills, fields and plumes.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6A09_E667_F3BC_C909)
    }

    /// An independent stream for one purpose (`tag`), so adding a draw in one
    /// layer does not shift every later layer's layout.
    pub(crate) fn fork(&self, tag: u64) -> Rng {
        let mut r = Rng(self.0 ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); `n` must be non-zero.
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    pub(crate) fn seed32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// `floor` without a libm call (the baseline x86-64 target has no SSE4.1 `roundss`).
#[inline]
fn fast_floor(x: f32) -> i32 {
    let i = x as i32;
    if (i as f32) > x { i - 1 } else { i }
}

/// Integer lattice hash → [0, 1).
#[inline]
pub(crate) fn hash2(ix: i32, iy: i32, seed: u32) -> f32 {
    let mut h = (ix as u32).wrapping_mul(0x8DA6_B343)
        ^ (iy as u32).wrapping_mul(0xD816_3841)
        ^ seed.wrapping_mul(0xCB1A_B31F);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Value noise on the integer lattice with a smoothstep fade; output in [0, 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueNoise {
    seed: u32,
}

impl ValueNoise {
    pub(crate) fn new(seed: u32) -> Self {
        ValueNoise { seed }
    }

    #[inline]
    pub(crate) fn sample(&self, x: f32, y: f32) -> f32 {
        let ix = fast_floor(x);
        let iy = fast_floor(y);
        let tx = x - ix as f32;
        let ty = y - iy as f32;
        let sx = tx * tx * (3.0 - 2.0 * tx);
        let sy = ty * ty * (3.0 - 2.0 * ty);
        let a = hash2(ix, iy, self.seed);
        let b = hash2(ix + 1, iy, self.seed);
        let c = hash2(ix, iy + 1, self.seed);
        let d = hash2(ix + 1, iy + 1, self.seed);
        let top = a + (b - a) * sx;
        let bottom = c + (d - c) * sx;
        top + (bottom - top) * sy
    }

    /// Fractal sum of `octaves` octaves (lacunarity 2, gain 0.5), normalised to [0, 1).
    #[inline]
    pub(crate) fn fbm(&self, x: f32, y: f32, octaves: u32) -> f32 {
        let mut sum = 0.0;
        let mut amp = 1.0;
        let mut norm = 0.0;
        let (mut px, mut py) = (x, y);
        for o in 0..octaves {
            // Each octave gets its own lattice so octaves do not line up at the origin.
            let n = ValueNoise::new(self.seed.wrapping_add(o.wrapping_mul(0x9E37)));
            sum += amp * n.sample(px, py);
            norm += amp;
            amp *= 0.5;
            // Rotate a little between octaves to hide the lattice axes.
            let (qx, qy) = (px * 1.6 + py * 1.2, py * 1.6 - px * 1.2);
            px = qx + 17.13;
            py = qy - 7.31;
        }
        sum / norm
    }

    /// Like [`ValueNoise::fbm`] but stops adding octaves finer than `footprint`
    /// lattice units per pixel, so far-away textures fade to their mean instead
    /// of aliasing into moiré.
    #[inline]
    pub(crate) fn fbm_filtered(&self, x: f32, y: f32, octaves: u32, footprint: f32) -> f32 {
        let mut sum = 0.0;
        let mut amp = 1.0;
        let mut scale = 1.0;
        let (mut px, mut py) = (x, y);
        for o in 0..octaves {
            let n = ValueNoise::new(self.seed.wrapping_add(o.wrapping_mul(0x9E37)));
            // The octave's cell spans 1/scale units; fade it out as a pixel grows past half a cell.
            let w = (1.0 - (footprint * scale - 0.25) * 2.0).clamp(0.0, 1.0);
            if w <= 0.0 {
                sum += amp * 0.5;
            } else {
                sum += amp * (0.5 + (n.sample(px, py) - 0.5) * w);
            }
            amp *= 0.5;
            scale *= 2.0;
            let (qx, qy) = (px * 1.6 + py * 1.2, py * 1.6 - px * 1.2);
            px = qx + 17.13;
            py = qy - 7.31;
        }
        sum / (2.0 - 2.0 * amp)
    }
}

#[inline]
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.unit();
            assert_eq!(x, b.unit());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(5) < 5);
            b.below(5);
        }
    }

    #[test]
    fn noise_is_bounded_and_continuous() {
        let n = ValueNoise::new(3);
        let mut prev = n.fbm(0.0, 0.5, 5);
        for i in 1..2000 {
            let x = i as f32 * 0.01;
            let v = n.fbm(x, 0.5, 5);
            assert!((0.0..1.0).contains(&v));
            assert!((v - prev).abs() < 0.1, "jump at {x}");
            prev = v;
            let f = n.fbm_filtered(x, 0.5, 5, 0.3);
            assert!((0.0..=1.0).contains(&f));
        }
    }
}
