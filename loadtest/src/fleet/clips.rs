//! Clips, encoded once: the scene renderer's frames are encoded with
//! GStreamer (x264enc / x265enc) once per scenario and cached on disk, keyed
//! by everything that changes their bytes. Serving a camera then costs one
//! timer tick and one SEI insertion per frame, never an encoder.
//!
//! Cache file: a line `lookout-clip 1 <json header>\n`, then per access unit a
//! 4-byte big-endian length, a flags byte (bit 0: keyframe) and the Annex-B
//! bytes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lookout_codecs::Codec;
use lookout_scene::{EventClass, EventSpec, Scene, SceneSpec};
use serde::{Deserialize, Serialize};

use super::profile::Profile;

/// Bump when the renderer or the encoder settings change what a clip holds.
const CLIP_FORMAT: u32 = 3;

/// One encoded frame.
#[derive(Clone)]
pub struct ClipUnit {
    /// The access unit's Annex-B bytes (start codes included), without the SEI stamp.
    pub data: Bytes,
    /// Whether it is a keyframe: a client can start decoding at it.
    pub keyframe: bool,
}

/// A run of access units starting with a keyframe.
pub struct Clip {
    /// The encoded frames, in decode order, the first a keyframe.
    pub units: Vec<ClipUnit>,
    /// Where looping restarts once the end is reached (a keyframe): 0 for a
    /// clean loop; the start of the sustained part for an incident.
    pub loop_from: usize,
}

/// What to render and how to encode it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipKey {
    /// The renderer's scene (`tower`, `drone`, …), from the camera's kind.
    pub scene: String,
    /// The scene's lighting (`day`, `dusk`, `haze`).
    pub lighting: String,
    /// The renderer's seed for the scene.
    pub seed: u64,
    /// The incident's class (`smoke`, `flood`) from the first frame; `None` for the clean loop.
    pub event: Option<String>,
    /// `h264` or `h265`.
    pub codec: String,
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Keyframe interval, frames.
    pub gop: u32,
    /// The encoder's target bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Factors the bitrate cycles through, one per GOP (`[1.0]`: steady).
    pub bitrate_swing: Vec<f32>,
    /// B-frames and High profile (H.264).
    pub bframes: bool,
    /// Frames in the clip: whole GOPs covering its seconds.
    pub frames: u32,
    /// `CLIP_FORMAT` when made: a renderer or encoder change makes old clips miss.
    pub format: u32,
}

impl ClipKey {
    /// The clean loop (no event) or an incident clip (event starting at the
    /// clip's first frame) for a profile.
    pub fn new(profile: &Profile, seed: u64, event: Option<EventClass>, seconds: u32) -> ClipKey {
        // Whole GOPs, so loops restart on a keyframe.
        let gops = (seconds * profile.fps).div_ceil(profile.gop).max(1);
        ClipKey {
            scene: profile.kind.scene().name().to_string(),
            lighting: profile.lighting.name().to_string(),
            seed,
            event: event.map(|e| e.name().to_string()),
            codec: profile.codec.name().to_string(),
            width: profile.width,
            height: profile.height,
            fps: profile.fps,
            gop: profile.gop,
            bitrate_kbps: profile.bitrate_kbps,
            bitrate_swing: profile.bitrate_swing.to_vec(),
            bframes: profile.bframes,
            frames: gops * profile.gop,
            format: CLIP_FORMAT,
        }
    }

    fn file_name(&self) -> String {
        // A stable, readable name plus a hash of the whole key.
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!(
            "{}-{}-{}-{}x{}-{}fps-{}-{h:016x}.clip",
            self.scene,
            self.lighting,
            self.event.as_deref().unwrap_or("clean"),
            self.width,
            self.height,
            self.fps,
            self.codec
        )
    }
}

