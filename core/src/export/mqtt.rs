//! MQTT exports (3.1.1 or 5, through rumqttc): per event, its JSON (or CAP)
//! message on `PREFIX/alerts` and the camera's state for the label on
//! `PREFIX/CAMERA/LABEL` (retained), both at QoS 1; `PREFIX/available` says
//! `online` (retained) once connected and the broker says `offline` for us
//! (the last will) when the connection drops. An event is delivered when the
//! broker has acknowledged (PUBACK) both of its messages; a connection that
//! fails or a batch not acknowledged within `timeout_s` is dropped, and the
//! export loop sends what was not acknowledged again on a fresh connection.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5 as r5;
use serde_json::json;

use super::config::{ExportConfig, ExportFormat, MqttVersion, read_secret};
use super::run::Origin;
use super::{ExportEvent, cap};

/// A rustls client configuration (ring) trusting `ca`, or the system's roots.
pub(crate) fn client_tls(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                if roots.add(cert).is_err() {
                    continue;
                }
            }
            if roots.is_empty() {
                return Err("no system CA certificates found; set `ca`".to_string());
            }
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Requests the client queues for its event loop. A batch's publishes (two per event,
/// and `online` on a fresh connection) are all queued before the loop is polled, so
/// they must fit, or queueing would wait for a loop nobody polls.
const REQUESTS: usize = 256;
const _: () = assert!(2 * super::run::BATCH < REQUESTS);

/// A topic level from an id: MQTT's separators and wildcards become `_`.
fn level(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// What one of our publishes was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Available,
    Event(usize),
}

/// The version-independent part of what the event loop reports.
enum Note {
    Connected,
    Sent(u16),
    Acked(u16, Result<(), String>),
    Other,
}

enum Conn {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(r5::AsyncClient, Box<r5::EventLoop>),
}

impl Conn {
    async fn publish(
        &mut self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Conn::V4(c, _) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Conn::V5(c, _) => c
                .publish(topic, r5::mqttbytes::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn poll(&mut self) -> Result<Note, String> {
        match self {
            Conn::V4(_, l) => {
                use rumqttc::{Event, Outgoing, Packet};
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => Note::Connected,
                    Event::Incoming(Packet::PubAck(a)) => Note::Acked(a.pkid, Ok(())),
                    Event::Outgoing(Outgoing::Publish(pkid)) => Note::Sent(pkid),
                    _ => Note::Other,
                })
            }
            Conn::V5(_, l) => {
                use r5::Event;
                use r5::mqttbytes::v5::{Packet, PubAckReason};
                use rumqttc::Outgoing;
                Ok(match l.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(_)) => Note::Connected,
                    Event::Incoming(Packet::PubAck(a)) => {
                        let ok = match a.reason {
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                            other => Err(format!("the broker refused the message: {other:?}")),
                        };
                        Note::Acked(a.pkid, ok)
                    }
                    Event::Outgoing(Outgoing::Publish(pkid)) => Note::Sent(pkid),
                    _ => Note::Other,
                })
            }
        }
    }
}

pub(crate) struct Mqtt {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    version: MqttVersion,
    client_id: String,
    credentials: Option<(String, String)>,
    prefix: String,
    format: ExportFormat,
    timeout: Duration,
    origin: Origin,
    radius_km: f64,
    conn: Option<Conn>,
    /// Our publishes not yet seen going out, oldest first.
    queued: VecDeque<Tag>,
    /// Publishes sent and not acknowledged, by packet id.
    in_flight: HashMap<u16, Tag>,
    /// The broker accepted this connection (CONNACK).
    connected: bool,
}

impl Mqtt {
    pub(crate) fn new(c: &ExportConfig, origin: &Origin) -> Result<Mqtt, String> {
        let (host, port, tls) = c.mqtt_endpoint()?;
        let tls = if tls {
            Some(Arc::new(client_tls(c.ca.as_deref())?))
        } else {
            None
        };
        let credentials = match (&c.username, &c.password_file) {
            (Some(u), Some(p)) => Some((u.clone(), read_secret(p)?)),
            _ => None,
        };
        Ok(Mqtt {
            host,
            port,
            tls,
            version: c.mqtt_version,
            client_id: c
                .client_id
                .clone()
                .unwrap_or_else(|| format!("lookout-{}-{}", origin.id, c.id)),
            credentials,
            prefix: c.topic_prefix.clone(),
            format: c.format,
            timeout: Duration::from_secs(c.timeout_s.max(1)),
            origin: origin.clone(),
            radius_km: c.cap_radius_km,
            conn: None,
            queued: VecDeque::new(),
            in_flight: HashMap::new(),
            connected: false,
        })
    }

