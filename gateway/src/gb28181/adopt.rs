//! Channels that become cameras without a `[[camera]]` entry each
//! (`[[gateway.gb28181.adopt]]`): a lower platform sharing hundreds of channels, or a
//! fleet of body cameras, is adopted by one rule per device.

use crate::config::{CameraConfig, GbAdoptConfig, GbCameraConfig, Sampling, Transport};

use super::DeviceStatus;

/// The type codes (digits 11–13 of a GB/T 28181 id) of channels that carry video: 131
/// camera, 132 IP camera. Directories (215 business group, 216 virtual organisation),
/// alarm inputs and outputs, voice channels and the devices themselves are not cameras.
const VIDEO_TYPES: [&str; 2] = ["131", "132"];

/// Whether a channel id names a video channel.
pub fn is_video_channel(id: &str) -> bool {
    lookout_codecs::sip::valid_gb_id(id) && VIDEO_TYPES.contains(&&id[10..13])
}

/// The id an adopted channel's camera gets.
pub fn camera_id(channel: &str) -> String {
    format!("gb-{channel}")
}

/// The cameras the rules adopt from the devices' catalogs as they stand, in rule then
/// channel-id order: every video channel of an adopted device, up to the rule's cap, that
/// no configured camera plays already and whose id no configured camera uses. Channels
/// over a rule's cap are left out ([`capped`] says which devices have them).
pub fn adopted(
    rules: &[GbAdoptConfig],
    devices: &[DeviceStatus],
    configured: &[CameraConfig],
) -> Vec<CameraConfig> {
    let mut out = Vec::new();
    for rule in rules {
        let Some(device) = devices.iter().find(|d| d.id == rule.device) else {
            continue;
        };
        let mut taken = 0;
        for ch in &device.channels {
            if taken >= rule.max_channels {
                break;
            }
            if !is_video_channel(&ch.id) {
                continue;
            }
            let id = camera_id(&ch.id);
            let played = configured.iter().any(|c| {
                c.id == id
                    || c.gb28181
                        .as_ref()
                        .is_some_and(|g| g.device == rule.device && g.channel == ch.id)
            });
            if played {
                continue;
            }
            taken += 1;
            out.push(CameraConfig {
                name: ch.name.clone(),
                group: rule.group.clone(),
                gb28181: Some(GbCameraConfig {
                    device: rule.device.clone(),
                    channel: ch.id.clone(),
                    transport: rule.transport,
                }),
                detectors: rule.detectors.clone(),
                sampling: Sampling::Keyframes,
                ..CameraConfig::bare(&id, rule.kind, "", Transport::Tcp)
            });
        }
    }
    out
}

/// The adopted devices whose catalogs list more video channels than their rule's
/// `max_channels`, with how many they list.
pub fn capped(rules: &[GbAdoptConfig], devices: &[DeviceStatus]) -> Vec<(String, usize)> {
    rules
        .iter()
        .filter_map(|rule| {
            let device = devices.iter().find(|d| d.id == rule.device)?;
            let video = device
                .channels
                .iter()
                .filter(|c| is_video_channel(&c.id))
                .count();
            (video > rule.max_channels).then(|| (rule.device.clone(), video))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CameraKind, GbTransport};
    use crate::gb28181::Channel;

    fn device(id: &str, channels: &[(&str, &str)]) -> DeviceStatus {
        DeviceStatus {
            id: id.into(),
            status: "online",
            address: "127.0.0.1:5060".into(),
            transport: "udp",
            user_agent: None,
            registered_unix_ms: 0,
            expires_s: 3600,
            last_keepalive_unix_ms: None,
            catalog_total: Some(channels.len()),
            channels: channels
                .iter()
                .map(|(id, name)| Channel {
                    id: (*id).into(),
                    name: Some((*name).into()),
                    status: Some("ON".into()),
                    manufacturer: None,
                    model: None,
                    parent: None,
                })
                .collect(),
        }
    }

    fn rule(device: &str) -> GbAdoptConfig {
        GbAdoptConfig {
            device: device.into(),
            kind: CameraKind::Bodycam,
            transport: GbTransport::Tcp,
            detectors: vec!["smoke_flood".into()],
            group: Some("water".into()),
            max_channels: 256,
        }
    }

    const PLATFORM: &str = "34020000002000000001";

    #[test]
    fn video_channels_become_cameras_with_the_rules_settings() {
        let devices = [device(
            PLATFORM,
            &[
                ("34020000002150000001", "reservoir group"),
                ("34020000001310000001", "dam north"),
                ("34020000001320000002", "dam south"),
                ("34020000001340000001", "alarm input"),
                ("bogus", "not an id"),
            ],
        )];
        let cams = adopted(&[rule(PLATFORM)], &devices, &[]);
        let ids: Vec<&str> = cams.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["gb-34020000001310000001", "gb-34020000001320000002"]);
        let c = &cams[0];
        assert_eq!(c.name.as_deref(), Some("dam north"));
        assert_eq!(c.kind, CameraKind::Bodycam);
        assert_eq!(c.group.as_deref(), Some("water"));
        assert_eq!(c.detectors, ["smoke_flood"]);
        assert!(c.url.is_empty());
        let gb = c.gb28181.as_ref().expect("a GB/T 28181 camera");
        assert_eq!(
            (gb.device.as_str(), gb.channel.as_str(), gb.transport),
            (PLATFORM, "34020000001310000001", GbTransport::Tcp)
        );
    }

    #[test]
    fn configured_channels_unknown_devices_and_the_cap_are_respected() {
        let devices = [device(
            PLATFORM,
            &[
                ("34020000001310000001", "a"),
                ("34020000001310000002", "b"),
                ("34020000001310000003", "c"),
                ("34020000001310000004", "d"),
            ],
        )];
        // Channel 1 is a [[camera]] of its own; channel 2's id is taken.
        let mut own = CameraConfig::bare("tower-7", CameraKind::Tower, "", Transport::Tcp);
        own.gb28181 = Some(GbCameraConfig {
            device: PLATFORM.into(),
            channel: "34020000001310000001".into(),
            transport: GbTransport::Udp,
        });
        let clash = CameraConfig::bare(
            "gb-34020000001310000002",
            CameraKind::Fixed,
            "rtsp://127.0.0.1/x",
            Transport::Tcp,
        );
        let mut r = rule(PLATFORM);
        r.max_channels = 1;
        let rules = [r, rule("34020000001320000077")];
        let cams = adopted(&rules, &devices, &[own, clash]);
        let ids: Vec<&str> = cams.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["gb-34020000001310000003"]);
        assert_eq!(capped(&rules, &devices), [(PLATFORM.to_string(), 4)]);
    }
}
