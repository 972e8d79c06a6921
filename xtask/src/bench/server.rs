//! One reference server (`target/release/http`) started for one benchmark
//! run, the lifecycle lines its stderr carries, and what `/proc` says about
//! its master.
//!
//! The server runs in its own process group; the master's workers inherit
//! it. [`Server`]'s `Drop` sends SIGKILL to that group (never to a name or
//! to anything else), reaps the master, and then the workers, which the
//! master's death made our children ([`become_subreaper`]); so a failing run
//! leaks nothing, and the next run does not share the cores with dying
//! processes.
//!
//! A thread reads stderr line by line and stamps each line with the
//! [`Instant`] it arrived. The master and its workers log one line per
//! event with a single `write`, so the arrival time is the event's time to
//! within the scheduling delay of that thread. The lines this module
//! understands (master lines have target `srv`, see
//! `srv-master/src/machine.rs` and `event_loop.rs`):
//!
//! ```text
//! [2026-01-01T00:00:00Z INFO  srv] listening on 127.0.0.1:40123 (requested 127.0.0.1:0)
//! [2026-01-01T00:00:00Z INFO  srv] worker 3 spawned (pid 1234)
//! [2026-01-01T00:00:00Z INFO  srv] worker 3 (pid 1234) started (online) in 25 ms
//! [2026-01-01T00:00:00Z INFO  srv] worker 3 (pid 1234) disconnecting
//! [2026-01-01T00:00:00Z INFO  srv] worker 3 (pid 1234) exited (exit code 0) as asked
//! [2026-01-01T00:00:00Z INFO  srv] recycle complete: 4 workers replaced in 110 ms
//! [2026-01-01T00:00:00Z DEBUG srv] worker 3 (pid 1234) forked and executed in 0.61 ms
//! [2026-01-01T00:00:00Z DEBUG srv] worker 3 (pid 1234) start after its exec: hello +0.52 ms, listen request +0.55 ms, listening +0.70 ms
//! ```
//!
//! The two debug lines break a worker's start down (see
//! `srv-master/src/machine/worker.rs`, `Timeline`); every server here runs
//! with `RUST_LOG=info,srv=debug` to get them.
//!
//! A standalone server (`--standalone`) logs the same `listening on` line
//! with target `http`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How many log lines an error message shows.
const TAIL_LINES: usize = 40;

/// What a lifecycle line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogEvent {
    /// `listening on ADDR (requested ...)`.
    Listening(SocketAddr),
    /// `worker N spawned (pid P)`.
    Spawned { pid: u32 },
    /// `worker N (pid P) started (online) in X ms`.
    Started { pid: u32, ms: u64 },
    /// `worker N (pid P) disconnecting`.
    Disconnecting { pid: u32 },
    /// `worker N (pid P) exited ...`, however it exited.
    Exited { pid: u32 },
    /// `recycle complete: K workers replaced in T ms`.
    RecycleComplete { replaced: usize, ms: u64 },
    /// `worker N (pid P) forked and executed in X ms`, in microseconds.
    ForkExec { pid: u32, us: u64 },
    /// `worker N (pid P) start after its exec: hello +X ms, ...`: each step
    /// and its time since the exec, in microseconds.
    StartSteps { pid: u32, steps: Vec<(String, u64)> },
}

/// `0.61` (milliseconds) as 610 microseconds.
fn parse_ms_as_us(ms: &str) -> Option<u64> {
    let ms: f64 = ms.parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
}

