//! A connection's video: per camera, each GOP on its own unidirectional
//! stream, written by its own task, with the priorities and resets the
//! sans-IO scheduler decides.

use super::*;

/// Frames a GOP's writer may have waiting: about 20 s of a 25 fps camera,
/// far past any latency budget (the scheduler resets a GOP that late), so
/// only a writer that has stopped draining ever meets it.
const GOP_FRAMES_QUEUED: usize = 512;

impl Session {
    /// Keeps one relay task per camera of the source (checked twice a
    /// second, so reloads and new gateways are picked up), and the
    /// scheduler's view of which cameras alert.
    pub(super) async fn video(self: Arc<Self>, mut quit: watch::Receiver<bool>) {
        let source = self.uplink.source.clone();
        let mut alerts = source.alert_changes();
        let mut running: HashMap<
            String,
            (
                CameraPolicy,
                watch::Sender<bool>,
                tokio::task::JoinHandle<()>,
            ),
        > = HashMap::new();
        let mut poll = tokio::time::interval(CAMERA_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    let wanted: HashMap<String, CameraPolicy> = source.policies().into_iter().collect();
                    running.retain(|id, (policy, stop, task)| {
                        let keep = wanted.get(id).is_some_and(|p| p == policy) && !task.is_finished();
                        if !keep {
                            // Seen by the task if it still runs.
                            stop.send_replace(true);
                            if !wanted.contains_key(id) {
                                self.with_scheduler(|s| s.remove_camera(id));
                            }
                        }
                        keep
                    });
                    for (id, policy) in wanted {
                        if running.contains_key(&id) {
                            continue;
                        }
                        let Some(feed) = source.video(&id) else {
                            continue;
                        };
                        let alerting = source.alerting(&id);
                        self.with_scheduler(|s| {
                            s.set_camera(&id, policy);
                            s.set_alert_active(&id, alerting);
                        });
                        let (stop_tx, stop_rx) = watch::channel(false);
                        let task = tokio::spawn(self.clone().relay_camera(Arc::from(id.as_str()), feed, stop_rx));
                        running.insert(id, (policy, stop_tx, task));
                    }
                }
                event = alerts.recv() => match event {
                    Ok(camera) => {
                        let active = source.alerting(&camera);
                        self.with_scheduler(|s| s.set_alert_active(&camera, active));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for id in running.keys() {
                            let active = source.alerting(id);
                            self.with_scheduler(|s| s.set_alert_active(id, active));
                        }
                    }
                    Err(_) => {}
                },
                _ = quit.changed() => break,
            }
        }
        for (_, (_, stop, _)) in running {
            stop.send_replace(true);
        }
    }

    /// One camera: cuts its units into GOPs and hands each GOP to a writer.
    pub(super) async fn relay_camera(
        self: Arc<Self>,
        camera: Arc<str>,
        mut sub: UnitFeed,
        mut stop: watch::Receiver<bool>,
    ) {
        let labels = self.camera_labels(&camera);
        let frames_sent = self.uplink.metrics.frames.get_or_create(&labels).clone();
        let bytes_sent = self.uplink.metrics.bytes.get_or_create(&labels).clone();
        // The GOP being written: its frame channel.
        let mut current: Option<mpsc::Sender<Frame>> = None;
        let mut last: Option<(u32, u64)> = None; // (session, seq)
        loop {
            let unit = tokio::select! {
                u = sub.recv() => u,
                _ = stop.changed() => None,
            };
            let Some(unit) = unit else { break };
            // A reconnect of the camera, or units lost to lag, break the
            // GOP: finish what was written and wait for a keyframe.
            let continuous = last.is_some_and(|(s, q)| s == unit.session && q + 1 == unit.seq);
            last = Some((unit.session, unit.seq));
            if unit.keyframe || !continuous {
                current = None;
            }
            if unit.keyframe {
                let gop_seq = self.uplink.next_gop_seq(&camera);
                let decision =
                    self.with_scheduler(|s| s.gop_started(&camera, gop_seq, Instant::now()));
                self.timers.notify_one();
                match decision {
                    Some(GopStart::Open { priority }) => match gop_header(&unit, gop_seq) {
                        Some(header) => {
                            let (frames_tx, frames_rx) = mpsc::channel(GOP_FRAMES_QUEUED);
                            let (cmd_tx, cmd_rx) = watch::channel(GopCommand::Priority(priority));
                            self.gops.insert((camera.clone(), gop_seq), cmd_tx);
                            tokio::spawn(self.clone().write_gop(
                                camera.clone(),
                                gop_seq,
                                priority,
                                header,
                                frames_rx,
                                cmd_rx,
                            ));
                            current = Some(frames_tx);
                        }
                        None => {
                            // No parameter sets yet: nothing a receiver could decode.
                            self.with_scheduler(|s| {
                                s.gop_closed(
                                    &camera,
                                    gop_seq,
                                    GopOutcome::Stopped(ErrorCode::SUPERSEDED),
                                )
                            });
                            self.gop_outcome(&camera, "skipped");
                        }
                    },
                    Some(GopStart::Skip(_)) | None => self.gop_outcome(&camera, "skipped"),
                }
            }
            if let Some(tx) = &current {
                let bytes = unit.data.len() as u64;
                match tx.try_send(frame(&unit)) {
                    Ok(()) => {
                        frames_sent.inc();
                        bytes_sent.inc_by(bytes);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // The GOP's writer is a whole queue behind (a link far
                        // slower than the camera, the scheduler yet to reset
                        // it): end this GOP here, as a break in the camera's
                        // units would, and resume at the next keyframe.
                        self.gop_outcome(&camera, "truncated");
                        current = None;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => current = None,
                }
            }
        }
    }

    /// One GOP stream: opens it, writes the header and each frame as it
    /// comes, finishes it, and reports to the scheduler whether the center
    /// got it all. Priority changes and resets arrive on `cmds` and take
    /// effect between (or in the middle of) writes.
    pub(super) async fn write_gop(
        self: Arc<Self>,
        camera: Arc<str>,
        gop_seq: u64,
        priority: i32,
        header: GopHeader,
        mut frames: mpsc::Receiver<Frame>,
        mut cmds: watch::Receiver<GopCommand>,
    ) {
        let outcome = async {
            let mut priority = priority;
            let mut send = loop {
                tokio::select! {
                    s = self.conn.open_uni() => break s.ok()?,
                    cmd = next_command(&mut cmds) => match cmd {
                        Some(GopCommand::Priority(p)) => priority = p,
                        Some(GopCommand::Reset(_)) | None => return None,
                    },
                }
            };
            set_priority(&send, priority);
            let mut message = Some(VideoMessage::GopHeader(header));
            loop {
                let m = match message.take() {
                    Some(m) => m,
                    None => match frames.recv().await {
                        Some(f) => VideoMessage::Frame(f),
                        None => break,
                    },
                };
                let mut chunks = m.encode().ok()?.into_chunks();
                match write_preemptible(&mut send, &mut chunks, &mut cmds).await {
                    Written::All => {}
                    Written::Reset => return None,
                    Written::Stopped(code) => return Some(GopOutcome::Stopped(code)),
                    Written::Lost => return None,
                }
            }
            send.finish().ok()?;
            let stopped = send.stopped();
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    r = &mut stopped => return match r {
                        Ok(None) => Some(GopOutcome::Delivered),
                        Ok(Some(code)) => Some(GopOutcome::Stopped(wire_code(code))),
                        Err(_) => None,
                    },
                    cmd = next_command(&mut cmds) => match cmd {
                        Some(GopCommand::Priority(p)) => set_priority(&send, p),
                        Some(GopCommand::Reset(code)) => {
                            reset(&mut send, code);
                            return None;
                        }
                        None => return None,
                    },
                }
            }
        }
        .await;
        self.gops.remove(&(camera.clone(), gop_seq));
        if let Some(outcome) = outcome {
            self.with_scheduler(|s| s.gop_closed(&camera, gop_seq, outcome));
            self.gop_outcome(
                &camera,
                match outcome {
                    GopOutcome::Delivered => "sent",
                    GopOutcome::Stopped(_) => "reset",
                },
            );
        }
    }
}

