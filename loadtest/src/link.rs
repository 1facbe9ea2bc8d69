//! `lookout-loadtest link`: a userspace link emulator for the gateway →
//! command-center path. A UDP relay placed between a client (the gateway,
//! which dials) and a server (the center) that imposes, per direction, a
//! rate cap with a bounded queue (tail drop), a fixed delay plus jitter,
//! random loss, occasional reordering, and scheduled partitions — all drawn
//! from a seed, so a run repeats. QUIC runs over UDP, so the relay sees
//! every packet; it needs no root and no `netem` qdisc.
//!
//! Model, per direction: a packet that is not lost enters the link when the
//! link is free (`size × 8 / rate` serialisation), unless the queue ahead of
//! it already holds more than `queue_ms` of traffic (then it is dropped, as a
//! router's full buffer would); it leaves `delay + jitter` after being
//! serialised. Arrival order is kept, except for packets picked for
//! reordering, which are held back by an extra `reorder_ms`.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

/// What the link does to traffic in one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Bits per second; 0 means unlimited.
    pub rate_bps: u64,
    /// Fixed one-way delay added to every packet after it is sent at the rate cap.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a packet is lost, 0..1.
    pub loss: f64,
    /// Probability that a packet is held back by `reorder_hold`.
    pub reorder: f64,
    /// How long a packet drawn for reordering is held back (10 ms by default), so later ones
    /// overtake it.
    pub reorder_hold: Duration,
    /// Most traffic the link's queue holds, as time to drain it.
    pub queue: Duration,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            rate_bps: 0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_hold: Duration::from_millis(10),
            queue: Duration::from_millis(200),
        }
    }
}

/// A window, from the relay's start, in which nothing passes either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partition {
    /// When nothing passes any more, from the relay's start.
    pub start: Duration,
    /// How long nothing passes.
    pub length: Duration,
}

/// Parses `START+LENGTH` seconds, comma separated: `10+5,30+2.5`.
pub fn parse_partitions(spec: &str) -> anyhow::Result<Vec<Partition>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|p| {
            let err = || format!("partition `{p}`: expected START+LENGTH in seconds, e.g. 10+5");
            let (a, b) = p.trim().split_once('+').with_context(err)?;
            let start: f64 = a.trim().parse().ok().with_context(err)?;
            let length: f64 = b.trim().parse().ok().with_context(err)?;
            if !(start >= 0.0 && length > 0.0 && start.is_finite() && length.is_finite()) {
                bail!("{}", err());
            }
            Ok(Partition {
                start: Duration::from_secs_f64(start),
                length: Duration::from_secs_f64(length),
            })
        })
        .collect()
}

/// A small, seedable generator (xorshift64*), so runs repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Why a packet did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Leaves the link at this time.
    Deliver(Instant),
    Lost,
    QueueFull,
    Partitioned,
}

/// One direction's state: when the link is next free, the last release
/// time (to keep order), and the draws.
#[derive(Debug, Clone)]
pub struct Shaper {
    /// What this direction does to traffic.
    pub imp: Impairment,
    rng: Rng,
    free_at: Option<Instant>,
    last_release: Option<Instant>,
}

impl Shaper {
    pub fn new(imp: Impairment, seed: u64) -> Shaper {
        Shaper {
            imp,
            rng: Rng::new(seed),
            free_at: None,
            last_release: None,
        }
    }

    /// Decides what happens to a packet of `len` bytes arriving at `now`.
    pub fn admit(&mut self, now: Instant, len: usize, partitioned: bool) -> Fate {
        if partitioned {
            return Fate::Partitioned;
        }
        if self.imp.loss > 0.0 && self.rng.unit() < self.imp.loss {
            return Fate::Lost;
        }
        let start = self.free_at.map_or(now, |f| f.max(now));
        if start.duration_since(now) > self.imp.queue {
            return Fate::QueueFull;
        }
        let serialise = if self.imp.rate_bps == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(len as f64 * 8.0 / self.imp.rate_bps as f64)
        };
        let sent = start + serialise;
        self.free_at = Some(sent);
        let jitter = self.imp.jitter.mul_f64(self.rng.unit());
        let release = sent + self.imp.delay + jitter;
        if self.imp.reorder > 0.0 && self.rng.unit() < self.imp.reorder {
            // Held back: later packets overtake it.
            return Fate::Deliver(release + self.imp.reorder_hold);
        }
        let release = self.last_release.map_or(release, |l| release.max(l));
        self.last_release = Some(release);
        Fate::Deliver(release)
    }
}

