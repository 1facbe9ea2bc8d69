//! The static part of a scene, computed once in [`crate::Scene::new`]: the
//! camera and layout for the scene kind (ridges, valley, street), and per pixel
//! the lit and hazed colour, the distance (for occlusion and haze of animated
//! layers) and the surface height (for the flood). Also where a plume may
//! ignite and which pixels a flood may reach. Per frame only cheap layers are
//! drawn on top of this.

use crate::camera::Camera;
use crate::flood::FloodCell;
use crate::hills::Ridges;
use crate::look::{Look, Rgb, mix};
use crate::noise::{Rng, hash2};
use crate::scene::{SceneKind, SceneSpec};
use crate::smoke::PlumeAnchor;
use crate::street::{Street, StreetHit};
use crate::valley::{RiverRun, Surface, Valley};

/// Scene layout: what the camera looks at.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub(crate) cam: Camera,
    pub(crate) ridges: Ridges,
    /// Index in `ridges.layers` of the first real ridge (0, or 1 behind a foreground canopy).
    pub(crate) first_ridge: usize,
    pub(crate) valley: Option<Valley>,
    pub(crate) street: Option<Street>,
}

impl Geometry {
    pub(crate) fn new(spec: &SceneSpec, look: &Look, rng: &mut Rng) -> Geometry {
        let w = spec.width as f32;
        let h = spec.height as f32;
        let wet = spec.confusers.wet_road;
        let cam = |focal: f32, horizon: f32, elevation_m: f32| Camera {
            width: w,
            height: h,
            focal: w * focal,
            cx: w * 0.5,
            horizon_y: h * horizon,
            elevation_m,
        };
        match spec.kind {
            SceneKind::Tower => {
                let cam = cam(
                    rng.range(1.1, 1.7),
                    rng.range(0.56, 0.68),
                    rng.range(28.0, 45.0),
                );
                let count = 3 + rng.below(3) as usize;
                let (near, far, tallest) = (
                    rng.range(1500.0, 3000.0),
                    rng.range(15_000.0, 35_000.0),
                    rng.range(0.1, 0.19),
                );
                let mut ridges = Ridges::new(&cam, rng, count, near, far, tallest);
                let mut first_ridge = 0;
                if rng.chance(0.7) {
                    ridges
                        .layers
                        .insert(0, Ridges::foreground_canopy(&cam, rng));
                    first_ridge = 1;
                }
                let distance = rng.range(250.0, 600.0);
                let valley = Valley::new(
                    rng,
                    RiverRun::Across { distance },
                    None,
                    wet,
                    look.sun_azimuth,
                );
                Geometry {
                    cam,
                    ridges,
                    first_ridge,
                    valley: Some(valley),
                    street: None,
                }
            }
            SceneKind::Drone => {
                let cam = cam(
                    rng.range(0.8, 1.1),
                    rng.range(-1.2, 0.18),
                    rng.range(80.0, 200.0),
                );
                let ridges = if cam.horizon_y > 0.02 * h {
                    Ridges::new(&cam, rng, 2, 4000.0, 15_000.0, 0.09)
                } else {
                    Ridges::default()
                };
                let valley = Valley::new(rng, RiverRun::Along, None, wet, look.sun_azimuth);
                Geometry {
                    cam,
                    ridges,
                    first_ridge: 0,
                    valley: Some(valley),
                    street: None,
                }
            }
            SceneKind::Fixed => {
                let cam = cam(
                    rng.range(0.9, 1.3),
                    rng.range(0.3, 0.42),
                    rng.range(6.0, 12.0),
                );
                let count = 2 + rng.below(2) as usize;
                let ridges = Ridges::new(&cam, rng, count, 2500.0, 20_000.0, 0.13);
                let distance = rng.range(45.0, 120.0);
                let cross = rng.range(-6.0, 6.0);
                let valley = Valley::new(
                    rng,
                    RiverRun::Across { distance },
                    Some(cross),
                    wet,
                    look.sun_azimuth,
                );
                Geometry {
                    cam,
                    ridges,
                    first_ridge: 0,
                    valley: Some(valley),
                    street: None,
                }
            }
            SceneKind::Bodycam => {
                let cam = cam(
                    rng.range(0.55, 0.8),
                    rng.range(0.42, 0.52),
                    rng.range(1.5, 1.7),
                );
                let street = Street::new(rng, wet);
                Geometry {
                    cam,
                    ridges: Ridges::default(),
                    first_ridge: 0,
                    valley: None,
                    street: Some(street),
                }
            }
        }
    }

