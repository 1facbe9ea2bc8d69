//! The flood event: muddy water rising over the valley or the street. Every
//! backdrop pixel whose surface lies below the highest level this flood will
//! reach is kept as a cell (its ground position, height, distance and the sky
//! it would mirror); each frame, cells below the current level turn to water
//! with a drifting ripple texture, sky reflection by the Fresnel term and a
//! pale foam line at the edge. The river bed is below every level, so the
//! river itself turns muddy as the flood starts, but only newly covered ground
//! counts as flood in the labels.

use crate::look::{Look, Rgb, mix};
use crate::noise::{Rng, ValueNoise, smoothstep};
use crate::smoke::Coverage;

/// One backdrop pixel the water may reach.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloodCell {
    pub(crate) index: u32,
    pub(crate) u: f32,
    pub(crate) z: f32,
    pub(crate) height: f32,
    /// Ground metres per pixel, to fade ripples finer than a pixel.
    pub(crate) footprint: f32,
    /// Distance, metres, for the haze over the water.
    pub(crate) depth_m: f32,
    /// Schlick Fresnel reflectance for this pixel's viewing angle.
    pub(crate) fresnel: f32,
    /// Water colour here: muddy, with its sediment streaks, lit and hazed.
    pub(crate) mud: Rgb,
    /// The sky colour this pixel would mirror, hazed.
    pub(crate) mirror: Rgb,
}

#[derive(Debug, Clone)]
pub(crate) struct Flood {
    pub(crate) onset_s: f64,
    start_level: f32,
    pub(crate) max_level: f32,
    tau_s: f32,
    flow: (f32, f32),
    ripple: ValueNoise,
    pub(crate) cells: Vec<FloodCell>,
    foam: Rgb,
}

/// The look of muddy flood water, before lighting.
pub(crate) fn mud_albedo(rng: &mut Rng) -> Rgb {
    let k = rng.range(0.8, 1.15);
    let brown = [0.44 * k, 0.31 * k, 0.16 * k];
    mix(brown, [0.36, 0.30, 0.20], rng.range(0.0, 0.4))
}

impl Flood {
    pub(crate) fn new(
        onset_s: f64,
        (start_level, max_level): (f32, f32),
        look: &Look,
        rng: &mut Rng,
        mut cells: Vec<FloodCell>,
    ) -> Flood {
        let albedo = mud_albedo(rng);
        let lambert = look.ground_lambert() * 0.8 + 0.1;
        let sediment = ValueNoise::new(rng.seed32());
        let sediment_scale = rng.range(8.0, 30.0);
        for c in &mut cells {
            let s = sediment.fbm_filtered(
                c.u / sediment_scale,
                c.z / sediment_scale,
                3,
                c.footprint / sediment_scale,
            );
            let k = 0.8 + s * 0.4;
            c.mud = look.atmos(
                look.shade([albedo[0] * k, albedo[1] * k, albedo[2] * k], lambert),
                c.depth_m,
            );
        }
        let dir = rng.range(0.0, std::f32::consts::TAU);
        let speed = rng.range(0.5, 2.0);
        Flood {
            onset_s,
            start_level,
            max_level,
            tau_s: rng.range(10.0, 30.0),
            flow: (dir.cos() * speed, dir.sin() * speed),
            ripple: ValueNoise::new(rng.seed32()),
            cells,
            foam: look.shade([0.62, 0.56, 0.46], look.ground_lambert() + 0.2),
        }
    }

    /// Water level `age` seconds after onset, metres above the valley datum.
    pub(crate) fn level(&self, age: f32) -> f32 {
        self.start_level + (self.max_level - self.start_level) * (1.0 - (-age / self.tau_s).exp())
    }

    pub(crate) fn composite(&self, t_s: f64, frame: &mut [Rgb], w: usize) -> Coverage {
        let mut cov = Coverage::default();
        let age = (t_s - self.onset_s) as f32;
        if age <= 0.0 {
            return cov;
        }
        let level = self.level(age);
        let river_turn = (age / self.tau_s).min(1.0) * 0.9;
        let (fu, fz) = (self.flow.0 * age, self.flow.1 * age);
        for c in &self.cells {
            let depth = level - c.height;
            if depth <= 0.0 {
                continue;
            }
            let a = if c.height < 0.0 {
                river_turn
            } else {
                smoothstep(0.0, 0.03, depth)
            };
            // Ripples a few tens of centimetres across, drifting with the current,
            // over slower swirls; both fade out where a pixel is larger.
            let r = self.ripple.sample((c.u + fu) / 0.35, (c.z + fz) / 0.7);
            let swirl = self
                .ripple
                .sample((c.u + fu * 0.5) / 4.0 + 50.0, (c.z + fz * 0.5) / 6.0);
            let fine = 1.0 - smoothstep(0.03, 0.2, c.footprint);
            let broad = 1.0 - smoothstep(0.5, 2.0, c.footprint);
            let ripple = 0.5 + (r - 0.5) * fine * 0.8 + (swirl - 0.5) * broad * 0.6;
            let k = 0.82 + ripple * 0.36;
            let mut water = [c.mud[0] * k, c.mud[1] * k, c.mud[2] * k];
            // Muddy water mirrors the sky dimly, more at grazing angles and on ripple crests.
            water = mix(water, c.mirror, (c.fresnel * (0.4 + ripple)).min(0.35));
            // Foam and floating debris where the water is only just arriving.
            water = mix(
                water,
                self.foam,
                smoothstep(0.06, 0.0, depth) * 0.5 * fine.max(0.4),
            );
            let p = &mut frame[c.index as usize];
            *p = mix(*p, water, a);
            if c.height >= 0.0 && a >= 0.5 {
                let i = c.index as usize;
                cov.add(i % w, i / w);
            }
        }
        cov
    }
}
