//! `lookout-loadtest fleet`: N simulated cameras served over RTSP on this
//! machine, from clips rendered and encoded once, each frame stamped with its
//! capture time, with scripted smoke and flood incidents and their ground
//! truth. Its neighbours: `clips` (render + encode + cache), `server` (RTSP
//! mounts and the feeding timer), `incidents` (script and ground truth),
//! `profile` (what each kind of camera sends).

pub mod check;
pub mod clips;
pub mod feeder;
pub mod gb28181;
pub mod incidents;
pub mod profile;
pub mod rtmp;
pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use self::clips::{Clip, ClipKey};
use self::incidents::{GroundTruth, Incident};
use self::profile::{Kind, Mix, Profile, Size};
use self::server::{Scheduled, ServerSettings, SimCamera};

/// Seconds of the clean loop and of an incident clip; an incident loops its
/// second half (the event fully developed) once it has played through.
const CLEAN_SECONDS: u32 = 6;
const INCIDENT_SECONDS: u32 = 12;

/// What `fleet` was asked for, from its command line (`cli::FleetCli`), or from `demo` and the
/// benchmarks through it.
pub struct FleetArgs {
    /// Cameras (split 3:2:2:1 towers:drones:bodycams:fixed) unless `mix` is given.
    pub cameras: usize,
    /// Cameras per kind, e.g. `towers=24,drones=16`; overrides `cameras`.
    pub mix: Option<String>,
    /// Loopback address to serve RTSP on.
    pub address: String,
    /// RTSP port; 0 picks a free one (see `emit_gateway_config`).
    pub port: u16,
    /// Picture size of every camera.
    pub size: Size,
    /// RTSP digest credentials (user, password) required of clients; `None`: open.
    pub auth: Option<(String, String)>,
    /// The scripted incidents, on cameras the fleet has.
    pub incidents: Vec<Incident>,
    /// Where to write the onsets (JSON) as they happen; `None`: not written.
    pub ground_truth: Option<PathBuf>,
    /// Where to write a gateway configuration listing exactly these cameras at the port bound.
    pub emit_gateway_config: Option<PathBuf>,
    /// Folder of encoded clips (made once, reused).
    pub cache: PathBuf,
    /// Stop by itself after this long; `None`: run until SIGTERM or Ctrl-C.
    pub duration: Option<Duration>,
    /// Where to write the summary (JSON, with provenance) when stopping.
    pub summary: Option<PathBuf>,
    /// Encode H.264 cameras with B-frames and High profile.
    pub bframes: bool,
    /// The gateway's RTMP port pushing cameras dial; 0 picks a free one.
    pub rtmp_port: u16,
    /// The gateway's SIP port GB/T 28181 devices register to; 0 picks a free one.
    pub sip_port: u16,
}

/// What the fleet reports when it stops.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Cameras served.
    pub cameras: usize,
    /// How long the feeder ran, s.
    pub serving_s: f64,
    /// Frames the cameras produced, client or not.
    pub frames_produced: u64,
    /// Frames pushed to a connected client's media.
    pub frames_pushed: u64,
    /// Of those, frames pushed more than half a frame interval after they were due.
    pub frames_late: u64,
    /// `1 - frames_late / frames_pushed`; 1 when nothing was pushed.
    pub on_time_ratio: f64,
    /// The latest any frame was pushed after it was due, ms.
    pub max_late_ms: f64,
    /// CPU of the fleet process while serving (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Each camera's profile and counts, in plan order.
    pub per_camera: Vec<CameraSummary>,
}

/// One camera in the fleet's summary.
#[derive(Debug, Serialize, Deserialize)]
pub struct CameraSummary {
    /// The camera's id (`tower-01`, …).
    pub id: String,
    /// `tower`, `drone`, `bodycam` or `fixed`.
    pub kind: String,
    /// `h264` or `h265`.
    pub codec: String,
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Frames pushed to a connected client's media.
    pub frames_pushed: u64,
    /// Of those, frames pushed more than half a frame interval late.
    pub frames_late: u64,
}