/// Per-direction counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirStats {
    /// Datagrams received from the sender.
    pub packets_in: u64,
    /// Their bytes (UDP payload).
    pub bytes_in: u64,
    /// Datagrams sent on to the receiver when due.
    pub delivered: u64,
    /// Datagrams dropped by the `loss` draw.
    pub lost: u64,
    /// Datagrams dropped because the queue already held more than `queue` of traffic (tail drop).
    pub queue_full: u64,
    /// Datagrams dropped inside a partition window.
    pub partitioned: u64,
}

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    delivered: AtomicU64,
    lost: AtomicU64,
    queue_full: AtomicU64,
    partitioned: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DirStats {
            packets_in: g(&self.packets_in),
            bytes_in: g(&self.bytes_in),
            delivered: g(&self.delivered),
            lost: g(&self.lost),
            queue_full: g(&self.queue_full),
            partitioned: g(&self.partitioned),
        }
    }
}

/// The link emulator's counters, each direction, since it started; written by `link --stats` and as
/// the run report's `link`.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStats {
    /// Client (gateway) → server (center).
    pub to_server: DirStats,
    /// Server (center) → clients (gateways).
    pub to_client: DirStats,
    /// Client addresses seen (one relay socket each).
    pub clients: usize,
}

/// A packet waiting to leave.
struct Due {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
    /// Sent from this socket to `to`.
    from: Arc<UdpSocket>,
    to: SocketAddr,
    counters: Arc<Counters>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Earliest first out of a max-heap.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Wheel {
    heap: Mutex<(BinaryHeap<Due>, u64)>,
    ready: Condvar,
}

impl Wheel {
    fn push(&self, mut d: Due) {
        if let Ok(mut h) = self.heap.lock() {
            h.1 += 1;
            d.seq = h.1;
            h.0.push(d);
        }
        self.ready.notify_one();
    }
}

/// How to start a [`Link`]: where it listens, where it relays to, and what it does each way.
pub struct LinkArgs {
    /// Where clients (gateways) send.
    pub listen: SocketAddr,
    /// The server (center).
    pub server: SocketAddr,
    /// What the link does client → server.
    pub up: Impairment,
    /// What the link does server → client.
    pub down: Impairment,
    /// Windows, from the relay's start, in which nothing passes either way.
    pub partitions: Vec<Partition>,
    /// Seed of the loss, jitter and reorder draws (each direction draws its own sequence from it).
    pub seed: u64,
    /// Stop by itself after this long; `None`: run until stopped.
    pub duration: Option<Duration>,
}

/// A running relay; stops when dropped or when its duration ends.
pub struct Link {
    /// The address clients send to (`listen` with its port resolved).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    up: Arc<Counters>,
    down: Arc<Counters>,
    clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Link {
    pub fn start(args: LinkArgs) -> anyhow::Result<Link> {
        for a in [args.listen, args.server] {
            if !a.ip().is_loopback() {
                bail!(
                    "link: {a} is not a loopback address; the emulator only relays on this machine"
                );
            }
        }
        let listen = Arc::new(
            UdpSocket::bind(args.listen)
                .with_context(|| format!("link: cannot bind {}", args.listen))?,
        );
        listen.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = listen.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let up_c: Arc<Counters> = Arc::default();
        let down_c: Arc<Counters> = Arc::default();
        let wheel = Arc::new(Wheel {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            ready: Condvar::new(),
        });
        let started = Instant::now();
        let partitions = Arc::new(args.partitions.clone());
        let partitioned = {
            let p = partitions.clone();
            move |now: Instant| {
                let t = now.duration_since(started);
                p.iter().any(|w| t >= w.start && t < w.start + w.length)
            }
        };
        let clients: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        let mut threads = Vec::new();

        threads.push(spawn_release(wheel.clone(), stop.clone()));

        // Client → server; a new client gets its own upstream socket and a
        // thread for the server's replies.
        {
            let stop = stop.clone();
            let wheel = wheel.clone();
            let up_c = up_c.clone();
            let down_c = down_c.clone();
            let clients = clients.clone();
            let server = args.server;
            let mut up = Shaper::new(args.up.clone(), args.seed);
            let down_imp = args.down.clone();
            let seed = args.seed;
            let partitioned = partitioned.clone();
            let duration = args.duration;
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let mut down_threads = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if duration.is_some_and(|d| started.elapsed() >= d) {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    let (n, from) = match listen.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(_) => continue,
                    };
                    let upstream = {
                        let Ok(mut map) = clients.lock() else { break };
                        match map.get(&from) {
                            Some(s) => s.clone(),
                            None => {
                                let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                                    continue;
                                };
                                // Without it, this client's thread would block in
                                // `recv_from` and never see `stop`: as when the bind
                                // fails, the packet is dropped and the next one tries.
                                if let Err(e) = s.set_read_timeout(Some(Duration::from_millis(50)))
                                {
                                    eprintln!("link: client {from}: socket timeout: {e}");
                                    continue;
                                }
                                let s = Arc::new(s);
                                map.insert(from, s.clone());
                                // Server → this client.
                                let (s2, listen2, wheel2, stop2, down_c2) = (
                                    s.clone(),
                                    listen.clone(),
                                    wheel.clone(),
                                    stop.clone(),
                                    down_c.clone(),
                                );
                                let mut down =
                                    Shaper::new(down_imp.clone(), seed ^ 0x5EED ^ map.len() as u64);
                                let partitioned = partitioned.clone();
                                down_threads.push(std::thread::spawn(move || {
                                    let mut buf = vec![0u8; 65_536];
                                    while !stop2.load(Ordering::Relaxed) {
                                        let Ok((n, _)) = s2.recv_from(&mut buf) else {
                                            continue;
                                        };
                                        let now = Instant::now();
                                        relay_packet(
                                            &mut down,
                                            &wheel2,
                                            &down_c2,
                                            &buf[..n],
                                            (&listen2, from),
                                            now,
                                            partitioned(now),
                                        );
                                    }
                                }));
                                s
                            }
                        }
                    };
                    let now = Instant::now();
                    relay_packet(
                        &mut up,
                        &wheel,
                        &up_c,
                        &buf[..n],
                        (&upstream, server),
                        now,
                        partitioned(now),
                    );
                }
                for t in down_threads {
                    join_relay(t);
                }
            }));
        }
        Ok(Link {
            addr,
            stop,
            up: up_c,
            down: down_c,
            clients,
            threads,
        })
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            to_server: self.up.snapshot(),
            to_client: self.down.snapshot(),
            clients: self.clients.lock().map(|c| c.len()).unwrap_or(0),
        }
    }

    /// Whether the relay is still running (it stops by itself after its
    /// duration).
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> LinkStats {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            join_relay(t);
        }
        self.stats()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            join_relay(t);
        }
    }
}

