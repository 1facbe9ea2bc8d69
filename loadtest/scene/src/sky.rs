//! The confusers of the sky: drifting cloud decks (fair-weather cumulus, low
//! grey stratus, high cirrus), fog banks lying in a valley or hugging a ridge,
//! and sun glare with lens-flare ghosts. None of them is an event; they are in
//! the pictures so a detector learns that grey, soft and drifting is not
//! enough to call smoke.

use crate::camera::Camera;
use crate::coarse::Rgba;
use crate::look::{Look, Rgb, add, mix, scale};
use crate::noise::{Rng, ValueNoise, smoothstep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloudKind {
    Cumulus,
    /// Low, flat, grey: the cloud most easily taken for smoke.
    Stratus,
    Cirrus,
}

/// A layer of cloud at one altitude, moving with the wind.
#[derive(Debug, Clone)]
pub(crate) struct CloudDeck {
    pub(crate) kind: CloudKind,
    altitude_m: f32,
    /// Noise threshold: higher means fewer, smaller clouds.
    cover: f32,
    scale_m: f32,
    wind_ms: f32,
    lit: Rgb,
    shadow: Rgb,
    noise: ValueNoise,
    offset: (f32, f32),
}

impl CloudDeck {
    pub(crate) fn new(kind: CloudKind, look: &Look, rng: &mut Rng) -> CloudDeck {
        let (altitude_m, cover, scale_m, lit_a, shadow_a) = match kind {
            CloudKind::Cumulus => (
                rng.range(1200.0, 2500.0),
                rng.range(0.50, 0.62),
                rng.range(900.0, 1800.0),
                0.95,
                0.55,
            ),
            CloudKind::Stratus => (
                rng.range(500.0, 1000.0),
                rng.range(0.36, 0.50),
                rng.range(1500.0, 3000.0),
                0.68,
                0.45,
            ),
            CloudKind::Cirrus => (
                rng.range(6000.0, 9000.0),
                rng.range(0.50, 0.60),
                rng.range(2500.0, 5000.0),
                0.95,
                0.80,
            ),
        };
        let l = look.ground_lambert().max(0.25);
        CloudDeck {
            kind,
            altitude_m,
            cover,
            scale_m,
            wind_ms: rng.range(-15.0, 15.0),
            lit: look.shade([lit_a; 3], l * 0.9 + 0.15),
            shadow: look.shade([shadow_a; 3], 0.25),
            noise: ValueNoise::new(rng.seed32()),
            offset: (rng.range(0.0, 500.0), rng.range(0.0, 500.0)),
        }
    }

    /// Premultiplied cloud colour for the sky pixel (`x`, `y`) at time `t_s`.
    pub(crate) fn at(&self, cam: &Camera, look: &Look, x: f32, y: f32, t_s: f32) -> Rgba {
        let up = cam.horizon_y - y;
        if up <= 0.5 {
            return [0.0; 4];
        }
        let z = self.altitude_m * cam.focal / up;
        let u = (x - cam.cx) * z / cam.focal;
        let (sx, sz) = match self.kind {
            CloudKind::Cirrus => (self.scale_m * 2.5, self.scale_m * 0.4),
            CloudKind::Stratus => (self.scale_m * 1.6, self.scale_m),
            CloudKind::Cumulus => (self.scale_m, self.scale_m),
        };
        let nx = (u + self.wind_ms * t_s) / sx + self.offset.0;
        let nz = z / sz + self.offset.1;
        let footprint = (z / cam.focal).max(z * z / (self.altitude_m * cam.focal)) / sx;
        let d = self.noise.fbm_filtered(nx, nz, 6, footprint);
        let soft = if self.kind == CloudKind::Stratus {
            0.22
        } else {
            0.12
        };
        let density = smoothstep(self.cover, self.cover + soft, d);
        if density <= 0.0 {
            return [0.0; 4];
        }
        // Self-shadowing: denser noise towards the sun means this point is in shade.
        let toward = self.noise.fbm_filtered(
            nx - 0.06 * look.sun_azimuth.signum(),
            nz + 0.08,
            6,
            footprint,
        );
        let shade = ((d - toward) * 6.0 + 0.6).clamp(0.0, 1.0);
        let c = mix(self.shadow, self.lit, shade);
        let c = look.atmos(c, z * 0.6);
        let a = density
            * match self.kind {
                CloudKind::Cirrus => 0.55,
                CloudKind::Stratus => 0.92,
                CloudKind::Cumulus => 0.97,
            }
            * (1.0 - look.haze_amount(z) * 0.5);
        [c[0] * a, c[1] * a, c[2] * a, a]
    }
}

/// A fog bank or a low cloud lying at one distance along a line in the image.
#[derive(Debug, Clone)]
pub(crate) struct FogBank {
    /// Distance, metres; the fog hides what lies behind it.
    pub(crate) depth_m: f32,
    /// Image row of the fog's centre line in each column.
    pub(crate) centre_y: Vec<f32>,
    /// Half thickness in pixels.
    pub(crate) half_px: f32,
    density: f32,
    colour: Rgb,
    noise: ValueNoise,
    scale_px: f32,
    drift_px_s: f32,
    /// Broken into separate patches instead of a continuous bank (fog seen from above).
    pub(crate) patchy: bool,
}

impl FogBank {
    pub(crate) fn new(
        look: &Look,
        rng: &mut Rng,
        depth_m: f32,
        centre_y: Vec<f32>,
        half_px: f32,
        scale_px: f32,
    ) -> FogBank {
        let grey = rng.range(0.72, 0.92);
        FogBank {
            depth_m,
            centre_y,
            half_px,
            density: rng.range(0.6, 0.95),
            colour: look.atmos(
                look.shade([grey; 3], look.ground_lambert() * 0.6 + 0.2),
                depth_m,
            ),
            noise: ValueNoise::new(rng.seed32()),
            scale_px,
            drift_px_s: rng.range(-0.015, 0.015) * scale_px,
            patchy: false,
        }
    }

    pub(crate) fn rows(&self, height: usize) -> (usize, usize) {
        let lo = self.centre_y.iter().copied().fold(f32::INFINITY, f32::min) - self.half_px * 1.3;
        let hi = self
            .centre_y
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            + self.half_px * 1.3;
        (
            (lo.max(0.0) as usize).min(height),
            (hi.max(0.0).ceil() as usize).min(height),
        )
    }

    pub(crate) fn at(&self, x: f32, y: f32, t_s: f32) -> Rgba {
        let col = (x as usize).min(self.centre_y.len().saturating_sub(1));
        let dy = (y - self.centre_y[col]) / self.half_px;
        let n = self.noise.fbm(
            (x + self.drift_px_s * t_s) / self.scale_px,
            y / (self.scale_px * 0.45),
            5,
        );
        // Ragged edges: the noise moves the bank's edge up and down.
        let edge = 1.0 - dy.abs() + (n - 0.5) * 1.4;
        let mut a = smoothstep(0.0, 0.6, edge) * self.density * (0.55 + n * 0.6).min(1.0);
        if self.patchy {
            a *= smoothstep(0.48, 0.62, n);
        }
        [
            self.colour[0] * a,
            self.colour[1] * a,
            self.colour[2] * a,
            a,
        ]
    }
}

/// Sun glare and lens-flare ghosts: light added on top of everything.
#[derive(Debug, Clone)]
pub(crate) struct Glare {
    pub(crate) light: Vec<Rgb>,
}

impl Glare {
    pub(crate) fn new(cam: &Camera, look: &Look, sun_xy: (f32, f32), rng: &mut Rng) -> Glare {
        let w = cam.width as usize;
        let h = cam.height as usize;
        let sw = cam.width;
        let (sx, sy) = sun_xy;
        let (cx, cy) = (cam.width * 0.5, cam.height * 0.5);
        let sun = look.sun;
        let ghost_tints: [Rgb; 4] = [
            [0.25, 0.9, 0.5],
            [1.0, 0.6, 0.2],
            [0.7, 0.4, 1.0],
            [0.4, 0.7, 1.0],
        ];
        let ghosts: Vec<((f32, f32), f32, Rgb)> = (0..4)
            .map(|i| {
                let k = [0.55, 1.25, 1.6, 2.1][i] * rng.range(0.9, 1.1);
                let pos = (sx + (cx - sx) * k, sy + (cy - sy) * k);
                let r = sw * [0.018, 0.05, 0.03, 0.085][i] * rng.range(0.8, 1.2);
                (pos, r, scale(ghost_tints[i], rng.range(0.04, 0.09)))
            })
            .collect();
        let streak = rng.range(0.1, 0.3);
        let mut light = vec![[0.0f32; 3]; w * h];
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let r = ((px - sx).powi(2) + (py - sy).powi(2)).sqrt();
                let bloom = 0.9 * (-r / (sw * 0.025)).exp() + 0.3 * (-r / (sw * 0.15)).exp();
                let streak_v = streak
                    * (-(py - sy).abs() / (cam.height * 0.004 + 1.0)).exp()
                    * (-(px - sx).abs() / (sw * 0.35)).exp();
                let mut c = scale(sun, bloom + streak_v + 0.03);
                for &((gx, gy), gr, tint) in &ghosts {
                    let d = ((px - gx).powi(2) + (py - gy).powi(2)).sqrt() / gr;
                    if d < 1.1 {
                        let disc =
                            smoothstep(1.05, 0.9, d) * (0.6 + 0.4 * smoothstep(0.6, 0.95, d));
                        c = add(c, scale(tint, disc));
                    }
                }
                light[y * w + x] = c;
            }
        }
        Glare { light }
    }
}
