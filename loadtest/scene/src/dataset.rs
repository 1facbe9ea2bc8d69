//! Labelled stills for training the smoke/flood classifier, and a contact sheet
//! to eyeball them. Each seed picks a scene kind, a lighting and a class
//! (`smoke`, `flood`, `none` in turn, so the classes stay balanced), turns on
//! a seed-chosen set of confusers (at least two in every `none` image, and
//! some in positives too) and renders one frame at a time after onset where
//! the event is visible. Frames are rendered 16:9 at twice the output size and
//! box-filtered down to `size × size`, the same squash a 16:9 camera frame
//! gets when the gateway scales it to the model's square input.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::noise::Rng;
use crate::scene::{
    Confusers, EventClass, EventSpec, LabelledRegion, Lighting, Scene, SceneError, SceneKind,
    SceneSpec,
};

/// A still's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleClass {
    Smoke,
    Flood,
    None,
}

impl SampleClass {
    pub fn name(self) -> &'static str {
        match self {
            SampleClass::Smoke => "smoke",
            SampleClass::Flood => "flood",
            SampleClass::None => "none",
        }
    }

    fn event(self) -> Option<EventClass> {
        match self {
            SampleClass::Smoke => Some(EventClass::Smoke),
            SampleClass::Flood => Some(EventClass::Flood),
            SampleClass::None => None,
        }
    }
}

/// Placements (ignition point, onset, seed) tried for a positive before it is given up
/// as invisible, each at three ages.
const PLACEMENTS: u64 = 8;

/// The smallest share of the frame an event must cover to be labelled present.
pub const MIN_SMOKE_COVERAGE: f64 = 0.003;
pub const MIN_FLOOD_COVERAGE: f64 = 0.01;

/// What one still will show; [`SamplePlan::from_seed`] draws it from a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplePlan {
    pub seed: u64,
    pub class: SampleClass,
    pub kind: SceneKind,
    pub lighting: Lighting,
    pub confusers: Confusers,
}

impl SamplePlan {
    /// Class by `seed % 3` (balanced); kind, lighting and confusers from the seed.
    pub fn from_seed(seed: u64) -> SamplePlan {
        let class =
            [SampleClass::Smoke, SampleClass::Flood, SampleClass::None][(seed % 3) as usize];
        let mut rng = Rng::new(seed).fork(0xDA7A);
        let kind = SceneKind::ALL[rng.below(4) as usize];
        let lighting = Lighting::ALL[rng.below(3) as usize];
        SamplePlan::with(seed, class, kind, lighting)
    }

    /// A plan with the class, kind and lighting given; confusers from the seed.
    pub fn with(seed: u64, class: SampleClass, kind: SceneKind, lighting: Lighting) -> SamplePlan {
        let mut confusers = Confusers::from_seed(seed);
        if class == SampleClass::None {
            // Negatives must hold the look-alikes, or the model learns "cloud = smoke".
            let mut rng = Rng::new(seed).fork(0x4E6);
            let mut on = count(&confusers);
            while on < 2 {
                match rng.below(5) {
                    0 => confusers.clouds = true,
                    1 => confusers.low_cloud = true,
                    2 => confusers.fog = true,
                    3 => confusers.glare = true,
                    _ => confusers.wet_road = true,
                }
                on = count(&confusers);
            }
        }
        SamplePlan {
            seed,
            class,
            kind,
            lighting,
            confusers,
        }
    }
}

fn count(c: &Confusers) -> usize {
    [c.clouds, c.low_cloud, c.fog, c.glare, c.wet_road]
        .iter()
        .filter(|&&b| b)
        .count()
}

/// One rendered, labelled still.
#[derive(Debug, Clone)]
pub struct Sample {
    pub plan: SamplePlan,
    pub t_s: f64,
    pub width: u32,
    pub height: u32,
    /// RGB8, `width × height × 3`.
    pub rgb: Vec<u8>,
    /// The still's label: the planned class, or `None` when the planned event never
    /// became visible enough (see [`Sample::meets_min_coverage`]).
    pub class: SampleClass,
    /// Visible events, boxes in output pixels (none when the still is labelled `None`).
    pub objects: Vec<LabelledRegion>,
    /// False if no placement of a planned event reached the minimum coverage: the
    /// still is then labelled `None` (what a viewer sees) and keeps its plan in the record.
    pub meets_min_coverage: bool,
}

/// The JSON written next to each PNG.
#[derive(Debug, Serialize)]
struct SampleRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    class: SampleClass,
    /// The class the seed planned, when the still is labelled otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    planned: Option<SampleClass>,
    scene: SceneKind,
    lighting: Lighting,
    seed: u64,
    t_s: f64,
    objects: Vec<ObjectRecord>,
    confusers: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct ObjectRecord {
    class: EventClass,
    bbox: [u32; 4],
    coverage: f64,
}

