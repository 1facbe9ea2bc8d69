//! The cameras the gateway runs: the configured ones and those adopted from GB/T 28181
//! catalogs (`[[gateway.gb28181.adopt]]`). One place applies them to ingest and
//! detection, so a reload and a catalog bringing new channels never undo each other.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{CameraConfig, Config};
use crate::detect::service::DetectService;
use crate::gb28181::SipServer;
use crate::gb28181::adopt::{adopted, capped};
use crate::ingest::{Ingest, IngestSettings, ReloadSummary};
use crate::shutdown::Shutdown;

/// How often the catalogs are looked at for channels to adopt.
const ADOPT_EVERY: Duration = Duration::from_secs(2);

/// The running configuration and the channels adopted under it.
pub struct Roster {
    ingest: Arc<Ingest>,
    detect: Arc<DetectService>,
    sip: Option<Arc<SipServer>>,
    state: tokio::sync::Mutex<State>,
}

struct State {
    config: Config,
    adopted: Vec<CameraConfig>,
}

impl Roster {
    /// The configured cameras are running already (ingest and detection started with
    /// them); adopted ones join as catalogs list them ([`adopt_loop`]).
    pub fn new(
        config: Config,
        ingest: Arc<Ingest>,
        detect: Arc<DetectService>,
        sip: Option<Arc<SipServer>>,
    ) -> Arc<Roster> {
        Arc::new(Roster {
            ingest,
            detect,
            sip,
            state: tokio::sync::Mutex::new(State {
                config,
                adopted: Vec::new(),
            }),
        })
    }

    /// Puts a new (checked) configuration in force: its cameras and the channels its
    /// rules adopt.
    pub async fn reload(&self, next: Config) -> ReloadSummary {
        let mut st = self.state.lock().await;
        st.adopted = self.adoptable(&next);
        st.config = next;
        self.apply(&st).await
    }

    /// Adopts the channels catalogs listed since the last look; `None` when nothing
    /// changed.
    pub async fn refresh(&self) -> Option<ReloadSummary> {
        let mut st = self.state.lock().await;
        let now = self.adoptable(&st.config);
        if now == st.adopted {
            return None;
        }
        if let (Some(sip), Some(gb)) = (&self.sip, &st.config.gateway.gb28181) {
            for (device, listed) in capped(&gb.adopt, &sip.devices()) {
                tracing::warn!(%device, listed, "GB/T 28181 device lists more video channels than its adopt rule's max_channels; the rest are not cameras");
            }
        }
        st.adopted = now;
        Some(self.apply(&st).await)
    }

    async fn apply(&self, st: &State) -> ReloadSummary {
        let all: Vec<CameraConfig> = st
            .config
            .cameras
            .iter()
            .chain(&st.adopted)
            .cloned()
            .collect();
        let summary = self
            .ingest
            .apply(IngestSettings::from_config(&st.config.gateway), &all)
            .await;
        self.detect.apply(&all).await;
        summary
    }

    fn adoptable(&self, config: &Config) -> Vec<CameraConfig> {
        match (&self.sip, &config.gateway.gb28181) {
            (Some(sip), Some(gb)) if !gb.adopt.is_empty() => {
                adopted(&gb.adopt, &sip.devices(), &config.cameras)
            }
            _ => Vec::new(),
        }
    }
}

/// Looks at the catalogs every [`ADOPT_EVERY`] until shutdown and adopts what the
/// rules say.
pub async fn adopt_loop(roster: Arc<Roster>, mut stop: Shutdown) {
    let mut tick = tokio::time::interval(ADOPT_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.signalled() => return,
        }
        if let Some(s) = roster.refresh().await
            && !(s.added.is_empty() && s.removed.is_empty())
        {
            tracing::info!(added = ?s.added, removed = ?s.removed, "GB/T 28181 channels adopted as cameras");
        }
    }
}
