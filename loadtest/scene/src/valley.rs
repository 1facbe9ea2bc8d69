//! The ground of a river valley seen from a tower, a drone or a road camera:
//! a meandering river at its normal level, fields in a patchwork, hedges and
//! woods, roads (one crossing the river on a bridge) and a small village. Each
//! ground point also has a height, low by the river and rising away from it,
//! which is what the flood layer floods.

use crate::look::Rgb;
use crate::noise::{Rng, ValueNoise, hash2, smoothstep};

/// What a pixel of the backdrop shows, before lighting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Surface {
    pub(crate) albedo: Rgb,
    /// Height of the surface above the valley floor datum, metres; the flood
    /// covers a pixel once the water level passes it.
    pub(crate) height: f32,
    /// How mirror-like: 0 for grass, ~1 for still water, ~0.5 for a wet road.
    pub(crate) gloss: f32,
    /// Multiplies direct sunlight (roof pitch, cast shadows).
    pub(crate) sunlit: f32,
}

const FIELD_COLOURS: [Rgb; 7] = [
    [0.20, 0.33, 0.12], // pasture
    [0.32, 0.42, 0.16], // young crop
    [0.56, 0.49, 0.27], // ripe wheat
    [0.36, 0.27, 0.18], // ploughed: a deliberate look-alike of muddy water
    [0.15, 0.25, 0.10], // dark crop
    [0.46, 0.43, 0.29], // dry grass
    [0.26, 0.36, 0.14], // meadow
];

const ROOF_COLOURS: [Rgb; 5] = [
    [0.45, 0.18, 0.12],
    [0.30, 0.30, 0.32],
    [0.20, 0.21, 0.24],
    [0.55, 0.30, 0.18],
    [0.52, 0.52, 0.50],
];

#[derive(Debug, Clone)]
pub(crate) struct Valley {
    /// River axis direction in ground coordinates.
    cos: f32,
    sin: f32,
    /// Across-river offset of the river axis from the camera, metres.
    n0: f32,
    meander: [(f32, f32, f32); 2],
    pub(crate) river_width: f32,
    river_colour: Rgb,
    /// Across-river offset of the road that runs along the river.
    road_along: f32,
    /// Along-river position of the road that crosses it (with a bridge).
    road_cross: f32,
    road_width: f32,
    wet_roads: bool,
    bank_slope: f32,
    village: (f32, f32, f32),
    field_size: f32,
    field_rot: (f32, f32),
    noise: ValueNoise,
    detail: ValueNoise,
    seed: u32,
    /// Sun direction on the ground, for cast shadows of houses and trees.
    shadow: (f32, f32),
}

/// How a valley is laid out relative to the camera.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RiverRun {
    /// Roughly along the view direction (drone over the valley).
    Along,
    /// Across the view at about `distance` metres (road/bridge camera, tower).
    Across { distance: f32 },
}

impl Valley {
    pub(crate) fn new(
        rng: &mut Rng,
        run: RiverRun,
        road_cross: Option<f32>,
        wet_roads: bool,
        sun_azimuth: f32,
    ) -> Valley {
        let (angle, n0) = match run {
            RiverRun::Along => (
                std::f32::consts::FRAC_PI_2 + rng.range(-0.5, 0.5),
                rng.range(-40.0, 40.0),
            ),
            RiverRun::Across { distance } => (rng.range(-0.25, 0.25), distance),
        };
        let river_width = rng.range(14.0, 34.0);
        let amp = rng.range(10.0, 40.0);
        let road_side = if rng.chance(0.5) { 1.0 } else { -1.0 };
        let road_along = road_side * (amp + river_width + rng.range(25.0, 70.0));
        let road_cross = road_cross.unwrap_or_else(|| rng.range(-60.0, 60.0));
        let village = (
            road_cross + rng.range(-50.0, 50.0),
            road_along + road_side * rng.range(10.0, 60.0),
            rng.range(50.0, 130.0),
        );
        let rot = rng.range(-0.4, 0.4);
        let river_colour = match rng.below(3) {
            0 => [0.16, 0.24, 0.25],
            1 => [0.22, 0.27, 0.22],
            // Some rivers run brownish even at their normal level.
            _ => [0.30, 0.27, 0.20],
        };
        Valley {
            cos: angle.cos(),
            sin: angle.sin(),
            n0,
            meander: [
                (
                    amp,
                    rng.range(250.0, 600.0),
                    rng.range(0.0, std::f32::consts::TAU),
                ),
                (
                    amp * 0.35,
                    rng.range(90.0, 200.0),
                    rng.range(0.0, std::f32::consts::TAU),
                ),
            ],
            river_width,
            river_colour,
            road_along,
            road_cross,
            road_width: rng.range(6.0, 9.0),
            wet_roads,
            bank_slope: rng.range(0.010, 0.022),
            village,
            field_size: rng.range(45.0, 95.0),
            field_rot: (rot.cos(), rot.sin()),
            noise: ValueNoise::new(rng.seed32()),
            detail: ValueNoise::new(rng.seed32()),
            seed: rng.seed32(),
            shadow: (sun_azimuth.sin() * 2.5, -sun_azimuth.cos().abs() * 2.5),
        }
    }