impl Sample {
    fn record<'a>(&self, image: Option<&'a str>) -> SampleRecord<'a> {
        SampleRecord {
            image,
            class: self.class,
            planned: (self.class != self.plan.class).then_some(self.plan.class),
            scene: self.plan.kind,
            lighting: self.plan.lighting,
            seed: self.plan.seed,
            t_s: self.t_s,
            objects: self
                .objects
                .iter()
                .map(|o| ObjectRecord {
                    class: o.class,
                    bbox: o.bbox,
                    coverage: o.coverage,
                })
                .collect(),
            confusers: self
                .plan
                .confusers
                .names(self.plan.kind, self.plan.lighting),
        }
    }
}

/// Render `plan` at `out_w × out_h` (rendered 16:9 at twice the height, then
/// box-filtered to the output size).
pub fn render_sample(plan: &SamplePlan, out_w: u32, out_h: u32) -> Result<Sample, SceneError> {
    let rh = out_h.saturating_mul(2).max(16);
    let rw = (rh as f32 * 16.0 / 9.0).round() as u32;
    let mut rng = Rng::new(plan.seed).fork(0x7133);
    let mut rgb = vec![0u8; rw as usize * rh as usize * 3];
    let spec = SceneSpec {
        confusers: plan.confusers,
        ..SceneSpec::new(plan.kind, plan.lighting, plan.seed, rw, rh)
    };
    let mut best: Option<(f64, f64, Vec<u8>, Vec<LabelledRegion>)> = None;
    let mut met = plan.class == SampleClass::None;
    if let Some(class) = plan.class.event() {
        let min = if class == EventClass::Smoke {
            MIN_SMOKE_COVERAGE
        } else {
            MIN_FLOOD_COVERAGE
        };
        'placements: for attempt in 0..PLACEMENTS {
            let onset = f64::from(rng.range(0.0, 5.0));
            let event = EventSpec {
                class,
                onset_s: onset,
                seed: attempt,
            };
            let mut scene = Scene::new(spec, vec![event])?;
            // Smoke: from a minute-old wisp to a towering plume (log-uniform);
            // flood: from the first spill to a wide sheet.
            let mut age = if class == EventClass::Smoke {
                f64::from(rng.range(20f32.ln(), 400f32.ln()).exp())
            } else {
                f64::from(rng.range(3.0, 90.0))
            };
            for _ in 0..3 {
                let t = onset + age;
                let labels = scene.render_rgb(t, &mut rgb)?;
                let cov = labels.objects.first().map_or(0.0, |o| o.coverage);
                if best.as_ref().is_none_or(|b| cov > b.0) {
                    best = Some((cov, t, rgb.clone(), labels.objects));
                }
                if cov >= min {
                    met = true;
                    break 'placements;
                }
                age *= 2.0;
            }
        }
    } else {
        let t = f64::from(rng.range(0.0, 60.0));
        let mut scene = Scene::new(spec, Vec::new())?;
        let labels = scene.render_rgb(t, &mut rgb)?;
        best = Some((0.0, t, rgb.clone(), labels.objects));
    }
    let (_, t_s, full, mut objects) = best.unwrap_or((0.0, 0.0, rgb, Vec::new()));
    // A positive whose event never became visible enough is not a positive: label it by
    // what the still shows, so neither training nor evaluation asks for the invisible.
    let class = if met { plan.class } else { SampleClass::None };
    if !met {
        objects.clear();
    }
    let sx = out_w as f64 / rw as f64;
    let sy = out_h as f64 / rh as f64;
    let objects = objects
        .into_iter()
        .filter(|o| o.visible)
        .map(|o| {
            let x0 = (o.bbox[0] as f64 * sx).floor() as u32;
            let y0 = (o.bbox[1] as f64 * sy).floor() as u32;
            let x1 = (((o.bbox[0] + o.bbox[2]) as f64 * sx).ceil() as u32).min(out_w);
            let y1 = (((o.bbox[1] + o.bbox[3]) as f64 * sy).ceil() as u32).min(out_h);
            LabelledRegion {
                bbox: [x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0)],
                ..o
            }
        })
        .collect();
    Ok(Sample {
        plan: *plan,
        t_s,
        width: out_w,
        height: out_h,
        rgb: box_resize(&full, rw, rh, out_w, out_h),
        class,
        objects,
        meets_min_coverage: met,
    })
}

