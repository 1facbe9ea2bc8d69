//! Configuration pieces both sides share: how problems in a file are found,
//! located (file:line:column and the key) and reported; the `[[upstream]]`
//! entry (a gateway's or a cascading center's command center); camera
//! kinds and locations as the wire carries them; log format; and the checks
//! on ids, URLs and token files. The gateway's own file (cameras,
//! detectors) is `lookout::config`; the center's is `lookout_center::config`.

pub mod hosts;
mod locate;
pub mod token;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use locate::{KeyPath, Locator, line_col};

/// Why a camera exists: its class sets its default relay priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraKind {
    Tower,
    Drone,
    Bodycam,
    Fixed,
}

impl CameraKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraKind::Tower => "tower",
            CameraKind::Drone => "drone",
            CameraKind::Bodycam => "bodycam",
            CameraKind::Fixed => "fixed",
        }
    }
}

impl From<CameraKind> for lookout_codecs::relay::CameraKind {
    fn from(kind: CameraKind) -> Self {
        use lookout_codecs::relay::CameraKind as Wire;
        match kind {
            CameraKind::Tower => Wire::Tower,
            CameraKind::Drone => Wire::Drone,
            CameraKind::Bodycam => Wire::Bodycam,
            CameraKind::Fixed => Wire::Fixed,
        }
    }
}

impl fmt::Display for CameraKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, degrees (WGS 84).
    pub lat: f64,
    /// Longitude, degrees (WGS 84).
    pub lon: f64,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Congestion control on a relay connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Congestion {
    /// BBR, its window capped near the path's BDP while a queue stands, so
    /// alerts never wait behind a full bottleneck buffer.
    #[default]
    LowQueue,
    /// quinn's BBR as is.
    Bbr,
    /// Loss-based Cubic (fills bottleneck buffers; for comparison).
    Cubic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Names the upstream in logs, metrics and `/api/upstreams`, and its
    /// outbox file.
    pub id: String,
    /// `host:port` of the command center's QUIC endpoint.
    pub address: String,
    /// Name in the center's certificate.
    pub server_name: String,
    /// The CA that signed the center's certificate (PEM).
    pub ca: PathBuf,
    /// This side's client certificate (PEM), from the same CA.
    pub cert: PathBuf,
    /// This side's private key (PEM).
    pub key: PathBuf,
    /// `low-queue` (default), `bbr` or `cubic`.
    #[serde(default)]
    pub congestion: Congestion,
}

impl UpstreamConfig {
    /// This entry with its files resolved by `resolve` (against the folder
    /// of the file it came from).
    pub fn resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> UpstreamConfig {
        UpstreamConfig {
            ca: resolve(&self.ca),
            cert: resolve(&self.cert),
            key: resolve(&self.key),
            ..self.clone()
        }
    }
}

/// One mistake in a configuration file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based; 0 when the key could not be located.
    pub line: usize,
    /// 1-based; 0 when the key could not be located.
    pub column: usize,
    /// The key path, e.g. `camera[3].url`.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

/// Every mistake found in one file.
#[derive(Debug, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Findings about a semantic check, keyed by path, turned into [`Problem`]s
/// by [`Config::load`].
#[derive(Debug, Default)]
pub struct Findings(pub Vec<(KeyPath, String)>);

impl Findings {
    pub fn push(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push((path, message.into()));
    }
}

/// Turns key-path findings into located problems.
pub fn problems_at(path: &Path, source: &str, findings: Findings) -> Problems {
    let locator = Locator::new(source);
    Problems(
        findings
            .0
            .into_iter()
            .map(|(key, message)| {
                let (line, column) = locator
                    .span_of(&key)
                    .map(|s| line_col(source, s.start))
                    .unwrap_or((0, 0));
                Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: key.to_string(),
                    message,
                }
            })
            .collect(),
    )
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub fn id_rule(id: &str) -> String {
    format!("id `{id}`: use 1–64 characters of letters, digits, `-`, `_` or `.`")
}

/// Where a URL's parts begin, as [`url_parts`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// The `user[:password]` between `://` and the `@` before the host.
    pub userinfo: Option<std::ops::Range<usize>>,
    /// The byte where the host begins (after `://`, or after the `@`).
    pub host_start: usize,
}

