//! Control stream messages: the handshake (`Hello` → `Welcome` or `Refuse`), the center's
//! video subscription, the gateway's camera changes, liveness pings, `Goaway`, and the
//! center's `AlertRefused` notices (an alert it did not store, and why). The
//! gateway opens this bidirectional stream first on every connection and keeps it open
//! for the connection's life. Unknown message types on this stream are skipped, so later
//! versions can add advisory messages without breaking version-1 peers.

use super::framing::StreamMessage;
use super::framing::sealed::{Order, Sealed};
use super::video::{read_codec, write_codec};
use super::wire::{Encoded, MessageType, Reader, Writer};
use super::{
    DecodeError, EncodeError, ErrorCode, MAX_CONTROL_MESSAGE, MAX_ID_LEN, MAX_TEXT_LEN, StreamKind,
};
use crate::Codec;
use std::collections::HashSet;

/// The stream limit, the longest any list of this stream can be.
const LIMIT: usize = MAX_CONTROL_MESSAGE as usize;

/// Why a camera exists; its default relay priority class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CameraKind {
    /// 0: a fire-watch tower camera.
    Tower,
    /// 1: a drone's camera.
    Drone,
    /// 2: a body-worn camera.
    Bodycam,
    /// 3: a fixed camera of a partner network (traffic, water, forestry).
    Fixed,
}

impl CameraKind {
    /// Every kind, in wire-value order.
    pub const ALL: [CameraKind; 4] = [
        CameraKind::Tower,
        CameraKind::Drone,
        CameraKind::Bodycam,
        CameraKind::Fixed,
    ];

    /// The kind's name as in the gateway's configuration: `"tower"`.
    pub fn name(self) -> &'static str {
        match self {
            CameraKind::Tower => "tower",
            CameraKind::Drone => "drone",
            CameraKind::Bodycam => "bodycam",
            CameraKind::Fixed => "fixed",
        }
    }

    fn to_wire(self) -> u8 {
        self as u8
    }

    fn from_wire(value: u8) -> Option<CameraKind> {
        CameraKind::ALL.get(usize::from(value)).copied()
    }
}

/// Where a camera's ingest is, as the gateway's camera table shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CameraState {
    /// 0: opening the camera's stream, no video yet.
    Connecting,
    /// 1: video is arriving.
    Live,
    /// 2: the connection is up but no video came within the stall timeout.
    Stalled,
    /// 3: the last attempt failed; waiting before the next.
    Backoff,
    /// 4: failing in a way retrying soon will not fix (credentials, codec).
    Failed,
}

impl CameraState {
    /// Every state, in wire-value order.
    pub const ALL: [CameraState; 5] = [
        CameraState::Connecting,
        CameraState::Live,
        CameraState::Stalled,
        CameraState::Backoff,
        CameraState::Failed,
    ];

    /// The state's name as in the gateway's camera table: `"live"`.
    pub fn name(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Live => "live",
            CameraState::Stalled => "stalled",
            CameraState::Backoff => "backoff",
            CameraState::Failed => "failed",
        }
    }

    fn to_wire(self) -> u8 {
        self as u8
    }

    fn from_wire(value: u8) -> Option<CameraState> {
        CameraState::ALL.get(usize::from(value)).copied()
    }
}

/// A camera's position, WGS 84 degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
}

fn lat_ok(lat: f64) -> bool {
    (-90.0..=90.0).contains(&lat)
}

fn lon_ok(lon: f64) -> bool {
    (-180.0..=180.0).contains(&lon)
}

/// A camera's video as last seen by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VideoFormat {
    /// H.264 or H.265.
    pub codec: Codec,
    /// Picture width in pixels, at least 1.
    pub width: u32,
    /// Picture height in pixels, at least 1.
    pub height: u32,
}

