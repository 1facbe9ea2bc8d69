//! The gateway's configuration: one TOML file with `[gateway]`, `[[camera]]`,
//! `[[detector]]` and `[[upstream]]` components.
//!
//! Loading is two passes, as in Vector's `validate`: serde checks types and
//! unknown keys, then [`Config::validate`] checks what serde cannot (duplicate
//! ids, references between components, files that must exist). Every mistake
//! is a [`Problem`] carrying the file, line, column and key path, so an
//! operator can fix a 200-camera file without guessing. Credentials are kept
//! out of every message: see [`redact_url`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

// The pieces the center shares (problems and their locations, upstreams,
// camera kinds, ids, URLs, tokens) are `lookout_core::config`'s.
pub use lookout_core::config::*;

mod clip;
mod dial_in;
mod sampling;
pub use clip::*;
pub use dial_in::*;
pub use sampling::*;

/// RTSP transport for a camera. `auto` tries UDP and falls back to TCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Auto,
    Tcp,
    Udp,
}

/// The codec a camera is expected to send. Ingest takes H.264 and H.265
/// either way; a camera that sends the other one is ingested and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraCodec {
    H264,
    H265,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Names this gateway to the command center.
    pub id: String,
    /// HTTP API and Prometheus metrics. Loopback by default: the API is not
    /// meant to face a network without a token in front of it.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// A file holding the API token (one line, ≥ 16 characters). Required
    /// when `http_listen` is not loopback; with it every request but
    /// `/healthz` needs `Authorization: Bearer TOKEN`.
    pub api_token_file: Option<PathBuf>,
    /// Host names the API is reached by, besides loopback and IP addresses
    /// (a reverse proxy's public name, the machine's name): requests for
    /// any other `Host` are refused (DNS rebinding, `config/hosts.rs`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Where the alert outbox and caches live (relative to the config file).
    #[serde(default = "default_storage")]
    pub storage: PathBuf,
    /// `text` (default) or `json` log lines.
    #[serde(default)]
    pub log_format: LogFormat,
    /// ONNX Runtime shared library; when absent lookout searches for it.
    pub onnxruntime: Option<PathBuf>,
    /// Frames without which a live camera is declared stalled and reconnected.
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// First wait before reconnecting a camera; doubled per failure.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnects (before jitter, which only shortens
    /// it): a camera that comes back is live again within about this long.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// `[gateway.rtmp]`: the RTMP listener cameras with `push = { protocol = "rtmp" }`
    /// publish to; none when left out.
    pub rtmp: Option<RtmpSection>,
    /// `[gateway.gb28181]`: the SIP side GB/T 28181 devices and lower platforms
    /// register to; none when left out.
    pub gb28181: Option<Gb28181Section>,
    /// `[gateway.clips]`: alert clips' lengths and disk budget.
    #[serde(default)]
    pub clips: ClipsSection,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_storage() -> PathBuf {
    PathBuf::from("lookout-data")
}

fn default_stall_timeout_ms() -> u64 {
    5_000
}

fn default_reconnect_initial_ms() -> u64 {
    250
}

