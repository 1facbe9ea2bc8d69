//! The quinn side of the relay protocol shared by the gateway (`uplink.rs`)
//! and the command center (`center/`): reading one stream's messages through
//! the sans-IO `FrameDecoder`, writing encoded messages without copying
//! their payloads, the QUIC transport settings both ends use, and the
//! reconnect backoff of PROTOCOL.md §10.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lookout_codecs::relay::{DecodeError, EncodeError, FrameDecoder, Role, StreamMessage};

/// Clip streams a gateway keeps open at once on one connection (version 2):
/// what the center's transport allows beside the control and alert streams.
pub const MAX_CLIP_STREAMS: u32 = 4;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::Semaphore;

pub use crate::config::Congestion;

/// Most bytes taken from quinn per read: one read never holds more than this
/// beyond the decoder's one-message buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Why a stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer broke the protocol; the decoder's message names where.
    #[error("{0}")]
    Protocol(#[from] DecodeError),
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("reading: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("writing: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed")]
    Closed(#[from] quinn::ClosedStream),
    /// The connection's readers hold this many bytes of incomplete
    /// messages already ([`ReadBudget`]).
    #[error("over the connection's budget of {0} bytes for incomplete messages")]
    OverBudget(usize),
}

/// Bytes that the readers of one connection's streams may hold, together,
/// in messages not yet complete. Each stream may hold one message of up to
/// its limit (8 MiB on a video stream), and a connection may have a
/// thousand video streams open: without a shared bound one peer could make
/// the receiver buffer gigabytes. A reader never waits for budget — that
/// would stop it reading, and QUIC's connection-wide flow control would
/// then hold up the peer's other streams, alerts included — it fails with
/// [`StreamError::OverBudget`] instead, and its caller drops the stream.
#[derive(Clone, Debug)]
pub struct ReadBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl ReadBudget {
    pub fn new(bytes: usize) -> ReadBudget {
        ReadBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            total: bytes,
        }
    }

    /// Bytes not held by any reader now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// One receiving direction of a relay stream, message by message.
pub struct MessageReader<M> {
    recv: RecvStream,
    decoder: FrameDecoder<M>,
    /// The stream ended (FIN) and every message before it was returned.
    done: bool,
    /// The connection's shared bound on partial messages, if any.
    budget: Option<ReadBudget>,
    /// Bytes of `budget` this reader holds: what its decoder buffers.
    held: usize,
}

impl<M: StreamMessage> MessageReader<M> {
    /// Reads messages written by `from`.
    pub fn new(recv: RecvStream, from: Role) -> MessageReader<M> {
        MessageReader {
            recv,
            decoder: FrameDecoder::new(from),
            done: false,
            budget: None,
            held: 0,
        }
    }

    /// Holds what this reader buffers within `budget`, shared with the
    /// other readers of the connection.
    pub fn with_budget(mut self, budget: ReadBudget) -> MessageReader<M> {
        self.budget = Some(budget);
        self
    }

    /// The next message; `Ok(None)` once the peer finished the stream cleanly.
    /// Cancel-safe: a message is only taken out of the decoder when returned.
    pub async fn next(&mut self) -> Result<Option<M>, StreamError> {
        loop {
            let next = self.decoder.next_message();
            self.settle();
            if let Some(message) = next? {
                return Ok(Some(message));
            }
            if self.done {
                return Ok(None);
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => {
                    if let Some(budget) = &self.budget {
                        // At most READ_CHUNK: fits a u32.
                        let n = u32::try_from(chunk.bytes.len()).unwrap_or(u32::MAX);
                        match budget.bytes.try_acquire_many(n) {
                            Ok(permit) => permit.forget(),
                            Err(_) => return Err(StreamError::OverBudget(budget.total)),
                        }
                        self.held += n as usize;
                    }
                    self.decoder.push(&chunk.bytes);
                }
                None => {
                    self.decoder.finish()?;
                    self.done = true;
                }
            }
        }
    }

    /// Gives back the budget for what the decoder no longer holds.
    fn settle(&mut self) {
        let buffered = self.decoder.buffered();
        if let Some(budget) = &self.budget
            && self.held > buffered
        {
            budget.bytes.add_permits(self.held - buffered);
            self.held = buffered;
        }
    }

    /// A message already received and buffered, without waiting for more.
    pub fn try_next(&mut self) -> Result<Option<M>, StreamError> {
        let next = self.decoder.next_message();
        self.settle();
        Ok(next?)
    }

    /// Bytes of the stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }

    /// Asks the peer to stop sending (STOP_SENDING with `code`).
    pub fn stop(&mut self, code: lookout_codecs::relay::ErrorCode) {
        if let Err(e) = self.recv.stop(varint(code.value())) {
            // Already finished or reset by the peer: nothing left to stop.
            tracing::debug!("STOP_SENDING not sent: {e}");
        }
    }
}

impl<M> Drop for MessageReader<M> {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.bytes.add_permits(self.held);
        }
    }
}

