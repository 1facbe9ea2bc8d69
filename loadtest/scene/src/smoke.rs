//! The smoke plume event: rising from a point on a ridge or the ground, bent
//! by the wind, widening with height and growing with the time since ignition.
//! Its body is two layers of fractal noise advected upward at different speeds
//! (so it churns rather than slides), shaped by a Gaussian cross-section and a
//! ragged top. It is shaded and hazed at its own distance through the scene's
//! [`Look`], and hidden by anything nearer than it (a closer ridge, a roof).

use crate::coarse::{Coarse, Rgba};
use crate::look::{Look, Rgb, mix};
use crate::noise::{Rng, ValueNoise, smoothstep};

const SMOKE_COLOURS: [(Rgb, Rgb); 4] = [
    // (dense, thin)
    ([0.62, 0.62, 0.60], [0.90, 0.90, 0.88]), // white-grey (grass, light fuel)
    ([0.36, 0.35, 0.34], [0.72, 0.71, 0.69]), // grey
    ([0.22, 0.19, 0.16], [0.56, 0.50, 0.44]), // dark brownish (structure, heavy fuel)
    ([0.55, 0.57, 0.62], [0.82, 0.85, 0.90]), // bluish-white (distant wood smoke)
];

/// Where the plume stands in the image and how big a metre is there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlumeAnchor {
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) depth_m: f32,
    pub(crate) px_per_m: f32,
}

#[derive(Debug, Clone)]
pub(crate) struct Plume {
    pub(crate) onset_s: f64,
    pub(crate) anchor: PlumeAnchor,
    rise_ms: f32,
    wind_ms: f32,
    max_height_m: f32,
    base_radius_m: f32,
    spread: f32,
    opacity: f32,
    dense: Rgb,
    thin: Rgb,
    body: ValueNoise,
    churn: ValueNoise,
    wobble: ValueNoise,
}

impl Plume {
    pub(crate) fn new(onset_s: f64, anchor: PlumeAnchor, look: &Look, rng: &mut Rng) -> Plume {
        let (dense, thin) = SMOKE_COLOURS[rng.below(SMOKE_COLOURS.len() as u32) as usize];
        let lambert = look.ground_lambert() * 0.7 + 0.25;
        let grade = |c: Rgb| look.atmos(look.shade(c, lambert), anchor.depth_m);
        // Scale the plume to the distance: a far tower plume is hundreds of metres
        // tall, a plume down the street tens.
        let size = (anchor.depth_m / 1500.0).clamp(0.5, 3.0);
        Plume {
            onset_s,
            anchor,
            rise_ms: rng.range(2.0, 5.0) * size.sqrt(),
            wind_ms: rng.range(-3.5, 3.5) * size.sqrt(),
            max_height_m: rng.range(120.0, 320.0) * size,
            base_radius_m: rng.range(12.0, 30.0) * size,
            spread: rng.range(0.3, 0.55),
            opacity: rng.range(3.5, 6.0),
            dense: grade(dense),
            thin: grade(thin),
            body: ValueNoise::new(rng.seed32()),
            churn: ValueNoise::new(rng.seed32()),
            wobble: ValueNoise::new(rng.seed32()),
        }
    }

    /// Height of the plume top `age` seconds after ignition, metres.
    fn top_m(&self, age: f32) -> f32 {
        self.max_height_m * (1.0 - (-self.rise_ms * age / self.max_height_m).exp())
    }

    fn radius_m(&self, age: f32, h: f32) -> f32 {
        let r0 = self.base_radius_m * (0.35 + 0.65 * (1.0 - (-age / 40.0).exp()));
        r0 + self.spread * h.max(0.0)
    }

    fn centre_m(&self, age: f32, h: f32) -> f32 {
        let bend = self.wind_ms / self.rise_ms * h * (0.3 + 0.7 * smoothstep(0.0, 80.0, h));
        let wob =
            (self.wobble.sample(h / 60.0 - age * 0.03, 3.7) - 0.5) * self.radius_m(age, h) * 0.9;
        bend + wob
    }

    /// Pixel rectangle `(x0, y0, x1, y1)` the plume can touch at `age` seconds, clipped to the frame.
    pub(crate) fn bounds(
        &self,
        age: f32,
        w: usize,
        h: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let top = self.top_m(age);
        let r_top = self.radius_m(age, top);
        let reach = top + r_top * 1.2;
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for i in 0..=16 {
            let hm = reach * i as f32 / 16.0;
            let c = self.centre_m(age, hm);
            let r = self.radius_m(age, hm) * 2.0;
            lo = lo.min(c - r);
            hi = hi.max(c + r);
        }
        let a = self.anchor;
        let x0 = (a.x + lo * a.px_per_m).floor().max(0.0);
        let x1 = (a.x + hi * a.px_per_m).ceil().min(w as f32);
        let y0 = (a.y - reach * a.px_per_m).floor().max(0.0);
        let y1 = (a.y + self.radius_m(age, 0.0) * 0.6 * a.px_per_m)
            .ceil()
            .min(h as f32);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        Some((x0 as usize, y0 as usize, x1 as usize, y1 as usize))
    }