/// The simulated cameras, in a stable order.
pub fn plan(mix: &Mix, size: Size, bframes: bool) -> Vec<(String, Profile)> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let n = mix.rtsp.get(&kind).copied().unwrap_or(0);
        for i in 0..n {
            let mut p = Profile::for_kind(kind, size, i);
            p.bframes = bframes && p.codec == lookout_codecs::Codec::H264;
            out.push((format!("{}-{:02}", kind.as_str(), i + 1), p));
        }
        // Pushing cameras after the pulled ones of their kind, their scenes' lighting
        // continuing the kind's cycle.
        for i in 0..mix.rtmp.get(&kind).copied().unwrap_or(0) {
            let mut p = Profile::for_kind(kind, size, n + i);
            p.bframes = bframes && p.codec == lookout_codecs::Codec::H264;
            p.push_rtmp = true;
            out.push((format!("{}-rtmp-{:02}", kind.as_str(), i + 1), p));
        }
        let before = n + mix.rtmp.get(&kind).copied().unwrap_or(0);
        for i in 0..mix.gb.get(&kind).copied().unwrap_or(0) {
            let mut p = Profile::for_kind(kind, size, before + i);
            p.bframes = bframes && p.codec == lookout_codecs::Codec::H264;
            p.gb28181 = true;
            out.push((format!("{}-gb-{:02}", kind.as_str(), i + 1), p));
        }
    }
    // A department's platform shares fixed cameras (traffic, water, forestry).
    let fixed = mix.rtsp.get(&Kind::Fixed).copied().unwrap_or(0)
        + mix.rtmp.get(&Kind::Fixed).copied().unwrap_or(0)
        + mix.gb.get(&Kind::Fixed).copied().unwrap_or(0);
    for i in 0..mix.platform {
        let mut p = Profile::for_kind(Kind::Fixed, size, fixed + i);
        p.bframes = bframes && p.codec == lookout_codecs::Codec::H264;
        p.gb_platform = true;
        out.push((format!("platform-gb-{:02}", i + 1), p));
    }
    out
}

