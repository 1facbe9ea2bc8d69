//! The public face of the renderer: what to render ([`SceneSpec`], [`EventSpec`]),
//! the [`Scene`] that holds the precomputed backdrop and animates clouds, fog,
//! smoke and water over it, and the [`FrameLabels`] each frame comes with.

use serde::{Deserialize, Serialize};

use crate::backdrop::{Backdrop, Geometry};
use crate::coarse::Coarse;
use crate::flood::Flood;
use crate::look::{Look, Rgb};
use crate::noise::{Rng, ValueNoise};
use crate::sky::{CloudDeck, CloudKind, FogBank, Glare};
use crate::smoke::{Coverage, Plume, pick_anchor};

/// The kind of camera and what it looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SceneKind {
    /// Fire-watch tower: sky, clouds, layered forested ridges, a valley floor.
    Tower,
    /// Drone over a river valley, from oblique to nearly straight down.
    Drone,
    /// Body camera on a town street, with a little camera shake.
    Bodycam,
    /// Fixed road camera looking along a road that crosses a river on a bridge.
    Fixed,
}

impl SceneKind {
    pub const ALL: [SceneKind; 4] = [
        SceneKind::Tower,
        SceneKind::Drone,
        SceneKind::Bodycam,
        SceneKind::Fixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SceneKind::Tower => "tower",
            SceneKind::Drone => "drone",
            SceneKind::Bodycam => "bodycam",
            SceneKind::Fixed => "fixed",
        }
    }

    /// The kind [`SceneKind::name`] calls `name`.
    pub fn from_name(name: &str) -> Option<SceneKind> {
        SceneKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Light and atmosphere for the whole clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lighting {
    Day,
    /// Low, warm sun and an orange horizon.
    Dusk,
    /// Strong atmospheric haze: low contrast, far ridges nearly gone.
    Haze,
}

impl Lighting {
    pub const ALL: [Lighting; 3] = [Lighting::Day, Lighting::Dusk, Lighting::Haze];

    pub fn name(self) -> &'static str {
        match self {
            Lighting::Day => "day",
            Lighting::Dusk => "dusk",
            Lighting::Haze => "haze",
        }
    }

    /// The lighting [`Lighting::name`] calls `name`.
    pub fn from_name(name: &str) -> Option<Lighting> {
        Lighting::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// What a detector is asked to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventClass {
    Smoke,
    Flood,
}

impl EventClass {
    pub fn name(self) -> &'static str {
        match self {
            EventClass::Smoke => "smoke",
            EventClass::Flood => "flood",
        }
    }
}

/// Look-alikes that are not events, switched on per scene so that training
/// data holds them with and without a real event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusers {
    /// Fair-weather cumulus or high cirrus drifting across the sky.
    pub clouds: bool,
    /// Low grey stratus, and a cloud clinging to a ridge where there are ridges.
    pub low_cloud: bool,
    /// A fog bank in the valley (ground fog patches from a drone, mist down a street).
    pub fog: bool,
    /// The sun in or just outside the frame, with bloom and lens-flare ghosts.
    pub glare: bool,
    /// Dark, mirror-like wet roads with puddles.
    pub wet_road: bool,
}

impl Confusers {
    /// A seed-derived mix: each confuser present in roughly a third to a half of scenes.
    pub fn from_seed(seed: u64) -> Confusers {
        let mut rng = Rng::new(seed).fork(0xC0F);
        Confusers {
            clouds: rng.chance(0.6),
            low_cloud: rng.chance(0.35),
            fog: rng.chance(0.3),
            glare: rng.chance(0.25),
            wet_road: rng.chance(0.3),
        }
    }

    /// Names of the confusers visible in a scene of `kind` under `lighting`,
    /// including the ones that come with the lighting or the layout itself
    /// ("haze", "dusk", "river").
    pub fn names(&self, kind: SceneKind, lighting: Lighting) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.clouds {
            v.push("cloud");
        }
        if self.low_cloud {
            v.push("low_cloud");
        }
        if self.fog {
            v.push("fog");
        }
        if self.glare {
            v.push("glare");
        }
        if self.wet_road {
            v.push("wet_road");
        }
        if kind != SceneKind::Bodycam {
            v.push("river");
        }
        match lighting {
            Lighting::Day => {}
            Lighting::Dusk => v.push("dusk"),
            Lighting::Haze => v.push("haze"),
        }
        v
    }
}