    /// Premultiplied smoke colour at pixel (`x`, `y`), `age` seconds after ignition.
    pub(crate) fn at(&self, x: f32, y: f32, age: f32) -> Rgba {
        let a = self.anchor;
        let hm = (a.y - y) / a.px_per_m;
        let r = self.radius_m(age, hm);
        if hm < -r * 0.6 {
            return [0.0; 4];
        }
        let top = self.top_m(age);
        let across_m = (x - a.x) / a.px_per_m - self.centre_m(age, hm);
        let across = across_m / r;
        if across.abs() > 2.2 {
            return [0.0; 4];
        }
        let profile = (-across * across * 1.4).exp();
        // Puffs grow as the plume rises; the noise moves up with the smoke.
        let cell = (r * 0.75).max(self.base_radius_m * 0.8);
        let xm = (x - a.x) / a.px_per_m;
        let body = self
            .body
            .fbm(xm / cell, (hm - self.rise_ms * 0.9 * age) / cell, 4);
        let churn = self.churn.fbm(
            xm / (cell * 0.5) + 31.0,
            (hm - self.rise_ms * 0.55 * age) / (cell * 0.5),
            3,
        );
        let turb = body * 0.6 + churn * 0.4;
        let edge = top + (turb - 0.5) * r * 1.6;
        let top_fade = smoothstep(edge + r * 0.3, edge - r * 0.6, hm);
        let base_fade = smoothstep(-r * 0.6, r * 0.2, hm);
        let thinning = 1.0 / (1.0 + hm.max(0.0) / self.max_height_m);
        let density = (profile * (0.7 + 3.0 * (turb - 0.5)) - 0.08).max(0.0)
            * top_fade
            * base_fade
            * thinning;
        if density <= 0.0 {
            return [0.0; 4];
        }
        let alpha = (1.0 - (-density * self.opacity).exp()).min(0.96);
        let lightness = (smoothstep(0.0, self.max_height_m * 0.6, hm) * 0.5
            + (churn - 0.5) * 0.9
            + (1.0 - profile) * 0.3
            + 0.15)
            .clamp(0.0, 1.0);
        let c = mix(self.dense, self.thin, lightness);
        [c[0] * alpha, c[1] * alpha, c[2] * alpha, alpha]
    }

    /// Draw the plume into `frame` where nothing nearer hides it, returning the
    /// labelled pixel count and bounding box of pixels at least `label_alpha` opaque
    /// whose colour the plume moved by at least `label_change`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn composite(
        &self,
        t_s: f64,
        frame: &mut [Rgb],
        depth: &[f32],
        w: usize,
        h: usize,
        step: usize,
        scratch: &mut Coarse,
        label_alpha: f32,
        label_change: f32,
    ) -> Coverage {
        let mut cov = Coverage::default();
        let age = (t_s - self.onset_s) as f32;
        if age <= 0.0 {
            return cov;
        }
        let Some(rect) = self.bounds(age, w, h) else {
            return cov;
        };
        scratch.fill(rect, step, |x, y| self.at(x, y, age));
        let near = self.anchor.depth_m;
        scratch.blend(
            rect,
            frame,
            w,
            |i| depth[i] > near,
            |x, y, a, change| {
                if a >= label_alpha && change >= label_change {
                    cov.add(x, y);
                }
            },
        );
        cov
    }
}

/// Pixels an event covers in one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coverage {
    pub(crate) pixels: u64,
    pub(crate) x0: usize,
    pub(crate) y0: usize,
    pub(crate) x1: usize,
    pub(crate) y1: usize,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            pixels: 0,
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
        }
    }
}

impl Coverage {
    #[inline]
    pub(crate) fn add(&mut self, x: usize, y: usize) {
        self.pixels += 1;
        self.x0 = self.x0.min(x);
        self.y0 = self.y0.min(y);
        self.x1 = self.x1.max(x + 1);
        self.y1 = self.y1.max(y + 1);
    }
}

/// Choose a plume's ignition point among `candidates` (image points with their
/// distance), for the event seeded by `rng`.
pub(crate) fn pick_anchor(candidates: &[PlumeAnchor], rng: &mut Rng) -> Option<PlumeAnchor> {
    if candidates.is_empty() {
        return None;
    }
    Some(candidates[rng.below(candidates.len() as u32) as usize])
}