    fn available_topic(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// A fresh connection (rumqttc connects on the first poll), with the
    /// `online` announcement queued first.
    async fn connect(&mut self) -> Result<(), String> {
        let keep_alive = Duration::from_secs(30);
        let will_topic = self.available_topic();
        let conn = match self.version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(&self.client_id, &self.host, self.port);
                o.set_keep_alive(keep_alive).set_clean_session(true);
                o.set_last_will(rumqttc::LastWill::new(
                    &will_topic,
                    "offline",
                    rumqttc::QoS::AtLeastOnce,
                    true,
                ));
                if let Some((u, p)) = &self.credentials {
                    o.set_credentials(u, p);
                }
                if let Some(tls) = &self.tls {
                    o.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(tls.clone()),
                    ));
                }
                let (c, l) = rumqttc::AsyncClient::new(o, REQUESTS);
                Conn::V4(c, Box::new(l))
            }
            MqttVersion::V5 => {
                let mut o = r5::MqttOptions::new(&self.client_id, &self.host, self.port);
                o.set_keep_alive(keep_alive).set_clean_start(true);
                o.set_last_will(r5::mqttbytes::v5::LastWill::new(
                    &will_topic,
                    "offline",
                    r5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None,
                ));
                if let Some((u, p)) = &self.credentials {
                    o.set_credentials(u, p);
                }
                if let Some(tls) = &self.tls {
                    o.set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(tls.clone()),
                    ));
                }
                let (c, l) = r5::AsyncClient::new(o, REQUESTS);
                Conn::V5(c, Box::new(l))
            }
        };
        self.queued.clear();
        self.in_flight.clear();
        let mut conn = conn;
        conn.publish(will_topic, true, b"online".to_vec()).await?;
        self.queued.push_back(Tag::Available);
        self.conn = Some(conn);
        Ok(())
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.connected = false;
        self.queued.clear();
        self.in_flight.clear();
    }

    /// Polls the connection once: a packet id seen going out is matched with
    /// the oldest publish queued; an acknowledgement returns its tag.
    async fn step(&mut self) -> Result<Option<(Tag, Result<(), String>)>, String> {
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".to_string());
        };
        match conn.poll().await? {
            Note::Sent(pkid) => {
                if let Some(tag) = self.queued.pop_front() {
                    self.in_flight.insert(pkid, tag);
                }
                Ok(None)
            }
            Note::Acked(pkid, r) => Ok(self.in_flight.remove(&pkid).map(|t| (t, r))),
            Note::Connected => {
                self.connected = true;
                Ok(None)
            }
            Note::Other => Ok(None),
        }
    }

    /// Keeps the connection alive (pings, the `online` message) while the
    /// export has nothing to send, until `until` resolves; `Ok(true)` once the
    /// broker has accepted the connection.
    pub(crate) async fn idle(
        &mut self,
        until: impl std::future::Future<Output = ()>,
    ) -> Result<bool, String> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return Ok(self.connected),
                r = self.step() => {
                    if let Err(e) = r {
                        self.drop_connection();
                        return Err(format!("{}:{}: {e}", self.host, self.port));
                    }
                }
            }
        }
    }

    pub(crate) async fn deliver(&mut self, events: &[ExportEvent]) -> (usize, Option<String>) {
        match self.try_deliver(events).await {
            Ok(n) => (n, None),
            Err((n, e)) => {
                self.drop_connection();
                (n, Some(format!("{}:{}: {e}", self.host, self.port)))
            }
        }
    }

    async fn try_deliver(&mut self, events: &[ExportEvent]) -> Result<usize, (usize, String)> {
        if self.conn.is_none() {
            self.connect().await.map_err(|e| (0, e))?;
        }
        let mut pending = vec![0u8; events.len()];
        for (i, e) in events.iter().enumerate() {
            let body = match self.format {
                ExportFormat::Json => {
                    serde_json::to_vec(&e.json(&self.origin.id)).unwrap_or_default()
                }
                ExportFormat::Cap => cap::alert_xml(e, &self.origin, self.radius_km).into_bytes(),
            };
            let state = json!({
                "state": e.field("state"),
                "gateway": e.gateway,
                "id": e.alert_id,
                "revision": e.revision,
                "severity": e.field("severity"),
                "score": e.alert.get("score"),
                "event": e.kind().as_str(),
            });
            let label = e.field("label").unwrap_or("unknown");
            let topics = [
                (format!("{}/alerts", self.prefix), false, body),
                (
                    format!("{}/{}/{}", self.prefix, level(e.camera()), level(label)),
                    true,
                    serde_json::to_vec(&state).unwrap_or_default(),
                ),
            ];
            for (topic, retain, payload) in topics {
                let Some(conn) = self.conn.as_mut() else {
                    return Err((0, "not connected".to_string()));
                };
                conn.publish(topic, retain, payload)
                    .await
                    .map_err(|e| (0, e))?;
                self.queued.push_back(Tag::Event(i));
                pending[i] += 1;
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let prefix = |pending: &[u8]| pending.iter().take_while(|n| **n == 0).count();
        while prefix(&pending) < events.len() {
            let step = tokio::time::timeout_at(deadline, self.step()).await;
            match step {
                Err(_) => {
                    return Err((
                        prefix(&pending),
                        format!("not acknowledged within {:?}", self.timeout),
                    ));
                }
                Ok(Err(e)) => return Err((prefix(&pending), e)),
                Ok(Ok(Some((Tag::Event(i), Ok(()))))) => pending[i] = pending[i].saturating_sub(1),
                Ok(Ok(Some((Tag::Event(_), Err(e))))) => return Err((prefix(&pending), e)),
                Ok(Ok(_)) => {}
            }
        }
        Ok(events.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_cannot_open_topic_levels_or_wildcards() {
        assert_eq!(super::level("tower-01"), "tower-01");
        assert_eq!(super::level("a/b+#"), "a_b__");
    }
}