/// Area-average resize of an RGB8 image.
pub fn box_resize(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<u8> {
    let (sw, sh, dw, dh) = (sw as usize, sh as usize, dw as usize, dh as usize);
    let mut out = vec![0u8; dw * dh * 3];
    for y in 0..dh {
        let ya = y * sh / dh;
        let yb = ((y + 1) * sh).div_ceil(dh).clamp(ya + 1, sh);
        for x in 0..dw {
            let xa = x * sw / dw;
            let xb = ((x + 1) * sw).div_ceil(dw).clamp(xa + 1, sw);
            let mut acc = [0u32; 3];
            for sy in ya..yb {
                for sx in xa..xb {
                    let p = &src[(sy * sw + sx) * 3..(sy * sw + sx) * 3 + 3];
                    acc[0] += u32::from(p[0]);
                    acc[1] += u32::from(p[1]);
                    acc[2] += u32::from(p[2]);
                }
            }
            let n = ((yb - ya) * (xb - xa)) as u32;
            let o = &mut out[(y * dw + x) * 3..(y * dw + x) * 3 + 3];
            for k in 0..3 {
                o[k] = ((acc[k] + n / 2) / n) as u8;
            }
        }
    }
    out
}

/// Why a data set or a contact sheet could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("rendering seed {seed}: {source}")]
    Render { seed: u64, source: SceneError },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding PNG {path}: {source}")]
    Png {
        path: PathBuf,
        source: png::EncodingError,
    },
    #[error("encoding labels for {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("output size {0} is outside 16..=2048")]
    Size(u32),
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatasetSummary {
    pub images: usize,
    pub smoke: usize,
    pub flood: usize,
    pub none: usize,
    /// Planned positives whose event stayed below the minimum coverage in every placement
    /// tried; they are written (and counted above) as `none`.
    pub below_min_coverage: usize,
}

/// Restricts a dataset to one camera kind and/or one lighting (e.g. to
/// validate or fine-tune a model for body cameras at dusk). The class and the
/// confusers still come from each seed; `None` keeps the seed's own draw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Only {
    pub kind: Option<SceneKind>,
    pub lighting: Option<Lighting>,
}

impl Only {
    /// The plan for `seed` under this restriction.
    pub fn plan(&self, seed: u64) -> SamplePlan {
        let plan = SamplePlan::from_seed(seed);
        SamplePlan::with(
            seed,
            plan.class,
            self.kind.unwrap_or(plan.kind),
            self.lighting.unwrap_or(plan.lighting),
        )
    }
}

/// Write `NNNNNN.png` + `NNNNNN.json` for each seed in `seeds` (`size × size`
/// pixels) and an `index.jsonl` with one record per image, into `dir`
/// (created if missing).
pub fn write_dataset(
    dir: &Path,
    seeds: Range<u64>,
    size: u32,
) -> Result<DatasetSummary, DatasetError> {
    write_dataset_only(dir, seeds, size, Only::default())
}

/// [`write_dataset`] restricted to one camera kind and/or lighting.
pub fn write_dataset_only(
    dir: &Path,
    seeds: Range<u64>,
    size: u32,
    only: Only,
) -> Result<DatasetSummary, DatasetError> {
    if !(16..=2048).contains(&size) {
        return Err(DatasetError::Size(size));
    }
    std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let index_path = dir.join("index.jsonl");
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Io { path, source }
    };
    let mut index = BufWriter::new(File::create(&index_path).map_err(io_err(&index_path))?);
    let mut summary = DatasetSummary::default();
    for seed in seeds {
        let plan = only.plan(seed);
        let sample = render_sample(&plan, size, size)
            .map_err(|source| DatasetError::Render { seed, source })?;
        let stem = format!("{seed:06}");
        let png_name = format!("{stem}.png");
        let png_path = dir.join(&png_name);
        write_png(&png_path, &sample.rgb, size, size)?;
        let json_path = dir.join(format!("{stem}.json"));
        let json = serde_json::to_vec_pretty(&sample.record(None)).map_err(|source| {
            DatasetError::Json {
                path: json_path.clone(),
                source,
            }
        })?;
        std::fs::write(&json_path, json).map_err(io_err(&json_path))?;
        let line = serde_json::to_string(&sample.record(Some(&png_name))).map_err(|source| {
            DatasetError::Json {
                path: index_path.clone(),
                source,
            }
        })?;
        writeln!(index, "{line}").map_err(io_err(&index_path))?;
        summary.images += 1;
        match sample.class {
            SampleClass::Smoke => summary.smoke += 1,
            SampleClass::Flood => summary.flood += 1,
            SampleClass::None => summary.none += 1,
        }
        if !sample.meets_min_coverage {
            summary.below_min_coverage += 1;
        }
    }
    index.flush().map_err(io_err(&index_path))?;
    Ok(summary)
}