pub fn run(args: FleetArgs) -> anyhow::Result<Summary> {
    let ip: IpAddr = args
        .address
        .parse()
        .with_context(|| format!("--address `{}` is not an IP address", args.address))?;
    if !ip.is_loopback() {
        bail!("the fleet serves only on loopback addresses (127.0.0.0/8, ::1); got {ip}");
    }
    let mix = Mix::parse(args.cameras, args.mix.as_deref())?;
    if mix.total() == 0 {
        bail!("no cameras: give --cameras N or --mix");
    }
    let planned = plan(&mix, args.size, args.bframes);
    for inc in &args.incidents {
        if !planned.iter().any(|(id, _)| id == &inc.camera) {
            bail!(
                "incident on `{}`: the fleet has no such camera (it has {}…{})",
                inc.camera,
                planned.first().map_or("", |p| p.0.as_str()),
                planned.last().map_or("", |p| p.0.as_str())
            );
        }
    }

    let started_prep = Instant::now();
    let cameras = prepare_cameras(&args, &planned)?;
    eprintln!(
        "fleet: {} cameras, clips ready in {:.1} s (cache {})",
        cameras.len(),
        started_prep.elapsed().as_secs_f64(),
        args.cache.display()
    );

    let settings = ServerSettings {
        address: args.address.clone(),
        port: args.port,
        auth: args.auth.clone(),
    };
    let server = server::start(&settings, &cameras)?;
    // Cameras that push dial the gateway's RTMP listener on a port chosen here (it is
    // in the configuration the fleet writes); until the gateway listens they dial again.
    let rtmp_port = if cameras.iter().any(|c| c.profile.push_rtmp) {
        let port = match args.rtmp_port {
            0 => std::net::TcpListener::bind((ip, 0))?.local_addr()?.port(),
            p => p,
        };
        for (i, c) in cameras.iter().filter(|c| c.profile.push_rtmp).enumerate() {
            let hevc = if i % 2 == 1 {
                rtmp::HevcAs::CodecId12
            } else {
                rtmp::HevcAs::Enhanced
            };
            c.start_rtmp(std::net::SocketAddr::new(ip, port), &push_key(&c.id), hevc)?;
        }
        Some(port)
    } else {
        None
    };
    // GB/T 28181 devices register to the gateway's SIP side on a port chosen here; they
    // register again until it answers. Every other one asks for RTP over TCP.
    let gb_port = if cameras
        .iter()
        .any(|c| c.profile.gb28181 || c.profile.gb_platform)
    {
        let port = match args.sip_port {
            0 => std::net::UdpSocket::bind((ip, 0))?.local_addr()?.port(),
            p => p,
        };
        for (i, c) in cameras.iter().filter(|c| c.profile.gb28181).enumerate() {
            c.start_gb28181(std::net::SocketAddr::new(ip, port), i + 1)?;
        }
        let members: Vec<&Arc<SimCamera>> =
            cameras.iter().filter(|c| c.profile.gb_platform).collect();
        if !members.is_empty() {
            let platform = Arc::new(gb28181::GbDevice::start_platform(
                std::net::SocketAddr::new(ip, port),
                members.iter().map(|c| c.platform_entry()).collect(),
            )?);
            for (i, c) in members.iter().enumerate() {
                c.join_platform(platform.clone(), i)?;
            }
        }
        Some(port)
    } else {
        None
    };
    if let Some(path) = &args.emit_gateway_config {
        let gb = match gb_port {
            Some(port) => {
                // The devices' password, for the gateway to check, owner-only.
                let file = path.with_file_name("gb28181-password");
                write_secret(&file, gb28181::PASSWORD)?;
                Some((port, std::path::absolute(&file)?))
            }
            None => None,
        };
        let text = gateway_config(&args, server.port, rtmp_port, gb.as_ref(), &cameras);
        // Written aside and renamed into place: whoever waits for the file to appear
        // (the tests, a script) never reads half of it.
        let partial = path.with_extension("toml.partial");
        std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    }
    let truth = GroundTruth::new(args.ground_truth.clone());
    println!(
        "fleet: serving {} cameras on rtsp://{}:{}/<camera-id>",
        cameras.len(),
        args.address,
        server.port
    );

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the signal handler")?;
    }
    if let Some(d) = args.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    let feeder = {
        let cameras = cameras.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("fleet-feeder".into())
            .spawn(move || server::feed(&cameras, &truth, &stop, start))?
    };
    // A feeder that panicked stopped every camera early: the summary below
    // still counts what was served, and this says why it is short.
    let fed = feeder.join();
    let serving = start.elapsed().as_secs_f64();
    if fed.is_err() {
        eprintln!(
            "fleet: the feeder thread panicked after {serving:.1} s; the cameras stopped then"
        );
    }
    let cpu = process_cpu_seconds() - cpu_before;
    drop(server);

    let summary = summarise(&cameras, serving, cpu);
    println!(
        "fleet: served {:.1} s: {} frames pushed, {:.2}% on time (within half a frame interval), max late {:.1} ms, fleet CPU {:.3} cores ({:.2}% of a core per camera)",
        summary.serving_s,
        summary.frames_pushed,
        summary.on_time_ratio * 100.0,
        summary.max_late_ms,
        summary.cpu_cores,
        summary.cpu_cores * 100.0 / summary.cameras as f64
    );
    if let Some(path) = &args.summary {
        // The file is a report like the others: it opens with its provenance.
        let report =
            crate::provenance::Stamped::new(crate::provenance::ReportKind::Fleet, &summary);
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

/// The fleet's cameras with their clips: one clean loop per distinct
/// profile (shared), one clip per scripted incident; rendered and encoded
/// once, then read from the cache.
fn prepare_cameras(
    args: &FleetArgs,
    planned: &[(String, Profile)],
) -> anyhow::Result<Vec<Arc<SimCamera>>> {
    // Clips: one clean loop per distinct profile, one clip per incident.
    let mut clean_clips: HashMap<String, Arc<Clip>> = HashMap::new();
    let mut cameras = Vec::new();
    for (id, profile) in planned {
        let seed = scene_seed(profile.kind);
        let key = ClipKey::new(profile, seed, None, CLEAN_SECONDS);
        let name = serde_json::to_string(&key)?;
        let clean = match clean_clips.get(&name) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(clips::load_or_make(&args.cache, &key, profile, None, 0.0)?);
                clean_clips.insert(name, c.clone());
                c
            }
        };
        let mut incidents = Vec::new();
        for inc in args.incidents.iter().filter(|i| &i.camera == id) {
            let class = inc.event_class()?;
            let key = ClipKey::new(profile, seed, Some(class), INCIDENT_SECONDS);
            let clip = clips::load_or_make(
                &args.cache,
                &key,
                profile,
                Some(class),
                f64::from(INCIDENT_SECONDS) / 2.0,
            )?;
            incidents.push(Scheduled {
                at_s: inc.at_s,
                for_s: inc.for_s,
                class: inc.class.clone(),
                clip: Arc::new(clip),
            });
        }
        cameras.push(Arc::new(SimCamera::new(
            id.clone(),
            profile.clone(),
            clean,
            incidents,
        )));
    }
    Ok(cameras)
}

