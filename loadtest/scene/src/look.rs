//! Lighting and atmosphere: what day, dusk and haze do to every layer. A [`Look`]
//! holds the sky gradient, the sun, the ambient light and the atmospheric
//! perspective (far things fade into the haze colour). The static backdrop and
//! the animated layers (clouds, smoke, water) are all shaded through the same
//! `Look`, so a plume at 5 km fades exactly like the ridge it rises from.

use crate::noise::Rng;
use crate::scene::Lighting;

/// A display-referred RGB colour, each channel nominally in [0, 1].
pub(crate) type Rgb = [f32; 3];

#[inline]
pub(crate) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

#[inline]
pub(crate) fn scale(a: Rgb, k: f32) -> Rgb {
    [a[0] * k, a[1] * k, a[2] * k]
}

#[inline]
pub(crate) fn add(a: Rgb, b: Rgb) -> Rgb {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// The light of one scene: fixed for the whole clip.
#[derive(Debug, Clone)]
pub(crate) struct Look {
    pub(crate) zenith: Rgb,
    pub(crate) horizon: Rgb,
    /// Direct sunlight colour and strength.
    pub(crate) sun: Rgb,
    /// Sky light that reaches surfaces in shadow.
    pub(crate) ambient: Rgb,
    /// The colour distant things fade into.
    pub(crate) haze: Rgb,
    /// Extinction per kilometre: 1 − e^(−k·d) of the haze colour at distance d.
    pub(crate) haze_per_km: f32,
    /// Sun elevation in radians above the horizon (low at dusk).
    pub(crate) sun_elevation: f32,
    /// Sun azimuth relative to the camera axis, radians (positive = right).
    pub(crate) sun_azimuth: f32,
}

impl Look {
    pub(crate) fn new(lighting: Lighting, rng: &mut Rng) -> Look {
        let j = |rng: &mut Rng, c: Rgb, amt: f32| -> Rgb {
            let k = 1.0 + rng.range(-amt, amt);
            [
                c[0] * k * (1.0 + rng.range(-0.03, 0.03)),
                c[1] * k,
                c[2] * k * (1.0 + rng.range(-0.03, 0.03)),
            ]
        };
        match lighting {
            Lighting::Day => Look {
                zenith: j(rng, [0.22, 0.42, 0.78], 0.08),
                horizon: j(rng, [0.70, 0.80, 0.90], 0.04),
                sun: j(rng, [1.00, 0.96, 0.88], 0.05),
                ambient: [0.34, 0.38, 0.46],
                haze: j(rng, [0.72, 0.80, 0.90], 0.03),
                haze_per_km: rng.range(0.05, 0.12),
                sun_elevation: rng.range(0.5, 1.1),
                sun_azimuth: rng.range(-0.9, 0.9),
            },
            Lighting::Dusk => Look {
                zenith: j(rng, [0.13, 0.16, 0.36], 0.12),
                horizon: j(rng, [0.98, 0.58, 0.32], 0.06),
                sun: j(rng, [0.95, 0.55, 0.28], 0.08),
                ambient: [0.20, 0.18, 0.26],
                haze: j(rng, [0.80, 0.52, 0.40], 0.05),
                haze_per_km: rng.range(0.07, 0.15),
                sun_elevation: rng.range(0.02, 0.12),
                sun_azimuth: rng.range(-0.5, 0.5),
            },
            Lighting::Haze => Look {
                zenith: j(rng, [0.58, 0.63, 0.68], 0.05),
                horizon: j(rng, [0.82, 0.82, 0.80], 0.03),
                sun: j(rng, [0.80, 0.78, 0.70], 0.05),
                ambient: [0.46, 0.46, 0.46],
                haze: j(rng, [0.80, 0.80, 0.77], 0.03),
                haze_per_km: rng.range(0.35, 0.70),
                sun_elevation: rng.range(0.3, 0.9),
                sun_azimuth: rng.range(-0.8, 0.8),
            },
        }
    }

    /// Lit colour of a surface with albedo `albedo`, `lambert` being the cosine
    /// of the angle to the sun (0 in full shadow).
    #[inline]
    pub(crate) fn shade(&self, albedo: Rgb, lambert: f32) -> Rgb {
        let l = lambert.max(0.0);
        [
            albedo[0] * (self.ambient[0] + self.sun[0] * l) * 1.35,
            albedo[1] * (self.ambient[1] + self.sun[1] * l) * 1.35,
            albedo[2] * (self.ambient[2] + self.sun[2] * l) * 1.35,
        ]
    }

    /// Atmospheric perspective: blend towards the haze colour with distance (metres).
    #[inline]
    pub(crate) fn atmos(&self, c: Rgb, depth_m: f32) -> Rgb {
        let a = 1.0 - (-depth_m * 0.001 * self.haze_per_km).exp();
        mix(c, self.haze, a)
    }

    /// Fraction of haze at a distance; used to thin smoke and clouds with distance.
    #[inline]
    pub(crate) fn haze_amount(&self, depth_m: f32) -> f32 {
        1.0 - (-depth_m * 0.001 * self.haze_per_km).exp()
    }

    /// Lambert factor of a flat ground patch.
    pub(crate) fn ground_lambert(&self) -> f32 {
        self.sun_elevation.sin()
    }

    /// Sky colour for a view direction `elev` radians above the horizon, `az`
    /// radians right of the camera axis.
    #[inline]
    pub(crate) fn sky(&self, elev: f32, az: f32) -> Rgb {
        let e = elev.max(0.0);
        let t = 1.0 - (-e * 3.2).exp();
        let mut c = mix(self.horizon, self.zenith, t);
        // Brighter sky around the sun (Mie scattering), strongest at dusk.
        let d = angular_distance(elev, az, self.sun_elevation, self.sun_azimuth);
        let glow = (-d * 2.5).exp() * 0.35 + (-d * 12.0).exp() * 0.35;
        c = add(c, scale(self.sun, glow));
        c
    }
}

#[inline]
pub(crate) fn angular_distance(e1: f32, a1: f32, e2: f32, a2: f32) -> f32 {
    let de = e1 - e2;
    let da = (a1 - a2) * e1.cos().max(0.2);
    (de * de + da * da).sqrt()
}