/// How long an incident has been developing when it becomes visible on the
/// camera: a plume that rose behind a ridge for 40 s, water that has been
/// spreading for 20 s. The benchmark measures detection, not how fast a fire
/// grows, and the first frame of the incident (its onset in the ground
/// truth) already shows it.
pub fn incident_lead_s(class: EventClass) -> f64 {
    match class {
        EventClass::Smoke => 40.0,
        EventClass::Flood => 20.0,
    }
}

/// Returns the clip from the cache, rendering and encoding it first if needed.
pub fn load_or_make(
    cache: &Path,
    key: &ClipKey,
    profile: &Profile,
    event: Option<EventClass>,
    loop_from_s: f64,
) -> anyhow::Result<Clip> {
    let path = cache.join(key.file_name());
    let units = match read_cache(&path, key) {
        Ok(units) => units,
        Err(_) => {
            let units = encode(key, profile, event)
                .with_context(|| format!("encoding clip {}", key.file_name()))?;
            write_cache(&path, key, &units)
                .with_context(|| format!("writing clip cache {}", path.display()))?;
            units
        }
    };
    if units.first().is_none_or(|u| !u.keyframe) {
        bail!("clip {} does not start with a keyframe", path.display());
    }
    let wanted = (loop_from_s * f64::from(profile.fps)) as usize;
    let loop_from = units
        .iter()
        .enumerate()
        .skip(wanted.min(units.len().saturating_sub(1)))
        .find(|(_, u)| u.keyframe)
        .map_or(0, |(i, _)| i);
    Ok(Clip { units, loop_from })
}

fn read_cache(path: &Path, key: &ClipKey) -> anyhow::Result<Vec<ClipUnit>> {
    let bytes = fs::read(path)?;
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .context("no header line")?;
    let header = std::str::from_utf8(&bytes[..nl])?;
    let json = header
        .strip_prefix("lookout-clip 1 ")
        .context("not a lookout clip")?;
    let stored: ClipKey = serde_json::from_str(json)?;
    if &stored != key {
        bail!("cache key differs");
    }
    let body = Bytes::from(bytes).slice(nl + 1..);
    let mut units = Vec::with_capacity(key.frames as usize);
    let mut at = 0;
    while at < body.len() {
        let head = body.get(at..at + 5).context("truncated unit header")?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let keyframe = head[4] & 1 == 1;
        let end = at + 5 + len;
        if end > body.len() {
            bail!("truncated unit");
        }
        units.push(ClipUnit {
            data: body.slice(at + 5..end),
            keyframe,
        });
        at = end;
    }
    if units.len() != key.frames as usize {
        bail!("expected {} units, found {}", key.frames, units.len());
    }
    Ok(units)
}

fn write_cache(path: &Path, key: &ClipKey, units: &[ClipUnit]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.part{}", path.display(), std::process::id()));
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&tmp)?);
        writeln!(f, "lookout-clip 1 {}", serde_json::to_string(key)?)?;
        for u in units {
            f.write_all(&(u.data.len() as u32).to_be_bytes())?;
            f.write_all(&[u8::from(u.keyframe)])?;
            f.write_all(&u.data)?;
        }
        f.flush()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
}

// One slice per frame (`sliced-threads=false`): with several slices,
// `rtph264pay config-interval=-1` repeats SPS/PPS before every IDR slice and
// a client's h264parse splits one keyframe into two access units.
fn encoder_description(key: &ClipKey, profile: &Profile) -> String {
    let kbps = key.bitrate_kbps;
    match (profile.codec, key.bframes) {
        (Codec::H264, false) => format!(
            "x264enc name=enc tune=zerolatency sliced-threads=false speed-preset=veryfast key-int-max={g} bframes=0 \
             bitrate={kbps} byte-stream=true ! video/x-h264,stream-format=byte-stream,alignment=au,profile=main",
            g = key.gop
        ),
        (Codec::H264, true) => format!(
            "x264enc name=enc speed-preset=veryfast key-int-max={g} bframes=2 b-adapt=false \
             bitrate={kbps} byte-stream=true ! video/x-h264,stream-format=byte-stream,alignment=au,profile=high",
            g = key.gop
        ),
        (Codec::H265, _) => format!(
            "x265enc name=enc tune=zerolatency speed-preset=veryfast key-int-max={g} bitrate={kbps} \
             ! video/x-h265,stream-format=byte-stream,alignment=au",
            g = key.gop
        ),
    }
}