/// Parses one stderr line: an `env_logger` line `[time LEVEL target] message`
/// or a bare message. `None` for every other line.
pub(crate) fn parse_line(line: &str) -> Option<LogEvent> {
    let message = match line.split_once("] ") {
        Some((prefix, message)) if prefix.starts_with('[') => message,
        _ => line,
    };
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("listening on ") {
        let (addr, _) = rest.split_once(" (requested ")?;
        return addr.parse().ok().map(LogEvent::Listening);
    }
    if let Some(rest) = message.strip_prefix("recycle complete: ") {
        let (replaced, rest) = rest.split_once(" workers replaced in ")?;
        let ms = rest.strip_suffix(" ms")?;
        return Some(LogEvent::RecycleComplete {
            replaced: replaced.parse().ok()?,
            ms: ms.parse().ok()?,
        });
    }
    let rest = message.strip_prefix("worker ")?;
    let (_worker_id, rest) = rest.split_once(' ')?;
    if let Some(pid) = rest.strip_prefix("spawned (pid ") {
        return Some(LogEvent::Spawned { pid: pid.strip_suffix(')')?.parse().ok()? });
    }
    let (pid, what) = rest.strip_prefix("(pid ")?.split_once(") ")?;
    let pid = pid.parse().ok()?;
    if let Some(rest) = what.strip_prefix("started (") {
        let (_require, took) = rest.split_once(") in ")?;
        return Some(LogEvent::Started { pid, ms: took.strip_suffix(" ms")?.parse().ok()? });
    }
    if let Some(ms) = what.strip_prefix("forked and executed in ") {
        return Some(LogEvent::ForkExec { pid, us: parse_ms_as_us(ms.strip_suffix(" ms")?)? });
    }
    if let Some(steps) = what.strip_prefix("start after its exec: ") {
        let steps = steps
            .split(", ")
            .map(|step| {
                let (name, ms) = step.rsplit_once(" +")?;
                Some((name.to_owned(), parse_ms_as_us(ms.strip_suffix(" ms")?)?))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(LogEvent::StartSteps { pid, steps });
    }
    if what.starts_with("disconnecting") {
        return Some(LogEvent::Disconnecting { pid });
    }
    if what.starts_with("exited ") {
        return Some(LogEvent::Exited { pid });
    }
    None
}

/// Pids of the workers that the events say are started and neither
/// disconnecting nor exited: the ones that accept connections.
pub(crate) fn serving_pids<'a>(events: impl IntoIterator<Item = &'a LogEvent>) -> BTreeSet<u32> {
    let mut serving = BTreeSet::new();
    for event in events {
        match *event {
            LogEvent::Started { pid, .. } => {
                serving.insert(pid);
            }
            LogEvent::Disconnecting { pid } | LogEvent::Exited { pid } => {
                serving.remove(&pid);
            }
            _ => {}
        }
    }
    serving
}

/// One stderr line and when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) at: Instant,
    pub(crate) text: String,
    pub(crate) event: Option<LogEvent>,
}

#[derive(Debug, Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LogState {
    lines: Vec<Line>,
    /// Every writer of the pipe is gone.
    closed: bool,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A running reference server, killed with its whole process group on drop.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    log: Arc<Log>,
    launched_at: Instant,
    addr: SocketAddr,
    shown: String,
}