/// One camera as the gateway describes it to the center.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraInfo {
    /// The camera's id in the gateway's configuration, 1–64 bytes; unique per gateway.
    pub id: String,
    /// What kind of camera it is.
    pub kind: CameraKind,
    /// Its ingest state now.
    pub state: CameraState,
    /// Name for the wall ("Township 7 north tower"), at most 1024 bytes.
    pub name: Option<String>,
    /// Administrative group (the township), at most 1024 bytes.
    pub group: Option<String>,
    /// Where it stands.
    pub location: Option<Location>,
    /// Codec and picture size, once the gateway has seen the camera's parameter sets.
    pub format: Option<VideoFormat>,
}

/// Smallest encoded [`CameraInfo`]: a one-byte id, kind, state, four absent optionals.
const CAMERA_INFO_MIN_LEN: usize = 2 + 1 + 1 + 4;

impl CameraInfo {
    fn write(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.string("id", &self.id, 1, MAX_ID_LEN)?;
        w.u8(self.kind.to_wire());
        w.u8(self.state.to_wire());
        write_opt_text(w, "name", self.name.as_deref())?;
        write_opt_text(w, "group", self.group.as_deref())?;
        w.flag(self.location.is_some());
        if let Some(location) = self.location {
            if !lat_ok(location.lat) {
                return Err(w.invalid("location.lat", location.lat, "-90 to 90"));
            }
            if !lon_ok(location.lon) {
                return Err(w.invalid("location.lon", location.lon, "-180 to 180"));
            }
            w.f64(location.lat);
            w.f64(location.lon);
        }
        w.flag(self.format.is_some());
        if let Some(format) = self.format {
            write_codec(w, format.codec);
            write_dimension(w, "format.width", format.width)?;
            write_dimension(w, "format.height", format.height)?;
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<CameraInfo, DecodeError> {
        let id = r.string("id", 1, MAX_ID_LEN)?;
        let at = r.offset();
        let kind = r.u8("kind")?;
        let kind = CameraKind::from_wire(kind)
            .ok_or_else(|| r.invalid("kind", at, kind, "0 to 3 (tower, drone, bodycam, fixed)"))?;
        let state = read_state(r)?;
        let name = read_opt_text(r, "name")?;
        let group = read_opt_text(r, "group")?;
        let location = if r.flag("location")? {
            let at = r.offset();
            let lat = r.f64("location.lat")?;
            if !lat_ok(lat) {
                return Err(r.invalid("location.lat", at, lat, "-90 to 90"));
            }
            let at = r.offset();
            let lon = r.f64("location.lon")?;
            if !lon_ok(lon) {
                return Err(r.invalid("location.lon", at, lon, "-180 to 180"));
            }
            Some(Location { lat, lon })
        } else {
            None
        };
        let format = if r.flag("format")? {
            let codec = read_codec(r, "format.codec")?;
            let width = read_dimension(r, "format.width")?;
            let height = read_dimension(r, "format.height")?;
            Some(VideoFormat {
                codec,
                width,
                height,
            })
        } else {
            None
        };
        Ok(CameraInfo {
            id,
            kind,
            state,
            name,
            group,
            location,
            format,
        })
    }
}

fn read_state(r: &mut Reader<'_>) -> Result<CameraState, DecodeError> {
    let at = r.offset();
    let state = r.u8("state")?;
    CameraState::from_wire(state).ok_or_else(|| {
        r.invalid(
            "state",
            at,
            state,
            "0 to 4 (connecting, live, stalled, backoff, failed)",
        )
    })
}

fn write_opt_text(
    w: &mut Writer,
    field: &'static str,
    text: Option<&str>,
) -> Result<(), EncodeError> {
    w.flag(text.is_some());
    match text {
        Some(text) => w.string(field, text, 0, MAX_TEXT_LEN),
        None => Ok(()),
    }
}

fn read_opt_text(r: &mut Reader<'_>, field: &'static str) -> Result<Option<String>, DecodeError> {
    if r.flag(field)? {
        r.string(field, 0, MAX_TEXT_LEN).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes a picture width or height: a varint of at least 1.
pub(crate) fn write_dimension(
    w: &mut Writer,
    field: &'static str,
    value: u32,
) -> Result<(), EncodeError> {
    if value == 0 {
        return Err(w.invalid(field, value, "at least 1"));
    }
    w.varint(field, u64::from(value))
}

/// Reads a picture width or height: a varint from 1 to 2^32 − 1.
pub(crate) fn read_dimension(r: &mut Reader<'_>, field: &'static str) -> Result<u32, DecodeError> {
    let at = r.offset();
    match r.varint_u32(field)? {
        0 => Err(r.invalid(field, at, 0, "at least 1")),
        value => Ok(value),
    }
}

/// Gateway → center, the first message on the control stream: who the gateway is and
/// which cameras it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    /// The protocol version the gateway speaks: the one in the negotiated ALPN
    /// ([`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) for `lookout/1`).
    pub protocol_version: u32,
    /// The gateway's configured id, 1–64 bytes; the center's key for it.
    pub gateway_id: String,
    /// The gateway's software, for the center's logs ("lookout 0.1.0"), at most 1024 bytes.
    pub software_version: String,
    /// Every configured camera, ids unique.
    pub cameras: Vec<CameraInfo>,
}

/// Center → gateway: the session is accepted; alerts and video may flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the center speaks on this connection: equal to
    /// [`Hello::protocol_version`].
    pub protocol_version: u32,
    /// The center's id, 1–64 bytes, for the gateway's logs and metrics.
    pub center_id: String,
}

/// Center → gateway: the session is refused; the center closes the connection with the
/// same code right after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refuse {
    /// Why, as an error code ([`ErrorCode::UNSUPPORTED_VERSION`],
    /// [`ErrorCode::UNAUTHORIZED`], [`ErrorCode::GATEWAY_ID_CONFLICT`], …).
    pub code: ErrorCode,
    /// Why, for people, at most 1024 bytes.
    pub reason: String,
}

/// Which cameras' video a center wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscribeMode {
    /// 0: every camera (the list must be empty). The default before any `Subscribe`.
    All,
    /// 1: only the listed cameras.
    List,
    /// 2: cameras with an active alert, plus the listed ones.
    AlertingOnly,
}

