//! One task per export: read what lies after its cursor, deliver it, move
//! the cursor, back off while the destination fails. Its state is kept for
//! `GET /api/exports` and the metrics.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::Notify;

use super::config::{ExportConfig, ExportKind};
use super::{EventLog, ExportEvent};
use crate::backoff::{Backoff, BackoffPolicy, Jitter};
use crate::metrics::Metrics;
use crate::sync::Locked;

type Labels = Vec<(String, String)>;

/// Events one round reads from the log at most.
pub(super) const BATCH: usize = 64;
/// How often an idle export looks at the log without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Who is exporting: the side's id (the CAP `sender`, the JSON `origin`, the
/// MQTT client id's default) and the URL its API is reached at, for links in
/// CAP `resource`s (none when not configured).
#[derive(Debug, Clone)]
pub struct Origin {
    pub id: String,
    pub public_url: Option<String>,
}

/// The exports' Prometheus series, labelled by `export`.
#[derive(Debug, Default)]
struct ExportMetrics {
    pub backlog: Family<Labels, Gauge>,
    pub oldest_age_seconds: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub delivered: Family<Labels, Counter>,
    pub failures: Family<Labels, Counter>,
    pub connected: Family<Labels, Gauge>,
}

impl ExportMetrics {
    fn register(&self, m: &Metrics) {
        m.register(
            "export_backlog_events",
            "Alert events stored and not yet delivered, per export",
            self.backlog.clone(),
        );
        m.register(
            "export_oldest_undelivered_age_seconds",
            "Age of the oldest alert event not yet delivered, per export (0 when none waits)",
            self.oldest_age_seconds.clone(),
        );
        m.register(
            "export_delivered_events",
            "Alert events delivered (acknowledged by the destination), per export",
            self.delivered.clone(),
        );
        m.register(
            "export_failures",
            "Delivery rounds that failed (no connection, a refusal, no acknowledgement in time), per export",
            self.failures.clone(),
        );
        m.register(
            "export_connected",
            "1 while the export's last attempt reached its destination",
            self.connected.clone(),
        );
    }
}

/// What `GET /api/exports` shows of one export.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportStatus {
    pub id: String,
    pub kind: String,
    /// The destination, without any credentials.
    pub url: String,
    pub format: String,
    /// Whether the last attempt reached the destination.
    pub connected: bool,
    pub delivered: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_error_unix_ms: Option<u64>,
    pub last_delivered_unix_ms: Option<u64>,
    /// Events waiting, and the age of the oldest, seconds.
    pub backlog: u64,
    pub oldest_undelivered_age_s: Option<f64>,
}

/// The running exports of one side.
pub struct Exports {
    statuses: Vec<Arc<Mutex<ExportStatus>>>,
    log: Arc<dyn EventLog>,
    /// Woken when the log gets new events.
    wake: Arc<Notify>,
}

impl Exports {
    /// Starts one task per entry (entries already resolved and validated), their
    /// series in `registry`, and a task that wakes them on every message of `changes`
    /// (the side's alert events or ledger changes; a lagged receiver wakes them too).
    /// Secrets are read now: a missing one is an error naming the entry.
    pub fn start<T: Clone + Send + 'static>(
        configs: &[ExportConfig],
        log: Arc<dyn EventLog>,
        origin: Origin,
        registry: &Metrics,
        mut changes: tokio::sync::broadcast::Receiver<T>,
    ) -> Result<Arc<Exports>, String> {
        let metrics = Arc::new(ExportMetrics::default());
        metrics.register(registry);
        let wake = Arc::new(Notify::new());
        let mut statuses = Vec::new();
        for c in configs {
            let sink = Sink::open(c, &origin).map_err(|e| format!("export {}: {e}", c.id))?;
            let status = Arc::new(Mutex::new(ExportStatus {
                id: c.id.clone(),
                kind: match c.kind {
                    ExportKind::Mqtt => "mqtt",
                    ExportKind::Webhook => "webhook",
                }
                .to_string(),
                url: super::config::redact(&c.url),
                format: match c.format {
                    super::ExportFormat::Json => "json",
                    super::ExportFormat::Cap => "cap",
                }
                .to_string(),
                ..ExportStatus::default()
            }));
            statuses.push(status.clone());
            tokio::spawn(run(
                c.id.clone(),
                sink,
                log.clone(),
                status,
                metrics.clone(),
                wake.clone(),
            ));
        }
        let exports = Arc::new(Exports {
            statuses,
            log,
            wake,
        });
        let woken = exports.clone();
        tokio::spawn(async move {
            // Ends when the sender goes (the side stops).
            while let Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) =
                changes.recv().await
            {
                woken.wake();
            }
        });
        tracing::info!(exports = configs.len(), "exports running");
        Ok(exports)
    }

    /// Tells the exports that events were appended (they also look every
    /// second on their own).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Every export's state, with its backlog read now. Blocks (SQLite).
    pub fn status(&self) -> Vec<ExportStatus> {
        let now = crate::clock::unix_ms();
        self.statuses
            .iter()
            .map(|s| {
                let mut st = s.locked().clone();
                if let Ok((n, oldest)) = self.log.backlog(&st.id) {
                    st.backlog = n;
                    st.oldest_undelivered_age_s =
                        oldest.map(|t| now.saturating_sub(t) as f64 / 1000.0);
                }
                st
            })
            .collect()
    }
}