impl Server {
    /// Starts `program args...` in a new process group and waits for its
    /// `listening on` line (within `within`).
    pub(crate) fn start(program: &Path, args: &[&str], within: Duration) -> Result<Server> {
        let shown = format!("{} {}", program.display(), args.join(" "));
        let mut command = Command::new(program);
        command
            .args(args)
            // The lines parsed here are at info, and the master's start
            // breakdown at debug; a user's RUST_LOG=debug would also slow
            // the workers down.
            .env("RUST_LOG", "info,srv=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let launched_at = Instant::now();
        let mut child = command.spawn().with_context(|| format!("cannot start `{shown}`"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let reader_log = Arc::clone(&log);
        // Not joined: it ends at end of file, once the group is gone.
        let spawned = thread::Builder::new()
            .name("bench-stderr".into())
            .spawn(move || read(stderr, &reader_log));
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut server = Server { child, log, launched_at, addr: unspecified, shown };
        spawned.context("cannot spawn the stderr reader thread")?;
        let (_, addr) =
            server.wait_event(0, "the \"listening on\" line", within, |event| match event {
                LogEvent::Listening(addr) => Some(*addr),
                _ => None,
            })?;
        if !addr.ip().is_loopback() || addr.port() == 0 {
            bail!("`{}` listens on {addr}, not on a loopback port", server.shown);
        }
        server.addr = addr;
        Ok(server)
    }

    /// When the master was started (just before `spawn`).
    pub(crate) fn launched_at(&self) -> Instant {
        self.launched_at
    }

    /// The address it serves on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master's pid (or the standalone server's).
    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    /// The number of lines so far: events after it are "since now".
    pub(crate) fn mark(&self) -> usize {
        self.log.lock().lines.len()
    }

    /// Sends `signal` to the master; returns when it was sent.
    pub(crate) fn signal(&self, signal: Signal) -> Result<Instant> {
        let at = Instant::now();
        kill(self.pid(), signal).with_context(|| format!("cannot send {signal} to the master"))?;
        Ok(at)
    }

    /// Sends `signal` to `pid`, which must be one of this server's workers
    /// (this is checked: the pid must be in the server's process group).
    pub(crate) fn signal_worker(&self, pid: u32, signal: Signal) -> Result<Instant> {
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        let pgid =
            nix::unistd::getpgid(Some(pid)).with_context(|| format!("worker pid {pid} is gone"))?;
        if pgid != self.pid() {
            bail!("pid {pid} is not in the server's process group {}", self.pid());
        }
        let at = Instant::now();
        kill(pid, signal).with_context(|| format!("cannot send {signal} to worker pid {pid}"))?;
        Ok(at)
    }

    /// The parsed lines from line `from` on, with their arrival time.
    pub(crate) fn events_since(&self, from: usize) -> Vec<(Instant, LogEvent)> {
        let state = self.log.lock();
        state
            .lines
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter_map(|line| Some((line.at, line.event.clone()?)))
            .collect()
    }

    /// Waits until a line from line `from` on gives `find` an answer;
    /// returns that line's arrival time and the answer.
    pub(crate) fn wait_event<T>(
        &self,
        from: usize,
        what: &str,
        within: Duration,
        mut find: impl FnMut(&LogEvent) -> Option<T>,
    ) -> Result<(Instant, T)> {
        self.wait_lines(from, what, within, |lines| {
            lines.iter().find_map(|line| Some((line.at, find(line.event.as_ref()?)?)))
        })
    }

    /// Waits until exactly `n` workers are serving (counting every line);
    /// returns their pids.
    pub(crate) fn wait_serving(&self, n: usize, within: Duration) -> Result<BTreeSet<u32>> {
        self.wait_lines(0, &format!("{n} serving workers"), within, |lines| {
            let serving = serving_pids(lines.iter().filter_map(|line| line.event.as_ref()));
            (serving.len() == n).then_some(serving)
        })
    }

    fn wait_lines<T>(
        &self,
        from: usize,
        what: &str,
        within: Duration,
        mut find: impl FnMut(&[Line]) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + within;
        let mut state = self.log.lock();
        loop {
            if let Some(found) = find(state.lines.get(from..).unwrap_or_default()) {
                return Ok(found);
            }
            if state.closed {
                drop(state);
                bail!("the server exited while waiting for {what}\n{}", self.tail());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                bail!("no {what} within {within:?}\n{}", self.tail());
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poison| poison.into_inner())
                .0;
        }
    }

    /// The command and the last lines of its stderr, for error messages.
    pub(crate) fn tail(&self) -> String {
        let state = self.log.lock();
        let start = state.lines.len().saturating_sub(TAIL_LINES);
        let mut tail = format!("`{}`, last {} lines of stderr:", self.shown, TAIL_LINES);
        for line in &state.lines[start..] {
            tail.push_str("\n  ");
            tail.push_str(&line.text);
        }
        tail
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The master is not reaped yet, so its pid (the group id) cannot
        // have been reused: this reaches only what we started.
        let group = self.pid();
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        // The workers outlived the master by a moment. `cargo xtask bench`
        // is a child subreaper ([`become_subreaper`]), so they are our
        // children now: reap every one of this group, so that none lingers
        // as a zombie or shares the cores with the next run. Bounded, in
        // case a worker is stuck in the kernel.
        let any_in_group = Pid::from_raw(-group.as_raw());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match waitpid(any_in_group, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                // ECHILD: none left (or we are not a subreaper, and init
                // reaps them).
                Err(_) => break,
            }
        }
    }
}

/// Makes this process the reaper of its orphaned descendants, so that the
/// workers of a killed master become our children and [`Server`]'s `Drop`
/// can reap them. Call it after the build: cargo's own leftovers are not
/// ours to reap.
pub(crate) fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")
}

/// The stderr reader: splits lines, stamps and parses them.
fn read(stderr: impl Read, log: &Log) {
    let mut reader = BufReader::new(stderr);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
                let event = parse_line(&text);
                log.lock().lines.push(Line { at, text, event });
                log.changed.notify_all();
            }
        }
    }
    log.lock().closed = true;
    log.changed.notify_all();
}

