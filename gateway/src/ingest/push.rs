//! The task of a camera that dials in (RTMP push, or a GB/T 28181 channel whose video
//! `gb28181/` asks for): nothing to dial here, so it only watches. The camera is
//! `waiting` until a publisher dials in (`rtmp.rs`, `gb28181/play.rs` feed its units), `live` while units
//! arrive, and `waiting` again once they stop for the stall timeout (the publisher went
//! away or went silent; its connection is closed by the listener's own idle limit). Rates
//! are measured as for pulled cameras.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::sync::watch;

use super::IngestSettings;
use super::camera::{Camera, RATE_WINDOW, TICK};
use super::health::{CameraState, RateMeter};

/// The task of a camera with `push = { … }` or `gb28181 = { … }`; returns when `stop`
/// fires.
pub(crate) async fn run(
    camera: Arc<Camera>,
    settings: watch::Receiver<IngestSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let health = &camera.health;
    health.set_state(CameraState::Waiting);
    let mut meter = RateMeter::new(RATE_WINDOW);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_units = health.units.load(Relaxed);
    let mut last_progress = Instant::now();
    let mut live = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let stall = settings.borrow().stall_timeout;
        let now = Instant::now();
        let units = health.units.load(Relaxed);
        if units != last_units {
            last_units = units;
            last_progress = now;
            if !live {
                live = true;
                health.set_state(CameraState::Live);
                health.set_last_error(None);
                tracing::info!(camera = %camera.id, "live (pushed)");
            }
        }
        if let Some((fps, kbps)) = meter.sample(now, units, health.bytes.load(Relaxed))
            && live
        {
            health.set_rates(fps, kbps);
        }
        if live && now.duration_since(last_progress) >= stall {
            live = false;
            health.stalls.fetch_add(1, Relaxed);
            health.set_rates(0.0, 0.0);
            health.set_state(CameraState::Waiting);
            let msg = format!(
                "no video for {} ms; waiting for the camera to send again",
                stall.as_millis()
            );
            tracing::warn!(camera = %camera.id, stage = "push", "{msg}");
            health.set_last_error(Some(msg));
        }
    }
}