/// How a preemptible write ended.
enum Written {
    All,
    /// The scheduler reset the stream.
    Reset,
    /// The center sent STOP_SENDING with this code.
    Stopped(ErrorCode),
    /// The connection is gone.
    Lost,
}

/// Writes `chunks` whole, obeying scheduler commands in between: a priority
/// change applies to data not yet buffered, a reset drops everything.
async fn write_preemptible(
    send: &mut quinn::SendStream,
    chunks: &mut [Bytes],
    cmds: &mut watch::Receiver<GopCommand>,
) -> Written {
    let mut at = 0;
    while at < chunks.len() {
        tokio::select! {
            biased;
            cmd = next_command(cmds) => match cmd {
                Some(GopCommand::Priority(p)) => set_priority(send, p),
                Some(GopCommand::Reset(code)) => {
                    reset(send, code);
                    return Written::Reset;
                }
                None => return Written::Reset,
            },
            w = send.write_chunks(&mut chunks[at..]) => match w {
                Ok(w) => at += w.chunks,
                Err(quinn::WriteError::Stopped(code)) => return Written::Stopped(wire_code(code)),
                Err(_) => return Written::Lost,
            },
        }
    }
    Written::All
}

/// The scheduler's next decision for a GOP; `None` once the session has dropped the
/// GOP's sender without a reset (the connection is ending). Cancel-safe.
async fn next_command(cmds: &mut watch::Receiver<GopCommand>) -> Option<GopCommand> {
    match cmds.changed().await {
        Ok(()) => Some(*cmds.borrow_and_update()),
        Err(_) => None,
    }
}

