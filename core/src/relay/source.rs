//! What an uplink relays upward: its cameras (as `Hello` and `CameraUpdate`
//! describe them), each camera's access units, and which cameras have an
//! active alert. A gateway relays its own cameras (`lookout::relay`'s
//! `GatewaySource`: ingest and the alert hub); a command center in a cascade relays every camera of
//! every gateway connected to it (`center::cascade`), over the same
//! protocol, so command platforms join tier by tier.

use std::future::Future;
use std::pin::Pin;

use lookout_codecs::relay::{CameraInfo, CameraPolicy};
use tokio::sync::broadcast;

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
}
