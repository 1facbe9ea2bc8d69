//! A version-2 connection's clip streams (PROTOCOL.md §6.15–6.18): every
//! finished clip the center has not acknowledged, oldest first, each on a
//! bidirectional stream of its own at the lowest priority, at most
//! [`CLIPS_AT_ONCE`] at a time. The center says how much of the file it
//! holds; only the rest is sent, so a transfer cut by a lost connection
//! resumes on the next one instead of starting over. A clip leaves the
//! pending list only when the center acknowledges it.
//!
//! Stream priorities order what the gateway hands to QUIC, but not what
//! already waits in a bottleneck's queue: clip bytes sent in a burst would
//! sit in a modem's buffer ahead of the next GOP. So clips are paced as a
//! scavenger ([`Pacer`], after LEDBAT, RFC 6817, with a target of a few
//! milliseconds): the rate grows while the connection's round trip stays
//! near the lowest seen and halves as soon as it rises, so clips take what
//! live video leaves of the link and yield it back within a round trip.

use super::*;
use std::io::SeekFrom;

use lookout_codecs::relay::{
    CLIP_STREAM_PRIORITY, ClipData, ClipMessage, ClipOffer, MAX_CLIP_CHUNK,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::super::source::{ClipEntry, ClipSource};

/// Clip streams open at once: two keep the link busy between round trips
/// without splitting what live video leaves into many thin shares.
pub(super) const CLIPS_AT_ONCE: usize = 2;
/// A clip whose transfer failed (not merely interrupted) is offered again
/// after this long, and the list is read again this often regardless.
const RETRY: Duration = Duration::from_secs(30);
/// How long the center may take to answer an offer, and to acknowledge
/// after the last byte (it reads the whole file back for its hash).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read from the file per `ClipData`: small, so one piece never
/// queues long ahead of video.
const PIECE: usize = 16 * 1024;
/// Queueing delay the pacer tolerates above the lowest round trip seen:
/// well below the 15 ms at which the `low-queue` controller caps its
/// window, so clips back off long before video or an alert would wait.
/// (10 ms let clips add 17 ms to the relay's p90 and 112 ms to capture →
/// alert p99 on a 20 Mbit/s cellular link; see docs/reports/clips/.)
const QUEUE_TARGET: Duration = Duration::from_millis(5);
/// The pacer's first rate, and its floor and ceiling, bits per second.
const START_BPS: f64 = 2e6;
const MIN_BPS: f64 = 64e3;
const MAX_BPS: f64 = 1e9;

/// The clip streams' rate on one connection: up 10 % a piece while the
/// round trip is within [`QUEUE_TARGET`] of the lowest seen, halved when it
/// is not — at most once a round trip, since the smoothed round trip takes
/// that long to show what a cut did. Shared by the connection's clip
/// streams.
pub(super) struct Pacer {
    state: Mutex<PacerState>,
}

struct PacerState {
    bps: f64,
    min_rtt: Duration,
    last_cut: Option<Instant>,
}

impl Pacer {
    fn new(rtt: Duration) -> Pacer {
        Pacer {
            state: Mutex::new(PacerState {
                bps: START_BPS,
                min_rtt: rtt,
                last_cut: None,
            }),
        }
    }

    /// How long to wait after sending `bytes`, given the round trip now.
    fn after(&self, bytes: usize, rtt: Duration) -> Duration {
        self.after_at(bytes, rtt, Instant::now())
    }

    fn after_at(&self, bytes: usize, rtt: Duration, now: Instant) -> Duration {
        let mut s = self.state.locked();
        s.min_rtt = s.min_rtt.min(rtt);
        if rtt > s.min_rtt + QUEUE_TARGET {
            if s.last_cut.is_none_or(|t| now.duration_since(t) >= rtt) {
                s.bps = (s.bps / 2.0).max(MIN_BPS);
                s.last_cut = Some(now);
            }
        } else {
            s.bps = (s.bps * 1.1).min(MAX_BPS);
        }
        Duration::from_secs_f64(bytes as f64 * 8.0 / s.bps)
    }
}

const _: () = assert!(PIECE <= MAX_CLIP_CHUNK);

/// How one transfer ended.
enum Sent {
    /// The center stores the clip (now, or had it already).
    Acknowledged { bytes: u64 },
    /// The stream or connection ended first; what the center got stays.
    Interrupted { bytes: u64, why: String },
    /// The center refused it, or the file could not be read.
    Failed(String),
}

impl Session {
    /// Sends the pending clips until the connection ends or `quit`.
    pub(super) async fn clips(
        self: Arc<Self>,
        source: Arc<dyn ClipSource>,
        mut quit: watch::Receiver<bool>,
    ) {
        let upstream = self.uplink.config.id.clone();
        let ready = source.ready();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut paused: HashMap<String, Instant> = HashMap::new();
        let mut tasks: tokio::task::JoinSet<(String, Sent)> = tokio::task::JoinSet::new();
        let pacer = Arc::new(Pacer::new(self.conn.rtt()));
        loop {
            // Armed before the list is read, so a clip finished meanwhile
            // wakes the next round.
            let notified = ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let list = {
                let (source, upstream) = (source.clone(), upstream.clone());
                tokio::task::spawn_blocking(move || source.pending(&upstream)).await
            };
            let pending = match list {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %upstream, "clips waiting to be sent cannot be listed: {e}");
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(upstream = %upstream, "clips waiting to be sent cannot be listed: {e}");
                    Vec::new()
                }
            };
            let now = Instant::now();
            paused.retain(|_, until| *until > now);
            for entry in pending {
                if in_flight.len() >= CLIPS_AT_ONCE {
                    break;
                }
                if in_flight.contains(&entry.alert_id) || paused.contains_key(&entry.alert_id) {
                    continue;
                }
                in_flight.insert(entry.alert_id.clone());
                let (s, src, pacer) = (self.clone(), source.clone(), pacer.clone());
                tasks.spawn(async move {
                    let id = entry.alert_id.clone();
                    (id, s.send_clip(src, entry, &pacer).await)
                });
            }
            tokio::select! {
                _ = &mut notified => {}
                Some(done) = tasks.join_next() => {
                    let Ok((id, sent)) = done else { continue };
                    in_flight.remove(&id);
                    self.clip_sent(&id, sent, &mut paused);
                }
                _ = tokio::time::sleep(RETRY) => {}
                _ = quit.changed() => break,
            }
        }
        // The connection is gone: what was in flight resumes on the next.
        for id in in_flight {
            self.clip_sent(
                &id,
                Sent::Interrupted {
                    bytes: 0,
                    why: "the connection ended".into(),
                },
                &mut paused,
            );
        }
        tasks.abort_all();
    }

    /// Counts and logs one transfer's end.
    fn clip_sent(&self, id: &str, sent: Sent, paused: &mut HashMap<String, Instant>) {
        let uplink = &self.uplink;
        let (outcome, bytes) = match sent {
            Sent::Acknowledged { bytes } => {
                tracing::info!(upstream = %uplink.config.id, alert = %id, bytes, "clip delivered");
                ("acknowledged", bytes)
            }
            Sent::Interrupted { bytes, why } => {
                tracing::debug!(upstream = %uplink.config.id, alert = %id, bytes, "clip transfer interrupted, to resume: {why}");
                ("interrupted", bytes)
            }
            Sent::Failed(why) => {
                tracing::warn!(upstream = %uplink.config.id, alert = %id, "clip transfer failed, offered again in {RETRY:?}: {why}");
                paused.insert(id.to_string(), Instant::now() + RETRY);
                ("failed", 0)
            }
        };
        let mut labels = uplink.labels();
        uplink
            .metrics
            .clip_bytes
            .get_or_create(&labels)
            .inc_by(bytes);
        labels.push(("outcome".into(), outcome.into()));
        uplink.metrics.clips.get_or_create(&labels).inc();
    }

    /// One clip: offer, the rest of the file from where the center's copy
    /// ends, and its acknowledgement.
    async fn send_clip(
        self: Arc<Self>,
        source: Arc<dyn ClipSource>,
        entry: ClipEntry,
        pacer: &Pacer,
    ) -> Sent {
        let interrupted = |bytes, why: String| Sent::Interrupted { bytes, why };
        let (mut send, recv) = match tokio::time::timeout(ANSWER_TIMEOUT, self.conn.open_bi()).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return interrupted(0, e.to_string()),
            Err(_) => return interrupted(0, "no clip stream allowed".into()),
        };
        if let Err(e) = send.set_priority(CLIP_STREAM_PRIORITY) {
            return interrupted(0, e.to_string());
        }
        let offer = ClipMessage::ClipOffer(ClipOffer {
            alert_id: entry.alert_id.clone(),
            camera_id: entry.camera_id.clone(),
            codec: entry.codec,
            size: entry.size,
            sha256: entry.sha256,
            first_capture_unix_ns: entry.first_capture_unix_ns,
            last_capture_unix_ns: entry.last_capture_unix_ns,
        });
        if let Err(e) = write_message(&mut send, &offer).await {
            return match e {
                StreamError::Encode(e) => Sent::Failed(format!("offer: {e}")),
                e => interrupted(0, e.to_string()),
            };
        }
        let mut answers = MessageReader::<ClipMessage>::new(recv, Role::Center);
        let offset = match self.answer(&mut answers).await {
            Ok(ClipMessage::ClipAck(_)) => {
                return self.acknowledged(&source, &entry.alert_id, 0).await;
            }
            Ok(ClipMessage::ClipWant(w)) if w.offset < entry.size => w.offset,
            Ok(other) => {
                return Sent::Failed(format!(
                    "the center answered the offer with {other:?} (of a {}-byte clip)",
                    entry.size
                ));
            }
            Err(e) => return e,
        };
        let sent = match send_file(&self.conn, &mut send, &entry, offset, pacer).await {
            Ok(n) => n,
            Err(e) => return e,
        };
        if let Err(e) = send.finish() {
            return interrupted(sent, e.to_string());
        }
        match self.answer(&mut answers).await {
            Ok(ClipMessage::ClipAck(_)) => self.acknowledged(&source, &entry.alert_id, sent).await,
            Ok(other) => Sent::Failed(format!("the center answered the clip with {other:?}")),
            Err(Sent::Interrupted { why, .. }) => interrupted(sent, why),
            Err(e) => e,
        }
    }

    /// The center's next message on a clip stream.
    async fn answer(&self, answers: &mut MessageReader<ClipMessage>) -> Result<ClipMessage, Sent> {
        match tokio::time::timeout(ANSWER_TIMEOUT, answers.next()).await {
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(Sent::Failed("the center finished the clip stream".into())),
            // The center resets a clip it could not store (or whose hash
            // did not match) with INTERNAL_ERROR.
            Ok(Err(StreamError::Read(quinn::ReadError::Reset(code)))) => Err(Sent::Failed(
                format!("the center reset the clip stream ({code})"),
            )),
            Ok(Err(StreamError::Protocol(p))) => Err(Sent::Failed(format!(
                "protocol violation by the command center on a clip stream: {p}"
            ))),
            Ok(Err(e)) => Err(Sent::Interrupted {
                bytes: 0,
                why: e.to_string(),
            }),
            Err(_) => Err(Sent::Interrupted {
                bytes: 0,
                why: format!("no answer within {ANSWER_TIMEOUT:?}"),
            }),
        }
    }

    async fn acknowledged(&self, source: &Arc<dyn ClipSource>, id: &str, bytes: u64) -> Sent {
        let (source, upstream, alert) = (
            source.clone(),
            self.uplink.config.id.clone(),
            id.to_string(),
        );
        match tokio::task::spawn_blocking(move || source.acknowledged(&upstream, &alert)).await {
            Ok(Ok(())) => Sent::Acknowledged { bytes },
            // Offered again; the center answers ClipAck at once.
            Ok(Err(e)) => Sent::Failed(format!("acknowledged, but not recorded: {e}")),
            Err(e) => Sent::Failed(format!("acknowledged, but not recorded: {e}")),
        }
    }
}

