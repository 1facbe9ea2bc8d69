//! `lookout probe URL`: connects to one camera with the same ingest code the
//! daemon runs, watches it for a few seconds and reports what an operator
//! needs to configure it — codec, picture size, measured frame rate, GOP
//! length, bitrate, the transport that worked and where capture times come
//! from. `main.rs` prints the [`ProbeReport`].

use std::fmt;
use std::time::{Duration, Instant};

use super::{ActiveTransport, Filter, Ingest, IngestSettings, TimestampSource, codec_label};
use crate::config::{CameraConfig, CameraKind, Transport, redact_url};

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The camera's `rtsp://` or `rtsps://` URL as given on the command
    /// line, credentials included (the report shows it redacted).
    pub url: String,
    /// `auto` (UDP, falling back to TCP), `tcp` or `udp`, from
    /// `--transport`.
    pub transport: Transport,
    /// How long to measure once video flows.
    pub duration: Duration,
    /// How long to wait for the first unit (reconnects included).
    pub connect_limit: Duration,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The probed URL, `user:password@` replaced by `***@`.
    pub url: String,
    /// The codec's label (`h264`, `h265`), from the last unit received.
    pub codec: &'static str,
    /// Picture width from the SPS in force at the last unit, pixels; 0 when
    /// no SPS was seen.
    pub width: u32,
    /// Picture height, pixels, like `width`.
    pub height: u32,
    /// Units per second: units after the first over the time between the
    /// first and last unit's arrival; 0 when only one unit came.
    pub fps: f64,
    /// Mean units between keyframes over the whole GOPs seen.
    pub gop: Option<f64>,
    /// Compressed bytes of every unit measured, kbit/s (1000 bit/s) over
    /// `seconds`.
    pub bitrate_kbps: f64,
    /// The RTSP transport of the camera's latest attempt (the one the video
    /// came over, unless it reconnected); `None` when the camera had no
    /// status.
    pub transport: Option<ActiveTransport>,
    /// Where the last unit's capture time came from.
    pub timestamp_source: TimestampSource,
    /// Median capture-to-gateway delay when capture times are the camera's.
    /// `None` when every unit was timed on arrival (no SEI stamp, no RTCP
    /// sender report).
    pub delay_ms_p50: Option<f64>,
    /// Access units received while measuring, the first included.
    pub units: u64,
    /// Of `units`, the keyframes.
    pub keyframes: u64,
    /// The camera's malformed-NAL counter at the end (connecting included);
    /// 0 when the camera had no status.
    pub malformed_nals: u64,
    /// Wall-clock time measured, from the first unit to the end, seconds.
    pub seconds: f64,
}

/// Why a probe produced no report.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Ingest could not start (GStreamer or one of its elements missing).
    #[error(transparent)]
    Ingest(#[from] super::IngestError),
    /// No unit arrived within `connect_limit`: the camera's state and last
    /// error say why.
    #[error("{url}: no video within {waited_s:.1} s (state {state}{})", .last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default())]
    NoVideo {
        url: String,
        waited_s: f64,
        state: &'static str,
        last_error: Option<String>,
    },
}

/// Runs a probe; needs a tokio runtime.
pub async fn probe(opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let settings = IngestSettings {
        stall_timeout: Duration::from_secs(3),
        ..IngestSettings::default()
    };
    let ingest = Ingest::new(settings)?;
    let config = CameraConfig::bare("probe", CameraKind::Fixed, &opts.url, opts.transport);
    ingest.apply(settings, std::slice::from_ref(&config)).await;
    let result = measure(&ingest, opts).await;
    ingest.stop().await;
    result
}

async fn measure(ingest: &Ingest, opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let url = redact_url(&opts.url);
    let no_video = |waited: Duration| {
        let status = ingest.status().into_iter().next();
        ProbeError::NoVideo {
            url: url.clone(),
            waited_s: waited.as_secs_f64(),
            state: status.as_ref().map_or("unknown", |s| s.state.as_str()),
            last_error: status.and_then(|s| s.last_error),
        }
    };
    let Some(mut sub) = ingest.subscribe("probe", Filter::All) else {
        return Err(no_video(Duration::ZERO));
    };
    let started = Instant::now();
    let first = match tokio::time::timeout(opts.connect_limit, sub.recv()).await {
        Ok(Some(u)) => u,
        _ => return Err(no_video(started.elapsed())),
    };

    let measure_start = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.duration;
    let mut units = 1u64;
    let mut bytes = first.data.len() as u64;
    let mut keyframes = u64::from(first.keyframe);
    let mut gops: Vec<u64> = Vec::new();
    let mut since_key: Option<u64> = first.keyframe.then_some(0);
    let mut delays: Vec<f64> = Vec::new();
    let mut last = first.clone();
    while let Ok(Some(u)) = tokio::time::timeout_at(deadline, sub.recv()).await {
        units += 1;
        bytes += u.data.len() as u64;
        if u.keyframe {
            keyframes += 1;
            if let Some(n) = since_key {
                gops.push(n + 1);
            }
            since_key = Some(0);
        } else if let Some(n) = since_key.as_mut() {
            *n += 1;
        }
        if let Some(d) = u.ingest_delay() {
            delays.push(d.as_secs_f64() * 1000.0);
        }
        last = u;
    }
    let span_s = (last.received_unix_ns.saturating_sub(first.received_unix_ns)) as f64 / 1e9;
    let seconds = measure_start.elapsed().as_secs_f64();
    let fps = if span_s > 0.0 {
        (units - 1) as f64 / span_s
    } else {
        0.0
    };
    let gop = (!gops.is_empty()).then(|| gops.iter().sum::<u64>() as f64 / gops.len() as f64);
    delays.sort_by(f64::total_cmp);
    let status = ingest.status().into_iter().next();
    Ok(ProbeReport {
        url,
        codec: codec_label(last.codec()),
        width: last.params.width,
        height: last.params.height,
        fps,
        gop,
        bitrate_kbps: bytes as f64 * 8.0 / 1000.0 / seconds.max(1e-3),
        transport: status.as_ref().and_then(|s| s.transport),
        timestamp_source: last.capture_source,
        delay_ms_p50: delays.get(delays.len() / 2).copied(),
        units,
        keyframes,
        malformed_nals: status.map_or(0, |s| s.malformed_nals),
        seconds,
    })
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "url:              {}", self.url)?;
        writeln!(f, "codec:            {}", self.codec)?;
        writeln!(f, "size:             {}x{}", self.width, self.height)?;
        writeln!(f, "fps:              {:.2}", self.fps)?;
        match self.gop {
            Some(g) => writeln!(f, "gop:              {g:.1} frames")?,
            None => writeln!(
                f,
                "gop:              unknown (fewer than two keyframes seen)"
            )?,
        }
        writeln!(f, "bitrate:          {:.0} kbit/s", self.bitrate_kbps)?;
        writeln!(
            f,
            "transport:        {}",
            self.transport.map_or("unknown", |t| t.as_str())
        )?;
        writeln!(f, "timestamp source: {}", self.timestamp_source.as_str())?;
        if let Some(d) = self.delay_ms_p50 {
            writeln!(f, "capture delay:    {d:.1} ms (median)")?;
        }
        write!(
            f,
            "measured:         {} units, {} keyframes, {} malformed NAL units in {:.1} s",
            self.units, self.keyframes, self.malformed_nals, self.seconds
        )
    }
}