fn default_reconnect_max_ms() -> u64 {
    4_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique in the file: letters, digits, `-`, `_`, `.` (see `valid_id`);
    /// names the camera in the API, metrics, alerts and upstream.
    pub id: String,
    /// `tower`, `drone`, `bodycam` or `fixed`: sets the default relay priority.
    pub kind: CameraKind,
    /// Human name shown on the wall ("Township 7 north tower").
    pub name: Option<String>,
    /// Administrative group, e.g. the township.
    pub group: Option<String>,
    /// `rtsp://` or `rtsps://` address; credentials belong in `username` and
    /// `password`, not here (they would show in logs). Empty (left out) for a camera
    /// that pushes (`push`).
    #[serde(default)]
    pub url: String,
    /// The camera dials in instead of being pulled: `{ protocol = "rtmp", key = "K" }`
    /// receives what is published to `rtmp://GATEWAY/live/K` on `[gateway.rtmp]
    /// listen`. Leave `url` out.
    pub push: Option<PushConfig>,
    /// The camera is a channel of a GB/T 28181 device or lower platform:
    /// `{ device = "D", channel = "C" }` (and `transport = "tcp"` for RTP over TCP);
    /// lookout INVITEs it once the device is registered. Leave `url` out.
    pub gb28181: Option<GbCameraConfig>,
    /// RTSP user name, if the camera asks for one.
    pub username: Option<String>,
    /// RTSP password; never logged or shown by the API.
    pub password: Option<String>,
    /// `auto` (default: UDP, falling back to TCP), `tcp` or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// Answer the camera's RTSP `Basic` challenge, which sends the password
    /// base64-encoded in clear text. Off by default: only digest is answered,
    /// so a camera (or anything posing as one) cannot ask for the password.
    #[serde(default)]
    pub basic_auth: bool,
    /// What the camera should send; unset accepts either without comment.
    pub codec: Option<CameraCodec>,
    /// Where the camera stands (`{ lat, lon }`, WGS 84), shown on the wall.
    pub location: Option<Location>,
    /// Relay priority class; defaults to the camera's kind.
    pub priority: Option<CameraKind>,
    /// Ids of `[[detector]]` entries that watch this camera.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Which frames its detectors see: `keyframes` (default) or a rate such
    /// as `"2fps"` (at most 120).
    #[serde(default)]
    pub sampling: Sampling,
    /// Oldest a GOP may be and still be sent upstream.
    pub latency_budget_ms: Option<u64>,
    /// Regions of the picture where detections count (`include`) or are
    /// ignored (`exclude`), e.g. a chimney that always smokes.
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneConfig>,
    /// This camera's alert clips (`{ enabled, pre_s, post_s, max_s }`).
    pub clip: Option<CameraClip>,
}

impl CameraConfig {
    /// A camera with only what a connection needs and every other key at its
    /// default, for tools that hold a URL rather than a file (`lookout
    /// probe`, benchmarks, tests).
    pub fn bare(id: &str, kind: CameraKind, url: &str, transport: Transport) -> CameraConfig {
        CameraConfig {
            id: id.to_string(),
            kind,
            name: None,
            group: None,
            url: url.to_string(),
            push: None,
            gb28181: None,
            username: None,
            password: None,
            transport,
            basic_auth: false,
            codec: None,
            location: None,
            priority: None,
            detectors: Vec::new(),
            sampling: Sampling::Keyframes,
            latency_budget_ms: None,
            zones: Vec::new(),
            clip: None,
        }
    }

    /// Its clip settings under `section`, or `None` when it records none.
    pub fn clip_settings(&self, section: &ClipsSection) -> Option<ClipSettings> {
        section.for_camera(self.clip.as_ref(), !self.detectors.is_empty())
    }

    /// The URL with any user-info removed, safe for logs and APIs.
    pub fn url_redacted(&self) -> String {
        redact_url(&self.url)
    }
}

/// How a model's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// One score per label (logits or probabilities).
    Classification,
    /// YOLOv8/YOLO11 `[1, 4+C, N]` boxes.
    Yolo,
    /// A per-pixel class map.
    Segmentation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

/// Where a detector fills the next batch's input tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preprocess {
    /// `overlap` where the machine has a core beyond ONNX Runtime's threads
    /// and one more, `inline` where it has not.
    #[default]
    Auto,
    /// On the inference thread, between runs: all cores stay ONNX Runtime's
    /// while it runs.
    Inline,
    /// On a thread of its own while the previous batch is in ONNX Runtime.
    Overlap,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    /// The model input's width in pixels.
    pub width: u32,
    /// The model input's height in pixels.
    pub height: u32,
    /// `nchw` (default) or `nhwc`.
    #[serde(default)]
    pub layout: Layout,
    /// `rgb` (default) or `bgr`.
    #[serde(default)]
    pub channels: ChannelOrder,
    /// Pixel values are divided by this (255 maps to 0..1).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Subtracted per channel after scaling (default 0).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Divides each channel after the mean (default 1).
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Keep the aspect ratio and pad (YOLO style) instead of stretching.
    #[serde(default)]
    pub letterbox: bool,
}

fn default_scale() -> f32 {
    255.0
}

