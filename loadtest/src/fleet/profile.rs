//! Camera profiles: what each kind of simulated camera sends and how it
//! misbehaves. Towers are steady, drones swing their bitrate, body cameras
//! jitter and drop out briefly — the behaviour the gateway has to live with.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use lookout_codecs::Codec;
use lookout_scene::{Lighting, SceneKind};

/// The kinds of camera a county fleet has (same names as the gateway's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Tower,
    Drone,
    Bodycam,
    Fixed,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tower, Kind::Drone, Kind::Bodycam, Kind::Fixed];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tower => "tower",
            Kind::Drone => "drone",
            Kind::Bodycam => "bodycam",
            Kind::Fixed => "fixed",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s.trim().trim_end_matches('s') {
            "tower" => Some(Kind::Tower),
            "drone" => Some(Kind::Drone),
            "bodycam" => Some(Kind::Bodycam),
            "fixed" => Some(Kind::Fixed),
            _ => None,
        }
    }

    pub fn scene(self) -> SceneKind {
        match self {
            Kind::Tower => SceneKind::Tower,
            Kind::Drone => SceneKind::Drone,
            Kind::Bodycam => SceneKind::Bodycam,
            Kind::Fixed => SceneKind::Fixed,
        }
    }
}

/// Picture and timing of one simulated camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Tower, drone, body camera or fixed camera.
    pub kind: Kind,
    /// H.264 or H.265.
    pub codec: Codec,
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// Target bitrate of the encoder.
    pub bitrate_kbps: u32,
    /// Encoder bitrate cycles through these factors, one per GOP (drones).
    pub bitrate_swing: &'static [f32],
    /// Send-time jitter as a fraction of the frame interval (body cameras).
    pub jitter: f64,
    /// Every this many seconds the camera goes silent for `dropout_ms`.
    pub dropout_every_s: Option<f64>,
    /// How long each dropout lasts, ms.
    pub dropout_ms: u64,
    /// The scene's lighting (day, dusk or haze by the camera's index).
    pub lighting: Lighting,
    /// B-frames and High profile, for robustness tests.
    pub bframes: bool,
    /// The camera pushes over RTMP to the gateway (`kind-rtmp` in `--mix`) instead of
    /// being served over RTSP.
    pub push_rtmp: bool,
    /// The camera is a GB/T 28181 device (`kind-gb` in `--mix`): it registers to the
    /// gateway and sends PS over RTP when INVITEd, instead of being served over RTSP.
    pub gb28181: bool,
    /// The camera is a channel of the fleet's GB/T 28181 lower platform
    /// (`platform-gb=N` in `--mix`).
    pub gb_platform: bool,
}

/// Picture sizes: `full` is what the named profiles promise; `small` keeps a
/// many-camera run on a laptop-sized machine (and in CI) affordable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Full,
    Small,
}

impl Profile {
    pub fn for_kind(kind: Kind, size: Size, index: usize) -> Profile {
        let full = match kind {
            // 848, not 854: GStreamer pads I420 rows to 4 bytes, the renderer packs them.
            Kind::Bodycam => (848, 480),
            _ => (1280, 720),
        };
        let (w, h) = match size {
            Size::Full => full,
            Size::Small => (full.0 / 2 / 16 * 16, full.1 / 2 / 8 * 8),
        };
        let lighting = match index % 5 {
            3 => Lighting::Dusk,
            4 => Lighting::Haze,
            _ => Lighting::Day,
        };
        let scale = |kbps: u32| match size {
            Size::Full => kbps,
            Size::Small => kbps / 3,
        };
        match kind {
            Kind::Tower => Profile {
                kind,
                codec: Codec::H264,
                width: w,
                height: h,
                fps: 25,
                gop: 50,
                bitrate_kbps: scale(2000),
                bitrate_swing: &[1.0],
                jitter: 0.0,
                dropout_every_s: None,
                dropout_ms: 0,
                lighting,
                bframes: false,
                push_rtmp: false,
                gb28181: false,
                gb_platform: false,
            },
            Kind::Drone => Profile {
                kind,
                codec: Codec::H264,
                width: w,
                height: h,
                fps: 30,
                gop: 30,
                bitrate_kbps: scale(2500),
                bitrate_swing: &[1.0, 0.4, 1.6, 0.7, 1.3],
                jitter: 0.05,
                dropout_every_s: None,
                dropout_ms: 0,
                lighting,
                bframes: false,
                push_rtmp: false,
                gb28181: false,
                gb_platform: false,
            },
            // Every third body camera runs at 15 fps, the rest at 25.
            Kind::Bodycam => Profile {
                kind,
                codec: Codec::H264,
                width: w,
                height: h,
                fps: if index % 3 == 2 { 15 } else { 25 },
                gop: if index % 3 == 2 { 15 } else { 25 },
                bitrate_kbps: scale(1200),
                bitrate_swing: &[1.0],
                jitter: 0.25,
                dropout_every_s: Some(23.0),
                dropout_ms: 400,
                lighting,
                bframes: false,
                push_rtmp: false,
                gb28181: false,
                gb_platform: false,
            },
            // Every other fixed camera is H.265, as road cameras often are.
            Kind::Fixed => Profile {
                kind,
                codec: if index % 2 == 1 {
                    Codec::H265
                } else {
                    Codec::H264
                },
                width: w,
                height: h,
                fps: 25,
                gop: 50,
                bitrate_kbps: scale(1500),
                bitrate_swing: &[1.0],
                jitter: 0.0,
                dropout_every_s: None,
                dropout_ms: 0,
                lighting,
                bframes: false,
                push_rtmp: false,
                gb28181: false,
                gb_platform: false,
            },
        }
    }
}

