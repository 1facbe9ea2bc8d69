//! GOP streams of a welcomed gateway (PROTOCOL.md §10): each one a header,
//! frames and its end. Frames go to live viewers as they arrive (unless the
//! GOP came after a newer one), a whole GOP becomes its camera's latest, and
//! a reset, broken or over-budget GOP is dropped whole and counted while the
//! connection carries on.

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use lookout_codecs::relay::{ErrorCode, Frame, GopHeader, VideoMessage};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::violated;
use crate::latency::{CameraDelays, delays_us};
use crate::{
    Center, CenterCamera, CompleteGop, GatewayLink, HeldBytes, LiveFrame, unix_ms, unix_ns,
};
use lookout_core::relay::stream::{MessageReader, StreamError};

/// One GOP stream: header, frames, end. Frames go to live viewers as they
/// arrive; a whole GOP becomes the camera's latest. A reset or broken GOP
/// is dropped whole and the connection carries on.
pub(super) async fn read_gop(
    center: Arc<Center>,
    link: Arc<GatewayLink>,
    mut reader: MessageReader<VideoMessage>,
) {
    let header = match reader.next().await {
        Ok(Some(VideoMessage::GopHeader(h))) => h,
        Ok(_) => return,
        Err(e) => {
            gop_failed(&center, &link, None, &e, &mut reader);
            return;
        }
    };
    let Some(camera) = link.cameras.get(&header.camera_id).map(|c| c.clone()) else {
        tracing::warn!(gateway = %link.id, camera = %header.camera_id, stream = "video", "protocol violation, GOP stream stopped: GOP for a camera not in the gateway's list");
        reader.stop(ErrorCode::PROTOCOL_VIOLATION);
        violated(&center, &link.id, "video");
        // The camera id is the peer's: not a label.
        count_gop(&center, &link.id, "(unknown)", "invalid");
        return;
    };
    // A GOP whose header comes after a newer one's (its stream was opened
    // or scheduled later, PROTOCOL.md §4.6) is still received whole — it is
    // video the gateway paid to send — but live viewers, who play forward
    // only, skip it.
    let playing = camera.playing.fetch_max(header.gop_seq, Relaxed);
    let late = playing > header.gop_seq;
    if late {
        tracing::debug!(gateway = %link.id, camera = %header.camera_id, gop = header.gop_seq, playing, "GOP arrived after a newer one; not played live");
        count_gop(&center, &link.id, &header.camera_id, "late");
    }
    let meters = FrameMeters::new(&center, &link.id, &header.camera_id);
    let header = Arc::new(header);
    let mut frames = Vec::new();
    loop {
        match reader.next().await {
            Ok(Some(VideoMessage::Frame(f))) => {
                meters.frame(&center, &camera, &f, unix_ns());
                if !late {
                    // No receiver: nobody watches this camera live now.
                    camera
                        .live
                        .send(LiveFrame {
                            gop_seq: header.gop_seq,
                            header: header.clone(),
                            frame: f.clone(),
                        })
                        .ok();
                }
                frames.push(f);
            }
            Ok(Some(VideoMessage::GopHeader(_))) => {
                // The decoder refuses a second header; not reached.
                return;
            }
            Ok(None) => break,
            Err(e) => {
                gop_failed(&center, &link, Some(&camera), &e, &mut reader);
                return;
            }
        }
    }
    camera.gops_complete.fetch_add(1, Relaxed);
    count_gop(&center, &link.id, &header.camera_id, "complete");
    keep_if_newest(&center.metrics.latest_gop_bytes, &camera, &header, frames);
}

/// Makes a complete GOP its camera's latest, unless a newer one is already.
/// Its bytes count in `held` (`lookout_center_latest_gop_bytes`) while it is
/// kept.
fn keep_if_newest(held: &Gauge, camera: &CenterCamera, header: &GopHeader, frames: Vec<Frame>) {
    let mut latest = camera.latest_gop.locked();
    let newer = latest
        .as_ref()
        .is_none_or(|g| g.header.gop_seq < header.gop_seq);
    if newer {
        let bytes = frames.iter().map(|f| f.data.len()).sum();
        *latest = Some(Arc::new(CompleteGop {
            header: header.clone(),
            frames,
            received_unix_ms: unix_ms(),
            held: HeldBytes::new(held, bytes),
        }));
    }
}

/// The metrics every frame of one camera's GOP adds to, looked up once per
/// GOP: frames and bytes, and the frame's delay since capture and since the
/// gateway received it.
struct FrameMeters {
    frames: Counter,
    bytes: Counter,
    delays: CameraDelays,
}

impl FrameMeters {
    fn new(center: &Center, gateway: &str, camera: &str) -> FrameMeters {
        let labels = vec![
            ("gateway".to_string(), gateway.to_string()),
            ("camera".to_string(), camera.to_string()),
        ];
        let frames = center.metrics.frames.get_or_create(&labels).clone();
        let bytes = center.metrics.bytes.get_or_create(&labels).clone();
        let delays = CameraDelays::new(&center.metrics.frame_delay, &labels);
        FrameMeters {
            frames,
            bytes,
            delays,
        }
    }

