//! lookout-scene: deterministic procedural scenes of the kind a county command
//! center watches (fire-watch towers, drones, body cameras, fixed road/bridge
//! cameras) under day, dusk or haze, with scripted smoke plumes and floods
//! that start at a given time and grow. The camera-fleet simulator renders
//! clips from it once (RGB, or I420 for the x264 encoder) and serves them over
//! RTSP; [`write_dataset`] turns it into labelled stills for training the
//! smoke/flood classifier, with the look-alikes (clouds, low cloud, fog, haze,
//! sun glare, wet roads, rivers at their normal level, dusk) in positives and
//! negatives alike.
//!
//! ```
//! use lookout_scene::{EventClass, EventSpec, Lighting, Scene, SceneKind, SceneSpec};
//!
//! let spec = SceneSpec::new(SceneKind::Tower, Lighting::Day, 7, 160, 90);
//! let mut scene = Scene::new(spec, vec![EventSpec::new(EventClass::Smoke, 2.0)])?;
//! let mut rgb = vec![0; scene.frame_len()];
//! let before = scene.render_rgb(1.0, &mut rgb)?;
//! assert!(!before.objects[0].visible);
//! let after = scene.render_rgb(120.0, &mut rgb)?;
//! assert!(after.objects[0].coverage > 0.0);
//! # Ok::<(), lookout_scene::SceneError>(())
//! ```
//!
//! Stages, one module each: `noise` (seeded randomness), `look` (lighting and
//! haze), `camera`, the static layers `hills`, `valley`, `street` painted once
//! by `backdrop`, the animated layers `sky` (clouds, fog, glare), `smoke` and
//! `flood` composed per frame by `scene`, then `yuv` for the encoder and
//! `dataset` for training stills. `seeds` declares which seeds are for training,
//! validation, held-out evaluation and benchmarks.

mod backdrop;
mod camera;
mod coarse;
mod dataset;
mod flood;
mod hills;
mod look;
mod noise;
mod scene;
pub mod seeds;
mod sky;
mod smoke;
mod street;
mod valley;
mod yuv;

pub use dataset::{
    DatasetError, DatasetSummary, MIN_FLOOD_COVERAGE, MIN_SMOKE_COVERAGE, Only, Sample,
    SampleClass, SamplePlan, box_resize, contact_sheet, render_sample, write_dataset,
    write_dataset_only, write_png,
};
pub use scene::{
    Confusers, EventClass, EventSpec, FrameLabels, LabelledRegion, Lighting, Scene, SceneError,
    SceneKind, SceneSpec,
};
pub use yuv::{i420_len, rgb_to_i420};