    /// Places a plume may rise from, for this layout.
    pub(crate) fn plume_anchors(&self, buffers: &Backdrop, rng: &mut Rng) -> Vec<PlumeAnchor> {
        let cam = &self.cam;
        let w = cam.width as usize;
        let h = cam.height as usize;
        let mut out = Vec::new();
        let prefer_ridge = !self.ridges.layers.is_empty() && rng.chance(0.75);
        if let Some(street) = &self.street {
            for _ in 0..40 {
                let right = rng.chance(0.5);
                let z = rng.range(60.0, 250.0);
                let Some(roof) = street.roof_at(right, z) else {
                    continue;
                };
                let behind = rng.range(5.0, 25.0);
                let u = if right {
                    street.facade_u + behind
                } else {
                    -street.facade_u - behind
                };
                let (x, y) = cam.project(u - street.camera_u, z, roof);
                if x > w as f32 * 0.05 && x < w as f32 * 0.95 && y > h as f32 * 0.2 && y < h as f32
                {
                    let depth_m = z.hypot(u - street.camera_u);
                    out.push(PlumeAnchor {
                        x,
                        y,
                        depth_m,
                        px_per_m: cam.pixels_per_m(depth_m),
                    });
                }
            }
            return out;
        }
        if prefer_ridge {
            for k in self.first_ridge..self.ridges.layers.len() {
                let layer = &self.ridges.layers[k];
                for _ in 0..12 {
                    let x = (w as f32 * rng.range(0.08, 0.92)) as usize;
                    let y = layer.ridge_y[x] + 1.5;
                    if y < 4.0 || y >= h as f32 || self.ridges.hit(x, y) != Some(k) {
                        continue;
                    }
                    out.push(PlumeAnchor {
                        x: x as f32,
                        y,
                        depth_m: layer.depth_m - 1.0,
                        px_per_m: cam.pixels_per_m(layer.depth_m),
                    });
                }
            }
        }
        if out.is_empty() {
            for _ in 0..60 {
                let x = rng.range(0.1, 0.9) * w as f32;
                let y = rng.range(0.25, 0.95) * h as f32;
                let i = (y as usize).min(h - 1) * w + (x as usize).min(w - 1);
                let d = buffers.depth[i];
                let ht = buffers.height[i];
                if d.is_finite() && (0.0..3.0).contains(&ht) && d > 40.0 {
                    out.push(PlumeAnchor {
                        x,
                        y,
                        depth_m: d - 1.0,
                        px_per_m: cam.pixels_per_m(d),
                    });
                }
            }
        }
        out
    }
}

/// Per-pixel static buffers.
#[derive(Debug, Clone)]
pub(crate) struct Backdrop {
    pub(crate) colour: Vec<Rgb>,
    /// Distance of the visible surface in metres; infinite for sky.
    pub(crate) depth: Vec<f32>,
    /// Height of the visible surface; infinite for sky and ridges.
    pub(crate) height: Vec<f32>,
    /// Number of rows from the top that contain any sky.
    pub(crate) sky_rows: usize,
}

/// Light reflected by a glossy surface seen `below` radians under the horizon.
fn schlick(below: f32) -> f32 {
    let c = below.sin().clamp(0.0, 1.0);
    0.02 + 0.98 * (1.0 - c).powi(5)
}