/// Sets a GOP stream's priority; a stream already closed (its GOP ended or the
/// connection went) has nothing left to prioritise.
fn set_priority(send: &quinn::SendStream, priority: i32) {
    if let Err(e) = send.set_priority(priority) {
        tracing::debug!("GOP stream priority not set, the stream is closed: {e}");
    }
}

/// Resets a GOP stream with `code`; one already closed needs no reset.
fn reset(send: &mut quinn::SendStream, code: ErrorCode) {
    if let Err(e) = send.reset(varint(code.value())) {
        tracing::debug!("GOP stream not reset, the stream is closed: {e}");
    }
}

fn wire_code(code: quinn::VarInt) -> ErrorCode {
    ErrorCode::from_u64(code.into_inner()).unwrap_or(ErrorCode::INTERNAL_ERROR)
}

fn frame(unit: &AccessUnit) -> Frame {
    Frame {
        seq: unit.seq,
        keyframe: unit.keyframe,
        pts_ns: unit.pts.map(|p| p.as_nanos() as u64),
        capture_unix_ns: unit.capture_unix_ns,
        received_unix_ns: unit.received_unix_ns,
        data: unit.data.clone(),
    }
}

/// The header of a GOP starting at keyframe `unit`, if its parameter sets
/// are known.
fn gop_header(unit: &AccessUnit, gop_seq: u64) -> Option<GopHeader> {
    let p = &unit.params;
    if p.width == 0 || p.height == 0 {
        return None;
    }
    let vps = match p.codec {
        lookout_codecs::Codec::H264 => None,
        lookout_codecs::Codec::H265 => Some(p.vps.clone()?),
    };
    Some(GopHeader {
        camera_id: unit.camera.to_string(),
        gop_seq,
        codec: p.codec,
        width: p.width,
        height: p.height,
        vps,
        sps: p.sps.clone()?,
        pps: p.pps.clone()?,
    })
}