/// What to render. Everything in the picture follows from these fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SceneSpec {
    pub kind: SceneKind,
    pub lighting: Lighting,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub confusers: Confusers,
}

impl SceneSpec {
    /// A spec whose confusers are derived from `seed`.
    pub fn new(
        kind: SceneKind,
        lighting: Lighting,
        seed: u64,
        width: u32,
        height: u32,
    ) -> SceneSpec {
        SceneSpec {
            kind,
            lighting,
            seed,
            width,
            height,
            confusers: Confusers::from_seed(seed),
        }
    }
}

/// A scripted event: it starts at `onset_s` and grows from there. Where it
/// happens (which ridge, how fast, which colour of smoke, how high the water
/// rises) is derived from the scene seed and `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventSpec {
    pub class: EventClass,
    /// Seconds after the start of the clip.
    pub onset_s: f64,
    /// Varies placement and growth between events of one scene.
    pub seed: u64,
}

impl EventSpec {
    pub fn new(class: EventClass, onset_s: f64) -> EventSpec {
        EventSpec {
            class,
            onset_s,
            seed: 0,
        }
    }
}

/// One event's footprint in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LabelledRegion {
    pub class: EventClass,
    /// Bounding box in pixels: x, y, width, height. Zero when not visible.
    pub bbox: [u32; 4],
    /// Fraction of the frame the event covers (smoke at least 10 % opaque;
    /// water at least half, not counting the river's normal bed).
    pub coverage: f64,
    /// False before onset, or when nothing of it is in view.
    pub visible: bool,
}

/// Ground truth for one rendered frame: one entry per [`EventSpec`], in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct FrameLabels {
    pub objects: Vec<LabelledRegion>,
}

/// Why a scene could not be built or a frame not written.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("frame size {width}x{height} is outside 16x16 ..= 7680x4320")]
    FrameSize { width: u32, height: u32 },
    #[error("{what} buffer holds {got} bytes, a {width}x{height} frame needs {need}")]
    BufferSize {
        what: &'static str,
        width: u32,
        height: u32,
        need: usize,
        got: usize,
    },
}

/// Smoke pixels count towards the label when at least this opaque...
const SMOKE_LABEL_ALPHA: f32 = 0.1;
/// ...and when the smoke moved the pixel at least this far (about 10 of 255 levels in one
/// channel), so a thin veil over a sky of its own colour is not labelled smoke.
const SMOKE_LABEL_CHANGE: f32 = 0.04;
/// Highest possible flood level, for precomputing flood cells: valley and street.
const VALLEY_FLOOD: (f32, f32) = (0.6, 2.2);
const STREET_FLOOD: (f32, f32) = (0.2, 0.5);

#[derive(Debug, Clone)]
struct Shake {
    amplitude_px: f32,
    noise: ValueNoise,
}

impl Shake {
    fn offset(&self, t: f64) -> (i32, i32) {
        let t = t as f32;
        let dx = (self.noise.fbm(t * 1.3, 0.5, 3) - 0.5) * 2.0 * self.amplitude_px;
        // Walking bob: about two steps a second.
        let dy = (self.noise.fbm(t * 1.3, 9.5, 3) - 0.5) * 1.5 * self.amplitude_px
            + (t * std::f32::consts::TAU * 1.9).sin() * self.amplitude_px * 0.4;
        (dx.round() as i32, dy.round() as i32)
    }
}

enum Animated {
    Smoke(Plume),
    Flood(Flood),
    /// An event this layout has no place for (no visible ridge or ground).
    Nowhere(EventClass),
}

/// A scene with its static layers precomputed; render frames at any time.
pub struct Scene {
    spec: SceneSpec,
    look: Look,
    geo: Geometry,
    backdrop: Backdrop,
    clouds: Vec<CloudDeck>,
    /// Fog banks and ridge clouds, each hiding what lies behind it.
    fogs: Vec<FogBank>,
    glare: Option<Glare>,
    events: Vec<Animated>,
    shake: Option<Shake>,
    /// Grid step (pixels) for the soft animated layers.
    step: usize,
    /// The frame being composed, reused across frames.
    work: Vec<Rgb>,
    scratch: Coarse,
}

impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scene")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