impl SubscribeMode {
    fn from_wire(value: u8) -> Option<SubscribeMode> {
        match value {
            0 => Some(SubscribeMode::All),
            1 => Some(SubscribeMode::List),
            2 => Some(SubscribeMode::AlertingOnly),
            _ => None,
        }
    }

    fn to_wire(self) -> u8 {
        self as u8
    }
}

/// Center → gateway: the video the center wants from now on, replacing any earlier
/// subscription. It takes effect at each camera's next GOP; alerts always flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// How to choose cameras.
    pub mode: SubscribeMode,
    /// Camera ids, 1–64 bytes each; empty for [`SubscribeMode::All`]. Ids the gateway
    /// does not have are kept: they apply if such a camera appears.
    pub cameras: Vec<String>,
}

/// One change to a gateway's camera list.
#[derive(Clone, Debug, PartialEq)]
pub enum CameraChange {
    /// Tag 0: a camera added, or replaced wholesale (configuration reloaded, format seen).
    Upsert(CameraInfo),
    /// Tag 1: a camera's ingest state changed.
    State {
        /// The camera's id.
        id: String,
        /// Its new state.
        state: CameraState,
    },
    /// Tag 2: a camera is gone from the gateway's configuration.
    Removed {
        /// The camera's id.
        id: String,
    },
}

/// Gateway → center: changes to the camera list since `Hello` or the last update, applied
/// in order.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraUpdate {
    /// At least one change.
    pub changes: Vec<CameraChange>,
}

/// Either way: asks the peer for a [`Pong`] with the same nonce, to measure round trips
/// and prove the peer's application (not only its QUIC stack) is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ping {
    /// Any value; echoed back.
    pub nonce: u64,
}