/// Encodes `message` and writes it whole. Large payloads (access units,
/// JPEGs) are handed to quinn as the same `Bytes`, not copied.
pub async fn write_message<M: StreamMessage>(
    send: &mut SendStream,
    message: &M,
) -> Result<(), StreamError> {
    let mut chunks: Vec<Bytes> = message.encode()?.into_chunks();
    send.write_all_chunks(&mut chunks).await?;
    Ok(())
}

/// An error or priority code as quinn's `VarInt` (codes fit: they are QUIC
/// varints on the wire).
pub fn varint(value: u64) -> VarInt {
    VarInt::from_u64(value).unwrap_or(VarInt::MAX)
}

/// The QUIC transport both ends use: a 10 s idle timeout (PROTOCOL.md §3
/// allows up to 30 s), so a gateway notices a dead center and redials
/// within seconds, with keep-alives every 2 s — five in a row must be lost
/// first, and a NAT binding on a cellular link stays open; room for many
/// GOP streams at once.
pub fn transport(max_uni_streams: u32, congestion: Congestion) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Milliseconds.
    t.max_idle_timeout(Some(VarInt::from_u32(10_000).into()));
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_concurrent_uni_streams(VarInt::from_u32(max_uni_streams));
    // Control and alerts, and (version 2) the clip streams a gateway opens.
    t.max_concurrent_bidi_streams(VarInt::from_u32(2 + MAX_CLIP_STREAMS));
    // GOP streams are small and many: no stream may hog the window, but a
    // keyframe (a few hundred kB at 1080p) must fit without a round trip.
    t.stream_receive_window(VarInt::from_u32(4 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    // Default: BBR with its window held near the path's BDP while a queue
    // stands, so an alert sent behind video waits for a near-empty
    // bottleneck queue, not a full one (congestion.rs).
    t.congestion_controller_factory(match congestion {
        Congestion::LowQueue => Arc::new(super::congestion::LowQueueConfig::default())
            as Arc<dyn quinn::congestion::ControllerFactory + Send + Sync>,
        Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
        Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
    });
    Arc::new(t)
}

/// The reconnect delays of PROTOCOL.md §10: 0.5 s doubling to 30 s, ±20 %
/// jitter, back to 0.5 s after a connection stayed up for a minute. The
/// relay's settings of the one [`crate::backoff::Backoff`].
#[derive(Debug, Clone)]
pub struct Backoff(crate::backoff::Backoff);

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(500);
    pub const MAX: Duration = Duration::from_secs(30);
    /// The wait after an attempt nobody answered.
    pub const PROBE: Duration = Duration::from_millis(250);
    /// A connection up this long resets the delay.
    pub const STABLE: Duration = Duration::from_secs(60);

    pub fn new() -> Backoff {
        Backoff(crate::backoff::Backoff::new(
            crate::backoff::BackoffPolicy {
                initial: Backoff::INITIAL,
                max: Backoff::MAX,
            },
            crate::backoff::Jitter::Around(0.2),
        ))
    }

    /// The wait before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next_delay()
    }

    /// After a dial or connection that timed out (no answer at all): the
    /// probe delay, jittered, without growing the next one.
    pub fn probe_delay(&mut self) -> Duration {
        self.0.jitter_only(Backoff::PROBE)
    }

    /// An operator must act (bad version or certificate): wait the longest.
    pub fn max_delay(&mut self) -> Duration {
        self.0.max_delay()
    }

    /// The connection that just ended was up for `up`.
    pub fn connection_lasted(&mut self, up: Duration) {
        if up >= Backoff::STABLE {
            self.0.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(400) && d[0] <= Duration::from_millis(600));
        assert!(d[1] >= Duration::from_millis(800) && d[1] <= Duration::from_millis(1200));
        assert!(d[9] >= Duration::from_secs(24) && d[9] <= Duration::from_secs(36));
        b.connection_lasted(Duration::from_secs(61));
        assert!(b.next_delay() <= Duration::from_millis(600));
        b.connection_lasted(Duration::from_secs(5));
        assert!(b.next_delay() >= Duration::from_millis(800));
        // Probes after timeouts stay short and leave the doubling alone.
        for _ in 0..5 {
            assert!(b.probe_delay() <= Duration::from_millis(300));
        }
        // Still the third delay after the reset: 2 s, ±20 %.
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(1600) && d <= Duration::from_millis(2400),
            "{d:?}"
        );
    }
}