/// How many cameras of each kind: served over RTSP, and pushing over RTMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Cameras the gateway pulls over RTSP, per kind.
    pub rtsp: BTreeMap<Kind, usize>,
    /// Cameras that push to the gateway over RTMP (`drones-rtmp=8`), per kind.
    pub rtmp: BTreeMap<Kind, usize>,
    /// GB/T 28181 devices (`bodycams-gb=16`), per kind.
    pub gb: BTreeMap<Kind, usize>,
    /// Fixed cameras shared by one GB/T 28181 lower platform (`platform-gb=16`).
    pub platform: usize,
}

impl Mix {
    /// `towers=24,drones=16,bodycams=16,fixed=8`, a kind with `-rtmp` for cameras that
    /// push (`drones-rtmp=8`), with `-gb` for GB/T 28181 devices (`bodycams-gb=16`); with `total` and no mix, the county default proportions
    /// (3 : 2 : 2 : 1), all over RTSP.
    pub fn parse(total: usize, spec: Option<&str>) -> anyhow::Result<Mix> {
        let mut m = BTreeMap::new();
        let mut rtmp = BTreeMap::new();
        let mut gb = BTreeMap::new();
        let mut platform = 0;
        match spec {
            Some(spec) if !spec.trim().is_empty() => {
                for part in spec.split(',') {
                    let (k, n) = part
                        .split_once('=')
                        .with_context(|| format!("--mix `{part}`: expected kind=count"))?;
                    let k = k.trim();
                    if k == "platform-gb" {
                        platform += n
                            .trim()
                            .parse::<usize>()
                            .with_context(|| format!("--mix `{part}`: `{n}` is not a count"))?;
                        continue;
                    }
                    let (k, via) = if let Some(k) = k.strip_suffix("-rtmp") {
                        (k, 1)
                    } else if let Some(k) = k.strip_suffix("-gb") {
                        (k, 2)
                    } else {
                        (k, 0)
                    };
                    let kind = Kind::parse(k).with_context(|| {
                        format!(
                            "--mix `{part}`: unknown kind `{k}` (towers, drones, bodycams, fixed; \
                             `-rtmp` after one for cameras that push, `-gb` for GB/T 28181 devices)"
                        )
                    })?;
                    let n: usize = n
                        .trim()
                        .parse()
                        .with_context(|| format!("--mix `{part}`: `{n}` is not a count"))?;
                    let into = match via {
                        1 => &mut rtmp,
                        2 => &mut gb,
                        _ => &mut m,
                    };
                    *into.entry(kind).or_insert(0) += n;
                }
                let sum: usize = m.values().sum::<usize>()
                    + rtmp.values().sum::<usize>()
                    + gb.values().sum::<usize>()
                    + platform;
                if total != 0 && sum != total {
                    bail!("--mix adds up to {sum} cameras but --cameras is {total}");
                }
            }
            _ => {
                let weights = [
                    (Kind::Tower, 3),
                    (Kind::Drone, 2),
                    (Kind::Bodycam, 2),
                    (Kind::Fixed, 1),
                ];
                let mut given = 0;
                for (i, (k, w)) in weights.iter().enumerate() {
                    let n = if i == weights.len() - 1 {
                        total - given
                    } else {
                        total * w / 8
                    };
                    given += n;
                    m.insert(*k, n);
                }
                // Small fleets: make sure towers come first.
                if total > 0 && m.get(&Kind::Tower) == Some(&0) {
                    if let Some(f) = m.get_mut(&Kind::Fixed) {
                        *f = f.saturating_sub(1);
                    }
                    m.insert(Kind::Tower, 1);
                }
            }
        }
        m.retain(|_, n| *n > 0);
        rtmp.retain(|_, n| *n > 0);
        gb.retain(|_, n| *n > 0);
        Ok(Mix {
            rtsp: m,
            rtmp,
            gb,
            platform,
        })
    }

    /// Cameras in all.
    pub fn total(&self) -> usize {
        self.rtsp.values().sum::<usize>()
            + self.rtmp.values().sum::<usize>()
            + self.gb.values().sum::<usize>()
            + self.platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_explicit_mix() {
        let m = Mix::parse(10, Some("towers=4,drones=3,bodycams=2,fixed=1")).expect("mix");
        assert_eq!(m.rtsp[&Kind::Tower], 4);
        assert_eq!(m.total(), 10);
        let pushed = Mix::parse(12, Some("towers=4,drones-rtmp=3,drones=2,fixed=3")).expect("mix");
        assert_eq!(
            (pushed.rtsp[&Kind::Drone], pushed.rtmp[&Kind::Drone]),
            (2, 3)
        );
        assert_eq!(pushed.total(), 12);
        assert!(Mix::parse(3, Some("boats-rtmp=3")).is_err());
        let gb = Mix::parse(5, Some("towers=1,bodycams-gb=3,drones-rtmp=1")).expect("mix");
        assert_eq!(gb.gb[&Kind::Bodycam], 3);
        let p = Mix::parse(6, Some("towers=2,platform-gb=4")).expect("mix");
        assert_eq!((p.platform, p.total()), (4, 6));
        assert_eq!(gb.total(), 5);
        assert!(Mix::parse(11, Some("towers=4")).is_err());
        assert!(Mix::parse(4, Some("boats=4")).is_err());
    }

    #[test]
    fn default_mix_adds_up() {
        for n in [1, 2, 4, 16, 64, 100] {
            let m = Mix::parse(n, None).expect("mix");
            assert_eq!(m.total(), n, "{m:?}");
            assert!(m.rtsp.get(&Kind::Tower).copied().unwrap_or(0) >= 1);
        }
    }
}
