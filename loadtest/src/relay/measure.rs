//! The run's warm-up and measure phases: while the fleet plays, the loop
//! keeps the processes alive, ends the warm-up (resetting the center's
//! latency histograms and reading the CPU counters the window starts
//! from), samples the processes once a second for the timeline, kills and
//! restarts the center for an outage, watches the fault windows and shows
//! live figures. At the end it reads what the window measured.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs;
use crate::prom::{ROLES, cpu_by_role};
use crate::report::utc_now;
use crate::stack::{Http, get_json, start_center};
use crate::stats::buckets::{Buckets, CdfPoint};

use super::RelayArgs;
use super::report::{ByProcess, CpuCores, MachineShare, RssMib, TimelineEntry};
use super::setup::Stack;

/// What the measured window gave.
pub(super) struct Measured {
    /// When the window began, UTC (the run's start if it never did).
    pub started_at: String,
    /// When the window began, Unix ns (0 if it never did).
    pub warm_unix_ns: u64,
    /// The center's `/api/latency` at the end.
    pub latency: Value,
    /// CPU cores per process (and the gateway's by thread role) over the window.
    pub cpu_cores: CpuCores,
    /// Peak resident memory of the gateway and the center, MiB.
    pub peak: [Option<f64>; 2],
    /// How long the window was; `None` when the run ended before the warm-up did.
    pub window_s: Option<f64>,
    /// One entry a second from the end of the warm-up.
    pub timeline: Vec<TimelineEntry>,
    /// The relay's delay over the window at the center's bucket bounds; `None`
    /// when its metrics were not read at both ends.
    pub relay_cdf: Option<Vec<CdfPoint>>,
}

/// One once-a-second reading of the processes and the machine, for the
/// report's timeline (which holds the differences between two readings).
struct TimelineSample {
    at: Instant,
    /// CPU seconds of the gateway, fleet and center.
    cpu: [f64; 3],
    /// Their threads' seconds waiting for a CPU.
    wait: [Option<f64>; 3],
    machine: Option<procs::MachineTicks>,
}

/// The loop's state.
struct Meter {
    http: Http,
    /// Live figures while it runs; drawn only on a terminal (hidden when
    /// the output goes to a file or a test harness).
    bar: indicatif::ProgressBar,
    last_figures: Instant,
    outage_done: bool,
    started_at: String,
    /// Set when the warm-up ends: then, and the processes' CPU seconds then.
    window: Option<(Instant, [f64; 3])>,
    warm_unix_ns: u64,
    /// The gateway's own CPU by thread role at the window's start.
    roles_before: Option<[f64; ROLES.len()]>,
    last_sample: Option<TimelineSample>,
    timeline: Vec<TimelineEntry>,
    /// The center's relay-delay histogram at the window's start and at the last
    /// sample: their differences are the delay second by second and over the window.
    delay_start: Option<Buckets>,
    delay_last: Option<Buckets>,
    /// Peak resident memory of the gateway and the center; `None` until read.
    peak: [Option<f64>; 2],
}

fn raise(peak: &mut Option<f64>, hwm: f64) {
    *peak = Some(peak.map_or(hwm, |p| p.max(hwm)));
}

/// `x` when it is a number: the report's `null` for a figure that is not (as
/// a JSON map of it wrote it).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn cpu_of(pids: [u32; 3]) -> [f64; 3] {
    pids.map(|p| procs::cpu_seconds(p).unwrap_or(0.0))
}

fn pids(s: &Stack) -> [u32; 3] {
    [s.gateway.pid(), s.fleet.pid(), s.center.pid()]
}

/// Runs the fleet for the whole duration: warm-up, then the measured window.
pub(super) fn measure(args: &RelayArgs, s: &mut Stack) -> anyhow::Result<Measured> {
    let mut m = Meter::new(args);
    while s.fleet_started.elapsed() < args.duration {
        if m.window.is_some() {
            m.sample(s);
        }
        s.gateway.check_alive()?;
        s.fleet.check_alive()?;
        if m.window.is_none() && s.fleet_started.elapsed() >= args.warmup {
            m.end_warm_up(s);
        }
        m.center_outage(args, s)?;
        m.watch_faults(s);
        m.show_progress(s);
        std::thread::sleep(Duration::from_millis(250));
    }
    m.bar.finish_and_clear();
    m.finish(s)
}

