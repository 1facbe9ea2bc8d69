//! A connection's control stream (the center's `Subscribe`, pings both ways,
//! camera changes as `CameraUpdate`, `Goaway`), its scheduler timers, and
//! the camera diffing behind `CameraUpdate`.

use super::*;
use crate::sync::Locked;

impl Session {
    /// The control stream: subscriptions, pings, camera changes.
    pub(super) async fn control(
        self: Arc<Self>,
        mut send: quinn::SendStream,
        mut recv: MessageReader<ControlMessage>,
        mut told: HashMap<String, CameraInfo>,
        refusals: mpsc::Sender<AlertRefused>,
        mut quit: watch::Receiver<bool>,
    ) -> Result<End, SessionError> {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cameras = tokio::time::interval(CAMERA_POLL);
        cameras.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut nonce: u64 = 0;
        let mut outstanding: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                message = recv.next() => match message? {
                    Some(ControlMessage::Subscribe(s)) => {
                        tracing::info!(upstream = %self.uplink.config.id, mode = ?s.mode, cameras = s.cameras.len(), "center subscription");
                        self.with_scheduler(|sch| sch.subscribe(&s));
                    }
                    Some(ControlMessage::Ping(p)) => {
                        write_message(&mut send, &ControlMessage::Pong(Pong { nonce: p.nonce })).await?;
                    }
                    Some(ControlMessage::Pong(p)) => {
                        if let Some((n, at)) = outstanding
                            && n == p.nonce
                        {
                            let rtt = at.elapsed();
                            self.uplink.rtt_us.store(rtt.as_micros() as u64, Relaxed);
                            self.uplink.metrics.rtt.get_or_create(&self.uplink.labels()).observe(rtt.as_secs_f64());
                            outstanding = None;
                        }
                    }
                    Some(ControlMessage::Goaway(g)) => return Ok(End::Goaway(g.reason)),
                    Some(ControlMessage::AlertRefused(r)) => {
                        if let Err(lost) = refusals.send(r).await {
                            // The alert task has ended, and the session with it;
                            // the entry stays in the outbox, unmarked.
                            tracing::debug!(upstream = %self.uplink.config.id, alert = %lost.0.alert_id, "refusal after the alert stream ended");
                        }
                    }
                    Some(other) => {
                        return Err(SessionError::Violation(format!("{other:?} on the control stream")));
                    }
                    None => return Err(SessionError::Violation("control stream finished".into())),
                },
                _ = ping.tick() => {
                    if let Some((_, at)) = outstanding && at.elapsed() > PONG_TIMEOUT {
                        return Err(SessionError::PingTimeout(PONG_TIMEOUT));
                    }
                    if outstanding.is_none() {
                        nonce += 1;
                        outstanding = Some((nonce, Instant::now()));
                        write_message(&mut send, &ControlMessage::Ping(Ping { nonce })).await?;
                    }
                }
                _ = cameras.tick() => {
                    let now: HashMap<String, CameraInfo> = self.uplink.source.cameras()
                        .into_iter()
                        .map(|c| (c.id.clone(), c))
                        .collect();
                    let changes = camera_changes(&told, &now);
                    if !changes.is_empty() {
                        write_message(&mut send, &ControlMessage::CameraUpdate(CameraUpdate { changes })).await?;
                        told = now;
                    }
                }
                _ = quit.changed() => {
                    let goaway = ControlMessage::Goaway(Goaway {
                        code: ErrorCode::NO_ERROR,
                        reason: "gateway stopping".into(),
                    });
                    // Stopping either way; a center that cannot take it sees the close.
                    if let Err(e) = write_message(&mut send, &goaway).await {
                        tracing::debug!("Goaway not sent: {e}");
                    }
                    return Ok(End::Stopped);
                }
            }
        }
    }

    /// Fires the scheduler's latency-budget resets on time.
    pub(super) async fn timers(self: Arc<Self>, mut quit: watch::Receiver<bool>) {
        loop {
            let next = self
                .scheduler
                .locked()
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {
                    self.with_scheduler(|s| s.handle_timeout(Instant::now()));
                }
                _ = self.timers.notified() => {}
                _ = quit.changed() => return,
            }
        }
    }
}

/// What changed between the camera list the center knows and the current
/// one, in the order to apply.
pub fn camera_changes(
    told: &HashMap<String, CameraInfo>,
    now: &HashMap<String, CameraInfo>,
) -> Vec<CameraChange> {
    let mut changes = Vec::new();
    let mut gone: Vec<&String> = told.keys().filter(|id| !now.contains_key(*id)).collect();
    gone.sort();
    for id in gone {
        changes.push(CameraChange::Removed { id: id.clone() });
    }
    let mut ids: Vec<&String> = now.keys().collect();
    ids.sort();
    for id in ids {
        let Some(info) = now.get(id) else { continue };
        match told.get(id) {
            None => changes.push(CameraChange::Upsert(info.clone())),
            Some(old) if old == info => {}
            Some(old) => {
                let mut same_but_state = old.clone();
                same_but_state.state = info.state;
                if same_but_state == *info {
                    changes.push(CameraChange::State {
                        id: id.clone(),
                        state: info.state,
                    });
                } else {
                    changes.push(CameraChange::Upsert(info.clone()));
                }
            }
        }
    }
    changes
}