/// A process's resident memory (`VmRSS`) and its peak (`VmHWM`), in KiB,
/// from `/proc/<pid>/status`.
pub(crate) fn memory_kib(pid: Pid) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| {
        parse_status_kib(&status, name).with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS")?, field("VmHWM")?))
}

fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The time a process's threads have spent on a CPU, in nanoseconds: the
/// sum of the first field of `/proc/<pid>/task/*/schedstat`. `None` when
/// the kernel has no schedstat files (`CONFIG_SCHED_INFO` off).
///
/// Unlike `utime` and `stime`, which the kernel samples on timer ticks and
/// so charges a process that runs for a millisecond between ticks nothing
/// (or a whole tick), this is measured at every context switch.
pub(crate) fn cpu_ns(pid: Pid) -> Result<Option<u64>> {
    if !Path::new(&format!("/proc/{pid}/schedstat")).exists() {
        return Ok(None);
    }
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let path = task.with_context(|| format!("cannot list {dir}"))?.path().join("schedstat");
        // A thread that ended since the listing has no file any more.
        let Ok(schedstat) = fs::read_to_string(&path) else { continue };
        total += parse_schedstat_ns(&schedstat)
            .with_context(|| format!("cannot parse {}: {schedstat:?}", path.display()))?;
    }
    Ok(Some(total))
}

fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// A process's CPU time, user plus system, in clock ticks, from
/// `/proc/<pid>/stat`.
pub(crate) fn cpu_ticks(pid: Pid) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat_ticks(&stat).with_context(|| format!("cannot parse {path}: {stat:?}"))
}