fn default_std() -> [f32; 3] {
    [1.0, 1.0, 1.0]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Unique in the file; cameras name it in `detectors`.
    pub id: String,
    /// ONNX file (relative to the config file).
    pub model: PathBuf,
    /// How the output is read: `classification`, `yolo` or `segmentation`.
    pub output: OutputKind,
    /// The model's input: size, layout, channel order, normalisation.
    pub input: ModelInput,
    /// The model's classes, in output order.
    pub labels: Vec<String>,
    /// Labels that raise alerts; the others (e.g. "none") never do.
    pub alert_labels: Vec<String>,
    /// Score at which a label counts as seen (classification and
    /// segmentation: at or above it; YOLO: above it, as Ultralytics does).
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Apply softmax to classification outputs (for models that emit logits).
    #[serde(default)]
    pub softmax: bool,
    /// Frames batched together for one inference, at most.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Segmentation: a label's region counts when it covers at least this
    /// share of the frame.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Shown in alerts; defaults to the first 12 hex digits of the model
    /// file's SHA-256.
    pub model_version: Option<String>,
    /// ONNX Runtime intra-op threads for this detector's session.
    pub threads: Option<usize>,
    /// How long the first frame of a batch waits for others, milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Where the next batch's tensor is filled: `auto` (the default), `inline`
    /// or `overlap` (see [`Preprocess`]).
    #[serde(default)]
    pub preprocess: Preprocess,
    /// Frames waiting for this detector, at most; beyond it the oldest are
    /// dropped (and counted) so latency stays bounded. Default: 4 batches.
    pub queue_limit: Option<usize>,
    /// Alert debounce and lifecycle.
    #[serde(default)]
    pub alert: AlertPolicy,
}

fn default_batch_wait_ms() -> u64 {
    5
}

fn default_min_area() -> f32 {
    0.005
}

fn default_threshold() -> f32 {
    0.5
}

fn default_batch() -> usize {
    8
}

