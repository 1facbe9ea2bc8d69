//! The command center's configuration file (`lookout center --config`):
//! where it listens for gateways, its TLS identity, where the ledger lives,
//! which video it wants, and the upstream centers it forwards to (a
//! cascade). Mistakes are reported as `file:line:column: key: message`, like
//! the gateway's file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use lookout_core::config::{Findings, KeyPath, Problems, UpstreamConfig};

/// Which cameras' video the center asks its gateways for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeSetting {
    /// Every camera.
    #[default]
    All,
    /// Only `cameras`.
    List,
    /// Cameras with an active alert, plus `cameras`.
    Alerting,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterSection {
    /// Names this center to gateways (in `Welcome`) and upstream centers.
    pub id: String,
    /// UDP address gateways dial (QUIC).
    pub listen: SocketAddr,
    /// HTTP API and metrics; loopback by default.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// A file holding the API token (one line, ≥ 16 characters). Required
    /// when `http_listen` is not loopback; with it the API needs
    /// `Authorization: Bearer TOKEN` and the wall asks for the token once.
    pub api_token_file: Option<PathBuf>,
    /// Host names the API and the wall are reached by, besides loopback and
    /// IP addresses (a reverse proxy's public name): requests for any other
    /// `Host` are refused (DNS rebinding, `config/hosts.rs`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The wall is reached through a reverse proxy that terminates TLS
    /// (docs/SECURITY.md): its sign-in cookie is then marked `Secure`, so
    /// a browser never sends it over plain HTTP.
    #[serde(default)]
    pub tls_proxy: bool,
    /// A wall sign-in ends after this many minutes without a request.
    #[serde(default = "default_session_idle_minutes")]
    pub session_idle_minutes: u64,
    /// …and this many hours after it began, used or not (a shift and a
    /// half: the next shift signs in with its own hands).
    #[serde(default = "default_session_max_hours")]
    pub session_max_hours: u64,
    /// Folder of the ledger (`ledger.sqlite3`) and the alerts' evidence clips
    /// (`clips/`), relative to this file.
    #[serde(default = "default_storage")]
    pub storage: PathBuf,
    /// Evidence clips stored more than this many days ago are deleted (hourly, and
    /// whenever a clip is stored).
    #[serde(default = "default_clip_max_age_days")]
    pub clip_max_age_days: u64,
    /// The most bytes all evidence clips may take together (an integer of bytes):
    /// past it the oldest are deleted first. A clip offered larger than this is
    /// refused, since it could never be kept.
    #[serde(default = "default_clip_max_bytes")]
    pub clip_max_bytes: u64,
    /// The CA that signs the gateways' (and lower centers') certificates (PEM).
    pub ca: PathBuf,
    /// The center's certificate (PEM).
    pub cert: PathBuf,
    /// The center's private key (PEM).
    pub key: PathBuf,
    /// Which cameras' video the center asks gateways for: `all` (default),
    /// `list` (the ids in `cameras`) or `alerting` (those with an active
    /// alert, plus `cameras`).
    #[serde(default)]
    pub subscribe: SubscribeSetting,
    /// Camera ids for `list` and `alerting`.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Most GOP streams a gateway may have open at once.
    #[serde(default = "default_max_streams")]
    pub max_gop_streams: u32,
    /// `text` (default) or `json` log lines.
    #[serde(default)]
    pub log_format: lookout_core::config::LogFormat,
    /// The address operators and other systems reach this center's API at
    /// (`https://center.example`), for links in exported CAP documents
    /// (snapshots) and the CAP feed; without it they carry none.
    pub public_url: Option<String>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}

fn default_session_idle_minutes() -> u64 {
    // A wall left on a quiet night makes no request for a long while (its
    // event stream stays open); an hour without one means nobody is there.
    60
}

fn default_session_max_hours() -> u64 {
    12
}

fn default_storage() -> PathBuf {
    PathBuf::from("lookout-center")
}

fn default_clip_max_age_days() -> u64 {
    ClipRetention::default().max_age_days
}

fn default_clip_max_bytes() -> u64 {
    ClipRetention::default().max_bytes
}

/// How long and how much the store keeps (`[center] clip_max_age_days`,
/// `clip_max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRetention {
    /// Clips stored more than this many days ago are deleted.
    pub max_age_days: u64,
    /// The most bytes all stored clips may take together; the oldest go first.
    pub max_bytes: u64,
}

impl Default for ClipRetention {
    fn default() -> Self {
        ClipRetention {
            max_age_days: 90,
            max_bytes: 50 << 30,
        }
    }
}

/// The smallest `clip_max_bytes` accepted: below it not even a short clip fits.
pub const MIN_CLIP_MAX_BYTES: u64 = 1 << 20;

/// The longest `clip_max_age_days` accepted (a typo's extra digits are caught).
pub const MAX_CLIP_MAX_AGE_DAYS: u64 = 36_500;

impl CenterSection {
    /// The evidence clips' retention limits.
    pub fn clip_retention(&self) -> ClipRetention {
        ClipRetention {
            max_age_days: self.clip_max_age_days,
            max_bytes: self.clip_max_bytes,
        }
    }
}

