//! `lookout detect`: a configured detector run on still images (PNG, JPEG),
//! one JSON line per image, so integrators can validate a model and its
//! `[[detector]]` entry before a camera ever reaches it. The images go
//! through the same preprocessing, batching and output decoding as live
//! frames.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{Engine, EngineError};
use super::postprocess::Detection;
use super::preprocess::RgbFrame;
use super::runtime;
use crate::alert::identity::ModelIdentity;
use crate::config::Config;

/// Why `lookout detect` (or the bench, which opens its detector the same
/// way) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum DetectFilesError {
    /// An image could not be opened or decoded (reported per image; it
    /// does not stop the others).
    #[error("{path}: {message}")]
    Image { path: String, message: String },
    /// `--detector` names no configured detector: the id asked for, and
    /// the ids there are.
    #[error(
        "no [[detector]] with id `{0}` in the configuration (it has: {1}); pick one with --detector"
    )]
    UnknownDetector(String, String),
    /// The configuration has no `[[detector]]`.
    #[error("the configuration has no [[detector]] entry")]
    NoDetector,
    /// Several detectors and no `--detector`: how many, and their ids.
    #[error("the configuration has {0} detectors ({1}); pick one with --detector")]
    Ambiguous(usize, String),
    /// ONNX Runtime could not be found or loaded.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The model does not open, match its configuration or run.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model file could not be read to compute its identity.
    #[error("model {path}: {source}")]
    ModelFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A result line could not be written (stdout closed, disk full): the
    /// results from here on would be lost.
    #[error("cannot write the results: {0}")]
    Output(std::io::Error),
}

/// One image's result, as printed.
#[derive(Debug, Serialize)]
pub struct ImageResult<'a> {
    /// The image's path as given on the command line.
    pub image: String,
    /// The decoded image's width, pixels.
    pub width: u32,
    /// The decoded image's height, pixels.
    pub height: u32,
    /// The `[[detector]]` id that ran.
    pub detector: &'a str,
    /// Its model file's identity.
    pub model: &'a ModelIdentity,
    /// What the detector found, boxes in the image's pixels; empty when
    /// it found nothing.
    pub detections: Vec<Detection>,
}

/// Reads a PNG or JPEG file into an RGB frame.
pub fn load_image(path: &Path) -> Result<RgbFrame, DetectFilesError> {
    let err = |message: String| DetectFilesError::Image {
        path: path.display().to_string(),
        message,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| err(format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let img = reader
        .decode()
        .map_err(|e| err(format!("not a readable PNG or JPEG image: {e}")))?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    RgbFrame::new(w, h, rgb.into_raw()).ok_or_else(|| err("empty image".to_string()))
}

/// Picks the detector: the named one, or the only one.
pub fn pick_detector<'c>(
    config: &'c Config,
    id: Option<&str>,
) -> Result<&'c crate::config::DetectorConfig, DetectFilesError> {
    let ids = || {
        config
            .detectors
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match id {
        Some(id) => config
            .detectors
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| DetectFilesError::UnknownDetector(id.to_string(), ids())),
        None => match config.detectors.len() {
            0 => Err(DetectFilesError::NoDetector),
            1 => Ok(&config.detectors[0]),
            n => Err(DetectFilesError::Ambiguous(n, ids())),
        },
    }
}

/// Opens the detector's engine and identity as the daemon would.
pub fn open_detector(
    config: &Config,
    detector: &crate::config::DetectorConfig,
    threads: usize,
) -> Result<(Engine, ModelIdentity), DetectFilesError> {
    let explicit = config
        .gateway
        .onnxruntime
        .as_ref()
        .map(|p| config.resolve(p));
    let rt = runtime::load(explicit.as_deref())?;
    let path = config.resolve(&detector.model);
    let identity =
        ModelIdentity::of_file(&path, detector.model_version.as_deref()).map_err(|source| {
            DetectFilesError::ModelFile {
                path: path.clone(),
                source,
            }
        })?;
    let engine = Engine::open(rt, detector, &path, threads)?;
    Ok((engine, identity))
}

/// What a run over many files came to.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Images run through the detector (a JSON line written for each).
    pub images: usize,
    /// Images that could not be read or decoded (an error line for each).
    pub failed: usize,
}

/// Runs the detector over `images` in batches, writing one JSON line per
/// image to `out` and one error line per unreadable image to `err`; an
/// unreadable image never stops the others.
pub fn run(
    engine: &mut Engine,
    identity: &ModelIdentity,
    images: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<RunSummary, DetectFilesError> {
    let mut summary = RunSummary::default();
    let batch = engine.max_batch().max(1);
    let detector = engine.config.id.clone();
    for chunk in images.chunks(batch) {
        let mut loaded: Vec<(&PathBuf, RgbFrame)> = Vec::with_capacity(chunk.len());
        for path in chunk {
            match load_image(path) {
                Ok(f) => loaded.push((path, f)),
                Err(e) => {
                    summary.failed += 1;
                    // Counted in `failed`, which the exit status reports;
                    // if stderr itself cannot be written there is nowhere
                    // left to say it, and the other images still run.
                    writeln!(err, "lookout detect: {e}").ok();
                }
            }
        }
        if loaded.is_empty() {
            continue;
        }
        let frames: Vec<&RgbFrame> = loaded.iter().map(|(_, f)| f).collect();
        let results = engine.infer(&frames)?;
        for ((path, frame), detections) in loaded.iter().zip(results) {
            summary.images += 1;
            let line = ImageResult {
                image: path.display().to_string(),
                width: frame.width,
                height: frame.height,
                detector: &detector,
                model: identity,
                detections,
            };
            // serde_json on these plain types cannot fail.
            let text = serde_json::to_string(&line).unwrap_or_default();
            writeln!(out, "{text}").map_err(DetectFilesError::Output)?;
        }
    }
    Ok(summary)
}