/// Waits for a relay thread. One that panicked (its message printed then)
/// stopped relaying early, which its direction's counters show; said again
/// here, as the counters do not say why.
fn join_relay(t: std::thread::JoinHandle<()>) {
    if t.join().is_err() {
        eprintln!("link: a relay thread had panicked; its traffic stopped then");
    }
}

/// Counts a packet in, and queues it on the wheel or counts why it died.
fn relay_packet(
    shaper: &mut Shaper,
    wheel: &Wheel,
    counters: &Arc<Counters>,
    data: &[u8],
    (from, to): (&Arc<UdpSocket>, SocketAddr),
    now: Instant,
    partitioned: bool,
) {
    counters.packets_in.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes_in
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    match shaper.admit(now, data.len(), partitioned) {
        Fate::Deliver(at) => wheel.push(Due {
            at,
            seq: 0,
            data: data.to_vec(),
            from: from.clone(),
            to,
            counters: counters.clone(),
        }),
        f => count_drop(counters, f),
    }
}

fn count_drop(c: &Counters, f: Fate) {
    let slot = match f {
        Fate::Lost => &c.lost,
        Fate::QueueFull => &c.queue_full,
        Fate::Partitioned => &c.partitioned,
        Fate::Deliver(_) => return,
    };
    slot.fetch_add(1, Ordering::Relaxed);
}

