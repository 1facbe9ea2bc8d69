//! From an access unit's bytes to the camera's [`AccessUnit`], whatever carried it (RTSP
//! today, pushed streams alike): parameter sets and keyframes from `lookout-codecs`,
//! the picture size, the capture time (lookout's SEI stamp, else the transport's clock,
//! else arrival), the camera's numbering and health counters, then the fan-out. Runs on
//! the thread that received the unit: no blocking, no waiting for consumers.

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use lookout_codecs::{find_stamp, inspect};

use super::camera::Camera;
use lookout_core::unit::{AccessUnit, Codec, CodecParams, TimestampSource};

/// One connection's unit builder: a new one per session (connection or push).
pub(crate) struct UnitBuilder {
    camera: Arc<Camera>,
    session: u32,
    state: Mutex<State>,
}

/// Mutated once per unit, only from the receiving thread (the mutex is uncontended;
/// it is there because GStreamer's callbacks must be `Sync`).
struct State {
    codec: Option<Codec>,
    params: Option<Arc<CodecParams>>,
    units_since_keyframe: u32,
    /// A damaged lookout stamp is logged once per connection, not per frame.
    stamp_error_logged: bool,
}

impl UnitBuilder {
    /// Units of `camera`'s connection number `session`.
    pub(crate) fn new(camera: Arc<Camera>, session: u32) -> UnitBuilder {
        UnitBuilder {
            camera,
            session,
            state: Mutex::new(State {
                codec: None,
                params: None,
                units_since_keyframe: 0,
                stamp_error_logged: false,
            }),
        }
    }

    /// The stream's codec is known (from caps, or a configuration record); units
    /// before it are dropped.
    pub(crate) fn set_codec(&self, codec: Codec) {
        let mut st = self.state.locked();
        if st.codec != Some(codec) {
            st.codec = Some(codec);
            st.params = Some(Arc::new(CodecParams::unknown(codec)));
        }
    }

    /// One Annex-B access unit received at `received_unix_ns`. `pts`: its presentation
    /// time on the stream's clock; `clock`: the capture time the transport gives
    /// (RTCP sender reports, a pushed stream's timestamps), used when the unit carries
    /// no lookout stamp.
    pub(crate) fn push(
        &self,
        data: Bytes,
        pts: Option<Duration>,
        clock: Option<(u64, TimestampSource)>,
        received_unix_ns: u64,
    ) {
        let health = &self.camera.health;
        let mut st = self.state.locked();
        let Some(codec) = st.codec else {
            return;
        };
        let info = match inspect(codec, &data) {
            Ok(info) => info,
            Err(e) => {
                health.malformed_nals.fetch_add(1, Relaxed);
                tracing::debug!(camera = %self.camera.id, stage = "parse", "skipped: {e}");
                return;
            }
        };
        if info.malformed_nals > 0 {
            health
                .malformed_nals
                .fetch_add(u64::from(info.malformed_nals), Relaxed);
            if let Some(e) = &info.first_error {
                tracing::debug!(camera = %self.camera.id, stage = "parse", malformed = info.malformed_nals, "damaged NAL units skipped: {e}");
            }
        }

        let params = match st.params.take() {
            Some(current) => updated_params(&self.camera.id, current, &info, codec),
            None => Arc::new(CodecParams::unknown(codec)),
        };
        if params.width != 0 {
            health.set_size(params.width, params.height);
        }
        st.params = Some(params.clone());

        let (capture_unix_ns, capture_source) = match find_stamp(codec, &data) {
            Some(Ok(stamp)) => {
                health.record_stamped_frame(stamp.frame);
                (stamp.capture_unix_ns, TimestampSource::Sei)
            }
            other => {
                if let Some(Err(e)) = other
                    && !st.stamp_error_logged
                {
                    st.stamp_error_logged = true;
                    tracing::warn!(camera = %self.camera.id, stage = "sei", "damaged capture stamp ignored: {e}");
                }
                clock.unwrap_or((received_unix_ns, TimestampSource::Arrival))
            }
        };

        let units_since_keyframe = st.units_since_keyframe;
        st.units_since_keyframe = if info.keyframe {
            1
        } else {
            units_since_keyframe.saturating_add(1)
        };
        drop(st);

        let seq = self.camera.next_seq();
        health.record_unit(
            received_unix_ns,
            data.len(),
            info.keyframe,
            units_since_keyframe,
            capture_source,
        );
        self.camera.fanout.send(AccessUnit {
            camera: self.camera.id.clone(),
            seq,
            session: self.session,
            keyframe: info.keyframe,
            params,
            data,
            pts,
            received_unix_ns,
            capture_unix_ns,
            capture_source,
        });
    }
}

/// Keeps the current parameters unless the unit carries different ones;
/// copies new parameter sets out of the unit (they are small) so the
/// parameters do not pin a whole keyframe's buffer in memory.
fn updated_params(
    camera: &str,
    current: Arc<CodecParams>,
    info: &lookout_codecs::AccessUnitInfo,
    codec: Codec,
) -> Arc<CodecParams> {
    let differs = |have: &Option<Bytes>, got: &Option<Bytes>| match got {
        Some(g) => have.as_deref() != Some(&g[..]),
        None => false,
    };
    if current.codec == codec
        && !differs(&current.sps, &info.sps)
        && !differs(&current.pps, &info.pps)
        && !differs(&current.vps, &info.vps)
    {
        return current;
    }
    let copy = |got: &Option<Bytes>, have: &Option<Bytes>| match got {
        Some(g) => Some(Bytes::copy_from_slice(g)),
        None => have.clone(),
    };
    let (width, height) = match (&info.sps, info.sequence) {
        (Some(_), Some(seq)) => (seq.width, seq.height),
        _ => (current.width, current.height),
    };
    if current.width != 0 && (width, height) != (current.width, current.height) {
        tracing::info!(
            camera,
            "picture size changed from {}x{} to {width}x{height}",
            current.width,
            current.height
        );
    }
    Arc::new(CodecParams {
        codec,
        vps: copy(&info.vps, &current.vps),
        sps: copy(&info.sps, &current.sps),
        pps: copy(&info.pps, &current.pps),
        width,
        height,
    })
}