    /// River-aligned coordinates: `s` along the river, `dn` across from its centre line.
    #[inline]
    fn river_frame(&self, u: f32, z: f32) -> (f32, f32) {
        let s = u * self.cos + z * self.sin;
        let n = -u * self.sin + z * self.cos - self.n0;
        let tau = std::f32::consts::TAU;
        let centre: f32 = self
            .meander
            .iter()
            .map(|&(a, wl, ph)| a * (tau * s / wl + ph).sin())
            .sum();
        (s, n - centre)
    }

    /// River-aligned coordinates without the meander, for straight roads.
    #[inline]
    fn axis_frame(&self, u: f32, z: f32) -> (f32, f32) {
        (
            u * self.cos + z * self.sin,
            -u * self.sin + z * self.cos - self.n0,
        )
    }

    /// Ground height without roads or buildings; the river bed is negative.
    #[inline]
    fn terrain_height(&self, u: f32, z: f32, dn: f32) -> f32 {
        let out = (dn.abs() - self.river_width * 0.5).max(0.0);
        let swell = (self.noise.fbm(u / 140.0, z / 140.0, 3) - 0.5) * 1.6;
        if out <= 0.0 {
            -1.5
        } else {
            0.15 + out * self.bank_slope + swell * smoothstep(0.0, 30.0, out)
        }
    }

    fn on_road(&self, s: f32, n_axis: f32) -> Option<f32> {
        let half = self.road_width * 0.5;
        let a = (n_axis - self.road_along).abs();
        let c = (s - self.road_cross).abs();
        if a < half {
            Some(a / half)
        } else if c < half {
            Some(c / half)
        } else {
            None
        }
    }

    fn house_at(&self, s: f32, n: f32) -> Option<(f32, Rgb, bool)> {
        let (vs, vn, radius) = self.village;
        if (s - vs).hypot(n - vn) > radius + 20.0 {
            return None;
        }
        let cell = 22.0;
        let ci = (s / cell).floor();
        let cj = (n / cell).floor();
        let (ci_i, cj_i) = (ci as i32, cj as i32);
        let centre = ((ci + 0.5) * cell, (cj + 0.5) * cell);
        if (centre.0 - vs).hypot(centre.1 - vn) > radius {
            return None;
        }
        let h = |k: u32| hash2(ci_i, cj_i, self.seed.wrapping_add(k));
        if h(1) > 0.7 {
            return None;
        }
        // Keep houses off the roads.
        if (centre.1 - self.road_along).abs() < self.road_width * 0.5 + 9.0
            || (centre.0 - self.road_cross).abs() < self.road_width * 0.5 + 9.0
        {
            return None;
        }
        let hs = 3.5 + h(2) * 3.0;
        let hn = 3.0 + h(3) * 2.5;
        let oc = (centre.0 + (h(4) - 0.5) * 4.0, centre.1 + (h(5) - 0.5) * 4.0);
        let ds = s - oc.0;
        let dn = n - oc.1;
        if ds.abs() < hs && dn.abs() < hn {
            let roof =
                ROOF_COLOURS[(h(6) * ROOF_COLOURS.len() as f32) as usize % ROOF_COLOURS.len()];
            // Pitched roof: the two halves catch the sun differently.
            let first_half = if hs > hn { dn > 0.0 } else { ds > 0.0 };
            Some((6.0, roof, first_half))
        } else {
            None
        }
    }

