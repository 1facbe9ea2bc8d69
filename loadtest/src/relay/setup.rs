//! The run's setup phase: the work folder and certificates, the command
//! center (and the upper one of a cascade), the link emulator between
//! gateway and center if impaired, the fleet, the gateway, the simulated
//! gauge feeding alerts, and the fault windows to watch.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::faults::{Fault, FaultWatch, SensorFeed};
use crate::link::{Impairment, Link, LinkArgs};
use crate::procs::{self, Proc};
use crate::provenance;
use crate::stack::{
    self, FleetRun, camera_ids, center_config, detector_block, start_center, start_fleet,
    start_gateway, upstream_block,
};

use super::RelayArgs;

/// The running stack, as the setup left it.
pub(super) struct Stack {
    /// The `lookout` binary next to this one.
    pub lookout: PathBuf,
    /// The work folder's `logs/`, one log per process.
    pub logs: PathBuf,
    /// The command center (`lookout center`).
    pub center: Proc,
    /// Its configuration, to restart it after an outage.
    pub center_config: PathBuf,
    /// Its HTTP address (`127.0.0.1:port`).
    pub center_http: String,
    /// The upper center of a cascade and its HTTP address.
    pub city: Option<(Proc, String)>,
    /// The link emulator between gateway and center; `None` over plain loopback.
    pub link: Option<Link>,
    /// The simulated cameras (`lookout-loadtest fleet`).
    pub fleet: Proc,
    /// When the fleet started serving: the run's clock (duration, warm-up, outage, faults).
    pub fleet_started: Instant,
    /// The fleet's ground truth (JSON): the incidents as they began.
    pub ground_truth: PathBuf,
    /// The gateway's configuration (the fleet emitted it, the setup completed it).
    pub gw_config: PathBuf,
    /// The gateway's HTTP address (`127.0.0.1:port`).
    pub gw_http: String,
    /// The gateway (`lookout run`).
    pub gateway: Proc,
    /// Cameras the gateway's configuration lists.
    pub watched: usize,
    /// The detector (id, `[[detector]]` block), if detecting.
    pub detector: Option<(String, String)>,
    /// SHA-256 of the models the gateway loads.
    pub models: std::collections::BTreeMap<String, String>,
    /// The simulated gauge posting alerts; `None` without `--sensor-alerts-per-s`.
    pub feed: Option<SensorFeed>,
    /// The fault windows (partitions, center outage) followed through the run.
    pub watch: FaultWatch,
}

/// Starts everything the run measures, in order: centers, link, fleet,
/// gateway, gauge.
pub(super) fn setup(args: &mut RelayArgs) -> anyhow::Result<Stack> {
    let logs;
    (args.workdir, logs) = stack::workdir(&args.workdir)?;
    let lookout = procs::sibling("lookout")?;
    let certs = args.workdir.join("certs");
    stack::make_certs(&lookout, &certs, &["center", "city"])?;

    // The upper center of a cascade, which the center forwards to.
    let mut city = None;
    let mut upward = String::new();
    if args.cascade {
        let (city_config, city_quic, city_http) = center_config(&args.workdir, &certs, "city", "")?;
        city = Some((
            start_center(&lookout, &city_config, &logs.join("city.log"), &city_http)?,
            city_http,
        ));
        upward = upstream_block("city", &format!("127.0.0.1:{city_quic}"), &certs, "center");
    }
    // The center, with a fresh ledger.
    let (center_config, quic_port, center_http) = center_config(
        &args.workdir,
        &certs,
        "center",
        &format!("subscribe = \"{}\"\n{upward}", args.subscribe),
    )?;
    let center_log = logs.join("center.log");
    let center = start_center(&lookout, &center_config, &center_log, &center_http)?;

    // The link, if impaired.
    let center_addr: std::net::SocketAddr = format!("127.0.0.1:{quic_port}").parse()?;
    let link = match &args.link {
        Some(imp) => Some(Link::start(LinkArgs {
            listen: "127.0.0.1:0".parse()?,
            server: center_addr,
            up: imp.clone(),
            down: Impairment {
                rate_bps: 0,
                ..imp.clone()
            },
            partitions: args.partitions.clone(),
            seed: 1,
            duration: Some(args.duration + Duration::from_secs(300)),
        })?),
        None => None,
    };
    let dial = link.as_ref().map_or(center_addr, |l| l.addr);
    // Partitions count from the link's start, everything else from the
    // fleet's.
    let link_started = Instant::now();

    // The fleet and the gateway.
    let (fleet, gw_config, ground_truth, fleet_started) = start_fleet(
        &FleetRun {
            cameras: args.cameras,
            mix: args.mix.clone(),
            size: args.size.clone(),
            cache: args.cache.clone(),
            incidents: match (&args.detector_config, &args.incidents) {
                (None, _) => Some(String::new()),
                (Some(_), i) => i.clone(),
            },
            duration: args.duration,
        },
        &args.workdir,
    )?;
    let detector = match &args.detector_config {
        Some(p) => Some(detector_block(p)?),
        None => None,
    };
    let gw_http = stack::gateway_config(
        &args.workdir,
        &gw_config,
        &certs,
        detector.as_ref(),
        &dial.to_string(),
    )?;
    if let Some(budget) = args.latency_budget_ms {
        let text = std::fs::read_to_string(&gw_config)?;
        let text = text.replace(
            "kind = \"",
            &format!("latency_budget_ms = {budget}\nkind = \""),
        );
        std::fs::write(&gw_config, text)?;
    }
    if !args.clips {
        let text = std::fs::read_to_string(&gw_config)?;
        anyhow::ensure!(
            text.contains("[gateway]\n"),
            "no [gateway] in {}",
            gw_config.display()
        );
        std::fs::write(
            &gw_config,
            text.replacen("[gateway]\n", "[gateway]\nclips = { enabled = false }\n", 1),
        )?;
    }
    // Hashed before the run: a model that cannot be read fails now, not
    // after minutes of measuring.
    let models = provenance::model_sha256(&gw_config)?;
    let (gateway, watched) = start_gateway(&lookout, &gw_config, &logs, &gw_http)?;
    let feed = (args.sensor_alerts_per_s > 0.0).then(|| {
        SensorFeed::start(
            &gw_http,
            camera_ids(&gw_config),
            args.sensor_alerts_per_s,
            args.duration,
        )
    });
    let watch = FaultWatch::new(
        args.partitions
            .iter()
            .map(|p| {
                let lead = fleet_started.saturating_duration_since(link_started);
                Fault {
                    kind: "partition",
                    start: p.start.saturating_sub(lead),
                    end: (p.start + p.length).saturating_sub(lead),
                }
            })
            .chain(args.center_outage.map(|(at, length)| Fault {
                kind: "center-outage",
                start: at,
                end: at + length,
            }))
            .collect(),
    );
    println!(
        "relay: {watched} cameras, gateway → {} center{}; running {} s",
        if link.is_some() {
            "link emulator →"
        } else {
            "loopback →"
        },
        if args.detector_config.is_some() {
            ", detector on keyframes"
        } else {
            ""
        },
        args.duration.as_secs()
    );
    Ok(Stack {
        lookout,
        logs,
        center,
        center_config,
        center_http,
        city,
        link,
        fleet,
        fleet_started,
        ground_truth,
        gw_config,
        gw_http,
        gateway,
        watched,
        detector,
        models,
        feed,
        watch,
    })
}
