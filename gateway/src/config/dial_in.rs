//! The configuration of cameras that dial in: `[gateway.rtmp]` and `push = { … }` for
//! RTMP push, `[gateway.gb28181]` and `gb28181 = { … }` for GB/T 28181 devices and
//! lower platforms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[gateway.gb28181]`: lookout as a GB/T 28181 upper platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gb28181Section {
    /// Address and port for SIP over UDP and TCP, e.g. `"0.0.0.0:5060"`.
    pub sip_listen: SocketAddr,
    /// lookout's 20-digit SIP id (devices register to `sip:ID@DOMAIN`).
    pub id: String,
    /// lookout's 10-digit SIP domain, also the digest realm.
    pub domain: String,
    /// A file holding the password devices register with (one line, ≥ 8
    /// characters, readable by its owner only, like the API token).
    pub password_file: PathBuf,
    /// Devices and lower platforms known at once, at most.
    #[serde(default = "default_gb_max_devices")]
    pub max_devices: usize,
    /// A device that sends no keepalive this long goes offline (3 missed keepalives
    /// at the usual 60 s).
    #[serde(default = "default_gb_keepalive_timeout_s")]
    pub keepalive_timeout_s: u64,
    /// The address devices send video to, written in lookout's INVITE offers; when left
    /// out, `sip_listen`'s address, or (for `0.0.0.0`) the local address that routes to
    /// the device.
    pub media_ip: Option<std::net::IpAddr>,
    /// Digest algorithms for REGISTER, in order of preference: `["MD5"]` (the default:
    /// GB/T 28181-2016 and nearly every device), `["SHA-256", "MD5"]` to have devices
    /// that support GB/T 28181-2022's SHA-256 use it, `["SHA-256"]` to require it. Each
    /// is offered as a challenge of its own (RFC 8760).
    #[serde(default = "default_digest")]
    pub digest: Vec<DigestName>,
    /// Devices and lower platforms whose video channels become cameras as their
    /// catalogs list them, without a `[[camera]]` entry each.
    #[serde(default)]
    pub adopt: Vec<GbAdoptConfig>,
}

/// A digest algorithm as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum DigestName {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl DigestName {
    pub fn algorithm(self) -> lookout_codecs::sip::DigestAlgorithm {
        match self {
            DigestName::Md5 => lookout_codecs::sip::DigestAlgorithm::Md5,
            DigestName::Sha256 => lookout_codecs::sip::DigestAlgorithm::Sha256,
        }
    }
}

fn default_digest() -> Vec<DigestName> {
    vec![DigestName::Md5]
}

/// `digest`: at least one algorithm, each once.
pub(super) fn check_digest(digest: &[DigestName], path: &super::KeyPath, f: &mut super::Findings) {
    if digest.is_empty() {
        f.push(path.clone(), "name at least one of \"MD5\", \"SHA-256\"");
    }
    for (i, d) in digest.iter().enumerate() {
        if digest[..i].contains(d) {
            f.push(path.index(i), "named twice");
        }
    }
}

/// `[[gateway.gb28181.adopt]]`: every video channel (type code 131 camera, 132 IP
/// camera) a device or lower platform lists in its catalog becomes a camera with
/// these settings, id `gb-CHANNEL` and the catalog's name. A channel a `[[camera]]`
/// already plays is left to that entry. Adopted cameras stay (showing the device's
/// state) while the rule does, also when the device goes offline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbAdoptConfig {
    /// The 20-digit id of the device or lower platform.
    pub device: String,
    /// What its cameras are (`tower`, `drone`, `bodycam`, `fixed`): the relay's
    /// priorities and the wall's icons follow it.
    #[serde(default = "default_adopt_kind")]
    pub kind: crate::config::CameraKind,
    /// How its channels send RTP (`udp` or `tcp`).
    #[serde(default)]
    pub transport: GbTransport,
    /// Detectors run on each adopted camera (ids of `[[detector]]` entries).
    #[serde(default)]
    pub detectors: Vec<String>,
    /// The wall's group for its cameras (e.g. the department's platform).
    pub group: Option<String>,
    /// At most this many of its channels become cameras (lowest channel ids first).
    #[serde(default = "default_adopt_max_channels")]
    pub max_channels: usize,
}