/// `utime + stime`: fields 14 and 15 of `proc_pid_stat(5)`. The second
/// field, the command name in parentheses, may contain spaces and
/// parentheses, so the count starts after its last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first one after the name.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_master_lifecycle_lines() {
        let cases = [
            (
                "[2026-11-26T02:16:41Z INFO  srv] listening on 127.0.0.1:33043 (requested 127.0.0.1:0)",
                Some(LogEvent::Listening("127.0.0.1:33043".parse().unwrap())),
            ),
            (
                "[2026-11-26T02:16:41Z INFO  http] listening on [::1]:8080 (requested [::1]:8080)",
                Some(LogEvent::Listening("[::1]:8080".parse().unwrap())),
            ),
            (
                "[2026-11-26T02:16:41Z INFO  srv] worker 2 spawned (pid 27280)",
                Some(LogEvent::Spawned { pid: 27280 }),
            ),
            (
                "[2026-11-26T02:16:41Z INFO  srv] worker 1 (pid 27279) started (online) in 24 ms",
                Some(LogEvent::Started { pid: 27279, ms: 24 }),
            ),
            (
                "[2026-11-26T02:16:41Z INFO  srv] worker 12 (pid 5) started (listen) in 0 ms\n",
                Some(LogEvent::Started { pid: 5, ms: 0 }),
            ),
            (
                "[2026-11-26T02:16:42Z INFO  srv] worker 1 (pid 27279) disconnecting",
                Some(LogEvent::Disconnecting { pid: 27279 }),
            ),
            (
                "[2026-11-26T02:16:42Z INFO  srv] worker 1 (pid 27279) exited (exit code 0) as asked",
                Some(LogEvent::Exited { pid: 27279 }),
            ),
            (
                "[2026-11-26T02:16:44Z WARN  srv] worker 3 (pid 27290) exited unasked (signal 9); restarting in 0 ms",
                Some(LogEvent::Exited { pid: 27290 }),
            ),
            (
                "[2026-11-26T02:16:42Z INFO  srv] recycle complete: 2 workers replaced in 50 ms",
                Some(LogEvent::RecycleComplete { replaced: 2, ms: 50 }),
            ),
            (
                "worker 1 (pid 7) started (online) in 3 ms",
                Some(LogEvent::Started { pid: 7, ms: 3 }),
            ),
            (
                "[2026-11-26T02:16:41Z DEBUG srv] worker 5 (pid 41) forked and executed in 0.61 ms",
                Some(LogEvent::ForkExec { pid: 41, us: 610 }),
            ),
            (
                "[2026-11-26T02:16:41Z DEBUG srv] worker 5 (pid 41) start after its exec: hello +0.52 ms, listen request +0.55 ms, listening +12.70 ms",
                Some(LogEvent::StartSteps {
                    pid: 41,
                    steps: vec![
                        ("hello".to_owned(), 520),
                        ("listen request".to_owned(), 550),
                        ("listening".to_owned(), 12_700),
                    ],
                }),
            ),
            ("worker 5 (pid 41) forked and executed in -1.00 ms", None),
            ("worker 5 (pid 41) start after its exec: hello 0.52 ms", None),
            // Lines that look alike but are not lifecycle events.
            (
                "[2026-11-26T02:16:41Z INFO  srv] worker 1 (pid 27279) listening on 127.0.0.1:33043",
                None,
            ),
            ("[2026-11-26T02:16:41Z INFO  http] http worker 27279 online", None),
            ("[2026-11-26T02:16:41Z INFO  srv] master 27277 starting 2 workers", None),
            ("[2026-11-26T02:16:41Z INFO  srv] worker 1 (pid x) started (online) in 2 ms", None),
            ("[2026-11-26T02:16:41Z INFO  srv] worker 1 (pid 2) started (online) in ms", None),
            ("[2026-11-26T02:16:41Z INFO  srv] listening on nowhere (requested 127.0.0.1:0)", None),
            ("", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line), expected, "{line:?}");
        }
    }

    #[test]
    fn serving_pids_follow_the_lifecycle() {
        let events = [
            LogEvent::Spawned { pid: 1 },
            LogEvent::Started { pid: 1, ms: 3 },
            LogEvent::Started { pid: 2, ms: 3 },
            LogEvent::Started { pid: 3, ms: 3 },
            LogEvent::Disconnecting { pid: 1 },
            LogEvent::Exited { pid: 2 },
            LogEvent::Exited { pid: 1 },
            LogEvent::Started { pid: 4, ms: 3 },
        ];
        assert_eq!(serving_pids(&events), BTreeSet::from([3, 4]));
    }

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (http (srv) x) S 1 1234 1234 0 -1 4194560 300 0 0 0 17 5 0 0 20 0 3 0 99 \
                    123456 456 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(22));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\thttp\nVmHWM:\t    3000 kB\nVmRSS:\t    2484 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(2484));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(3000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_schedstat_ns("2279069 13384878 25\n"), Some(2_279_069));
        assert_eq!(parse_schedstat_ns(""), None);
    }

    #[test]
    fn reads_the_live_proc_files_of_this_process() {
        let me = Pid::this();
        let (rss, peak) = memory_kib(me).unwrap();
        assert!(rss > 0 && peak >= rss, "rss {rss} kB, peak {peak} kB");
        cpu_ticks(me).unwrap();
        if let Some(ns) = cpu_ns(me).unwrap() {
            assert!(ns > 0);
        }
    }
}