/// The thread that sends each delayed packet when it is due, both
/// directions, until `stop`.
fn spawn_release(wheel: Arc<Wheel>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut h) = wheel.heap.lock() else { return };
            let now = Instant::now();
            let wait = match h.0.peek() {
                Some(d) if d.at <= now => None,
                Some(d) => Some((d.at - now).min(Duration::from_millis(50))),
                None => Some(Duration::from_millis(50)),
            };
            match wait {
                None => {
                    if let Some(d) = h.0.pop() {
                        drop(h);
                        if d.from.send_to(&d.data, d.to).is_ok() {
                            d.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(w) => {
                    // Only the wait matters: the guard goes at once and the loop
                    // locks again, where a poisoned lock ends the thread.
                    drop(wheel.ready.wait_timeout(h, w));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_and_rate_set_release_times() {
        let mut s = Shaper::new(
            Impairment {
                rate_bps: 8_000_000, // 1 MB/s: 1000 bytes take 1 ms
                delay: ms(20),
                ..Default::default()
            },
            1,
        );
        let t0 = Instant::now();
        let mut last = t0;
        for i in 0..5u64 {
            match s.admit(t0, 1000, false) {
                Fate::Deliver(at) => {
                    assert_eq!(at - t0, ms(20 + i + 1));
                    assert!(at >= last);
                    last = at;
                }
                f => panic!("{f:?}"),
            }
        }
    }

    #[test]
    fn a_full_queue_drops_the_tail() {
        let mut s = Shaper::new(
            Impairment {
                rate_bps: 8_000, // 1000 bytes take a second
                queue: ms(1500),
                ..Default::default()
            },
            1,
        );
        let t0 = Instant::now();
        let fates: Vec<Fate> = (0..4).map(|_| s.admit(t0, 1000, false)).collect();
        assert!(matches!(fates[0], Fate::Deliver(_)));
        assert!(matches!(fates[1], Fate::Deliver(_)));
        assert_eq!(fates[2], Fate::QueueFull);
    }

    #[test]
    fn loss_follows_the_seed_and_the_rate() {
        let run = |seed| {
            let mut s = Shaper::new(
                Impairment {
                    loss: 0.25,
                    ..Default::default()
                },
                seed,
            );
            let t0 = Instant::now();
            (0..4000)
                .map(|_| s.admit(t0, 100, false) == Fate::Lost)
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same drops");
        assert_ne!(a, run(8));
        let lost = a.iter().filter(|l| **l).count();
        assert!((800..1200).contains(&lost), "{lost}");
    }

    #[test]
    fn order_is_kept_unless_a_packet_is_reordered() {
        let mut s = Shaper::new(
            Impairment {
                delay: ms(10),
                jitter: ms(30),
                ..Default::default()
            },
            3,
        );
        let t0 = Instant::now();
        let mut last = t0;
        for i in 0..200 {
            let Fate::Deliver(at) = s.admit(t0 + ms(i), 100, false) else {
                panic!("delivered");
            };
            assert!(at >= last, "packet {i} overtook");
            last = at;
        }
        let mut r = Shaper::new(
            Impairment {
                reorder: 1.0,
                reorder_hold: ms(50),
                ..Default::default()
            },
            3,
        );
        let Fate::Deliver(at) = r.admit(t0, 100, false) else {
            panic!("delivered");
        };
        assert_eq!(at - t0, ms(50));
    }

    #[test]
    fn partitions_parse_and_drop() {
        let p = parse_partitions("10+5, 30+2.5").expect("parses");
        assert_eq!(p[1].start, ms(30_000));
        assert_eq!(p[1].length, ms(2_500));
        assert!(parse_partitions("10").is_err());
        assert!(parse_partitions("-1+2").is_err());
        let mut s = Shaper::new(Impairment::default(), 1);
        assert_eq!(s.admit(Instant::now(), 10, true), Fate::Partitioned);
    }

    #[test]
    fn only_loopback_is_relayed() {
        let r = Link::start(LinkArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            server: "10.0.0.1:4433".parse().expect("addr"),
            up: Impairment::default(),
            down: Impairment::default(),
            partitions: vec![],
            seed: 1,
            duration: Some(ms(100)),
        });
        assert!(r.is_err());
    }
}