/// `[[gateway.gb28181.adopt]]`'s rules: a valid device id adopted once, a sane channel
/// cap, detectors that exist.
pub(super) fn check_adopt(
    rules: &[GbAdoptConfig],
    detectors: &[super::DetectorConfig],
    path: &super::KeyPath,
    f: &mut super::Findings,
) {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, a) in rules.iter().enumerate() {
        let r = path.index(i);
        if !lookout_codecs::sip::valid_gb_id(&a.device) {
            f.push(r.key("device"), "must be 20 digits (GB/T 28181 id)");
        } else if let Some(first) = seen.insert(a.device.as_str(), i) {
            f.push(
                r.key("device"),
                format!("adopt[{first}] already adopts this device"),
            );
        }
        if !(1..=4096).contains(&a.max_channels) {
            f.push(r.key("max_channels"), "must be between 1 and 4096");
        }
        for (k, d) in a.detectors.iter().enumerate() {
            if !detectors.iter().any(|x| &x.id == d) {
                f.push(
                    r.key("detectors").index(k),
                    format!("no [[detector]] has id `{d}`"),
                );
            }
        }
    }
}

fn default_adopt_kind() -> crate::config::CameraKind {
    crate::config::CameraKind::Fixed
}

fn default_adopt_max_channels() -> usize {
    256
}

/// `gb28181 = { device = "D", channel = "C" }` on a camera: a channel of a GB/T 28181
/// device or lower platform registered to `[gateway.gb28181]`, played live.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbCameraConfig {
    /// The 20-digit id the device registers with.
    pub device: String,
    /// The 20-digit id of the channel in its catalog (a device with one camera often
    /// uses its own id).
    pub channel: String,
    /// How the device sends RTP: `udp` (default), `tcp` (lookout listens, the device
    /// connects: TCP passive, RFC 4571 framing; it survives the loss and NAT trouble
    /// UDP meets on cellular links) or `tcp-active` (the device listens, lookout
    /// connects: for devices and platforms lookout can reach, behind a firewall that
    /// lets nothing in).
    #[serde(default)]
    pub transport: GbTransport,
}

/// RTP transport a GB/T 28181 stream is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GbTransport {
    /// RTP over UDP to a port lookout opens.
    #[default]
    Udp,
    /// RTP over a TCP connection the device makes to a port lookout listens on.
    Tcp,
    /// RTP over a TCP connection lookout makes to the port the device answers with.
    #[serde(rename = "tcp-active")]
    TcpActive,
}

fn default_gb_max_devices() -> usize {
    1024
}

fn default_gb_keepalive_timeout_s() -> u64 {
    180
}

/// `[gateway.rtmp]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpSection {
    /// Address and port to listen on, e.g. `"0.0.0.0:1935"`.
    pub listen: SocketAddr,
}

/// How a camera that dials in pushes its video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushProtocol {
    /// RTMP publish (H.264; H.265 as FLV codec id 12 or Enhanced RTMP `hvc1`).
    Rtmp,
}

/// `push = { protocol = "rtmp", key = "K" }` on a camera.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// How the camera pushes.
    pub protocol: PushProtocol,
    /// The stream key it publishes under (`rtmp://GATEWAY/live/KEY`): the pusher's
    /// credential, so never logged. Printable ASCII without `/`, `?` or spaces, unique
    /// among the cameras.
    pub key: String,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("protocol", &self.protocol)
            .field("key", &format_args!("<{} characters>", self.key.len()))
            .finish()
    }
}

/// The GB/T 28181 password from its file (one line, at least 8 characters, the owner's
/// alone).
pub fn read_secret(path: &Path) -> Result<String, String> {
    crate::config::token::read_secret_file(path, "GB/T 28181 password file", "password", 8)
}

/// What is wrong with a stream key, if anything.
pub(super) fn push_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("must not be empty")
    } else if key.len() > 128 {
        Some("at most 128 characters")
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?')
    {
        Some("printable ASCII only, without `/`, `?` or spaces")
    } else {
        None
    }
}