/// What the fleet served: frames pushed and late, per camera and in all,
/// and its CPU.
fn summarise(cameras: &[Arc<SimCamera>], serving: f64, cpu: f64) -> Summary {
    let mut summary = Summary {
        cameras: cameras.len(),
        serving_s: serving,
        frames_produced: 0,
        frames_pushed: 0,
        frames_late: 0,
        on_time_ratio: 1.0,
        max_late_ms: 0.0,
        cpu_cores: if serving > 0.0 { cpu / serving } else { 0.0 },
        per_camera: Vec::new(),
    };
    for c in cameras {
        let s = &c.stats;
        let pushed = s.pushed.load(Ordering::Relaxed);
        let late = s.late.load(Ordering::Relaxed);
        summary.frames_produced += s.frames.load(Ordering::Relaxed);
        summary.frames_pushed += pushed;
        summary.frames_late += late;
        summary.max_late_ms = summary
            .max_late_ms
            .max(s.max_late_us.load(Ordering::Relaxed) as f64 / 1000.0);
        summary.per_camera.push(CameraSummary {
            id: c.id.clone(),
            kind: c.profile.kind.as_str().into(),
            codec: c.profile.codec.name().into(),
            width: c.profile.width,
            height: c.profile.height,
            fps: c.profile.fps,
            frames_pushed: pushed,
            frames_late: late,
        });
    }
    if summary.frames_pushed > 0 {
        summary.on_time_ratio = 1.0 - summary.frames_late as f64 / summary.frames_pushed as f64;
    }
    summary
}

/// One scene per kind of camera; the seed keeps clips identical across runs and
/// comes from the renderer's benchmark range, which no model is trained or
/// chosen on (`lookout_scene::seeds`).
fn scene_seed(kind: Kind) -> u64 {
    lookout_scene::seeds::fleet_scene(kind.scene())
}

/// CPU time (user + system) this process has used, in seconds.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the `(comm)`; utime and stime are the 14th and 15th.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // rest starts at field 3 (state): utime is field 14 → index 11.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // Linux has used 100 for every architecture lookout runs on.
    100.0
}

