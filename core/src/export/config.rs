//! `[[export]]` entries, in the gateway's and the center's files alike: where
//! alert events go besides the command center (an MQTT broker, a webhook
//! receiver), in which form (lookout's JSON or CAP 1.2), and with which
//! credentials. Secrets are read from files, never written in the config.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Findings, KeyPath};

/// What kind of destination an export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportKind {
    /// An MQTT broker (`mqtt://host:port`, or `mqtts://` for TLS).
    Mqtt,
    /// An HTTP(S) endpoint each event is POSTed to.
    Webhook,
}

/// The form each event takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// lookout's alert event JSON (docs/EXPORTS.md).
    #[default]
    Json,
    /// An OASIS CAP 1.2 `alert` document.
    Cap,
}

/// The MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// One `[[export]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Names the export in logs, metrics and `GET /api/exports`, and its
    /// place in the durable event log: renaming it starts it afresh.
    pub id: String,
    /// `mqtt` or `webhook`.
    pub kind: ExportKind,
    /// `mqtt://host:port`, `mqtts://host:port`, `http://…` or `https://…`.
    pub url: String,
    /// `json` (default) or `cap`.
    #[serde(default)]
    pub format: ExportFormat,
    /// MQTT: the first level of every topic (default `lookout`).
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// MQTT: `3.1.1` (default) or `5`.
    #[serde(default)]
    pub mqtt_version: MqttVersion,
    /// MQTT: the client id (default `lookout-ID`, this side's id).
    pub client_id: Option<String>,
    /// MQTT: the user name, with `password_file`.
    pub username: Option<String>,
    /// MQTT: a file holding the password (one line).
    pub password_file: Option<PathBuf>,
    /// Webhook: a file holding the HMAC-SHA256 key that signs each body
    /// (`X-Lookout-Signature-256: sha256=HEX`).
    pub secret_file: Option<PathBuf>,
    /// TLS (`mqtts://`, `https://`): the CA to trust (PEM); default: the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// Webhook: requests in flight at once (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds one delivery may take before it counts as failed (default 10).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// CAP: the radius of the `area` circle around the camera, km (default 5).
    #[serde(default = "default_radius_km")]
    pub cap_radius_km: f64,
}

fn default_prefix() -> String {
    "lookout".to_string()
}

fn default_concurrency() -> usize {
    4
}

fn default_timeout_s() -> u64 {
    10
}

/// The CAP `area` circle's radius when an entry sets none, km.
pub const DEFAULT_CAP_RADIUS_KM: f64 = 5.0;

fn default_radius_km() -> f64 {
    DEFAULT_CAP_RADIUS_KM
}

impl ExportConfig {
    /// This entry with its files resolved by `resolve` (against the folder of
    /// the file it came from).
    pub fn resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> ExportConfig {
        ExportConfig {
            password_file: self.password_file.as_deref().map(&resolve),
            secret_file: self.secret_file.as_deref().map(&resolve),
            ca: self.ca.as_deref().map(&resolve),
            ..self.clone()
        }
    }

    /// `(host, port, tls)` of an MQTT URL.
    pub fn mqtt_endpoint(&self) -> Result<(String, u16, bool), String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "`{}`: expected mqtt://host:port or mqtts://host:port",
                self.url
            ));
        };
        let (host, port) =
            split_host_port(rest.trim_end_matches('/'), if tls { 8883 } else { 1883 })?;
        Ok((host, port, tls))
    }
}

/// `scheme://user:password@host/…` without the user and password: what logs,
/// errors and `GET /api/exports` show of a destination.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// `host[:port]` (an IPv6 address in brackets) into its parts.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err("no host".to_string());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{s}`: bad port `{p}`"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("`{s}`: unexpected `{after}` after the address")),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, p)) => {
            let port = p.parse().map_err(|_| format!("`{s}`: bad port `{p}`"))?;
            if host.is_empty() {
                return Err(format!("`{s}`: no host"));
            }
            Ok((host.to_string(), port))
        }
        None => Ok((s.to_string(), default_port)),
    }
}

/// A webhook's address, parsed: no credentials (the receiver checks the
/// signature instead).
#[derive(Debug, Clone)]
pub struct WebhookUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("`{}`: expected http://… or https://…", redact(url)));
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(format!(
                "`{}`: no credentials in the URL; the receiver checks the signature (secret_file)",
                redact(url)
            ));
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(WebhookUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// The `Host` header: the port only when it is not the scheme's.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            _ => format!("{host}:{}", self.port),
        }
    }
}