/// Splits a URL at its user-info, leniently, as cameras' URLs are written:
/// a password often carries `/`, `?`, `#` or `@` unescaped
/// (`rtsp://admin:Pa/ss@10.0.0.5/…`), which a strict RFC 3986 reading
/// would take for the start of the path and so show the password as a
/// host and a path. The user-info therefore runs to the *last* `@` of the
/// URL, unless nothing before that `@` could be a password (no `:` before
/// it and no `@` before the first `/`, `?` or `#`: `rtsp://host/a@b`). The
/// cost is that an `@` in the path of a URL with a password must be written
/// `%40`; the gain is that no password is ever read as a host or a path,
/// so none is shown in a log, an error or the API. `None` without `://`.
pub fn url_parts(url: &str) -> Option<UrlParts> {
    let after_start = url.find("://")? + 3;
    let after = &url[after_start..];
    let plain = UrlParts {
        userinfo: None,
        host_start: after_start,
    };
    let Some(at) = after.rfind('@') else {
        return Some(plain);
    };
    let naive_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    if !after[..at].contains(':') && !after[..naive_end].contains('@') {
        return Some(plain);
    }
    Some(UrlParts {
        userinfo: Some(after_start..after_start + at),
        host_start: after_start + at + 1,
    })
}

/// Whether a URL carries user-info (a user name, usually with a password)
/// in the clear; `lookout check-config` suggests the camera's `username`
/// and `password` keys instead.
pub fn url_has_credentials(url: &str) -> bool {
    url_parts(url).is_some_and(|p| p.userinfo.is_some())
}

/// Reads a configuration file; a failure is a problem naming the file.
pub fn read_source(path: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])
    })
}

/// Parses a configuration file's TOML into `T`; a mistake is a problem with
/// its line, column and key (secrets in the message redacted).
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    source: &str,
) -> Result<T, Problems> {
    toml::from_str(source).map_err(|e| {
        let locator = Locator::new(source);
        let (line, column, key) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(source, span.start);
                (l, c, locator.path_at(span.start).to_string())
            }
            None => (0, 0, "(file)".to_string()),
        };
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line,
            column,
            key,
            message: redact_text(e.message().trim()),
        }])
    })
}

/// Removes `user:password@` from a URL (read as [`url_parts`] does, so a
/// password with `/`, `?`, `#` or `@` goes whole). Credentials never reach
/// a log line, an error or the HTTP API.
pub fn redact_url(url: &str) -> String {
    match url_parts(url) {
        Some(UrlParts {
            userinfo: Some(info),
            host_start,
        }) => format!("{}***@{}", &url[..info.start], &url[host_start..]),
        _ => url.to_string(),
    }
}

/// Redacts every URL with user-info inside a free-form message (errors from
/// GStreamer or serde may quote one).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme starts after the last character that cannot be in one, which
        // may be more than one byte long.
        let start = rest[..pos]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[pos..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
            .map_or(rest.len(), |i| pos + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a zone keeps or drops the detections inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneMode {
    /// Only detections inside count (any include zone, when there are some).
    Include,
    /// Detections inside are ignored.
    #[default]
    Exclude,
}

/// A polygon in the camera's picture, in source pixels (x right, y down).
/// Applies to detections that have a box (the box centre decides); a
/// classification result covers the whole frame and ignores zones.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Shown in logs and alerts.
    pub name: Option<String>,
    /// `exclude` (default) or `include`.
    #[serde(default)]
    pub mode: ZoneMode,
    /// Labels the zone applies to; empty means all.
    #[serde(default)]
    pub labels: Vec<String>,
    /// At least three `[x, y]` points in the camera's pixels.
    pub polygon: Vec<[f64; 2]>,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// When a run of sampled frames becomes an alert, and when it ends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicy {
    /// Raise when at least `raise_after` of the last `window` samples of a
    /// camera saw the label.
    #[serde(default = "default_raise_after")]
    pub raise_after: usize,
    /// How many recent samples `raise_after` counts over.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Clear after this many samples in a row without the label.
    #[serde(default = "default_clear_after")]
    pub clear_after: usize,
    /// After clearing, the same camera and label stay quiet this long.
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: f64,
    /// An active alert is re-sent (`updated`) at most this often, and only
    /// when its score rose or its region changed.
    #[serde(default = "default_update_interval_s")]
    pub update_interval_s: f64,
    /// Severity per label; labels not listed are `high`.
    #[serde(default)]
    pub severity: std::collections::BTreeMap<String, Severity>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            raise_after: default_raise_after(),
            window: default_window(),
            clear_after: default_clear_after(),
            cooldown_s: default_cooldown_s(),
            update_interval_s: default_update_interval_s(),
            severity: Default::default(),
        }
    }
}

fn default_raise_after() -> usize {
    2
}

fn default_window() -> usize {
    3
}

fn default_clear_after() -> usize {
    3
}

fn default_cooldown_s() -> f64 {
    60.0
}

fn default_update_interval_s() -> f64 {
    5.0
}