/// A whole gateway configuration, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[gateway]`: identity, HTTP API, storage, reconnect pacing.
    pub gateway: GatewaySection,
    /// `[[camera]]` entries.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    /// `[[detector]]` entries.
    #[serde(default, rename = "detector")]
    pub detectors: Vec<DetectorConfig>,
    /// `[[upstream]]` entries: the command centers alerts and video go to.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[export]]` entries: MQTT brokers and webhooks this gateway's alerts go to.
    #[serde(default, rename = "export")]
    pub exports: Vec<lookout_core::export::ExportConfig>,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads, parses and validates a file. Extra checks (models that must
    /// load) are the caller's, through [`Config::problems_at`].
    pub fn load(path: &Path) -> Result<Config, Problems> {
        Config::load_with_source(path).map(|(c, _)| c)
    }

    /// [`Config::load`], also returning the file's text for locating later
    /// findings.
    pub fn load_with_source(path: &Path) -> Result<(Config, String), Problems> {
        let source = read_source(path)?;
        let config = Config::parse(path, &source)?;
        let findings = config.validate();
        if !findings.0.is_empty() {
            return Err(problems_at(path, &source, findings));
        }
        Ok((config, source))
    }

    /// Parses without semantic validation; `path` only names the file.
    pub fn parse(path: &Path, source: &str) -> Result<Config, Problems> {
        let mut config: Config = parse_toml(path, source)?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Resolves a path from the file against the file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Checks what serde cannot: ids, references, ranges, files.
    pub fn validate(&self) -> Findings {
        let mut f = Findings::default();
        self.validate_gateway(&mut f);
        let detector_ids = self.validate_detectors(&mut f);
        self.validate_cameras(&mut f, &detector_ids);
        self.validate_upstreams(&mut f);
        lookout_core::export::config::validate(&self.exports, |p| self.resolve(p), &mut f);
        f
    }

    /// `[gateway]`: ids, ranges, the API's token and host names, the ONNX
    /// Runtime library.
    fn validate_gateway(&self, f: &mut Findings) {
        let root = KeyPath::root();
        let gw = root.key("gateway");
        if !valid_id(&self.gateway.id) {
            f.push(gw.key("id"), id_rule(&self.gateway.id));
        }
        self.gateway.clips.validate(&gw.key("clips"), f);
        if self.gateway.stall_timeout_ms < 500 {
            f.push(
                gw.key("stall_timeout_ms"),
                "must be at least 500 ms, or healthy cameras are reconnected between frames",
            );
        }
        if !(10..=600_000).contains(&self.gateway.reconnect_initial_ms) {
            f.push(
                gw.key("reconnect_initial_ms"),
                "must be between 10 ms and 600000 ms (10 minutes)",
            );
        }
        if !(100..=3_600_000).contains(&self.gateway.reconnect_max_ms) {
            f.push(
                gw.key("reconnect_max_ms"),
                "must be between 100 ms and 3600000 ms (an hour)",
            );
        } else if self.gateway.reconnect_max_ms < self.gateway.reconnect_initial_ms {
            f.push(
                gw.key("reconnect_max_ms"),
                "must be at least reconnect_initial_ms",
            );
        }
        if let Some(problem) = crate::config::token::exposure_problem(
            self.gateway.http_listen,
            self.gateway.api_token_file.is_some(),
        ) {
            f.push(gw.key("http_listen"), problem);
        }
        if let Some(file) = &self.gateway.api_token_file
            && let Err(e) = crate::config::token::read_token(&self.resolve(file))
        {
            f.push(gw.key("api_token_file"), e);
        }
        for (i, name) in self.gateway.allowed_hosts.iter().enumerate() {
            if let Some(problem) = hosts::host_name_problem(name) {
                f.push(gw.key("allowed_hosts").index(i), problem);
            }
        }
        if let Some(gb) = &self.gateway.gb28181 {
            let p = gw.key("gb28181");
            if !lookout_codecs::sip::valid_gb_id(&gb.id) {
                f.push(p.key("id"), "must be 20 digits (GB/T 28181 id)");
            }
            if gb.domain.len() != 10 || !gb.domain.bytes().all(|b| b.is_ascii_digit()) {
                f.push(p.key("domain"), "must be 10 digits (GB/T 28181 domain)");
            }
            if let Err(e) = read_secret(&self.resolve(&gb.password_file)) {
                f.push(p.key("password_file"), e);
            }
            if !(1..=100_000).contains(&gb.max_devices) {
                f.push(p.key("max_devices"), "must be between 1 and 100000");
            }
            if !(10..=3600).contains(&gb.keepalive_timeout_s) {
                f.push(
                    p.key("keepalive_timeout_s"),
                    "must be between 10 and 3600 s",
                );
            }
            check_digest(&gb.digest, &p.key("digest"), f);
            check_adopt(&gb.adopt, &self.detectors, &p.key("adopt"), f);
        }
        if let Some(lib) = &self.gateway.onnxruntime
            && !self.resolve(lib).is_file()
        {
            f.push(
                gw.key("onnxruntime"),
                format!("no such file: {}", self.resolve(lib).display()),
            );
        }
    }

    /// `[[detector]]`: ids (returned, by position, for the cameras' references),
    /// models, inputs, labels and alert policies.
    fn validate_detectors(&self, f: &mut Findings) -> HashMap<&str, usize> {
        let root = KeyPath::root();
        let mut detector_ids: HashMap<&str, usize> = HashMap::new();
        for (i, d) in self.detectors.iter().enumerate() {
            let p = root.key("detector").index(i);
            if !valid_id(&d.id) {
                f.push(p.key("id"), id_rule(&d.id));
            }
            if let Some(first) = detector_ids.insert(d.id.as_str(), i) {
                f.push(
                    p.key("id"),
                    format!(
                        "duplicate detector id `{}` (first used by detector[{first}])",
                        d.id
                    ),
                );
            }
            let model = self.resolve(&d.model);
            if !model.is_file() {
                f.push(
                    p.key("model"),
                    format!("model file not found: {}", model.display()),
                );
            }
            if d.labels.is_empty() {
                f.push(p.key("labels"), "at least one label is needed");
            }
            let mut seen = HashSet::new();
            for l in &d.labels {
                if !seen.insert(l.as_str()) {
                    f.push(p.key("labels"), format!("label `{l}` appears twice"));
                }
            }
            for l in &d.alert_labels {
                if !d.labels.contains(l) {
                    f.push(
                        p.key("alert_labels"),
                        format!("`{l}` is not one of this detector's labels {:?}", d.labels),
                    );
                }
            }
            if !(0.0..=1.0).contains(&d.threshold) {
                f.push(p.key("threshold"), "must be between 0 and 1");
            }
            if d.max_batch == 0 || d.max_batch > 64 {
                f.push(p.key("max_batch"), "must be between 1 and 64");
            }
            let inp = p.key("input");
            if !(16..=4096).contains(&d.input.width) {
                f.push(inp.key("width"), "must be between 16 and 4096 pixels");
            }
            if !(16..=4096).contains(&d.input.height) {
                f.push(inp.key("height"), "must be between 16 and 4096 pixels");
            }
            if d.input.scale <= 0.0 {
                f.push(inp.key("scale"), "must be above 0");
            }
            if d.input.std.iter().any(|s| *s <= 0.0) {
                f.push(inp.key("std"), "every value must be above 0");
            }
            if d.threads.is_some_and(|t| t == 0 || t > 64) {
                f.push(p.key("threads"), "must be between 1 and 64");
            }
            if d.batch_wait_ms > 1000 {
                f.push(p.key("batch_wait_ms"), "must be at most 1000 ms");
            }
            if d.queue_limit.is_some_and(|q| q == 0 || q > 4096) {
                f.push(p.key("queue_limit"), "must be between 1 and 4096");
            }
            let a = p.key("alert");
            if !(1..=64).contains(&d.alert.window) {
                f.push(a.key("window"), "must be between 1 and 64 samples");
            }
            if d.alert.raise_after == 0 || d.alert.raise_after > d.alert.window {
                f.push(
                    a.key("raise_after"),
                    format!("must be between 1 and window ({})", d.alert.window),
                );
            }
            if !(1..=1000).contains(&d.alert.clear_after) {
                f.push(a.key("clear_after"), "must be between 1 and 1000 samples");
            }
            if !(d.alert.cooldown_s.is_finite() && (0.0..=86_400.0).contains(&d.alert.cooldown_s)) {
                f.push(a.key("cooldown_s"), "must be between 0 and 86400 seconds");
            }
            if !(d.alert.update_interval_s.is_finite()
                && (0.0..=86_400.0).contains(&d.alert.update_interval_s))
            {
                f.push(
                    a.key("update_interval_s"),
                    "must be between 0 and 86400 seconds",
                );
            }
            for l in d.alert.severity.keys() {
                if !d.labels.contains(l) {
                    f.push(
                        a.key("severity"),
                        format!("`{l}` is not one of this detector's labels {:?}", d.labels),
                    );
                }
            }
        }
        detector_ids
    }

    /// `[[camera]]`: ids, URLs, the detectors they name, zones.
    fn validate_cameras(&self, f: &mut Findings, detector_ids: &HashMap<&str, usize>) {
        let root = KeyPath::root();
        let mut camera_ids: HashMap<&str, usize> = HashMap::new();
        let mut push_keys: HashMap<&str, usize> = HashMap::new();
        let mut gb_channels: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let p = root.key("camera").index(i);
            if !valid_id(&c.id) {
                f.push(p.key("id"), id_rule(&c.id));
            }
            if let Some(clip) = &c.clip {
                clip.validate(&p.key("clip"), &self.gateway.clips, f);
            }
            if let Some(first) = camera_ids.insert(c.id.as_str(), i) {
                f.push(
                    p.key("id"),
                    format!(
                        "duplicate camera id `{}` (first used by camera[{first}])",
                        c.id
                    ),
                );
            }
            if let Some(gb) = &c.gb28181 {
                let g = p.key("gb28181");
                if !c.url.is_empty() {
                    f.push(p.key("url"), "a GB/T 28181 camera (`gb28181`) has no url");
                }
                if c.push.is_some() {
                    f.push(
                        g.clone(),
                        "a camera either pushes (`push`) or is a GB/T 28181 channel, not both",
                    );
                }
                if self.gateway.gb28181.is_none() {
                    f.push(
                        g.clone(),
                        "GB/T 28181 cameras need the SIP side: add [gateway.gb28181]",
                    );
                }
                if !lookout_codecs::sip::valid_gb_id(&gb.device) {
                    f.push(g.key("device"), "must be 20 digits (GB/T 28181 id)");
                }
                if !lookout_codecs::sip::valid_gb_id(&gb.channel) {
                    f.push(g.key("channel"), "must be 20 digits (GB/T 28181 id)");
                }
                if let Some(first) =
                    gb_channels.insert((gb.device.as_str(), gb.channel.as_str()), i)
                {
                    f.push(g, format!("camera[{first}] is already this channel"));
                }
            }
            match &c.push {
                None if c.gb28181.is_some() => {}
                None => {
                    if let Err(e) = check_rtsp_url(&c.url) {
                        f.push(p.key("url"), e);
                    }
                }
                Some(push) => {
                    if !c.url.is_empty() {
                        f.push(p.key("url"), "a camera that pushes (`push`) has no url");
                    }
                    if push.protocol == PushProtocol::Rtmp && self.gateway.rtmp.is_none() {
                        f.push(
                            p.key("push"),
                            "RTMP push needs a listener: add [gateway.rtmp] listen = \"0.0.0.0:1935\"",
                        );
                    }
                    if let Some(problem) = push_key_problem(&push.key) {
                        f.push(p.key("push").key("key"), problem);
                    } else if let Some(first) = push_keys.insert(push.key.as_str(), i) {
                        f.push(
                            p.key("push").key("key"),
                            format!("camera[{first}] already pushes with this key"),
                        );
                    }
                }
            }
            if c.password.is_some() && c.username.is_none() {
                f.push(p.key("password"), "a password needs a username");
            }
            if let Some(loc) = c.location {
                if !(-90.0..=90.0).contains(&loc.lat) {
                    f.push(p.key("location").key("lat"), "latitude must be within ±90");
                }
                if !(-180.0..=180.0).contains(&loc.lon) {
                    f.push(
                        p.key("location").key("lon"),
                        "longitude must be within ±180",
                    );
                }
            }
            for d in &c.detectors {
                if !detector_ids.contains_key(d.as_str()) {
                    f.push(p.key("detectors"), format!("no [[detector]] has id `{d}`"));
                }
            }
            if c.latency_budget_ms == Some(0) {
                f.push(p.key("latency_budget_ms"), "must be above 0");
            }
            let camera_labels: HashSet<&str> = self
                .detectors
                .iter()
                .filter(|d| c.detectors.contains(&d.id))
                .flat_map(|d| d.labels.iter().map(String::as_str))
                .collect();
            for (z, zone) in c.zones.iter().enumerate() {
                let zp = p.key("zone").index(z);
                if zone.polygon.len() < 3 {
                    f.push(zp.key("polygon"), "a polygon needs at least 3 points");
                }
                if zone
                    .polygon
                    .iter()
                    .any(|[x, y]| !x.is_finite() || !y.is_finite())
                {
                    f.push(zp.key("polygon"), "every point must be a finite [x, y]");
                }
                for l in &zone.labels {
                    if !camera_labels.contains(l.as_str()) {
                        f.push(
                            zp.key("labels"),
                            format!("`{l}` is not a label of any detector on this camera"),
                        );
                    }
                }
            }
        }
    }

    /// `[[upstream]]`: ids, addresses, certificate files.
    fn validate_upstreams(&self, f: &mut Findings) {
        let root = KeyPath::root();
        let mut upstream_ids = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let p = root.key("upstream").index(i);
            if !upstream_ids.insert(u.id.as_str()) {
                f.push(p.key("id"), format!("duplicate upstream id `{}`", u.id));
            }
            if !u.address.contains(':') {
                f.push(p.key("address"), "expected host:port");
            }
            for (key, file) in [("ca", &u.ca), ("cert", &u.cert), ("key", &u.key)] {
                if !self.resolve(file).is_file() {
                    f.push(
                        p.key(key),
                        format!("no such file: {}", self.resolve(file).display()),
                    );
                }
            }
        }
    }
}

fn check_rtsp_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("rtsp://") || url.starts_with("rtsps://")) {
        return Err(format!("`{}` is not an rtsp:// URL", redact_url(url)));
    }
    let host = url_parts(url).map_or("", |p| {
        let rest = &url[p.host_start..];
        &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())]
    });
    if host.is_empty() {
        return Err(format!("`{}` has no host", redact_url(url)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