/// Checks every `[[export]]` entry; `resolve` turns a path in the file into
/// one to open.
pub fn validate(exports: &[ExportConfig], resolve: impl Fn(&Path) -> PathBuf, f: &mut Findings) {
    let mut ids = std::collections::HashSet::new();
    for (i, e) in exports.iter().enumerate() {
        let p = KeyPath::root().key("export").index(i);
        if !crate::config::valid_id(&e.id) {
            f.push(p.key("id"), crate::config::id_rule(&e.id));
        } else if !ids.insert(e.id.as_str()) {
            f.push(p.key("id"), format!("duplicate export id `{}`", e.id));
        }
        match e.kind {
            ExportKind::Mqtt => {
                if let Err(m) = e.mqtt_endpoint() {
                    f.push(p.key("url"), m);
                }
                if e.topic_prefix.is_empty()
                    || e.topic_prefix.contains(['+', '#', '\0'])
                    || e.topic_prefix.starts_with('/')
                    || e.topic_prefix.ends_with('/')
                {
                    f.push(
                        p.key("topic_prefix"),
                        "a topic prefix without wildcards (+, #) or a leading or trailing /",
                    );
                }
                if e.secret_file.is_some() {
                    f.push(p.key("secret_file"), "only for kind = \"webhook\"");
                }
                if e.username.is_some() != e.password_file.is_some() {
                    f.push(p.key("username"), "username and password_file go together");
                }
            }
            ExportKind::Webhook => {
                if let Err(m) = WebhookUrl::parse(&e.url) {
                    f.push(p.key("url"), m);
                }
                for (key, set) in [
                    ("username", e.username.is_some()),
                    ("password_file", e.password_file.is_some()),
                    ("client_id", e.client_id.is_some()),
                ] {
                    if set {
                        f.push(p.key(key), "only for kind = \"mqtt\"");
                    }
                }
                if !(1..=64).contains(&e.concurrency) {
                    f.push(p.key("concurrency"), "between 1 and 64");
                }
            }
        }
        if !(1..=300).contains(&e.timeout_s) {
            f.push(p.key("timeout_s"), "between 1 and 300 seconds");
        }
        if !(e.cap_radius_km > 0.0 && e.cap_radius_km <= 500.0) {
            f.push(p.key("cap_radius_km"), "above 0 and at most 500 km");
        }
        for (key, file) in [
            ("password_file", &e.password_file),
            ("secret_file", &e.secret_file),
            ("ca", &e.ca),
        ] {
            if let Some(file) = file
                && !resolve(file).is_file()
            {
                f.push(
                    p.key(key),
                    format!("no such file: {}", resolve(file).display()),
                );
            }
        }
    }
}

/// Reads a one-line secret (an MQTT password, a webhook's HMAC key) from `path`, under the
/// rules of every secret file lookout reads (`config::token`): one line, the owner's alone.
pub fn read_secret(path: &Path) -> Result<String, String> {
    crate::config::token::read_secret_file(path, "export secret file", "secret", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Vec<ExportConfig> {
        #[derive(Deserialize)]
        struct File {
            export: Vec<ExportConfig>,
        }
        toml::from_str::<File>(toml_text).expect("parses").export
    }

    fn problems(exports: &[ExportConfig]) -> Vec<String> {
        let mut f = Findings::default();
        validate(exports, |p| p.to_path_buf(), &mut f);
        f.0.iter().map(|(k, m)| format!("{k}: {m}")).collect()
    }

    #[test]
    fn good_entries_pass_with_defaults() {
        let e = parse(
            "[[export]]\nid = \"b\"\nkind = \"mqtt\"\nurl = \"mqtts://[::1]\"\n\n\
             [[export]]\nid = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/h\"\nformat = \"cap\"\n",
        );
        assert!(problems(&e).is_empty(), "{:?}", problems(&e));
        assert_eq!(
            e[0].mqtt_endpoint().expect("url"),
            ("::1".into(), 8883, true)
        );
        assert_eq!(e[0].topic_prefix, "lookout");
        assert_eq!((e[1].concurrency, e[1].timeout_s), (4, 10));
    }

    #[test]
    fn webhook_urls_parse_and_refuse_credentials() {
        let t = WebhookUrl::parse("http://127.0.0.1:9000/hook?x=1").expect("parses");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9000, "/hook?x=1")
        );
        assert_eq!(t.host_header(), "127.0.0.1:9000");
        let t = WebhookUrl::parse("https://[::1]/").expect("parses");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 443, true));
        assert_eq!(t.host_header(), "[::1]");
        assert!(WebhookUrl::parse("https://u:p@h/").is_err_and(|e| !e.contains("p@")));
        assert!(WebhookUrl::parse("ftp://h/").is_err());
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact("mqtts://user:pw@broker.local:8883"),
            "mqtts://broker.local:8883"
        );
        assert_eq!(
            redact("https://h.example/hook?x=1"),
            "https://h.example/hook?x=1"
        );
    }

    #[test]
    fn every_mistake_is_named_by_its_key() {
        let e = parse(
            "[[export]]\nid = \"b\"\nkind = \"mqtt\"\nurl = \"tcp://broker\"\ntopic_prefix = \"a/#\"\n\
             secret_file = \"/nonexistent/key\"\nusername = \"u\"\n\n\
             [[export]]\nid = \"b\"\nkind = \"webhook\"\nurl = \"https://user:pw@h/\"\nconcurrency = 0\n\
             client_id = \"x\"\ntimeout_s = 0\ncap_radius_km = -1.0\n",
        );
        let p = problems(&e);
        for want in [
            "export[0].url: `tcp://broker`",
            "export[0].topic_prefix",
            "export[0].secret_file: only for kind = \"webhook\"",
            "export[0].secret_file: no such file",
            "export[0].username",
            "export[1].id: duplicate export id `b`",
            "export[1].url",
            "export[1].concurrency",
            "export[1].client_id",
            "export[1].timeout_s",
            "export[1].cap_radius_km",
        ] {
            assert!(
                p.iter().any(|x| x.starts_with(want)),
                "{want} not in {p:#?}"
            );
        }
        assert!(
            !p.iter().any(|x| x.contains("pw")),
            "a password shown: {p:?}"
        );
    }
}