fn check_size(width: u32, height: u32) -> Result<(), SceneError> {
    if !(16..=7680).contains(&width) || !(16..=4320).contains(&height) {
        return Err(SceneError::FrameSize { width, height });
    }
    Ok(())
}

impl Scene {
    /// Lay out the scene and paint its static layers (sky, ridges, valley or
    /// street, haze, glare). This is the slow part; frames are cheap after it.
    pub fn new(spec: SceneSpec, events: Vec<EventSpec>) -> Result<Scene, SceneError> {
        check_size(spec.width, spec.height)?;
        let root = Rng::new(spec.seed);
        let mut look = Look::new(spec.lighting, &mut root.fork(1));
        let mut geo = Geometry::new(&spec, &look, &mut root.fork(2));
        let (w, h) = (spec.width as usize, spec.height as usize);
        let mut rng = root.fork(3);

        // Glare needs the sun where the camera can see it (or just above the frame).
        let sun_xy = if spec.confusers.glare {
            let cam = &geo.cam;
            let hy = cam.horizon_y;
            let x = cam.width * rng.range(0.15, 0.85);
            let y = if hy > cam.height * 0.15 {
                let lo = if spec.lighting == Lighting::Dusk {
                    hy - cam.height * 0.12
                } else {
                    (hy - cam.height * 0.5).max(cam.height * 0.04)
                };
                rng.range(lo, hy - cam.height * 0.04)
            } else {
                -cam.height * 0.06
            };
            look.sun_azimuth = cam.azimuth(x);
            if hy > cam.height * 0.15 {
                look.sun_elevation = cam.elevation(y).max(0.03);
            }
            // The valley's cast shadows follow the sun.
            geo = Geometry::new(&spec, &look, &mut root.fork(2));
            Some((x, y))
        } else {
            None
        };

        let street = geo.street.is_some();
        let flood_reach = events
            .iter()
            .any(|e| e.class == EventClass::Flood)
            .then_some(if street {
                STREET_FLOOD.1
            } else {
                VALLEY_FLOOD.1
            });
        let (backdrop, cells) = Backdrop::paint(&geo, &look, flood_reach);

        let mut clouds = Vec::new();
        if spec.confusers.clouds {
            let kind = if rng.chance(0.75) {
                CloudKind::Cumulus
            } else {
                CloudKind::Cirrus
            };
            clouds.push(CloudDeck::new(kind, &look, &mut rng));
        }
        if spec.confusers.low_cloud {
            clouds.push(CloudDeck::new(CloudKind::Stratus, &look, &mut rng));
        }
        // Nearer decks drawn last.
        clouds.sort_by_key(|d| std::cmp::Reverse(d.kind == CloudKind::Cirrus));

        let mut fogs = Vec::new();
        let cam = geo.cam.clone();
        let ridge_layers = &geo.ridges.layers[geo.first_ridge..];
        if spec.confusers.fog {
            if let Some(layer) =
                ridge_layers.get(rng.below(ridge_layers.len().max(1) as u32) as usize)
            {
                let lift = cam.height * rng.range(0.0, 0.03);
                let centre = vec![layer.base_y - lift; w];
                let half = cam.height * rng.range(0.03, 0.07);
                fogs.push(FogBank::new(
                    &look,
                    &mut rng,
                    layer.depth_m * 0.9,
                    centre,
                    half,
                    cam.width * 0.12,
                ));
            } else if street {
                let centre = vec![cam.horizon_y; w];
                fogs.push(FogBank::new(
                    &look,
                    &mut rng,
                    60.0,
                    centre,
                    cam.height * 0.12,
                    cam.width * 0.2,
                ));
            } else {
                // From above: patches of ground fog over the whole valley.
                let centre = vec![cam.height * 0.5; w];
                let mut patches = FogBank::new(
                    &look,
                    &mut rng,
                    1.0,
                    centre,
                    cam.height * 0.9,
                    cam.width * 0.25,
                );
                patches.patchy = true;
                fogs.push(patches);
            }
        }
        if spec.confusers.low_cloud && !ridge_layers.is_empty() {
            let k = rng.below(ridge_layers.len() as u32) as usize;
            let layer = &ridge_layers[k];
            let lift = cam.height * rng.range(0.0, 0.02);
            let centre = layer.ridge_y.iter().map(|&r| r - lift).collect();
            let half = cam.height * rng.range(0.025, 0.05);
            fogs.push(FogBank::new(
                &look,
                &mut rng,
                layer.depth_m * 0.95,
                centre,
                half,
                cam.width * 0.08,
            ));
        }
        fogs.sort_by(|a, b| b.depth_m.total_cmp(&a.depth_m));

        let glare = sun_xy.map(|xy| Glare::new(&cam, &look, xy, &mut rng));

        let mut animated = Vec::with_capacity(events.len());
        let mut cells = Some(cells);
        for (i, e) in events.iter().enumerate() {
            let mut erng = root.fork(0x1000 + i as u64).fork(e.seed);
            match e.class {
                EventClass::Smoke => {
                    let anchors = geo.plume_anchors(&backdrop, &mut erng);
                    animated.push(match pick_anchor(&anchors, &mut erng) {
                        Some(a) => Animated::Smoke(Plume::new(e.onset_s, a, &look, &mut erng)),
                        None => Animated::Nowhere(EventClass::Smoke),
                    });
                }
                EventClass::Flood => {
                    let (lo, hi) = if street { STREET_FLOOD } else { VALLEY_FLOOD };
                    let max_level = erng.range(lo, hi);
                    let start = if street { 0.0 } else { 0.05 };
                    // Every flood gets the cells; only the last one can take the vector.
                    let these = match cells.take() {
                        Some(c) if events[i + 1..].iter().all(|e| e.class != EventClass::Flood) => {
                            c
                        }
                        Some(c) => {
                            let copy = c.clone();
                            cells = Some(c);
                            copy
                        }
                        None => Vec::new(),
                    };
                    let these = these.into_iter().filter(|c| c.height < max_level).collect();
                    animated.push(Animated::Flood(Flood::new(
                        e.onset_s,
                        (start, max_level),
                        &look,
                        &mut erng,
                        these,
                    )));
                }
            }
        }

        let shake = street.then(|| Shake {
            amplitude_px: cam.width * rng.range(0.004, 0.01),
            noise: ValueNoise::new(rng.seed32()),
        });
        let step = (w / 480).clamp(1, 4);
        Ok(Scene {
            spec,
            look,
            geo,
            backdrop,
            clouds,
            fogs,
            glare,
            events: animated,
            shake,
            step,
            work: Vec::with_capacity(w * h),
            scratch: Coarse::default(),
        })
    }

