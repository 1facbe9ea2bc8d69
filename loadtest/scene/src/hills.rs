//! Layered forested ridges behind the valley: each layer is a ridge line drawn
//! from fractal noise at a given distance, textured with tree crowns at their
//! real size for that distance and faded into the haze, so near ridges are dark
//! and detailed and far ones pale and flat. Towers look over several layers,
//! road and drone cameras see one or two on the horizon. A smoke plume is
//! anchored on one of these ridge lines.

use crate::camera::Camera;
use crate::look::{Look, Rgb, mix};
use crate::noise::{Rng, ValueNoise, smoothstep};

#[derive(Debug, Clone)]
pub(crate) struct RidgeLayer {
    /// Distance from the camera, metres.
    pub(crate) depth_m: f32,
    /// Image row of the layer's foot (where it meets the valley floor).
    pub(crate) base_y: f32,
    /// Image row of the ridge line in every column.
    pub(crate) ridge_y: Vec<f32>,
    tint: Rgb,
    texture: ValueNoise,
    /// Mean crown diameter in metres.
    crown_m: f32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Ridges {
    /// Nearest first.
    pub(crate) layers: Vec<RidgeLayer>,
}

impl Ridges {
    /// `count` layers from `near_m` to `far_m`; `tallest` is the screen height
    /// (fraction of the frame) of the nearest ridge.
    pub(crate) fn new(
        cam: &Camera,
        rng: &mut Rng,
        count: usize,
        near_m: f32,
        far_m: f32,
        tallest: f32,
    ) -> Ridges {
        let w = cam.width as usize;
        let mut layers = Vec::with_capacity(count);
        for k in 0..count {
            let t = if count > 1 {
                k as f32 / (count - 1) as f32
            } else {
                0.0
            };
            let depth_m = near_m * (far_m / near_m).powf(t) * rng.range(0.9, 1.1);
            let base_y = cam.horizon_y + cam.elevation_m * cam.focal / depth_m;
            let noise = ValueNoise::new(rng.seed32());
            let wavelength = cam.width * rng.range(0.25, 0.7);
            let mean = cam.height * tallest * (1.0 - 0.3 * t) * rng.range(0.7, 1.1);
            let var = mean * rng.range(0.6, 1.0);
            let off = rng.range(0.0, 1000.0);
            let ridge_y = (0..w)
                .map(|x| {
                    let n = noise.fbm(x as f32 / wavelength + off, off * 0.37, 6);
                    base_y - (mean + (n - 0.5) * 2.0 * var).max(cam.height * 0.01)
                })
                .collect();
            let green = rng.range(0.0, 1.0);
            layers.push(RidgeLayer {
                depth_m,
                base_y,
                ridge_y,
                tint: mix([0.08, 0.16, 0.07], [0.14, 0.19, 0.09], green),
                texture: ValueNoise::new(rng.seed32()),
                crown_m: rng.range(5.0, 9.0),
            });
        }
        Ridges { layers }
    }

    /// A band of tree tops along the bottom edge, seen from a tower above the canopy.
    pub(crate) fn foreground_canopy(cam: &Camera, rng: &mut Rng) -> RidgeLayer {
        let w = cam.width as usize;
        let depth_m = rng.range(60.0, 120.0);
        let noise = ValueNoise::new(rng.seed32());
        let crown_px = cam.focal * 7.0 / depth_m;
        let top = cam.height * rng.range(0.05, 0.14);
        let off = rng.range(0.0, 1000.0);
        let ridge_y = (0..w)
            .map(|x| {
                let big = noise.fbm(x as f32 / (cam.width * 0.3) + off, 3.0, 3);
                let crowns = noise.sample(x as f32 / crown_px, 11.0);
                cam.height - top * (0.4 + big * 1.2) - crowns * crown_px * 0.6
            })
            .collect();
        RidgeLayer {
            depth_m,
            base_y: cam.height + 1.0,
            ridge_y,
            tint: [0.07, 0.14, 0.06],
            texture: ValueNoise::new(rng.seed32()),
            crown_m: 2.5,
        }
    }

    /// The nearest layer covering pixel (`x`, `y`), if any.
    #[inline]
    pub(crate) fn hit(&self, x: usize, y: f32) -> Option<usize> {
        self.layers
            .iter()
            .position(|l| y >= l.ridge_y[x] && y <= l.base_y)
    }
}

impl RidgeLayer {
    /// Lit, hazed colour of this layer at pixel (`x`, `y`).
    pub(crate) fn colour(&self, cam: &Camera, look: &Look, x: usize, y: f32) -> Rgb {
        let m_per_px = self.depth_m / cam.focal;
        let xm = (x as f32 - cam.cx) * m_per_px;
        let ym = (self.base_y - y) * m_per_px;
        let c = self.crown_m;
        let crowns = self
            .texture
            .fbm_filtered(xm / c, ym / c * 1.3, 3, m_per_px / c);
        let stands = self.texture.fbm(xm / 220.0 + 40.0, ym / 160.0, 3);
        // Terrain relief: the east/west slope of a low-frequency height field.
        let e = 0.08;
        let relief = self.texture.fbm(xm / 400.0 + e, ym / 250.0 + 90.0, 3)
            - self.texture.fbm(xm / 400.0 - e, ym / 250.0 + 90.0, 3);
        let facing = (relief * 6.0 * look.sun_azimuth.signum()).clamp(-0.5, 0.5);
        let lambert =
            (look.ground_lambert() * 0.6 + 0.25 + facing * 0.5).max(0.05) * (0.55 + crowns * 0.9);
        let mut albedo = mix(
            self.tint,
            [0.20, 0.20, 0.10],
            smoothstep(0.62, 0.8, stands) * 0.6,
        );
        albedo = mix(
            albedo,
            [0.04, 0.08, 0.04],
            smoothstep(0.5, 0.2, crowns) * 0.5,
        );
        // Backlit rim just under the ridge line.
        let rim = smoothstep(2.5, 0.0, y - self.ridge_y[x]) * 0.25;
        let lit = look.shade(albedo, lambert + rim);
        look.atmos(lit, self.depth_m)
    }
}