/// Renders `key.frames` frames and encodes them.
fn encode(
    key: &ClipKey,
    profile: &Profile,
    event: Option<EventClass>,
) -> anyhow::Result<Vec<ClipUnit>> {
    gst::init()?;
    let (w, h) = (key.width, key.height);
    let desc = format!(
        "appsrc name=src is-live=false format=time \
         caps=video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
         ! {enc} ! appsink name=sink sync=false",
        fps = key.fps,
        enc = encoder_description(key, profile)
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .context("appsrc")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("appsink")?;
    let encoder = pipeline.by_name("enc").context("encoder")?;
    pipeline.set_state(gst::State::Playing)?;

    let spec = SceneSpec::new(profile.kind.scene(), profile.lighting, key.seed, w, h);
    // An incident enters the picture already developed (see
    // `incident_lead_s`): the event started that long before the clip's
    // first frame.
    let events = event
        .map(|class| vec![EventSpec::new(class, -incident_lead_s(class))])
        .unwrap_or_default();
    let mut scene = Scene::new(spec, events)?;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let frame_ns = 1_000_000_000u64 / u64::from(key.fps);
    let mut units = Vec::with_capacity(key.frames as usize);
    let swing = &profile.bitrate_swing;
    for i in 0..key.frames {
        if swing.len() > 1 && i % key.gop == 0 {
            let factor = swing[(i / key.gop) as usize % swing.len()];
            let kbps = ((key.bitrate_kbps as f32) * factor).max(64.0) as u32;
            encoder.set_property_from_str("bitrate", &kbps.to_string());
        }
        let t = f64::from(i) / f64::from(key.fps);
        scene.render_rgb(t, &mut rgb)?;
        let mut i420 = vec![0u8; lookout_scene::i420_len(w, h)];
        lookout_scene::rgb_to_i420(&rgb, w, h, &mut i420)?;
        let mut buffer = gst::Buffer::from_mut_slice(i420);
        {
            let b = buffer.get_mut().context("fresh buffer")?;
            b.set_pts(gst::ClockTime::from_nseconds(u64::from(i) * frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
        }
        src.push_buffer(buffer)
            .map_err(|e| anyhow::anyhow!("encoder refused frame {i}: {e:?}"))?;
        drain(&sink, &mut units, gst::ClockTime::ZERO)?;
    }
    src.end_of_stream()
        .map_err(|e| anyhow::anyhow!("end of stream: {e:?}"))?;
    while units.len() < key.frames as usize {
        if !drain(&sink, &mut units, gst::ClockTime::from_seconds(30))? {
            break;
        }
    }
    let bus_error = pipeline.bus().and_then(|bus| {
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
    });
    pipeline.set_state(gst::State::Null)?;
    if let Some(e) = bus_error {
        bail!("encoder pipeline: {e}");
    }
    if units.len() != key.frames as usize {
        bail!(
            "encoder gave {} units for {} frames",
            units.len(),
            key.frames
        );
    }
    Ok(units)
}

/// Pulls what the encoder has ready. Returns false at end of stream.
fn drain(
    sink: &gst_app::AppSink,
    out: &mut Vec<ClipUnit>,
    wait: gst::ClockTime,
) -> anyhow::Result<bool> {
    let mut timeout = wait;
    loop {
        let Some(sample) = sink.try_pull_sample(timeout) else {
            return Ok(!sink.is_eos());
        };
        timeout = gst::ClockTime::ZERO;
        let buffer = sample.buffer().context("sample without buffer")?;
        let map = buffer.map_readable()?;
        out.push(ClipUnit {
            data: Bytes::copy_from_slice(map.as_slice()),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        });
        if wait > gst::ClockTime::ZERO {
            return Ok(true);
        }
    }
}
