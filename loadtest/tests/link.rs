//! The link emulator between a real UDP client and server on loopback:
//! delay is a floor on the round trip, loss follows the seed, a partition
//! passes nothing, and the counters add up. Bounds only (never tight
//! timings): packets cannot arrive earlier than the delay allows.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP echo server; stops after `limit`.
fn echo(limit: Duration) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let addr = s.local_addr().expect("addr");
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
    addr
}

fn link(server: SocketAddr, extra: &[&str], stats: &std::path::Path) -> (Kill, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args([
            "link",
            "--listen",
            "127.0.0.1:0",
            "--to",
            &server.to_string(),
        ])
        .args(["--duration-s", "20", "--stats"])
        .arg(stats)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("link starts");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("link: relaying ")
        .and_then(|r| r.split(' ').next())
        .expect("relay address")
        .parse()
        .expect("socket address");
    (Kill(child), addr)
}

/// Sends `n` numbered packets, one every `gap`, and collects the echoes
/// for a while: (received, smallest round trip).
fn ping(relay: SocketAddr, n: u32, gap: Duration) -> (u32, Duration) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("client");
    s.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut sent_at = Vec::new();
    let mut got = 0;
    let mut best = Duration::MAX;
    let mut buf = [0u8; 64];
    let mut recv = |s: &UdpSocket, sent_at: &[Instant], got: &mut u32, best: &mut Duration| {
        while let Ok((len, _)) = s.recv_from(&mut buf) {
            if len == 4 {
                let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                *got += 1;
                *best = (*best).min(sent_at[i].elapsed());
            }
        }
    };
    for i in 0..n {
        sent_at.push(Instant::now());
        s.send_to(&i.to_be_bytes(), relay).expect("send");
        std::thread::sleep(gap);
        recv(&s, &sent_at, &mut got, &mut best);
    }
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        recv(&s, &sent_at, &mut got, &mut best);
    }
    (got, best)
}

fn stats_of(kill: Kill, path: &std::path::Path) -> serde_json::Value {
    let _ = Command::new("kill")
        .args(["-INT", &kill.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.is_file() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(kill);
    serde_json::from_str(&std::fs::read_to_string(path).expect("stats file")).expect("json")
}

#[test]
fn delay_is_a_floor_and_nothing_is_lost_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("s.json");
    let server = echo(Duration::from_secs(20));
    let (k, relay) = link(server, &["--delay-ms", "25", "--jitter-ms", "5"], &stats);
    let (got, best) = ping(relay, 20, Duration::from_millis(5));
    println!("20 sent, {got} back, best round trip {best:?}");
    assert_eq!(got, 20);
    assert!(best >= Duration::from_millis(50), "{best:?}");
    let s = stats_of(k, &stats);
    assert_eq!(s["to_server"]["delivered"], 20, "{s}");
    assert_eq!(s["to_client"]["delivered"], 20, "{s}");
}

#[test]
fn loss_and_partitions_drop_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("s.json");
    let server = echo(Duration::from_secs(20));
    let (k, relay) = link(server, &["--loss", "0.3", "--seed", "9"], &stats);
    let (got, _) = ping(relay, 200, Duration::from_millis(1));
    let s = stats_of(k, &stats);
    println!("200 sent, {got} back; {s}");
    let up_lost = s["to_server"]["lost"].as_u64().expect("lost");
    let down_lost = s["to_client"]["lost"].as_u64().expect("lost");
    assert!(up_lost > 20 && up_lost < 110, "{s}");
    assert_eq!(u64::from(got), 200 - up_lost - down_lost, "{s}");

    // A partition from the start: nothing passes.
    let stats2 = dir.path().join("p.json");
    let (k, relay) = link(server, &["--partitions", "0+30"], &stats2);
    let (got, _) = ping(relay, 10, Duration::from_millis(2));
    assert_eq!(got, 0);
    let s = stats_of(k, &stats2);
    assert_eq!(s["to_server"]["partitioned"], 10, "{s}");
}