impl Backdrop {
    /// Paint every pixel; `flood_reach` (metres) collects the pixels a flood of
    /// that level may cover.
    pub(crate) fn paint(
        geo: &Geometry,
        look: &Look,
        flood_reach: Option<f32>,
    ) -> (Backdrop, Vec<FloodCell>) {
        let cam = &geo.cam;
        let w = cam.width as usize;
        let h = cam.height as usize;
        let n = w * h;
        let mut colour = Vec::with_capacity(n);
        let mut depth = Vec::with_capacity(n);
        let mut height = Vec::with_capacity(n);
        let mut cells = Vec::new();
        let mut sky_rows = 0;
        let lambert = look.ground_lambert();
        for y in 0..h {
            let yc = y as f32 + 0.5;
            let below = -cam.elevation(yc);
            let fresnel = schlick(below);
            for x in 0..w {
                let xc = x as f32 + 0.5;
                let az = cam.azimuth(xc);
                // (surface, ground position, distance, footprint)
                let hit: Option<(Surface, f32, f32, f32)> = if let Some(street) = &geo.street {
                    match street.trace(cam, xc, yc) {
                        StreetHit::Facade { z, height, surface } => {
                            let _ = height;
                            Some((surface, street.facade_u, z, z / cam.focal))
                        }
                        StreetHit::Ground { u, z, footprint } => {
                            Some((street.ground_surface(u, z, footprint), u, z, footprint))
                        }
                        StreetHit::Sky => None,
                    }
                } else if let Some(k) = geo.ridges.hit(x, yc) {
                    let layer = &geo.ridges.layers[k];
                    colour.push(layer.colour(cam, look, x, yc));
                    depth.push(layer.depth_m);
                    height.push(f32::INFINITY);
                    continue;
                } else if let (Some(valley), Some(g)) = (&geo.valley, cam.ground(xc, yc)) {
                    Some((valley.sample(g.u, g.z, g.footprint), g.u, g.z, g.footprint))
                } else {
                    None
                };
                let Some((s, u, z, footprint)) = hit else {
                    let mut c = look.sky(cam.elevation(yc), az);
                    let grain = (hash2(x as i32, y as i32, 77) - 0.5) * 0.008;
                    c = [c[0] + grain, c[1] + grain, c[2] + grain];
                    colour.push(c);
                    depth.push(f32::INFINITY);
                    height.push(f32::INFINITY);
                    sky_rows = y + 1;
                    continue;
                };
                let dist = (z * z + u * u).sqrt();
                let mut c = look.shade(s.albedo, lambert * s.sunlit);
                let mirror = look.sky(below.max(0.0), az);
                if s.gloss > 0.0 {
                    let f = (fresnel + 0.04).min(1.0);
                    c = mix(c, mirror, (s.gloss * f).min(0.85));
                    // Sun glint on water and wet asphalt.
                    let d = crate::look::angular_distance(
                        below,
                        az,
                        look.sun_elevation,
                        look.sun_azimuth,
                    );
                    let glint = (-d * 30.0).exp() * s.gloss * 1.5;
                    c = [
                        c[0] + look.sun[0] * glint,
                        c[1] + look.sun[1] * glint,
                        c[2] + look.sun[2] * glint,
                    ];
                }
                c = look.atmos(c, dist);
                let grain = (hash2(x as i32, y as i32, 91) - 0.5) * 0.02;
                c = [c[0] + grain, c[1] + grain, c[2] + grain];
                if let Some(reach) = flood_reach
                    && s.height < reach
                {
                    cells.push(FloodCell {
                        index: (y * w + x) as u32,
                        u,
                        z,
                        height: s.height,
                        footprint,
                        fresnel: fresnel.max(0.05),
                        depth_m: dist,
                        mud: [0.0; 3],
                        mirror: look.atmos(crate::look::scale(mirror, 0.8), dist),
                    });
                }
                colour.push(c);
                depth.push(dist);
                height.push(s.height);
            }
        }
        (
            Backdrop {
                colour,
                depth,
                height,
                sky_rows,
            },
            cells,
        )
    }
}
