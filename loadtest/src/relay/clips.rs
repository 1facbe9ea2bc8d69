//! The run's clip check: once the cameras have stopped, the gateway
//! finishes the alert clips it is recording (a silent camera ends them
//! within seconds) and sends them; this waits for that, then reads every
//! clip the center serves with FFmpeg's `ffprobe` (packets, no decoding) and,
//! for each alert matched to a scripted incident, the capture stamp of the
//! clip's first frame (its SEI, copied out by `ffmpeg`), which must come
//! before the incident's onset: the clip shows how the smoke began.

use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use lookout_codecs::Codec;
use lookout_codecs::stamp::find_stamp;

use crate::fleet::incidents::Onset;
use crate::prom;
use crate::stack::Http;

/// Longest the check waits for the gateway to finish and deliver its clips.
const WAIT: Duration = Duration::from_secs(60);

/// What the clip check found (`clips` in the report).
#[derive(Debug, Clone, Serialize)]
pub struct ClipsReport {
    /// Alerts in the center's ledger.
    pub alerts: u64,
    /// The gateway's recordings by outcome, from its counters.
    pub recorded_at_gateway: u64,
    pub failed_at_gateway: u64,
    pub skipped_at_gateway: u64,
    /// Alerts whose clip the center serves.
    pub at_center: u64,
    /// Clip transfers the gateway saw cut short (a lost connection) and
    /// resumed on the next one, from `lookout_relay_clips_total`.
    pub interrupted_transfers: u64,
    /// Clips `ffprobe` read as MP4 (`avc1`/`hvc1`) starting with a keyframe;
    /// `null` without `ffprobe`.
    pub playable: Option<u64>,
    /// Clip durations `ffprobe` read, seconds: shortest and longest.
    pub duration_s_min: Option<f64>,
    pub duration_s_max: Option<f64>,
    /// Alerts matched to a scripted incident that have a clip at the center.
    pub incidents_with_clip: u64,
    /// Of those, the clips whose first frame's capture stamp comes before
    /// the incident's onset; `null` without `ffmpeg`.
    pub start_before_onset: Option<u64>,
    /// How long the check waited, once the gateway had delivered its alerts
    /// and video, for the last clip to be at the center, ms.
    pub settled_ms: u64,
    /// What went wrong, clip by clip (at most 20 lines).
    pub problems: Vec<String>,
}

