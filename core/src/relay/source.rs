//! What an uplink relays upward: its cameras (as `Hello` and `CameraUpdate`
//! describe them), each camera's access units, and which cameras have an
//! active alert. A gateway relays its own cameras (`lookout::relay`'s
//! `GatewaySource`: ingest and the alert hub); a command center in a cascade relays every camera of
//! every gateway connected to it (`center::cascade`), over the same
//! protocol, so command platforms join tier by tier.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use lookout_codecs::Codec;
use lookout_codecs::relay::{CameraInfo, CameraPolicy};
use tokio::sync::{Notify, broadcast};

use crate::unit::AccessUnit;

/// A camera's own units, as a gateway's ingest hands them out.
pub trait LocalFeed: Send {
    /// The next unit; `None` once the camera is gone.
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Option<AccessUnit>> + Send + '_>>;
}

/// A camera's units as an uplink reads them.
pub enum UnitFeed {
    /// Straight from ingest (a gateway's own camera).
    Local(Box<dyn LocalFeed>),
    /// Already relayed (a center forwarding a gateway's camera): lagging
    /// loses the oldest units, which the uplink sees as a gap in `seq`.
    Relayed(broadcast::Receiver<AccessUnit>),
}

impl UnitFeed {
    /// The next unit; `None` once the camera is gone.
    pub async fn recv(&mut self) -> Option<AccessUnit> {
        match self {
            UnitFeed::Local(s) => s.recv().await,
            UnitFeed::Relayed(rx) => loop {
                match rx.recv().await {
                    Ok(unit) => return Some(unit),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// Everything an uplink needs to know about what it relays.
pub trait Source: Send + Sync + 'static {
    /// Every camera now, in a stable order.
    fn cameras(&self) -> Vec<CameraInfo>;
    /// Every camera's relay policy now.
    fn policies(&self) -> Vec<(String, CameraPolicy)>;
    /// A camera's units from now on.
    fn video(&self, id: &str) -> Option<UnitFeed>;
    /// Whether a camera has an active alert.
    fn alerting(&self, id: &str) -> bool;
    /// Ids of cameras whose alert state may have changed.
    fn alert_changes(&self) -> broadcast::Receiver<String>;
    /// The alert clips to deliver, when this source records them (a
    /// gateway with clips enabled); a cascading center forwards none.
    fn clips(&self) -> Option<Arc<dyn ClipSource>> {
        None
    }
}

/// A finished alert clip waiting for a command center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipEntry {
    /// The alert it belongs to (one clip per alert).
    pub alert_id: String,
    /// The camera it shows.
    pub camera_id: String,
    pub codec: Codec,
    /// The MP4 file, complete and fsynced.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Capture time of its first frame, Unix ns.
    pub first_capture_unix_ns: u64,
    /// Capture time of its last frame, Unix ns.
    pub last_capture_unix_ns: u64,
}

/// Where an uplink finds the clips to send and records which a center
/// stores. Its calls block (SQLite): uplinks make them on blocking threads.
pub trait ClipSource: Send + Sync + 'static {
    /// Finished clips the upstream `upstream` has not acknowledged, oldest
    /// first.
    fn pending(&self, upstream: &str) -> Result<Vec<ClipEntry>, String>;
    /// The center behind `upstream` stores this clip durably: the clip may
    /// be evicted once every upstream has said so.
    fn acknowledged(&self, upstream: &str, alert_id: &str) -> Result<(), String>;
    /// Woken whenever a clip is finished.
    fn ready(&self) -> Arc<Notify>;
}