/// A destination.
pub(super) enum Sink {
    Mqtt(super::mqtt::Mqtt),
    Webhook(super::webhook::Webhook),
}

impl Sink {
    fn open(c: &ExportConfig, origin: &Origin) -> Result<Sink, String> {
        Ok(match c.kind {
            ExportKind::Mqtt => Sink::Mqtt(super::mqtt::Mqtt::new(c, origin)?),
            ExportKind::Webhook => Sink::Webhook(super::webhook::Webhook::new(c, origin)?),
        })
    }

    /// Waits for `until` with nothing to send: an MQTT connection is opened
    /// (announcing `online`) and kept alive meanwhile. `Ok(true)` when the
    /// destination is known to be reachable.
    async fn idle(&mut self, until: impl std::future::Future<Output = ()>) -> Result<bool, String> {
        match self {
            Sink::Mqtt(m) => m.idle(until).await,
            Sink::Webhook(_) => {
                until.await;
                Ok(false)
            }
        }
    }

    /// Delivers `events` in order: how many from the first were delivered,
    /// and why the rest were not.
    async fn deliver(&mut self, events: &[ExportEvent]) -> (usize, Option<String>) {
        match self {
            Sink::Mqtt(m) => m.deliver(events).await,
            Sink::Webhook(w) => w.deliver(events).await,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("event log task: {e}"))?
}

async fn run(
    id: String,
    mut sink: Sink,
    log: Arc<dyn EventLog>,
    status: Arc<Mutex<ExportStatus>>,
    metrics: Arc<ExportMetrics>,
    wake: Arc<Notify>,
) {
    let labels = vec![("export".to_string(), id.clone())];
    let delivered_c = metrics.delivered.get_or_create(&labels).clone();
    let failures_c = metrics.failures.get_or_create(&labels).clone();
    let connected_g = metrics.connected.get_or_create(&labels).clone();
    let backlog_g = metrics.backlog.get_or_create(&labels).clone();
    let age_g = metrics.oldest_age_seconds.get_or_create(&labels).clone();
    let mut backoff = Backoff::new(
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        },
        Jitter::Below(0.3),
    );
    loop {
        // Registered before reading the log, so an append right after the
        // read still wakes this round's wait.
        let notified = wake.notified();
        let l = log.clone();
        let i = id.clone();
        let backlog = blocking(move || l.backlog(&i)).await;
        if let Ok((n, oldest)) = &backlog {
            backlog_g.set(i64::try_from(*n).unwrap_or(i64::MAX));
            let age = oldest.map_or(0.0, |t| {
                crate::clock::unix_ms().saturating_sub(t) as f64 / 1000.0
            });
            age_g.set(age);
        }
        let l = log.clone();
        let i = id.clone();
        let events = match blocking(move || l.pending(&i, BATCH)).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(export = %id, "cannot read the export event log: {e}");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if events.is_empty() {
            let until = async {
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
            };
            match sink.idle(until).await {
                Ok(connected) => {
                    if connected {
                        status.locked().connected = true;
                        connected_g.set(1);
                    }
                }
                Err(e) => {
                    let delay = failed(&status, &failures_c, &connected_g, &mut backoff, &e);
                    tracing::warn!(export = %id, "cannot reach the destination, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                }
            }
            continue;
        }
        let (done, error) = sink.deliver(&events).await;
        if done > 0 {
            let seq = events[done - 1].seq;
            let l = log.clone();
            let i = id.clone();
            if let Err(e) = blocking(move || l.delivered(&i, seq)).await {
                // Delivered but not recorded: they go out again (at least
                // once), and the log's trouble is said.
                tracing::error!(export = %id, seq, "cannot record delivered events: {e}");
            }
            delivered_c.inc_by(done as u64);
            let mut st = status.locked();
            st.delivered += done as u64;
            st.connected = true;
            st.last_delivered_unix_ms = Some(crate::clock::unix_ms());
            connected_g.set(1);
        }
        match error {
            None => backoff.reset(),
            Some(e) => {
                let delay = failed(&status, &failures_c, &connected_g, &mut backoff, &e);
                tracing::warn!(export = %id, waiting = events.len() - done, "delivery failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Records a failed round in the status and metrics; returns how long to wait.
fn failed(
    status: &Mutex<ExportStatus>,
    failures: &Counter,
    connected: &Gauge,
    backoff: &mut Backoff,
    error: &str,
) -> Duration {
    failures.inc();
    {
        let mut st = status.locked();
        st.failures += 1;
        st.connected = false;
        st.last_error = Some(error.to_string());
        st.last_error_unix_ms = Some(crate::clock::unix_ms());
    }
    connected.set(0);
    backoff.next_delay()
}