/// The stream key a pushing fleet camera publishes under.
/// Writes a one-line secret readable by its owner alone (what lookout asks of its
/// password files).
pub(crate) fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn push_key(camera: &str) -> String {
    format!("{camera}-fleet-key")
}

/// A valid lookout configuration for exactly these cameras: the pulled ones' RTSP URLs,
/// the pushing ones' keys and the RTMP listener they dial.
fn gateway_config(
    args: &FleetArgs,
    port: u16,
    rtmp_port: Option<u16>,
    gb: Option<&(u16, std::path::PathBuf)>,
    cameras: &[Arc<SimCamera>],
) -> String {
    let mut s = String::new();
    putln!(
        s,
        "# Written by `lookout-loadtest fleet --emit-gateway-config` for the {} cameras it serves.\n",
        cameras.len()
    );
    putln!(s, "[gateway]\nid = \"fleet-gw\"\n");
    if let Some(p) = rtmp_port {
        putln!(s, "[gateway.rtmp]\nlisten = \"{}:{p}\"\n", args.address);
    }
    if let Some((p, password)) = gb {
        putln!(
            s,
            "[gateway.gb28181]\nsip_listen = \"{}:{p}\"\nid = \"{}\"\ndomain = \"{}\"\npassword_file = \"{}\"\n\
             # The fleet's devices answer GB/T 28181-2022's SHA-256 digest when offered first.\n\
             digest = [\"SHA-256\", \"MD5\"]\n",
            args.address,
            gb28181::PLATFORM_ID,
            gb28181::DOMAIN,
            password.display()
        );
    }
    let mut gb_n = 0;
    let mut platform_n = 0;
    let userinfo = args.auth.as_ref().map(|(u, p)| (u.clone(), p.clone()));
    for (i, c) in cameras.iter().enumerate() {
        // Cameras laid out on a grid over a county-sized area.
        let lat = 29.0 + (i / 8) as f64 * 0.05;
        let lon = 110.0 + (i % 8) as f64 * 0.07;
        putln!(s, "[[camera]]");
        putln!(s, "id = \"{}\"", c.id);
        putln!(s, "kind = \"{}\"", c.profile.kind.as_str());
        if c.profile.gb_platform {
            platform_n += 1;
            // A platform on a network the gateway reaches: every other channel has
            // lookout connect for its RTP (TCP active).
            let transport = if platform_n % 2 == 0 {
                ", transport = \"tcp-active\""
            } else {
                ""
            };
            putln!(
                s,
                "gb28181 = {{ device = \"{}\", channel = \"{}\"{transport} }}",
                gb28181::LOWER_PLATFORM_ID,
                gb28181::platform_channel_id(platform_n)
            );
        } else if c.profile.gb28181 {
            gb_n += 1;
            let transport = if gb_n % 2 == 0 {
                ", transport = \"tcp\""
            } else {
                ""
            };
            putln!(
                s,
                "gb28181 = {{ device = \"{}\", channel = \"{}\"{transport} }}",
                gb28181::device_id(gb_n),
                gb28181::channel_id(gb_n)
            );
        } else if c.profile.push_rtmp {
            putln!(
                s,
                "push = {{ protocol = \"rtmp\", key = \"{}\" }}",
                push_key(&c.id)
            );
        } else {
            putln!(s, "url = \"rtsp://{}:{}/{}\"", args.address, port, c.id);
            if let Some((u, p)) = &userinfo {
                putln!(s, "username = \"{u}\"\npassword = \"{p}\"");
            }
        }
        putln!(s, "location = {{ lat = {lat:.4}, lon = {lon:.4} }}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_scene::seeds::{Purpose, purpose};

    #[test]
    fn every_fleet_scene_is_a_benchmark_seed() {
        for kind in [Kind::Tower, Kind::Drone, Kind::Bodycam, Kind::Fixed] {
            assert_eq!(
                purpose(scene_seed(kind)),
                Some(Purpose::Benchmark),
                "{kind:?}"
            );
        }
    }
}