/// Write an RGB8 image as PNG.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), DatasetError> {
    let file = File::create(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let png_err = |source| DatasetError::Png {
        path: path.to_path_buf(),
        source,
    };
    let mut enc = png::Encoder::new(BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

const SMOKE_COLOUR: [u8; 3] = [255, 140, 0];
const FLOOD_COLOUR: [u8; 3] = [30, 120, 255];
const NONE_COLOUR: [u8; 3] = [40, 200, 60];

fn class_colour(c: SampleClass) -> [u8; 3] {
    match c {
        SampleClass::Smoke => SMOKE_COLOUR,
        SampleClass::Flood => FLOOD_COLOUR,
        SampleClass::None => NONE_COLOUR,
    }
}

/// Compose a grid PNG at `path`: one row per scene kind (tower, drone,
/// bodycam, fixed) and six columns (smoke by day, smoke at dusk or in haze,
/// flood by day, flood at dusk or in haze, two negatives with confusers), each
/// thumbnail `thumb_h` pixels high at 16:9. A coloured border gives the class
/// (orange smoke, blue flood, green none) and a thin box the labelled region;
/// a legend bar at the top shows the three colours. Seeds start at `first_seed`.
pub fn contact_sheet(
    path: &Path,
    first_seed: u64,
    thumb_h: u32,
) -> Result<Vec<SamplePlan>, DatasetError> {
    if !(16..=1080).contains(&thumb_h) {
        return Err(DatasetError::Size(thumb_h));
    }
    let tw = (thumb_h as f32 * 16.0 / 9.0).round() as usize;
    let th = thumb_h as usize;
    let border = 4usize;
    let legend = 14usize;
    let cols = 6usize;
    let rows = SceneKind::ALL.len();
    let cell_w = tw + 2 * border;
    let cell_h = th + 2 * border;
    let (w, h) = (cols * cell_w, legend + rows * cell_h);
    let mut sheet = vec![30u8; w * h * 3];
    let fill = |sheet: &mut [u8], x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]| {
        for y in y0..y1.min(h) {
            for x in x0..x1.min(w) {
                sheet[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    };
    for (i, c) in [SMOKE_COLOUR, FLOOD_COLOUR, NONE_COLOUR]
        .into_iter()
        .enumerate()
    {
        fill(
            &mut sheet,
            i * w / 3 + 4,
            3,
            (i + 1) * w / 3 - 4,
            legend - 3,
            c,
        );
    }
    let mut plans = Vec::new();
    let mut seed = first_seed;
    for (r, kind) in SceneKind::ALL.into_iter().enumerate() {
        let columns = [
            (SampleClass::Smoke, Lighting::Day),
            (
                SampleClass::Smoke,
                if r % 2 == 0 {
                    Lighting::Dusk
                } else {
                    Lighting::Haze
                },
            ),
            (SampleClass::Flood, Lighting::Day),
            (
                SampleClass::Flood,
                if r % 2 == 0 {
                    Lighting::Haze
                } else {
                    Lighting::Dusk
                },
            ),
            (SampleClass::None, Lighting::Day),
            (SampleClass::None, Lighting::ALL[(r + 1) % 3]),
        ];
        for (c, (class, lighting)) in columns.into_iter().enumerate() {
            let plan = SamplePlan::with(seed, class, kind, lighting);
            seed += 1;
            let s = render_sample(&plan, tw as u32, th as u32).map_err(|source| {
                DatasetError::Render {
                    seed: plan.seed,
                    source,
                }
            })?;
            let (x0, y0) = (c * cell_w, legend + r * cell_h);
            fill(
                &mut sheet,
                x0,
                y0,
                x0 + cell_w,
                y0 + cell_h,
                class_colour(class),
            );
            for y in 0..th {
                let src = &s.rgb[y * tw * 3..(y + 1) * tw * 3];
                let at = ((y0 + border + y) * w + x0 + border) * 3;
                sheet[at..at + tw * 3].copy_from_slice(src);
            }
            for o in &s.objects {
                let [bx, by, bw, bh] = o.bbox.map(|v| v as usize);
                let (ox, oy) = (x0 + border, y0 + border);
                let c = if o.class == EventClass::Smoke {
                    SMOKE_COLOUR
                } else {
                    FLOOD_COLOUR
                };
                fill(&mut sheet, ox + bx, oy + by, ox + bx + bw, oy + by + 1, c);
                fill(
                    &mut sheet,
                    ox + bx,
                    oy + by + bh.saturating_sub(1),
                    ox + bx + bw,
                    oy + by + bh,
                    c,
                );
                fill(&mut sheet, ox + bx, oy + by, ox + bx + 1, oy + by + bh, c);
                fill(
                    &mut sheet,
                    ox + bx + bw.saturating_sub(1),
                    oy + by,
                    ox + bx + bw,
                    oy + by + bh,
                    c,
                );
            }
            plans.push(plan);
        }
    }
    write_png(path, &sheet, w as u32, h as u32)?;
    Ok(plans)
}