/// Either way: the answer to a [`Ping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pong {
    /// The nonce of the `Ping` answered.
    pub nonce: u64,
}

/// Either way: the sender will close the connection soon, with this code; the receiver
/// starts no new work on it (no new GOP streams; the gateway sends no new alerts but
/// waits for acknowledgements of those in flight).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goaway {
    /// The code the connection will be closed with.
    pub code: ErrorCode,
    /// Why, for people, at most 1024 bytes.
    pub reason: String,
}

/// Center → gateway: an `Alert` (or a `Snapshot`) the center did not store and will
/// not acknowledge, and why. Advisory, added within version 1 (PROTOCOL.md §6.14): the
/// guarantee is that nothing unstored is acknowledged; this notice only lets the gateway
/// say why an entry stays in its outbox, and stop re-sending it on this connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRefused {
    /// The alert's id, as the gateway sent it.
    pub alert_id: String,
    /// The revision of the `Alert` refused; `None`: the alert's `Snapshot` was refused.
    pub revision: Option<u32>,
    /// Why, as an error code: [`ErrorCode::ALERT_ID_CONFLICT`] (sending it again will not
    /// help), [`ErrorCode::INTERNAL_ERROR`] (the center could not store it now), …
    pub code: ErrorCode,
    /// Why, for people, at most 1024 bytes.
    pub reason: String,
}

/// A message of the control stream.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlMessage {
    /// 0x01, gateway → center.
    Hello(Hello),
    /// 0x02, center → gateway.
    Welcome(Welcome),
    /// 0x03, center → gateway.
    Refuse(Refuse),
    /// 0x04, center → gateway.
    Subscribe(Subscribe),
    /// 0x05, gateway → center.
    CameraUpdate(CameraUpdate),
    /// 0x06, either way.
    Ping(Ping),
    /// 0x07, either way.
    Pong(Pong),
    /// 0x08, either way.
    Goaway(Goaway),
    /// 0x09, center → gateway.
    AlertRefused(AlertRefused),
}

fn write_code_reason(w: &mut Writer, code: ErrorCode, reason: &str) -> Result<(), EncodeError> {
    w.varint("code", code.value())?;
    w.string("reason", reason, 0, MAX_TEXT_LEN)
}

fn read_code_reason(r: &mut Reader<'_>) -> Result<(ErrorCode, String), DecodeError> {
    let at = r.offset();
    let code = r.varint("code")?;
    // A varint never exceeds 2^62 - 1, so this always succeeds.
    let code = ErrorCode::from_u64(code).ok_or_else(|| r.invalid("code", at, code, "a varint"))?;
    Ok((code, r.string("reason", 0, MAX_TEXT_LEN)?))
}

impl StreamMessage for ControlMessage {
    const STREAM: StreamKind = StreamKind::Control;

    fn message_type(&self) -> MessageType {
        match self {
            ControlMessage::Hello(_) => MessageType::HELLO,
            ControlMessage::Welcome(_) => MessageType::WELCOME,
            ControlMessage::Refuse(_) => MessageType::REFUSE,
            ControlMessage::Subscribe(_) => MessageType::SUBSCRIBE,
            ControlMessage::CameraUpdate(_) => MessageType::CAMERA_UPDATE,
            ControlMessage::Ping(_) => MessageType::PING,
            ControlMessage::Pong(_) => MessageType::PONG,
            ControlMessage::Goaway(_) => MessageType::GOAWAY,
            ControlMessage::AlertRefused(_) => MessageType::ALERT_REFUSED,
        }
    }

