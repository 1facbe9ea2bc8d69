//! Child processes the demo and the benchmarks start: the same binaries a
//! user runs (`lookout`, `lookout-loadtest fleet`), each with its log in a
//! file, stopped with SIGTERM (then SIGKILL) when dropped, so a failed run
//! never leaves a daemon behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child process.
pub struct Proc {
    /// What the process is (`fleet`, `center`, `gateway`…), for messages.
    pub name: String,
    /// The file its stdout and stderr go to.
    pub log: PathBuf,
    child: Child,
}

/// The folder holding this executable, where `lookout` is built too.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating lookout-loadtest")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("lookout-loadtest has no parent folder")
}

/// The path of a sibling binary, with a clear error if it was not built.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join(name);
    if !p.is_file() {
        bail!(
            "{} not found next to lookout-loadtest; build the workspace (`cargo build --workspace --bins`)",
            p.display()
        );
    }
    Ok(p)
}

impl Proc {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn start(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
        })
    }

    /// Fails if the process has exited, quoting the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns true if it stopped by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        // A SIGTERM that could not be sent (no `kill` to run) is made up for
        // by the SIGKILL after `grace` below.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .ok();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_and_reap();
        false
    }

    /// SIGKILL, then waits for the process so it leaves no zombie. One that
    /// already exited is fine (`Child::kill` answers `Ok`); an error may have
    /// left it running, and is said.
    fn kill_and_reap(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!(
                "{}: SIGKILL to pid {} failed: {e}",
                self.name,
                self.child.id()
            );
        }
        if let Err(e) = self.child.wait() {
            eprintln!(
                "{}: waiting for pid {} failed: {e}",
                self.name,
                self.child.id()
            );
        }
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL at once, as a crash or a power cut would end it; waits for it.
    pub fn kill(&mut self) {
        self.kill_and_reap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `url` until it answers 200 or `limit` passes.
pub fn wait_http_ok(url: &str, limit: Duration, proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        proc.check_alive()?;
        if let Ok(resp) = ureq::get(url).call()
            && resp.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not answer {url} within {limit:?}", proc.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `needle` appears in the process's log.
pub fn wait_for_log(proc: &mut Proc, needle: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        proc.check_alive()?;
        if std::fs::read_to_string(&proc.log).is_ok_and(|l| l.contains(needle)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not log `{needle}` within {limit:?}",
            proc.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from
/// `/proc/PID/stat` (Linux; clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields count from after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Seconds the threads of process `pid` have spent runnable but waiting for
/// a CPU, summed over its threads now alive: the second field of each
/// `/proc/PID/task/TID/schedstat` (nanoseconds). A process that falls behind
/// with this rising was starved of CPU, not slow by itself. `None` where the
/// kernel keeps no scheduler statistics.
pub fn run_queue_wait_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        // A thread may exit between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(wait) = text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
        {
            ns += wait;
            any = true;
        }
    }
    any.then_some(ns as f64 / 1e9)
}

/// The whole machine's CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct MachineTicks {
    /// All CPU time: user, nice, system, idle, iowait, irq, softirq and steal summed.
    pub all: u64,
    /// Everything but idle, iowait and steal.
    pub busy: u64,
    /// Time the hypervisor gave this machine's CPUs to others.
    pub steal: u64,
}

/// [`MachineTicks`] from the first line of `/proc/stat`.
pub fn machine_cpu_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let all: u64 = (0..8).map(field).sum();
    let steal = field(7);
    Some(MachineTicks {
        all,
        busy: all.saturating_sub(field(3) + field(4) + steal),
        steal,
    })
}

/// Resident memory of process `pid`, now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// Open file descriptors of process `pid`: the entries of `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.filter(|e| e.is_ok()).count() as u64)
}

/// Threads of process `pid`, from the `Threads:` line of `/proc/PID/status`.
pub fn thread_count(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_scheduler_and_machine_figures() {
        // Busy-wait a little so the counters move.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let wait = run_queue_wait_seconds(std::process::id()).expect("schedstat");
        assert!(wait >= 0.0 && wait.is_finite(), "{wait}");
        let MachineTicks { all, busy, steal } = machine_cpu_ticks().expect("/proc/stat");
        assert!(
            all > 0 && busy <= all && steal <= all,
            "{all} {busy} {steal}"
        );
        assert!(run_queue_wait_seconds(u32::MAX).is_none());
    }
}
