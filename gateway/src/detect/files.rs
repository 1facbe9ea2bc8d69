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

#[derive(Debug, thiserror::Error)]
pub enum DetectFilesError {
    #[error("{path}: {message}")]
    Image { path: String, message: String },
    #[error(
        "no [[detector]] with id `{0}` in the configuration (it has: {1}); pick one with --detector"
    )]
    UnknownDetector(String, String),
    #[error("the configuration has no [[detector]] entry")]
    NoDetector,
    #[error("the configuration has {0} detectors ({1}); pick one with --detector")]
    Ambiguous(usize, String),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("model {path}: {source}")]
    ModelFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One image's result, as printed.
#[derive(Debug, Serialize)]
pub struct ImageResult<'a> {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub detector: &'a str,
    pub model: &'a ModelIdentity,
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
    pub images: usize,
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
                    let _ = writeln!(err, "lookout detect: {e}");
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
            let _ = writeln!(out, "{text}");
        }
    }
    Ok(summary)
}