    pub fn spec(&self) -> &SceneSpec {
        &self.spec
    }

    /// Bytes in one RGB8 frame: width × height × 3.
    pub fn frame_len(&self) -> usize {
        self.spec.width as usize * self.spec.height as usize * 3
    }

    /// Render the frame at `t_s` seconds into `out` (RGB8, row-major, no
    /// padding, [`Scene::frame_len`] bytes) and return its labels. The same
    /// scene and time always give the same bytes.
    pub fn render_rgb(&mut self, t_s: f64, out: &mut [u8]) -> Result<FrameLabels, SceneError> {
        let (w, h) = (self.spec.width as usize, self.spec.height as usize);
        if out.len() != w * h * 3 {
            return Err(SceneError::BufferSize {
                what: "RGB",
                width: self.spec.width,
                height: self.spec.height,
                need: w * h * 3,
                got: out.len(),
            });
        }
        self.work.clear();
        self.work.extend_from_slice(&self.backdrop.colour);
        let t = t_s as f32;
        let cam = &self.geo.cam;

        // Clouds, on sky pixels only.
        let sky_rows = self.backdrop.sky_rows;
        for deck in &self.clouds {
            if sky_rows == 0 {
                break;
            }
            let look = &self.look;
            self.scratch
                .fill((0, 0, w, sky_rows), self.step * 3, |x, y| {
                    deck.at(cam, look, x, y, t)
                });
            let depth = &self.backdrop.depth;
            self.scratch.blend(
                (0, 0, w, sky_rows),
                &mut self.work,
                w,
                |i| depth[i].is_infinite(),
                |_, _, _, _| {},
            );
        }

        let mut coverage = vec![Coverage::default(); self.events.len()];
        for (i, e) in self.events.iter().enumerate() {
            if let Animated::Flood(f) = e {
                coverage[i] = f.composite(t_s, &mut self.work, w);
            }
        }
        let nearest_plume = self
            .events
            .iter()
            .filter_map(|e| match e {
                Animated::Smoke(p) => Some(p.anchor.depth_m),
                _ => None,
            })
            .fold(f32::INFINITY, f32::min);
        for fog in self.fogs.iter().filter(|f| f.depth_m >= nearest_plume) {
            composite_fog(
                fog,
                t,
                &self.backdrop.depth,
                &mut self.work,
                w,
                h,
                self.step,
                &mut self.scratch,
            );
        }
        // Far plumes first.
        let mut order: Vec<usize> = (0..self.events.len()).collect();
        order.sort_by(|&a, &b| match (&self.events[a], &self.events[b]) {
            (Animated::Smoke(pa), Animated::Smoke(pb)) => {
                pb.anchor.depth_m.total_cmp(&pa.anchor.depth_m)
            }
            _ => std::cmp::Ordering::Equal,
        });
        for i in order {
            if let Animated::Smoke(p) = &self.events[i] {
                coverage[i] = p.composite(
                    t_s,
                    &mut self.work,
                    &self.backdrop.depth,
                    w,
                    h,
                    self.step,
                    &mut self.scratch,
                    SMOKE_LABEL_ALPHA,
                    SMOKE_LABEL_CHANGE,
                );
            }
        }
        for fog in self.fogs.iter().filter(|f| f.depth_m < nearest_plume) {
            composite_fog(
                fog,
                t,
                &self.backdrop.depth,
                &mut self.work,
                w,
                h,
                self.step,
                &mut self.scratch,
            );
        }

        let (dx, dy) = self.shake.as_ref().map_or((0, 0), |s| s.offset(t_s));
        let glare = self.glare.as_ref().map(|g| g.light.as_slice());
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            let sy = (y as i32 + dy).clamp(0, h as i32 - 1) as usize;
            let src = &self.work[sy * w..(sy + 1) * w];
            let light = glare.map(|g| &g[sy * w..(sy + 1) * w]);
            for (x, o) in row.chunks_exact_mut(3).enumerate() {
                let sx = (x as i32 + dx).clamp(0, w as i32 - 1) as usize;
                let mut c = src[sx];
                if let Some(g) = light {
                    c = [c[0] + g[sx][0], c[1] + g[sx][1], c[2] + g[sx][2]];
                }
                o[0] = to_u8(c[0]);
                o[1] = to_u8(c[1]);
                o[2] = to_u8(c[2]);
            }
        }

