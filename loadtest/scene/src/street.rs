//! A town street as a body camera sees it from the pavement: asphalt with lane
//! markings and kerbs, pavements, and a row of building facades with windows
//! on each side, converging to a strip of sky. Kerbs and pavements sit a little
//! above the road so rising flood water fills the road first.

use crate::camera::Camera;
use crate::look::{Rgb, mix};
use crate::noise::{Rng, ValueNoise, hash2, smoothstep};
use crate::valley::Surface;

const WALLS: [Rgb; 6] = [
    [0.52, 0.28, 0.20], // brick
    [0.70, 0.64, 0.52], // sandstone
    [0.55, 0.55, 0.53], // concrete
    [0.78, 0.76, 0.70], // plaster
    [0.40, 0.36, 0.32], // dark render
    [0.62, 0.50, 0.36], // ochre
];

#[derive(Debug, Clone)]
struct Facade {
    z0: f32,
    z1: f32,
    height: f32,
    wall: Rgb,
    window_w: f32,
    floor_h: f32,
}

#[derive(Debug, Clone)]
pub(crate) struct Street {
    road_half: f32,
    /// Distance of the facades from the road centre line.
    pub(crate) facade_u: f32,
    /// Camera position across the street, metres right of the centre line.
    pub(crate) camera_u: f32,
    left: Vec<Facade>,
    right: Vec<Facade>,
    wet: bool,
    noise: ValueNoise,
    seed: u32,
}

/// What a body-camera ray hits.
pub(crate) enum StreetHit {
    Ground {
        u: f32,
        z: f32,
        footprint: f32,
    },
    Facade {
        z: f32,
        height: f32,
        surface: Surface,
    },
    Sky,
}

impl Street {
    pub(crate) fn new(rng: &mut Rng, wet: bool) -> Street {
        let road_half = rng.range(3.2, 5.5);
        let facade_u = road_half + rng.range(2.2, 4.0);
        let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
        let camera_u = side * (road_half + rng.range(0.6, 1.6));
        let build = |rng: &mut Rng| {
            let mut z = rng.range(-5.0, 2.0);
            let mut v = Vec::new();
            while z < 400.0 {
                let len = rng.range(8.0, 24.0);
                v.push(Facade {
                    z0: z,
                    z1: z + len,
                    height: rng.range(6.0, 24.0),
                    wall: WALLS[rng.below(WALLS.len() as u32) as usize],
                    window_w: rng.range(2.4, 3.6),
                    floor_h: rng.range(2.9, 3.4),
                });
                z += len;
            }
            v
        };
        let left = build(rng);
        let right = build(rng);
        Street {
            road_half,
            facade_u,
            camera_u,
            left,
            right,
            wet,
            noise: ValueNoise::new(rng.seed32()),
            seed: rng.seed32(),
        }
    }

    /// Roof height of the facade at distance `z` on the side `right`.
    pub(crate) fn roof_at(&self, right: bool, z: f32) -> Option<f32> {
        let side = if right { &self.right } else { &self.left };
        side.iter()
            .find(|f| z >= f.z0 && z < f.z1)
            .map(|f| f.height)
    }

    pub(crate) fn trace(&self, cam: &Camera, x: f32, y: f32) -> StreetHit {
        let dx = (x - cam.cx) / cam.focal;
        let ground = cam.ground(x, y);
        if dx.abs() > 1e-4 {
            let right = dx > 0.0;
            let plane_u = if right { self.facade_u } else { -self.facade_u };
            let z = (plane_u - self.camera_u) / dx;
            if z > 0.0 && ground.is_none_or(|g| z < g.z) {
                let height = cam.elevation_m - (y - cam.horizon_y) * z / cam.focal;
                let side = if right { &self.right } else { &self.left };
                if let Some(f) = side.iter().find(|f| z >= f.z0 && z < f.z1)
                    && height >= 0.0
                    && height <= f.height
                {
                    let footprint = z / cam.focal;
                    return StreetHit::Facade {
                        z,
                        height,
                        surface: self.facade_surface(f, z, height, footprint),
                    };
                }
            }
        }
        match ground {
            Some(g) => StreetHit::Ground {
                u: g.u + self.camera_u,
                z: g.z,
                footprint: g.footprint,
            },
            None => StreetHit::Sky,
        }
    }