    /// Counts one frame received at `now` (Unix ns), in the metrics and in
    /// the camera's live state.
    fn frame(&self, center: &Center, camera: &CenterCamera, f: &Frame, now: u64) {
        let (capture_us, gateway_us) = delays_us(f, now);
        self.delays.record(&center.latency, capture_us, gateway_us);
        self.frames.inc();
        self.bytes.inc_by(f.data.len() as u64);
        camera.frames.fetch_add(1, Relaxed);
        camera.bytes.fetch_add(f.data.len() as u64, Relaxed);
        camera.last_frame_unix_ns.store(now, Relaxed);
        camera.last_capture_delay_us.store(capture_us, Relaxed);
    }
}

fn count_gop(center: &Center, gateway: &str, camera: &str, outcome: &str) {
    center
        .metrics
        .gops
        .get_or_create(&vec![
            ("gateway".into(), gateway.into()),
            ("camera".into(), camera.into()),
            ("outcome".into(), outcome.into()),
        ])
        .inc();
}

fn gop_failed(
    center: &Center,
    link: &GatewayLink,
    camera: Option<&Arc<CenterCamera>>,
    e: &StreamError,
    reader: &mut MessageReader<VideoMessage>,
) {
    let camera_id = camera
        .map(|c| c.info.locked().id.clone())
        .unwrap_or_else(|| "(unknown)".into());
    if let Some(c) = camera {
        c.gops_dropped.fetch_add(1, Relaxed);
    }
    match e {
        StreamError::Read(quinn::ReadError::Reset(_)) => {
            count_gop(center, &link.id, &camera_id, "reset");
        }
        StreamError::OverBudget(_) => {
            tracing::warn!(gateway = %link.id, camera = %camera_id, "GOP stream stopped: {e}");
            reader.stop(ErrorCode::UNWANTED);
            count_gop(center, &link.id, &camera_id, "shed");
        }
        StreamError::Protocol(p) => {
            tracing::warn!(gateway = %link.id, camera = %camera_id, stream = "video", "protocol violation, GOP stream stopped: {p}");
            reader.stop(ErrorCode::PROTOCOL_VIOLATION);
            violated(center, &link.id, "video");
            count_gop(center, &link.id, &camera_id, "invalid");
        }
        // The connection went away; it is counted there.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_codecs::relay::{CameraInfo, CameraKind, CameraState};

    fn frame(capture_unix_ns: u64, received_unix_ns: u64) -> Frame {
        Frame {
            seq: 0,
            keyframe: true,
            pts_ns: None,
            capture_unix_ns,
            received_unix_ns,
            data: bytes::Bytes::from_static(b"\0\0\0\x01\x65"),
        }
    }

    fn header(gop_seq: u64) -> GopHeader {
        GopHeader {
            camera_id: "cam-1".into(),
            gop_seq,
            codec: lookout_codecs::Codec::H264,
            width: 320,
            height: 240,
            vps: None,
            sps: bytes::Bytes::from_static(b"\x67"),
            pps: bytes::Bytes::from_static(b"\x68"),
        }
    }

    #[test]
    fn delays_are_microseconds_and_never_negative() {
        let now = 10_000_000;
        assert_eq!(delays_us(&frame(7_000_000, 9_500_000), now), (3_000, 500));
        // A capture stamp ahead of the center's clock counts as no delay.
        assert_eq!(delays_us(&frame(now + 1, now + 5_000), now), (0, 0));
        assert_eq!(delays_us(&frame(now - 999, now), now), (0, 0));
    }

    #[test]
    fn only_a_newer_gop_replaces_the_latest() {
        let camera = CenterCamera::new(
            "gw-1",
            CameraInfo {
                id: "cam-1".into(),
                kind: CameraKind::Fixed,
                state: CameraState::Live,
                name: None,
                group: None,
                location: None,
                format: None,
            },
        );
        let latest = |c: &CenterCamera| {
            c.latest_gop
                .lock()
                .expect("lock")
                .as_ref()
                .map(|g| (g.header.gop_seq, g.frames.len()))
        };
        // Each frame holds 5 bytes.
        let held = Gauge::default();
        keep_if_newest(&held, &camera, &header(5), vec![frame(1, 2)]);
        assert_eq!(latest(&camera), Some((5, 1)));
        assert_eq!(held.get(), 5);
        // A late GOP, or the same one again, leaves it.
        keep_if_newest(&held, &camera, &header(4), vec![frame(1, 2); 3]);
        keep_if_newest(&held, &camera, &header(5), vec![frame(1, 2); 2]);
        assert_eq!(latest(&camera), Some((5, 1)));
        assert_eq!(held.get(), 5);
        keep_if_newest(&held, &camera, &header(6), vec![frame(1, 2); 2]);
        assert_eq!(latest(&camera), Some((6, 2)));
        // The gauge holds the kept GOPs' bytes only, and none once the
        // camera is gone.
        assert_eq!(held.get(), 10);
        drop(camera);
        assert_eq!(held.get(), 0);
    }
}