        let frame_px = (w * h) as f64;
        let objects = self
            .events
            .iter()
            .zip(&coverage)
            .map(|(e, c)| {
                let class = match e {
                    Animated::Smoke(_) => EventClass::Smoke,
                    Animated::Flood(_) => EventClass::Flood,
                    Animated::Nowhere(c) => *c,
                };
                region(class, c, dx, dy, w, h, frame_px)
            })
            .collect();
        Ok(FrameLabels { objects })
    }
}

#[allow(clippy::too_many_arguments)]
fn composite_fog(
    fog: &FogBank,
    t: f32,
    depth: &[f32],
    work: &mut [Rgb],
    w: usize,
    h: usize,
    step: usize,
    scratch: &mut Coarse,
) {
    let (y0, y1) = fog.rows(h);
    if y1 <= y0 {
        return;
    }
    scratch.fill((0, y0, w, y1), step * 3, |x, y| fog.at(x, y, t));
    scratch.blend(
        (0, y0, w, y1),
        work,
        w,
        |i| depth[i] > fog.depth_m,
        |_, _, _, _| {},
    );
}

fn region(
    class: EventClass,
    c: &Coverage,
    dx: i32,
    dy: i32,
    w: usize,
    h: usize,
    frame_px: f64,
) -> LabelledRegion {
    if c.pixels == 0 {
        return LabelledRegion {
            class,
            bbox: [0; 4],
            coverage: 0.0,
            visible: false,
        };
    }
    // The frame was shifted by the camera shake: content moved by (−dx, −dy).
    let x0 = (c.x0 as i64 - dx as i64).clamp(0, w as i64);
    let x1 = (c.x1 as i64 - dx as i64).clamp(0, w as i64);
    let y0 = (c.y0 as i64 - dy as i64).clamp(0, h as i64);
    let y1 = (c.y1 as i64 - dy as i64).clamp(0, h as i64);
    LabelledRegion {
        class,
        bbox: [x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32],
        coverage: c.pixels as f64 / frame_px,
        visible: x1 > x0 && y1 > y0,
    }
}

#[inline]
fn to_u8(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}