    fn encode(&self) -> Result<Encoded, EncodeError> {
        let msg_type = self.message_type();
        let mut w = Writer::new(msg_type.name().unwrap_or("control message"));
        match self {
            ControlMessage::Hello(hello) => {
                w.varint("protocol_version", u64::from(hello.protocol_version))?;
                w.string("gateway_id", &hello.gateway_id, 1, MAX_ID_LEN)?;
                w.string("software_version", &hello.software_version, 0, MAX_TEXT_LEN)?;
                w.count("cameras", hello.cameras.len(), 0, LIMIT)?;
                let mut ids = HashSet::with_capacity(hello.cameras.len());
                for (index, camera) in hello.cameras.iter().enumerate() {
                    w.item("cameras", index);
                    if !ids.insert(camera.id.as_str()) {
                        return Err(w.invalid("id", &camera.id, "an id no earlier camera has"));
                    }
                    camera.write(&mut w)?;
                }
                w.end_item();
            }
            ControlMessage::Welcome(welcome) => {
                w.varint("protocol_version", u64::from(welcome.protocol_version))?;
                w.string("center_id", &welcome.center_id, 1, MAX_ID_LEN)?;
            }
            ControlMessage::Refuse(Refuse { code, reason })
            | ControlMessage::Goaway(Goaway { code, reason }) => {
                write_code_reason(&mut w, *code, reason)?;
            }
            ControlMessage::Subscribe(subscribe) => {
                w.u8(subscribe.mode.to_wire());
                if subscribe.mode == SubscribeMode::All && !subscribe.cameras.is_empty() {
                    return Err(w.invalid(
                        "cameras",
                        format!("{} ids", subscribe.cameras.len()),
                        "none with mode all",
                    ));
                }
                w.count("cameras", subscribe.cameras.len(), 0, LIMIT)?;
                for (index, id) in subscribe.cameras.iter().enumerate() {
                    w.item("cameras", index);
                    w.string("id", id, 1, MAX_ID_LEN)?;
                }
                w.end_item();
            }
            ControlMessage::CameraUpdate(update) => {
                w.count("changes", update.changes.len(), 1, LIMIT)?;
                for (index, change) in update.changes.iter().enumerate() {
                    w.item("changes", index);
                    match change {
                        CameraChange::Upsert(camera) => {
                            w.u8(0);
                            camera.write(&mut w)?;
                        }
                        CameraChange::State { id, state } => {
                            w.u8(1);
                            w.string("id", id, 1, MAX_ID_LEN)?;
                            w.u8(state.to_wire());
                        }
                        CameraChange::Removed { id } => {
                            w.u8(2);
                            w.string("id", id, 1, MAX_ID_LEN)?;
                        }
                    }
                }
                w.end_item();
            }
            ControlMessage::Ping(Ping { nonce }) | ControlMessage::Pong(Pong { nonce }) => {
                w.u64(*nonce);
            }
            ControlMessage::AlertRefused(refused) => {
                w.string("alert_id", &refused.alert_id, 1, MAX_ID_LEN)?;
                w.flag(refused.revision.is_some());
                if let Some(revision) = refused.revision {
                    w.varint("revision", u64::from(revision))?;
                }
                write_code_reason(&mut w, refused.code, &refused.reason)?;
            }
        }
        w.finish(msg_type, StreamKind::Control)
    }
}