    fn facade_surface(&self, f: &Facade, z: f32, h: f32, footprint: f32) -> Surface {
        let grime = self.noise.fbm(z / 3.0, h / 3.0, 3);
        let mut albedo = mix(f.wall, [0.2, 0.2, 0.2], (grime - 0.4).max(0.0) * 0.4);
        let mut gloss = 0.0;
        // Windows: dark glass in a grid, blending to the wall average once they
        // are smaller than a pixel.
        let wz = ((z - f.z0) / f.window_w).fract();
        let wh = (h / f.floor_h).fract();
        let floor = (h / f.floor_h).floor();
        let resolve = 1.0 - smoothstep(0.3, 1.2, footprint);
        let roof_gap = h > f.height - 0.8;
        if !roof_gap {
            let in_window = if floor < 1.0 {
                // Shop fronts on the ground floor.
                wz > 0.08 && wz < 0.92 && wh > 0.05 && wh < 0.85
            } else {
                wz > 0.25 && wz < 0.75 && wh > 0.3 && wh < 0.8
            };
            let lit = hash2((z / f.window_w) as i32, floor as i32, self.seed) > 0.85;
            let glass = if lit {
                [0.55, 0.48, 0.30]
            } else {
                [0.10, 0.12, 0.14]
            };
            let mean = mix(albedo, glass, 0.25);
            if in_window {
                albedo = mix(mean, glass, resolve);
                gloss = 0.35 * resolve;
            } else {
                albedo = mix(mean, albedo, resolve);
            }
        } else {
            albedo = mix(albedo, [0.25, 0.24, 0.23], 0.6);
        }
        Surface {
            albedo,
            height: h,
            gloss,
            // Facades are lit obliquely; which side faces the sun is a coin flip.
            sunlit: 0.45,
        }
    }

    pub(crate) fn ground_surface(&self, u: f32, z: f32, footprint: f32) -> Surface {
        let fine = self
            .noise
            .fbm_filtered(u / 0.8, z / 0.8, 4, footprint / 0.8);
        let au = u.abs();
        if au < self.road_half {
            let base = if self.wet { 0.10 } else { 0.24 };
            let mut c = base + (fine - 0.5) * 0.07;
            let resolve = 1.0 - smoothstep(0.05, 0.25, footprint);
            if au < 0.08 && (z / 6.0).rem_euclid(1.0) < 0.5 {
                c += 0.5 * resolve;
            }
            let puddle = if self.wet {
                smoothstep(0.55, 0.68, self.noise.fbm(u / 2.0 + 30.0, z / 2.0, 3))
            } else {
                0.0
            };
            // The road is crowned: lowest at the gutters.
            let height = 0.05 * (1.0 - (au / self.road_half).powi(2));
            Surface {
                albedo: [c, c, c * 1.03],
                height,
                gloss: if self.wet { 0.5 + 0.45 * puddle } else { 0.03 },
                sunlit: 1.0,
            }
        } else if au < self.road_half + 0.25 {
            Surface {
                albedo: [0.55, 0.55, 0.53],
                height: 0.15,
                gloss: if self.wet { 0.2 } else { 0.0 },
                sunlit: 1.0,
            }
        } else {
            let slab = ((u * 1.6).fract() < 0.04 || (z * 1.6).fract() < 0.04) && footprint < 0.05;
            let c = 0.45 + (fine - 0.5) * 0.1 - if slab { 0.08 } else { 0.0 };
            let c = if self.wet { c * 0.6 } else { c };
            Surface {
                albedo: [c, c * 0.98, c * 0.95],
                height: 0.16,
                gloss: if self.wet { 0.3 } else { 0.0 },
                sunlit: 1.0,
            }
        }
    }
}