/// Writes the file from `offset` to its end as `ClipData`; the bytes sent.
async fn send_file(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    entry: &ClipEntry,
    offset: u64,
    pacer: &Pacer,
) -> Result<u64, Sent> {
    let unreadable =
        |e: std::io::Error| Sent::Failed(format!("clip file {}: {e}", entry.path.display()));
    let mut file = tokio::fs::File::open(&entry.path)
        .await
        .map_err(unreadable)?;
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(unreadable)?;
    let mut at = offset;
    while at < entry.size {
        let want = PIECE.min(usize::try_from(entry.size - at).unwrap_or(PIECE));
        // Each piece read into its own buffer and handed to quinn as is.
        let mut buf = bytes::BytesMut::zeroed(want);
        let n = file.read(&mut buf).await.map_err(unreadable)?;
        if n == 0 {
            return Err(Sent::Failed(format!(
                "clip file {} ends at byte {at}, {} expected",
                entry.path.display(),
                entry.size
            )));
        }
        let piece = ClipMessage::ClipData(ClipData {
            offset: at,
            data: buf.split_to(n).freeze(),
        });
        if let Err(e) = write_message(send, &piece).await {
            return Err(Sent::Interrupted {
                bytes: at - offset,
                why: e.to_string(),
            });
        }
        at += n as u64;
        tokio::time::sleep(pacer.after(n, conn.rtt())).await;
    }
    Ok(at - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_grows_on_an_empty_path_and_halves_on_a_queue() {
        let base = Duration::from_millis(40);
        let p = Pacer::new(base);
        let t0 = Instant::now();
        // 16 KiB at 2.2 Mbit/s (2 × 1.1), then faster while the path is empty.
        let first = p.after_at(PIECE, base, t0);
        let mut last = first;
        for _ in 0..20 {
            last = p.after_at(PIECE, base + Duration::from_millis(2), t0);
        }
        assert!(last < first / 5, "{first:?} → {last:?}");
        // A queue (round trip 20 ms above the lowest): the rate halves, and
        // not again within that round trip.
        let queued_rtt = base + Duration::from_millis(20);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let queued = p.after_at(PIECE, queued_rtt, t0);
        assert!(
            (ratio(queued, last) - 2.0).abs() < 0.01,
            "{last:?} → {queued:?}"
        );
        let again = p.after_at(PIECE, queued_rtt, t0 + base);
        assert_eq!(again, queued, "one cut a round trip");
        let later = p.after_at(PIECE, queued_rtt, t0 + queued_rtt);
        assert!(
            (ratio(later, queued) - 2.0).abs() < 0.01,
            "{queued:?} → {later:?}"
        );
        // Never slower than the floor.
        let mut t = t0 + queued_rtt;
        for _ in 0..100 {
            t += base * 3;
            p.after_at(PIECE, base * 3, t);
        }
        let floor = p.after_at(PIECE, base * 3, t + base * 3);
        assert!(
            (floor.as_secs_f64() - PIECE as f64 * 8.0 / MIN_BPS).abs() < 1e-9,
            "{floor:?}"
        );
    }
}
