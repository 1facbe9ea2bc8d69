//! Where the gateway's CPU goes, by what its threads do, and which work yields.
//!
//! A thread says what it does when it starts: GStreamer's streaming threads of the
//! camera pipelines through the `stream-status` message their task posts on the thread
//! itself, the async runtime's workers through the runtime's start hook, the decoders'
//! and detectors' threads when they start. GStreamer's RTP helper threads post no such
//! message (the jitter buffers' timer threads, the sessions' RTCP threads, the system
//! clock's): they are found by the name GLib gives them ([`INGEST_HELPERS`]) and counted
//! as ingest, since a bare GStreamer client of the same streams pays for them too.
//! `lookout_cpu_seconds_total{role}` adds up each such thread's CPU time from
//! `/proc/self/task`; time no known thread spent (ONNX Runtime's pool, threads that
//! ended between two readings, the process's exit) is `other`.
//!
//! Decoding and inference run at a lower scheduling priority ([`BACKGROUND_NICE`]): on a
//! saturated machine the cameras' packets and the relay are served first, so detection
//! waits a few milliseconds and video never does. Only threads lookout creates itself
//! are lowered: GStreamer and the runtime reuse their threads for other work, and an
//! unprivileged process cannot raise a thread's priority back.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// What a thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// RTSP/RTP reception, depayloading, parsing and fan-out of the cameras' streams.
    Ingest,
    /// Decoding and scaling the frames detectors sample.
    Decode,
    /// Batching, inference and alert decisions.
    Detect,
    /// The async runtime: relay, HTTP API, outbox, camera supervision.
    Runtime,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Decode, Role::Detect, Role::Runtime];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Decode => "decode",
            Role::Detect => "detect",
            Role::Runtime => "runtime",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Name prefixes of GStreamer's helper threads on the camera side: no `stream-status`
/// tells of them, so they are recognised by their thread name (`/proc/self/task/*/comm`,
/// set by GLib; 15 bytes at most).
/// `timer` is the jitter buffers' timer thread, `rtpsession-rtcp` the sessions' RTCP
/// thread; a `rtpjitterbuffer…` name is a streaming task whose name was cut, counted
/// here only if its `stream-status` did not register it.
pub const INGEST_HELPERS: [&str; 4] = ["rtpjitterbuffer", "rtpsession", "timer", "GstSystemClock"];

/// The nice value of decoder and detector threads (0 is the default, 19 the lowest).
pub const BACKGROUND_NICE: i32 = 5;

struct Live {
    role: Role,
    /// The thread's CPU ticks when they were last added to its role.
    ticks: u64,
}

#[derive(Default)]
struct Book {
    live: HashMap<i32, Live>,
    /// GStreamer's ingest helper threads seen so far, with their ticks when last
    /// added to `ingest`.
    helpers: HashMap<i32, u64>,
    /// Ticks of threads that have left, or changed role, by role.
    done: [u64; Role::ALL.len()],
}

static BOOK: Mutex<Option<Book>> = Mutex::new(None);

fn with_book<R>(f: impl FnOnce(&mut Book) -> R) -> Option<R> {
    let mut guard = BOOK.locked();
    Some(f(guard.get_or_insert_with(Book::default)))
}

fn tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// user + system ticks of one thread of this process, from `/proc`.
fn thread_ticks(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    ticks_of_stat(&stat)
}

/// Fields 14 and 15 (utime, stime) of a `stat` line; the command name in field 2 may
/// hold spaces and parentheses, so counting starts after its closing parenthesis.
fn ticks_of_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Books the calling thread's CPU time from now on to `role` (what it spent before goes
/// to its previous role, if it had one).
pub fn enter(role: Role) {
    let me = tid();
    let now = thread_ticks(me).unwrap_or(0);
    with_book(|b| {
        if let Some(old) = b.live.insert(me, Live { role, ticks: now }) {
            b.done[old.role.index()] += now.saturating_sub(old.ticks);
        }
    });
}

/// Closes the calling thread's account (call as its work ends).
pub fn leave() {
    let me = tid();
    let now = thread_ticks(me).unwrap_or(0);
    with_book(|b| {
        if let Some(old) = b.live.remove(&me) {
            b.done[old.role.index()] += now.saturating_sub(old.ticks);
        }
    });
}