impl Meter {
    fn new(args: &RelayArgs) -> Meter {
        let bar = indicatif::ProgressBar::new(args.duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Meter {
            http: Http::new(Some(Duration::from_secs(10))),
            bar,
            last_figures: Instant::now(),
            outage_done: args.center_outage.is_none(),
            started_at: utc_now(),
            window: None,
            warm_unix_ns: 0,
            roles_before: None,
            last_sample: None,
            timeline: Vec::new(),
            delay_start: None,
            delay_last: None,
            peak: [None; 2],
        }
    }

    fn roles(&self, s: &Stack) -> Option<[f64; ROLES.len()]> {
        self.http
            .text(&format!("http://{}/metrics", s.gw_http))
            .map(|text| cpu_by_role(&text))
    }

    fn center_buckets(&self, s: &Stack) -> Option<Buckets> {
        self.http
            .text(&format!("http://{}/metrics", s.center_http))
            .and_then(|page| Buckets::of_center(&page, "gateway"))
    }

    /// The end of the warm-up: the window starts here.
    fn end_warm_up(&mut self, s: &Stack) {
        // No answer: the window simply includes the warm-up (the run's
        // center answers every other request, so this is not expected); said,
        // as the report's latencies then count the warm-up too.
        if self
            .http
            .post_json(&format!("http://{}/api/latency/reset", s.center_http))
            .is_none()
        {
            self.bar.suspend(|| {
                eprintln!(
                    "relay: the center did not answer the latency reset; the window includes the warm-up"
                )
            });
        }
        self.started_at = utc_now();
        self.window = Some((Instant::now(), cpu_of(pids(s))));
        self.warm_unix_ns = crate::fleet::server::unix_ns();
        self.roles_before = self.roles(s);
        self.delay_start = self.center_buckets(s);
        self.delay_last = self.delay_start.clone();
    }

    /// Once a second: a timeline entry from the difference with the last reading.
    fn sample(&mut self, s: &Stack) {
        let pids = pids(s);
        let now = Instant::now();
        if self
            .last_sample
            .as_ref()
            .is_some_and(|l| now.duration_since(l.at) < Duration::from_secs(1))
        {
            return;
        }
        let sample = TimelineSample {
            at: now,
            cpu: cpu_of(pids),
            wait: pids.map(procs::run_queue_wait_seconds),
            machine: procs::machine_cpu_ticks(),
        };
        if let Some(before) = self.last_sample.take() {
            let entry = self.timeline_entry(s, &sample, &before, pids);
            self.timeline.push(entry);
        }
        self.last_sample = Some(sample);
    }

    fn timeline_entry(
        &mut self,
        s: &Stack,
        sample: &TimelineSample,
        before: &TimelineSample,
        pids: [u32; 3],
    ) -> TimelineEntry {
        let dt = sample.at.duration_since(before.at).as_secs_f64();
        let (cpu, was) = (&sample.cpu, &before.cpu);
        // Thread-seconds spent waiting for a CPU per second: above
        // zero, the process had work and no core to run it on.
        let waited = |i: usize| match (sample.wait[i], before.wait[i]) {
            (Some(now), Some(then)) => Some(((now - then) / dt).max(0.0)),
            _ => None,
        };
        let machine = match (sample.machine, before.machine) {
            (Some(now), Some(then)) if now.all > then.all => {
                let all = (now.all - then.all) as f64;
                MachineShare {
                    busy: Some(now.busy.saturating_sub(then.busy) as f64 / all),
                    steal: Some(now.steal.saturating_sub(then.steal) as f64 / all),
                }
            }
            _ => MachineShare {
                busy: None,
                steal: None,
            },
        };
        let buckets = self.center_buckets(s);
        let relay_ms = match (&buckets, &self.delay_last) {
            (Some(now), Some(then)) => now.since(then).map(|d| d.summary()),
            _ => None,
        };
        if buckets.is_some() {
            self.delay_last = buckets;
        }
        let gw_mem = procs::rss_mib(pids[0]);
        let center_mem = procs::rss_mib(pids[2]);
        if let Some((_, hwm)) = gw_mem {
            raise(&mut self.peak[0], hwm);
        }
        if let Some((_, hwm)) = center_mem {
            raise(&mut self.peak[1], hwm);
        }
        TimelineEntry {
            cpu_cores: ByProcess {
                center: (cpu[2] - was[2]) / dt,
                fleet: (cpu[1] - was[1]) / dt,
                gateway: (cpu[0] - was[0]) / dt,
            },
            machine,
            relay_ms,
            rss_mib: RssMib {
                center: center_mem.map(|m| m.0),
                gateway: gw_mem.map(|m| m.0),
            },
            run_queue_wait: ByProcess {
                center: waited(2),
                fleet: waited(1),
                gateway: waited(0),
            },
            t_s: s.fleet_started.elapsed().as_secs_f64(),
        }
    }

    /// Kills the center when its outage is due and restarts it after the
    /// outage's length; otherwise checks that it runs.
    fn center_outage(&mut self, args: &RelayArgs, s: &mut Stack) -> anyhow::Result<()> {
        if let Some((at, length)) = args.center_outage
            && !self.outage_done
            && s.fleet_started.elapsed() >= at
        {
            println!("relay: killing the center for {} s", length.as_secs_f64());
            s.center.kill();
            std::thread::sleep(length);
            s.center = start_center(
                &s.lookout,
                &s.center_config,
                &s.logs.join("center-restarted.log"),
                &s.center_http,
            )?;
            println!("relay: center back");
            self.outage_done = true;
        } else {
            s.center.check_alive()?;
        }
        Ok(())
    }

    fn watch_faults(&self, s: &mut Stack) {
        if !s.watch.is_empty() {
            let cams =
                get_json(&format!("http://{}/api/cameras", s.center_http)).unwrap_or(Value::Null);
            let rss = procs::rss_mib(s.gateway.pid()).map_or(0.0, |m| m.0);
            s.watch.observe(s.fleet_started.elapsed(), &cams, rss);
        }
    }

    fn show_progress(&mut self, s: &Stack) {
        if self.last_figures.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_figures = Instant::now();
        self.bar.set_position(s.fleet_started.elapsed().as_secs());
        let center = &s.center_http;
        let l = get_json(&format!("http://{center}/api/latency")).unwrap_or(Value::Null);
        let alerts = get_json(&format!("http://{center}/api/alerts?limit=1000"))
            .ok()
            .and_then(|a| a["alerts"].as_array().map(|a| a.len()))
            .unwrap_or(0);
        self.bar.set_message(format!(
            "frames at center {}  relay p99 {:.1} ms  alerts {alerts}",
            l["gateway_to_center"]["count"],
            l["gateway_to_center"]["p99_ms"].as_f64().unwrap_or(0.0)
        ));
    }

    /// The end of the run: the center's latency, and the CPU and memory over
    /// the window.
    fn finish(mut self, s: &Stack) -> anyhow::Result<Measured> {
        let latency = get_json(&format!("http://{}/api/latency", s.center_http))?;
        let pids = pids(s);
        let roles_after = self.roles(s);
        let cpu_cores = match self.window {
            Some((t, before)) => {
                let dt = t.elapsed().as_secs_f64().max(1e-3);
                let now = cpu_of(pids);
                CpuCores {
                    center: finite((now[2] - before[2]) / dt),
                    fleet: finite((now[1] - before[1]) / dt),
                    gateway: finite((now[0] - before[0]) / dt),
                    gateway_by_role: match (self.roles_before, roles_after) {
                        (Some(a), Some(b)) => Some(
                            ROLES
                                .iter()
                                .enumerate()
                                .map(|(i, r)| (r.to_string(), finite((b[i] - a[i]) / dt)))
                                .collect(),
                        ),
                        _ => None,
                    },
                }
            }
            // The run ended before the warm-up did: nothing measured.
            None => CpuCores {
                center: None,
                fleet: None,
                gateway: None,
                gateway_by_role: None,
            },
        };
        for (i, pid) in [pids[0], pids[2]].into_iter().enumerate() {
            if let Some((_, hwm)) = procs::rss_mib(pid) {
                raise(&mut self.peak[i], hwm);
            }
        }
        let relay_cdf = match (&self.delay_last, &self.delay_start) {
            (Some(end), Some(start)) => end.since(start).map(|d| d.cdf()),
            _ => None,
        };
        Ok(Measured {
            started_at: self.started_at,
            warm_unix_ns: self.warm_unix_ns,
            latency,
            cpu_cores,
            peak: self.peak,
            window_s: self.window.map(|(t, _)| t.elapsed().as_secs_f64()),
            timeline: self.timeline,
            relay_cdf,
        })
    }
}
