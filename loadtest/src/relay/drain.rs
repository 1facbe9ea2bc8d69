//! The run's drain phase: the cameras stop, and what the gateway already
//! took must reach the center (alerts acknowledged, frames delivered) and,
//! in a cascade, the upper center; then both sides are read and every
//! process is stopped.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::faults::{Posted, SensorFeed};
use crate::fleet::incidents::Onset;
use crate::link::LinkStats;
use crate::prom;
use crate::scoring::{alert_ids, read_onsets};
use crate::stack::{self, EndOfRun, Http, get_json};

use super::RelayArgs;
use super::report::Cascade;
use super::setup::Stack;

/// What the processes held at the end, read before they stopped.
pub(super) struct Drained {
    /// The gauge's alerts as posted.
    pub posted: Vec<Posted>,
    /// The gateway's and the center's metrics and alerts once the gateway had delivered.
    pub end: EndOfRun,
    /// The center's `/api/cameras`.
    pub center_cameras: Value,
    /// The link emulator's counters when it stopped; `None` without one.
    pub link_stats: Option<LinkStats>,
    /// What reached the upper center; `None` without `--cascade`.
    pub cascade: Option<Cascade>,
    /// The incidents the fleet played.
    pub onsets: Vec<Onset>,
    /// The alerts' clips; `None` without a detector.
    pub clips: Option<super::clips::ClipsReport>,
}

/// Stops the cameras, waits for the gateway to deliver, reads both sides and
/// stops every process.
pub(super) fn drain(args: &RelayArgs, s: &mut Stack) -> anyhow::Result<Drained> {
    let http = Http::new(Some(Duration::from_secs(10)));
    let posted = s.feed.take().map(SensorFeed::stop).unwrap_or_default();
    s.fleet.stop(Duration::from_secs(10));
    let end = stack::drain(&http, &args.workdir, &s.gw_http, &s.center_http)?;
    let onsets = read_onsets(&s.ground_truth).unwrap_or_default();
    let clips = args
        .detector_config
        .as_ref()
        .filter(|_| args.clips)
        .map(|_| {
            let stored = crate::scoring::LedgerCheck::new(&end.gw_alerts, &end.ledger).stored;
            let (_, pairs) = crate::scoring::score(&onsets, &stored);
            let matched: Vec<(Onset, String)> = pairs.into_iter().map(|(o, a)| (o, a.id)).collect();
            super::clips::check(&http, &s.gw_http, &s.center_http, &matched)
        });
    let center_cameras = get_json(&format!("http://{}/api/cameras", s.center_http))?;
    let link_stats = s.link.take().map(|l| l.stop());
    let cascade = match s.city.as_mut() {
        Some((city, city_http)) => {
            let c = upper_center(&http, &s.center_http, city_http, &end.ledger)?;
            city.stop(Duration::from_secs(10));
            Some(c)
        }
        None => None,
    };
    let clean = s.gateway.stop(Duration::from_secs(15));
    s.center.stop(Duration::from_secs(10));
    if !clean {
        bail!("the gateway did not stop within 15 s of SIGTERM");
    }
    Ok(Drained {
        posted,
        end,
        center_cameras,
        link_stats,
        cascade,
        onsets,
        clips,
    })
}

/// The upper center: waits until the center's own outbox upward is empty
/// and the frames stop changing (20 s at most), then reads its ledger
/// (against the center's, `ledger`) and cameras.
fn upper_center(
    http: &Http,
    center_http: &str,
    city_http: &str,
    ledger: &Value,
) -> anyhow::Result<Cascade> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = -1.0;
    loop {
        let up = get_json(&format!("http://{center_http}/api/upstreams")).unwrap_or(Value::Null);
        let pending = up["upstreams"][0]["outbox_pending"].as_u64().unwrap_or(1);
        let got = prom::sum(
            &http
                .text(&format!("http://{city_http}/metrics"))
                .unwrap_or_default(),
            "lookout_center_frames_total",
        );
        if (pending == 0 && got == last) || Instant::now() > deadline {
            break;
        }
        last = got;
        std::thread::sleep(Duration::from_millis(500));
    }
    let city_ledger = get_json(&format!("http://{city_http}/api/alerts?limit=10000"))?;
    let city_cameras = get_json(&format!("http://{city_http}/api/cameras"))?;
    let city_gateways = get_json(&format!("http://{city_http}/api/gateways"))?;
    let ids = alert_ids(&city_ledger);
    let distinct: HashSet<&String> = ids.iter().collect();
    Ok(Cascade {
        alerts_in_ledger: distinct.len(),
        stored_twice: ids.len() - distinct.len(),
        missing: ledger["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| {
                        x["id"]
                            .as_str()
                            .is_some_and(|id| !distinct.contains(&id.to_string()))
                    })
                    .count()
            })
            .unwrap_or(0),
        cameras: city_cameras["cameras"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        frames_received: city_cameras["cameras"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["frames"].as_u64()).sum())
            .unwrap_or(0),
        gateways: city_gateways["gateways"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|x| x["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}