impl Sealed for ControlMessage {
    fn decode_payload(msg_type: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match msg_type {
            MessageType::HELLO => {
                let protocol_version = r.varint_u32("protocol_version")?;
                let gateway_id = r.string("gateway_id", 1, MAX_ID_LEN)?;
                let software_version = r.string("software_version", 0, MAX_TEXT_LEN)?;
                let count = r.count("cameras", 0, LIMIT, CAMERA_INFO_MIN_LEN)?;
                let mut cameras = Vec::with_capacity(count);
                let mut ids = HashSet::with_capacity(count);
                for index in 0..count {
                    r.item("cameras", index);
                    let at = r.offset();
                    let camera = CameraInfo::read(r)?;
                    if !ids.insert(camera.id.clone()) {
                        return Err(r.invalid("id", at, &camera.id, "an id no earlier camera has"));
                    }
                    cameras.push(camera);
                }
                r.end_item();
                ControlMessage::Hello(Hello {
                    protocol_version,
                    gateway_id,
                    software_version,
                    cameras,
                })
            }
            MessageType::WELCOME => ControlMessage::Welcome(Welcome {
                protocol_version: r.varint_u32("protocol_version")?,
                center_id: r.string("center_id", 1, MAX_ID_LEN)?,
            }),
            MessageType::REFUSE => {
                let (code, reason) = read_code_reason(r)?;
                ControlMessage::Refuse(Refuse { code, reason })
            }
            MessageType::GOAWAY => {
                let (code, reason) = read_code_reason(r)?;
                ControlMessage::Goaway(Goaway { code, reason })
            }
            MessageType::SUBSCRIBE => {
                let at = r.offset();
                let mode = r.u8("mode")?;
                let mode = SubscribeMode::from_wire(mode).ok_or_else(|| {
                    r.invalid("mode", at, mode, "0 to 2 (all, list, alerting_only)")
                })?;
                let at = r.offset();
                let count = r.count("cameras", 0, LIMIT, 2)?;
                if mode == SubscribeMode::All && count > 0 {
                    return Err(r.invalid(
                        "cameras",
                        at,
                        format!("{count} ids"),
                        "none with mode all",
                    ));
                }
                let mut cameras = Vec::with_capacity(count);
                for index in 0..count {
                    r.item("cameras", index);
                    cameras.push(r.string("id", 1, MAX_ID_LEN)?);
                }
                r.end_item();
                ControlMessage::Subscribe(Subscribe { mode, cameras })
            }
            MessageType::CAMERA_UPDATE => {
                let count = r.count("changes", 1, LIMIT, 3)?;
                let mut changes = Vec::with_capacity(count);
                for index in 0..count {
                    r.item("changes", index);
                    let at = r.offset();
                    let change = match r.u8("tag")? {
                        0 => CameraChange::Upsert(CameraInfo::read(r)?),
                        1 => CameraChange::State {
                            id: r.string("id", 1, MAX_ID_LEN)?,
                            state: read_state(r)?,
                        },
                        2 => CameraChange::Removed {
                            id: r.string("id", 1, MAX_ID_LEN)?,
                        },
                        tag => {
                            return Err(r.invalid(
                                "tag",
                                at,
                                tag,
                                "0 to 2 (upsert, state, removed)",
                            ));
                        }
                    };
                    changes.push(change);
                }
                r.end_item();
                ControlMessage::CameraUpdate(CameraUpdate { changes })
            }
            MessageType::PING => ControlMessage::Ping(Ping {
                nonce: r.u64("nonce")?,
            }),
            MessageType::PONG => ControlMessage::Pong(Pong {
                nonce: r.u64("nonce")?,
            }),
            MessageType::ALERT_REFUSED => {
                let alert_id = r.string("alert_id", 1, MAX_ID_LEN)?;
                let revision = if r.flag("revision")? {
                    Some(r.varint_u32("revision")?)
                } else {
                    None
                };
                let (code, reason) = read_code_reason(r)?;
                ControlMessage::AlertRefused(AlertRefused {
                    alert_id,
                    revision,
                    code,
                    reason,
                })
            }
            other => {
                return Err(DecodeError::UnknownType {
                    stream: StreamKind::Control,
                    msg_type: other.0,
                    offset: r.offset(),
                });
            }
        })
    }

    fn check_order(&self, order: &mut Order, _offset: u64) -> Result<(), DecodeError> {
        if matches!(self, ControlMessage::Refuse(_)) {
            order.refused = true;
        }
        Ok(())
    }
}

macro_rules! into_message {
    ($message:ident: $($variant:ident),*) => {
        $(impl From<$variant> for $message {
            fn from(m: $variant) -> $message {
                $message::$variant(m)
            }
        })*
    };
}
pub(crate) use into_message;

into_message!(
    ControlMessage: Hello,
    Welcome,
    Refuse,
    Subscribe,
    CameraUpdate,
    Ping,
    Pong,
    Goaway,
    AlertRefused
);