fn default_max_streams() -> u32 {
    // PROTOCOL.md §3: at least 4 per camera; a county gateway has ~70.
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterConfig {
    /// `[center]`: identity, listeners, storage, TLS, subscriptions.
    pub center: CenterSection,
    /// Centers above this one (county → city → province).
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    /// Where every gateway's alert events go besides the ledger: MQTT
    /// brokers and webhook receivers (`lookout_core::export`).
    #[serde(default, rename = "export")]
    pub exports: Vec<lookout_core::export::ExportConfig>,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl CenterConfig {
    pub fn load(path: &Path) -> Result<CenterConfig, Problems> {
        let source = lookout_core::config::read_source(path)?;
        let mut config: CenterConfig = lookout_core::config::parse_toml(path, &source)?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let findings = config.validate();
        if findings.0.is_empty() {
            Ok(config)
        } else {
            Err(lookout_core::config::problems_at(path, &source, findings))
        }
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn validate(&self) -> Findings {
        let mut f = Findings::default();
        let c = KeyPath::root().key("center");
        if !lookout_core::config::valid_id(&self.center.id) {
            f.push(c.key("id"), lookout_core::config::id_rule(&self.center.id));
        }
        for (key, file) in [
            ("ca", &self.center.ca),
            ("cert", &self.center.cert),
            ("key", &self.center.key),
        ] {
            if !self.resolve(file).is_file() {
                f.push(
                    c.key(key),
                    format!("no such file: {}", self.resolve(file).display()),
                );
            }
        }
        if let Some(problem) = lookout_core::config::token::exposure_problem(
            self.center.http_listen,
            self.center.api_token_file.is_some(),
        ) {
            f.push(c.key("http_listen"), problem);
        }
        if let Some(file) = &self.center.api_token_file
            && let Err(e) = lookout_core::config::token::read_token(&self.resolve(file))
        {
            f.push(c.key("api_token_file"), e);
        }
        for (i, name) in self.center.allowed_hosts.iter().enumerate() {
            if let Some(problem) = lookout_core::config::hosts::host_name_problem(name) {
                f.push(c.key("allowed_hosts").index(i), problem);
            }
        }
        if !(1..=24 * 60).contains(&self.center.session_idle_minutes) {
            f.push(
                c.key("session_idle_minutes"),
                "must be between 1 and 1440 minutes (a day)",
            );
        }
        if !(1..=7 * 24).contains(&self.center.session_max_hours) {
            f.push(
                c.key("session_max_hours"),
                "must be between 1 and 168 hours (a week)",
            );
        }
        if self.center.subscribe == SubscribeSetting::All && !self.center.cameras.is_empty() {
            f.push(
                c.key("cameras"),
                "only for subscribe = \"list\" or \"alerting\"",
            );
        }
        if !(1..=MAX_CLIP_MAX_AGE_DAYS).contains(&self.center.clip_max_age_days) {
            f.push(
                c.key("clip_max_age_days"),
                format!("must be between 1 and {MAX_CLIP_MAX_AGE_DAYS} days"),
            );
        }
        if self.center.clip_max_bytes < MIN_CLIP_MAX_BYTES {
            f.push(
                c.key("clip_max_bytes"),
                format!("at least {MIN_CLIP_MAX_BYTES} bytes (1 MiB); the default is 53687091200 (50 GiB)"),
            );
        }
        if self.center.max_gop_streams < 4 {
            f.push(c.key("max_gop_streams"), "at least 4");
        }
        if let Some(url) = &self.center.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            f.push(c.key("public_url"), "expected http://… or https://…");
        }
        lookout_core::export::config::validate(&self.exports, |p| self.resolve(p), &mut f);
        let mut ids = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let p = KeyPath::root().key("upstream").index(i);
            if !ids.insert(u.id.as_str()) {
                f.push(p.key("id"), format!("duplicate upstream id `{}`", u.id));
            }
            if !u.address.contains(':') {
                f.push(p.key("address"), "expected host:port");
            }
            for (key, file) in [("ca", &u.ca), ("cert", &u.cert), ("key", &u.key)] {
                if !self.resolve(file).is_file() {
                    f.push(
                        p.key(key),
                        format!("no such file: {}", self.resolve(file).display()),
                    );
                }
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads a center file whose `[center]` section has `extra` lines added.
    /// (A folder of its own under the system's temporary folder, not the
    /// `tempfile` crate: the fuzz crate compiles this file without it.)
    fn load_with(extra: &str) -> Result<CenterConfig, Problems> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lookout-center-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.pem", "center.pem", "center.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let path = dir.join("center.toml");
        std::fs::write(
            &path,
            format!(
                "[center]\nid = \"c-1\"\nlisten = \"127.0.0.1:4433\"\nca = \"ca.pem\"\n\
                 cert = \"center.pem\"\nkey = \"center.key\"\n{extra}\n"
            ),
        )
        .unwrap();
        let loaded = CenterConfig::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    #[test]
    fn clip_retention_defaults_to_90_days_and_50_gib() {
        let c = load_with("").unwrap();
        assert_eq!(c.center.clip_max_age_days, 90);
        assert_eq!(c.center.clip_max_bytes, 53_687_091_200);
        let c = load_with("clip_max_age_days = 30\nclip_max_bytes = 2000000000").unwrap();
        assert_eq!(
            c.center.clip_retention(),
            ClipRetention {
                max_age_days: 30,
                max_bytes: 2_000_000_000
            }
        );
    }

    #[test]
    fn clip_retention_out_of_range_is_refused_naming_the_key() {
        for (line, key) in [
            ("clip_max_age_days = 0", "center.clip_max_age_days"),
            ("clip_max_age_days = 100000", "center.clip_max_age_days"),
            ("clip_max_bytes = 1000", "center.clip_max_bytes"),
            ("clip_max_bytes = -1", "clip_max_bytes"),
            ("clip_max_bytes = \"50GiB\"", "clip_max_bytes"),
        ] {
            let problems = load_with(line).unwrap_err().to_string();
            assert!(problems.contains(key), "{line}: {problems}");
        }
    }
}