    /// The surface at ground point (`u`, `z`), for a pixel covering `footprint` metres.
    pub(crate) fn sample(&self, u: f32, z: f32, footprint: f32) -> Surface {
        let (s, dn) = self.river_frame(u, z);
        let (_, n_axis) = self.axis_frame(u, z);
        let ground = self.terrain_height(u, z, dn);
        let out = dn.abs() - self.river_width * 0.5;
        let fine = self
            .detail
            .fbm_filtered(u / 3.0, z / 3.0, 4, footprint / 3.0);

        // Bridge over the river where the crossing road meets it.
        if (s - self.road_cross).abs() < self.road_width * 0.5 + 0.6 && out < 6.0 {
            let edge = (s - self.road_cross).abs() > self.road_width * 0.5 - 0.4;
            let c = if edge {
                0.62
            } else {
                0.44 + (fine - 0.5) * 0.08
            };
            return Surface {
                albedo: [c, c * 0.98, c * 0.94],
                height: 4.0,
                gloss: 0.0,
                sunlit: 1.0,
            };
        }
        if out < 0.0 {
            let ripple = self
                .detail
                .fbm_filtered(u / 1.5, z / 6.0, 3, footprint / 1.5);
            let k = 0.9 + (ripple - 0.5) * 0.25;
            return Surface {
                albedo: [
                    self.river_colour[0] * k,
                    self.river_colour[1] * k,
                    self.river_colour[2] * k,
                ],
                height: ground,
                gloss: 0.7,
                sunlit: 0.6,
            };
        }
        if let Some(across) = self.on_road(s, n_axis) {
            let base = if self.wet_roads { 0.11 } else { 0.25 };
            let mut c = base + (fine - 0.5) * 0.06;
            // Centre dashes, faded out where a pixel is wider than the paint.
            let dash = if across < 0.06 && ((s + n_axis) / 4.0).rem_euclid(2.0) < 1.0 {
                1.0 - smoothstep(0.1, 0.3, footprint)
            } else {
                0.0
            };
            c += dash * 0.45;
            let puddles = if self.wet_roads {
                smoothstep(0.55, 0.7, self.noise.fbm(u / 4.0, z / 4.0, 3))
            } else {
                0.0
            };
            return Surface {
                albedo: [c, c, c * 1.02],
                height: ground + 0.15,
                gloss: if self.wet_roads {
                    0.45 + puddles * 0.45
                } else {
                    0.02
                },
                sunlit: 1.0,
            };
        }
        if let Some((h, roof, lit_half)) = self.house_at(s, n_axis) {
            let k = if lit_half { 1.05 } else { 0.72 };
            return Surface {
                albedo: [roof[0] * k, roof[1] * k, roof[2] * k],
                height: ground + h,
                gloss: 0.0,
                sunlit: 1.0,
            };
        }
        let shadowed = self
            .house_at(s - self.shadow.0, n_axis - self.shadow.1)
            .is_some();

        // Trees: a band along the banks and patches of wood, none in the village.
        let woods = self.noise.fbm(u / 260.0 + 50.0, z / 260.0, 3);
        let bank_band = 1.0 - smoothstep(6.0, 16.0, out);
        let crowns = self
            .detail
            .fbm_filtered(u / 5.0 + 9.0, z / 5.0, 3, footprint / 5.0);
        let tree_cover =
            (bank_band * 0.8 + smoothstep(0.62, 0.70, woods)) * smoothstep(0.22, 0.36, crowns);
        if tree_cover > 0.5 {
            let k = 0.45 + crowns * 0.9;
            return Surface {
                albedo: [0.09 * k, 0.19 * k, 0.07 * k],
                height: ground + 8.0,
                gloss: 0.0,
                sunlit: if shadowed { 0.3 } else { 0.5 + crowns * 0.5 },
            };
        }

        // Fields: a rotated, noise-warped grid of plots.
        let warp = (self.noise.fbm(u / 60.0, z / 60.0, 2) - 0.5) * 14.0;
        let (fr_c, fr_s) = self.field_rot;
        let fs = s * fr_c - n_axis * fr_s + warp;
        let fn_ = s * fr_s + n_axis * fr_c - warp * 0.7;
        let cell_w = self.field_size;
        let cell_h = self.field_size * 0.7;
        let fi = (fs / cell_w).floor() as i32;
        let fj = (fn_ / cell_h).floor() as i32;
        let pick = hash2(fi, fj, self.seed ^ 0xF1E1D);
        let mut albedo =
            FIELD_COLOURS[(pick * FIELD_COLOURS.len() as f32) as usize % FIELD_COLOURS.len()];
        // Plough or crop rows, only where a pixel can resolve them.
        let rows = ((fs * std::f32::consts::TAU / 2.5).sin() * 0.5 + 0.5)
            * (1.0 - smoothstep(0.3, 1.0, footprint));
        let patch = self.noise.fbm(u / 25.0, z / 25.0, 3);
        let k = 0.85 + rows * 0.12 + (patch - 0.5) * 0.35 + (fine - 0.5) * 0.15;
        albedo = [albedo[0] * k, albedo[1] * k, albedo[2] * k];
        // Hedges along plot edges.
        let ex = (fs / cell_w).fract().min(1.0 - (fs / cell_w).fract()) * cell_w;
        let ey = (fn_ / cell_h).fract().min(1.0 - (fn_ / cell_h).fract()) * cell_h;
        let edge = ex.min(ey);
        if edge < 1.6 && hash2(fi, fj, self.seed ^ 0xED6E) < 0.6 {
            albedo = [0.10, 0.18, 0.07];
        }
        // Village yards are paler and mixed with gravel.
        let (vs, vn, radius) = self.village;
        let in_village = 1.0 - smoothstep(radius * 0.8, radius + 15.0, (s - vs).hypot(n_axis - vn));
        albedo = crate::look::mix(albedo, [0.40, 0.40, 0.36], in_village * 0.5 * fine.max(0.3));
        Surface {
            albedo,
            height: ground,
            gloss: 0.0,
            sunlit: if shadowed { 0.25 } else { 1.0 },
        }
    }
}
