//! Webhook exports: each event POSTed to an HTTP(S) endpoint, as JSON or CAP
//! XML, signed with HMAC-SHA256 when a secret is configured, up to
//! `concurrency` requests in flight, each bounded by `timeout_s`. A 2xx
//! answer delivers the event; anything else is retried by the export loop
//! with backoff, from the first event not delivered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;

use super::config::{ExportConfig, ExportFormat, read_secret};
use super::run::Origin;
use super::{ExportEvent, cap};

/// Where requests go.
type Target = super::config::WebhookUrl;

pub(crate) struct Webhook {
    target: Target,
    format: ExportFormat,
    key: Option<ring::hmac::Key>,
    tls: Option<tokio_rustls::TlsConnector>,
    concurrency: usize,
    timeout: Duration,
    origin: Origin,
    radius_km: f64,
}

impl Webhook {
    pub(crate) fn new(c: &ExportConfig, origin: &Origin) -> Result<Webhook, String> {
        let target = Target::parse(&c.url)?;
        let key = c
            .secret_file
            .as_deref()
            .map(read_secret)
            .transpose()?
            .map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes()));
        let tls = if target.tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(
                super::mqtt::client_tls(c.ca.as_deref())?,
            )))
        } else {
            None
        };
        Ok(Webhook {
            target,
            format: c.format,
            key,
            tls,
            concurrency: c.concurrency.max(1),
            timeout: Duration::from_secs(c.timeout_s.max(1)),
            origin: origin.clone(),
            radius_km: c.cap_radius_km,
        })
    }

    /// Posts `events`, `concurrency` at a time; how many from the first were
    /// delivered, and the first failure.
    pub(crate) async fn deliver(&mut self, events: &[ExportEvent]) -> (usize, Option<String>) {
        let mut done = 0;
        for chunk in events.chunks(self.concurrency) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, e) in chunk.iter().enumerate() {
                let request = self.request(e);
                let target = self.target.clone();
                let tls = self.tls.clone();
                let timeout = self.timeout;
                tasks.spawn(async move {
                    let r = tokio::time::timeout(timeout, post(target, tls, request)).await;
                    (
                        i,
                        r.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}"))),
                    )
                });
            }
            let mut results: Vec<Option<Result<(), String>>> = vec![None; chunk.len()];
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok((i, r)) => results[i] = Some(r),
                    Err(e) => return (done, Some(format!("webhook task: {e}"))),
                }
            }
            for r in results {
                match r {
                    Some(Ok(())) => done += 1,
                    Some(Err(e)) => return (done, Some(e)),
                    None => return (done, Some("webhook task lost".to_string())),
                }
            }
        }
        (done, None)
    }

    fn request(&self, e: &ExportEvent) -> Request {
        let (body, content_type) = match self.format {
            ExportFormat::Json => (
                serde_json::to_vec(&e.json(&self.origin.id)).unwrap_or_default(),
                "application/json",
            ),
            ExportFormat::Cap => (
                cap::alert_xml(e, &self.origin, self.radius_km).into_bytes(),
                "application/xml",
            ),
        };
        let signature = self.key.as_ref().map(|k| {
            let tag = ring::hmac::sign(k, &body);
            format!("sha256={}", hex(tag.as_ref()))
        });
        Request {
            body: Bytes::from(body),
            content_type,
            signature,
            event: e.kind().as_str(),
            alert: format!("{}/{}/{}", e.gateway, e.alert_id, e.revision),
        }
    }
}

struct Request {
    body: Bytes,
    content_type: &'static str,
    signature: Option<String>,
    event: &'static str,
    alert: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn post(
    target: Target,
    tls: Option<tokio_rustls::TlsConnector>,
    r: Request,
) -> Result<(), String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", target.host, target.port))?;
    match tls {
        Some(connector) => {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{}: {e}", target.host))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", target.host))?;
            exchange(hyper_util::rt::TokioIo::new(stream), &target, r).await
        }
        None => exchange(hyper_util::rt::TokioIo::new(tcp), &target, r).await,
    }
}

async fn exchange<T>(io: T, target: &Target, r: Request) -> Result<(), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP with {}: {e}", target.host))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, target.host_header())
        .header(hyper::header::CONTENT_TYPE, r.content_type)
        .header(
            hyper::header::USER_AGENT,
            concat!("lookout/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Lookout-Event", r.event)
        .header("X-Lookout-Alert", r.alert.as_str());
    if let Some(sig) = &r.signature {
        req = req.header("X-Lookout-Signature-256", sig.as_str());
    }
    let req = req
        .body(Full::new(r.body))
        .map_err(|e| format!("building the request: {e}"))?;
    let answer = sender
        .send_request(req)
        .await
        .map_err(|e| format!("POST {}: {e}", target.path))?;
    let status = answer.status();
    // Read the (small) answer so the connection ends cleanly.
    let body = answer
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        Err(format!(
            "{} answered {status}: {text}",
            target.host_header()
        ))
    }
}