/// Waits for the clips, then checks them. `matched` pairs an incident's
/// onset with the id of the alert that caught it.
pub(super) fn check(
    http: &Http,
    gw_http: &str,
    center_http: &str,
    matched: &[(Onset, String)],
) -> ClipsReport {
    let started = Instant::now();
    let gw_metrics = format!("http://{gw_http}/metrics");
    let ledger_url = format!("http://{center_http}/api/alerts?limit=10000");
    let (mut metrics, mut ledger);
    loop {
        metrics = http.text(&gw_metrics).unwrap_or_default();
        ledger = http.json(&ledger_url).unwrap_or(Value::Null);
        let recording = prom::sum(&metrics, "lookout_clip_recordings");
        let recorded = outcome(&metrics, "recorded");
        let at_center = with_clip(&ledger).len() as f64;
        if (recording == 0.0 && at_center >= recorded) || started.elapsed() > WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled_ms = started.elapsed().as_millis() as u64;
    let clips = with_clip(&ledger);
    let mut report = ClipsReport {
        alerts: ledger["alerts"].as_array().map_or(0, |a| a.len() as u64),
        recorded_at_gateway: outcome(&metrics, "recorded") as u64,
        failed_at_gateway: outcome(&metrics, "failed") as u64,
        skipped_at_gateway: outcome(&metrics, "skipped") as u64,
        at_center: clips.len() as u64,
        interrupted_transfers: prom::labelled(&metrics, "lookout_relay_clips_total")
            .filter(|s| s.has("outcome", "interrupted"))
            .map(|s| s.value)
            .sum::<f64>() as u64,
        playable: None,
        duration_s_min: None,
        duration_s_max: None,
        incidents_with_clip: 0,
        start_before_onset: None,
        settled_ms,
        problems: Vec::new(),
    };
    let mut problem = |p: String| {
        if report.problems.len() < 20 {
            report.problems.push(p);
        }
    };
    // Every clip through ffprobe.
    let mut playable = Some(0u64);
    for (id, url) in &clips {
        match probe(&format!("http://{center_http}{url}")) {
            Ok(Probe {
                keyframe_first,
                duration_s,
            }) => {
                if keyframe_first {
                    playable = playable.map(|n| n + 1);
                } else {
                    problem(format!("clip of {id}: the first packet is not a keyframe"));
                }
                report.duration_s_min = Some(
                    report
                        .duration_s_min
                        .map_or(duration_s, |m| m.min(duration_s)),
                );
                report.duration_s_max = Some(
                    report
                        .duration_s_max
                        .map_or(duration_s, |m| m.max(duration_s)),
                );
            }
            Err(Missing) => {
                playable = None;
                break;
            }
            Err(Failed(why)) => problem(format!("clip of {id}: {why}")),
        }
    }
    report.playable = playable;
    // The first frame of each incident's clip against the onset.
    let mut before = Some(0u64);
    for (onset, id) in matched {
        let Some((_, url)) = clips.iter().find(|(c, _)| c == id) else {
            continue;
        };
        report.incidents_with_clip += 1;
        match first_stamp(&format!("http://{center_http}{url}")) {
            Ok(Some(ns)) if ns < onset.onset_capture_unix_ns => {
                before = before.map(|n| n + 1);
            }
            Ok(Some(ns)) => problem(format!(
                "clip of {id}: starts {:.2} s after the onset of {} on {}",
                (ns - onset.onset_capture_unix_ns) as f64 / 1e9,
                onset.class,
                onset.camera
            )),
            Ok(None) => problem(format!("clip of {id}: no capture stamp in its first frame")),
            Err(Missing) => {
                before = None;
                break;
            }
            Err(Failed(why)) => problem(format!("clip of {id}: {why}")),
        }
    }
    report.start_before_onset = before;
    report
}

fn outcome(metrics: &str, outcome: &str) -> f64 {
    prom::labelled(metrics, "lookout_clips_total")
        .filter(|s| s.has("outcome", outcome))
        .map(|s| s.value)
        .sum()
}

/// `(alert id, clip path)` of every ledger record with a clip.
fn with_clip(ledger: &Value) -> Vec<(String, String)> {
    ledger["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x["id"].as_str()?.to_string(),
                        x["clip"]["url"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why a clip could not be read.
enum Unread {
    /// The tool is not installed: the figure is not measured.
    Missing,
    Failed(String),
}
use Unread::{Failed, Missing};

struct Probe {
    keyframe_first: bool,
    duration_s: f64,
}

fn run(tool: &str, args: &[&str]) -> Result<Vec<u8>, Unread> {
    let out = match Command::new(tool).args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Missing),
        Err(e) => return Err(Failed(format!("{tool}: {e}"))),
    };
    if !out.status.success() {
        return Err(Failed(format!(
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The clip's sample entry, first packet's key flag and duration.
fn probe(url: &str) -> Result<Probe, Unread> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "stream=codec_tag_string:packet=flags:format=duration,format_name",
            "-of",
            "json",
            url,
        ],
    )?;
    let v: Value =
        serde_json::from_slice(&out).map_err(|e| Failed(format!("ffprobe's JSON: {e}")))?;
    let tag = v["streams"][0]["codec_tag_string"].as_str().unwrap_or("");
    if tag != "avc1" && tag != "hvc1" {
        return Err(Failed(format!("sample entry `{tag}`, not avc1 or hvc1")));
    }
    if !v["format"]["format_name"]
        .as_str()
        .is_some_and(|f| f.contains("mp4"))
    {
        return Err(Failed(format!("not MP4: {}", v["format"])));
    }
    Ok(Probe {
        keyframe_first: v["packets"][0]["flags"]
            .as_str()
            .is_some_and(|f| f.starts_with('K')),
        duration_s: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
    })
}

/// The capture stamp (Unix ns) in the clip's first frame: the frame copied
/// out as an Annex-B stream by `ffmpeg`, its SEI read.
fn first_stamp(url: &str) -> Result<Option<u64>, Unread> {
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ],
    )?;
    let (codec, bsf, format) = match String::from_utf8_lossy(&probe).trim() {
        "hevc" => (Codec::H265, "hevc_mp4toannexb", "hevc"),
        _ => (Codec::H264, "h264_mp4toannexb", "h264"),
    };
    let frame = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            url,
            "-map",
            "0:v:0",
            "-c:v",
            "copy",
            "-bsf:v",
            bsf,
            "-frames:v",
            "1",
            "-f",
            format,
            "-",
        ],
    )?;
    Ok(find_stamp(codec, &frame)
        .and_then(Result::ok)
        .map(|s| s.capture_unix_ns))
}