/// [`enter`], and lowers the calling thread's priority to [`BACKGROUND_NICE`]. For
/// threads lookout creates and owns to their end: the priority cannot be raised back.
/// (Linux's `SCHED_IDLE` was tried and measured: relay latency did not move, and
/// detection starved: capture → alert p99 64 → 104 ms at 64 cameras.)
pub fn enter_background(role: Role) {
    // SAFETY: setpriority on the calling thread's own id; an error (a sandbox that
    // forbids it) leaves the priority as it was.
    let ok = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid() as libc::id_t, BACKGROUND_NICE) };
    if ok != 0 {
        tracing::debug!(
            role = role.as_str(),
            "cannot lower the thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
    enter(role);
}

/// CPU seconds by role so far (threads still running counted up to now) and the
/// process's total.
pub fn cpu_seconds() -> ([f64; Role::ALL.len()], f64) {
    let hz = ticks_per_second();
    // The files are read outside the lock: threads that start or end take it.
    let tids: Vec<i32> = with_book(|b| b.live.keys().copied().collect()).unwrap_or_default();
    let helpers = ingest_helpers(&tids);
    let read: Vec<(i32, Option<u64>)> = tids.into_iter().map(|t| (t, thread_ticks(t))).collect();
    let by_role = with_book(|b| {
        let mut seen = HashMap::with_capacity(helpers.len());
        for (tid, now) in helpers {
            let before = b.helpers.get(&tid).copied().unwrap_or(0);
            b.done[Role::Ingest.index()] += now.saturating_sub(before);
            seen.insert(tid, now.max(before));
        }
        // Helpers that ended are forgotten (their last ticks with them).
        b.helpers = seen;
        for (tid, now) in read {
            match (now, b.live.get_mut(&tid)) {
                // A thread that entered again meanwhile has newer ticks: nothing to add.
                (Some(now), Some(live)) if now > live.ticks => {
                    b.done[live.role.index()] += now - live.ticks;
                    live.ticks = now;
                }
                // Ended without saying so (a crashed task): its last ticks are lost.
                (None, Some(_)) => {
                    b.live.remove(&tid);
                }
                _ => {}
            }
        }
        b.done
    })
    .unwrap_or_default();
    let total = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks_of_stat(&s))
        .unwrap_or(0);
    (by_role.map(|t| t as f64 / hz), total as f64 / hz)
}

/// Ticks of this process's threads that are GStreamer ingest helpers
/// ([`INGEST_HELPERS`]) and not registered (`registered`).
fn ingest_helpers(registered: &[i32]) -> Vec<(i32, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|tid| !registered.contains(tid))
        .filter_map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
            INGEST_HELPERS
                .iter()
                .any(|p| name.starts_with(p))
                .then(|| Some((tid, ticks_of_stat(&stat)?)))?
        })
        .collect()
}

/// `lookout_cpu_seconds_total{role}` on every scrape.
#[derive(Debug, Default)]
pub struct CpuCollector;

impl Collector for CpuCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (by_role, total) = cpu_seconds();
        let mut m = encoder.encode_descriptor(
            "cpu_seconds",
            "CPU time of the gateway's threads by what they do (ingest, with GStreamer's \
             RTP and clock helper threads; decode, detect, runtime); other: threads lookout \
             does not account (ONNX Runtime's pool, threads that ended between readings)",
            None,
            MetricType::Counter,
        )?;
        let mut accounted = 0.0;
        for role in Role::ALL {
            let v = by_role[role.index()];
            accounted += v;
            ConstCounter::new(v).encode(m.encode_family(&[("role", role.as_str())])?)?;
        }
        ConstCounter::new((total - accounted).max(0.0))
            .encode(m.encode_family(&[("role", "other")])?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (src:src (x) y) S 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0";
        assert_eq!(ticks_of_stat(stat), Some(287));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    /// Burns three ticks of the calling thread's own CPU time (30 ms at 100 Hz),
    /// however busy the machine is; at most 10 s.
    fn burn_three_ticks() {
        let start = thread_ticks(tid()).unwrap_or(0);
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while thread_ticks(tid()).unwrap_or(u64::MAX) < start + 3
            && t.elapsed() < std::time::Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
    }

    #[test]
    fn a_busy_thread_is_booked_to_its_role() {
        let before = cpu_seconds().0[Role::Detect.index()];
        std::thread::spawn(|| {
            enter_background(Role::Detect);
            burn_three_ticks();
            leave();
        })
        .join()
        .expect("thread");
        let after = cpu_seconds().0[Role::Detect.index()];
        assert!(after - before >= 0.02, "{before} → {after}");
    }

    #[test]
    fn gstreamer_helper_threads_are_booked_to_ingest_by_name() {
        let before = cpu_seconds().0[Role::Ingest.index()];
        let (ready, seen) = std::sync::mpsc::channel::<()>();
        let (done, finish) = std::sync::mpsc::channel::<()>();
        // Named as GLib names a jitter buffer's timer thread; never registered.
        let helper = std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || {
                burn_three_ticks();
                // Still alive while it is read: an ended helper's ticks are gone.
                ready.send(()).expect("send");
                finish.recv().expect("recv");
            })
            .expect("spawn");
        seen.recv().expect("the helper burned its ticks");
        let after = cpu_seconds().0[Role::Ingest.index()];
        done.send(()).expect("send");
        helper.join().expect("thread");
        assert!(after - before >= 0.02, "{before} → {after}");
    }
}
