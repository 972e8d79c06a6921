//! The process harness of the end-to-end tests: a guard that owns one
//! master (and so its workers), captures their output line by line, waits on
//! conditions with deadlines, and kills everything it started when dropped.
//!
//! # How a test uses it
//!
//! ```text
//! let mut master = Master::start(misbehave(), &["--workers", "2"]);
//! master.wait_until("2 workers started", |lines| count(lines, "started (online)") == 2);
//! master.signal(Signal::SIGTERM);
//! assert_eq!(master.wait_exit(), Exit::Code(0));
//! ```
//!
//! # Rules it enforces (CONTRIBUTING.md, "Where tests go")
//!
//! - Every master runs in its own process group (`process_group(0)`); its
//!   workers inherit it. [`Master::signal_group`] is Ctrl+C's way of
//!   signalling (`kill(-pgid, sig)`), and the group is the last resort of
//!   the cleanup. Nothing outside the test's own groups is ever signalled.
//! - The master's stdout and stderr (which its workers inherit) are read by
//!   two threads into one shared list of lines, each stamped with the
//!   `Instant` it arrived.
//! - Every wait has a deadline: the guard's hard timeout
//!   ([`TEST_TIMEOUT`] from the start, unless the test gives another), or a
//!   shorter one the test asks for. A wait that times out panics with the
//!   command and the whole captured output.
//! - On `Drop` the guard sends `SIGKILL` to the master, to every worker pid
//!   it saw in the output that is still in the master's process group, and
//!   to the process group; then it reaps the master and waits until none of
//!   those pids is alive. If the test is failing, it prints the command,
//!   the exit status and the whole captured output.
//!
//! # Races it avoids
//!
//! - A pid is only a name until it is reaped, and pids are reused (32768 is
//!   a common `pid_max`). The master is this process's child, so its pid,
//!   and the process group id that equals it, stay reserved until the guard
//!   reaps it. That is why [`Master::wait_exit`] observes the exit with
//!   `waitid(WNOWAIT)` without reaping: the cleanup and
//!   [`Master::is_alive`] can still trust the process group id. A worker pid
//!   from the log is signalled only while it is in that group.
//! - Output lines of several processes share one pipe; each line must be
//!   written with one `write` (under `PIPE_BUF` bytes) to stay whole. The
//!   master's logger and `misbehave` do that.

use std::cell::Cell;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::{Pid, getpgid};

/// The hard timeout of one master guard, from its start: no test waits
/// longer than this for anything.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the cleanup waits for killed processes to die.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often conditions are checked.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The `misbehave` test worker (see `examples/src/bin/misbehave.rs`).
pub(crate) fn misbehave() -> &'static str {
    env!("CARGO_BIN_EXE_misbehave")
}

/// The `hello` example, the node module's own example.
pub(crate) fn hello() -> &'static str {
    env!("CARGO_BIN_EXE_hello")
}

/// One line of output and when the harness read it.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// When the reader thread got it: at or after the process wrote it.
    pub(crate) at: Instant,
    /// The line, without its newline.
    pub(crate) text: String,
}

/// How the master process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it.
    Signal(Signal),
}

/// The guard of one master process and its workers.
pub(crate) struct Master {
    command_line: String,
    child: Child,
    pid: Pid,
    lines: Arc<Mutex<Vec<Line>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    deadline: Instant,
    exit: Option<Exit>,
    /// A panic message already carries the captured output.
    output_shown: Cell<bool>,
}

impl Master {
    /// Starts `program args` as a master in its own process group, with the
    /// hard timeout [`TEST_TIMEOUT`].
    pub(crate) fn start(program: &str, args: &[&str]) -> Master {
        Master::start_with_timeout(program, args, TEST_TIMEOUT)
    }

    /// Starts `program args` as a master in its own process group; no wait
    /// of this guard lasts past `timeout` from now.
    pub(crate) fn start_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Master {
        Master::start_with(program, args, timeout, |_| {})
    }

    /// Starts `program args` like [`Master::start_with_timeout`], letting
    /// `configure` change the command last (environment, for example).
    pub(crate) fn start_with(
        program: &str,
        args: &[&str],
        timeout: Duration,
        configure: impl FnOnce(&mut Command),
    ) -> Master {
        let command_line = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>();
        let command_line = command_line.join(" ");
        let mut command = Command::new(program);
        command
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The tests read the `info` lines; a RUST_LOG of the caller must
            // not hide them. The channel variables must not leak in from a
            // test runner that is itself a worker.
            .env("RUST_LOG", "info")
            .env_remove("SRV_CHANNEL_FD")
            .env_remove("SRV_WORKER_ID");
        configure(&mut command);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start `{command_line}`: {error}"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers =
            vec![read_lines(stdout, Arc::clone(&lines)), read_lines(stderr, Arc::clone(&lines))];
        Master {
            command_line,
            child,
            pid,
            lines,
            readers,
            started,
            deadline: started + timeout,
            exit: None,
            output_shown: Cell::new(false),
        }
    }

    /// The command that started the master, program first.
    pub(crate) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The master's pid, which is also its process group id.
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Every line read so far, stdout and stderr merged in arrival order.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.timed_lines().into_iter().map(|line| line.text).collect()
    }

    /// [`Master::lines`] with the time each line arrived.
    pub(crate) fn timed_lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// The command, the exit status if known, and the whole captured output.
    pub(crate) fn report(&self) -> String {
        let mut report = format!("command: {}\n", self.command_line);
        let status = match self.exit {
            Some(exit) => format!("{exit:?}"),
            None => "not exited (yet)".to_owned(),
        };
        let _ = writeln!(report, "master pid {}, status: {status}", self.pid);
        let _ = writeln!(report, "captured output (stdout and stderr of master and workers):");
        for line in self.timed_lines() {
            let at = line.at.saturating_duration_since(self.started).as_millis();
            let _ = writeln!(report, "  +{at:>5} ms | {}", line.text);
        }
        report
    }

    /// Panics with `message` and [`Master::report`].
    pub(crate) fn fail(&self, message: &str) -> ! {
        self.output_shown.set(true);
        panic!("{message}\n{}", self.report());
    }

    /// Waits until `condition` holds for the lines read so far, and returns
    /// them. Panics with the captured output at the guard's deadline.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        condition: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        self.wait_until_deadline(self.deadline, what, condition)
    }

    /// [`Master::wait_until`], but for at most `within` from now.
    pub(crate) fn wait_until_within(
        &self,
        within: Duration,
        what: &str,
        condition: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        self.wait_until_deadline(self.deadline.min(Instant::now() + within), what, condition)
    }

    fn wait_until_deadline(
        &self,
        deadline: Instant,
        what: &str,
        mut condition: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let holds = wait_until(deadline, || {
            lines = self.lines();
            condition(&lines)
        });
        if !holds {
            let waited = deadline.saturating_duration_since(self.started).as_millis();
            self.fail(&format!("timed out waiting for: {what} ({waited} ms after start)"));
        }
        lines
    }

    /// Waits until `needle` appears in at least `n` lines; returns the lines.
    pub(crate) fn wait_for_count(&self, needle: &str, n: usize) -> Vec<String> {
        self.wait_until(&format!("{n} lines containing {needle:?}"), |lines| {
            count(lines, needle) >= n
        })
    }

    /// Sends `signal` to the master only.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Err(errno) = kill(self.pid, signal) {
            self.fail(&format!("cannot send {signal} to the master: {errno}"));
        }
    }

    /// Sends `signal` to the master's whole process group, as Ctrl+C does.
    pub(crate) fn signal_group(&self, signal: Signal) {
        if let Err(errno) = killpg(self.pid, signal) {
            self.fail(&format!("cannot send {signal} to process group {}: {errno}", self.pid));
        }
    }

    /// Sends `signal` to one worker of this master, `pid` from its log.
    /// Panics if `pid` is not a live process in this master's group.
    pub(crate) fn signal_worker(&self, pid: Pid, signal: Signal) {
        if !self.is_alive(pid) {
            self.fail(&format!(
                "cannot send {signal} to pid {pid}: not a live worker of this master"
            ));
        }
        if let Err(errno) = kill(pid, signal) {
            self.fail(&format!("cannot send {signal} to worker pid {pid}: {errno}"));
        }
    }

    /// How the master ended, if it has; never blocks and never reaps.
    pub(crate) fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            self.exit = match waitid(Id::Pid(self.pid), flags) {
                Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(Exit::Signal(signal)),
                Ok(_) => None,
                Err(errno) => self.fail(&format!("waitid on the master failed: {errno}")),
            };
        }
        self.exit
    }

    /// Waits until the master exits, up to the guard's deadline, then for
    /// its output to end (every process holding the pipes is gone) for a
    /// short while. Does not reap the master (see the module docs).
    pub(crate) fn wait_exit(&mut self) -> Exit {
        self.wait_exit_deadline(self.deadline)
    }

    /// [`Master::wait_exit`], but for at most `within` from now.
    pub(crate) fn wait_exit_within(&mut self, within: Duration) -> Exit {
        self.wait_exit_deadline(self.deadline.min(Instant::now() + within))
    }

    fn wait_exit_deadline(&mut self, deadline: Instant) -> Exit {
        if !wait_until(deadline, || self.try_exit().is_some()) {
            let waited = deadline.saturating_duration_since(self.started).as_millis();
            self.fail(&format!(
                "timed out waiting for the master to exit ({waited} ms after start)"
            ));
        }
        // The readers see end of file once no process holds the pipes. A
        // worker left alive keeps them open: that is for the test to find,
        // so this wait is short and does not fail.
        let output_deadline = self.deadline.min(Instant::now() + Duration::from_secs(2));
        wait_until(output_deadline, || self.readers.iter().all(JoinHandle::is_finished));
        self.exit.expect("the master exited")
    }

    /// Distinct pids of the master's `spawned (pid N)` lines, in order.
    pub(crate) fn worker_pids(&self) -> Vec<Pid> {
        pids_after(&self.lines(), "spawned (pid ")
    }

    /// Whether `pid` runs (is not a zombie) in this master's process group.
    ///
    /// Trustworthy for pids of this master's workers as long as the guard
    /// lives, since until then no other process can join this group.
    pub(crate) fn is_alive(&self, pid: Pid) -> bool {
        is_alive(pid) && getpgid(Some(pid)) == Ok(self.pid)
    }

    /// Every pid the output mentions (`pid N`), the master's excluded.
    fn seen_pids(&self) -> Vec<Pid> {
        let mut pids = Vec::new();
        for line in self.lines() {
            for pid in pids_in(&line) {
                if pid != self.pid && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        // The master is not reaped yet, so its pid and process group id are
        // still ours: first the master (so it spawns no replacements), then
        // the workers we know of, then the group for anything the log did
        // not name (a worker spawned just before the master died).
        let _ = self.child.kill();
        let workers = self.seen_pids();
        for &pid in &workers {
            if self.is_alive(pid) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        match killpg(self.pid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => eprintln!("cannot kill process group {}: {errno}", self.pid),
        }
        let cleanup_deadline = Instant::now() + CLEANUP_TIMEOUT;
        let all_dead = wait_until(cleanup_deadline, || {
            workers.iter().all(|&pid| !self.is_alive(pid)) && !is_alive(self.pid)
        });
        let left: Vec<Pid> = workers.iter().copied().filter(|&pid| self.is_alive(pid)).collect();
        let status = self.child.wait();
        // Let the readers take the last lines before anything is printed.
        wait_until(Instant::now() + Duration::from_millis(500), || {
            self.readers.iter().all(JoinHandle::is_finished)
        });
        if std::thread::panicking() {
            if !self.output_shown.get() {
                eprintln!("{}", self.report());
            }
        } else if !all_dead || status.is_err() {
            self.fail(&format!(
                "cleanup failed: pids {left:?} still alive, master reaped: {status:?}"
            ));
        }
    }
}

fn read_lines(stream: impl Read + Send + 'static, lines: Arc<Mutex<Vec<Line>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_owned();
                    let line = Line { at: Instant::now(), text };
                    lines.lock().unwrap_or_else(|poison| poison.into_inner()).push(line);
                }
            }
        }
    })
}

/// Polls `condition` until it holds (`true`) or `deadline` passes (`false`).
pub(crate) fn wait_until(deadline: Instant, mut condition: impl FnMut() -> bool) -> bool {
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        // A poll interval, not an assertion: the condition decides.
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Whether `pid` exists and is not a zombie, from `/proc/<pid>/stat`.
///
/// Only meaningful for a pid known not to be reused yet (see
/// [`Master::is_alive`]).
pub(crate) fn is_alive(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may contain spaces and parentheses.
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// Whether every thread of `pid` is stopped (by `SIGSTOP`), from
/// `/proc/<pid>/task/*/stat`. `kill` returns before the target stops: a
/// thread may still run a system call that was already under way.
pub(crate) fn is_stopped(pid: Pid) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut states = tasks.map(|task| {
        let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
        stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next())
    });
    states.all(|state| matches!(state, Some('T' | 't')))
}

/// The number of lines containing `needle`.
pub(crate) fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|line| line.contains(needle)).count()
}

/// The index of the first line at or after `from` containing `needle`.
pub(crate) fn find_from(lines: &[String], from: usize, needle: &str) -> Option<usize> {
    lines.iter().skip(from).position(|line| line.contains(needle)).map(|index| index + from)
}

/// Distinct pids written right after `marker` (`"Hello from "`,
/// `"spawned (pid "`), in order of first appearance.
pub(crate) fn pids_after(lines: &[String], marker: &str) -> Vec<Pid> {
    let mut pids = Vec::new();
    for line in lines {
        if let Some(start) = line.find(marker)
            && let Some(pid) = leading_number(&line[start + marker.len()..])
        {
            let pid = Pid::from_raw(pid);
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Every `pid N` in `line`.
fn pids_in(line: &str) -> Vec<Pid> {
    line.match_indices("pid ")
        .filter_map(|(start, marker)| leading_number(&line[start + marker.len()..]))
        .map(Pid::from_raw)
        .collect()
}

fn leading_number(text: &str) -> Option<i32> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text[..digits].parse().ok().filter(|&n| n > 0)
}

/// A `misbehave` worker's report: `misbehave: worker <id> pid <pid> <event>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// `Worker::id`.
    pub(crate) id: u32,
    /// The worker's pid.
    pub(crate) pid: Pid,
    /// The rest: `started`, `online`, `disconnected (Requested)`, ...
    pub(crate) event: String,
}

/// The `misbehave` worker reports among `lines` whose event starts with
/// `event`, in order.
pub(crate) fn reports(lines: &[String], event: &str) -> Vec<Report> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("misbehave: worker ")?;
            let (id, rest) = rest.split_once(" pid ")?;
            let (pid, rest) = rest.split_once(' ')?;
            Some(Report {
                id: id.parse().ok()?,
                pid: Pid::from_raw(pid.parse().ok()?),
                event: rest.to_owned(),
            })
        })
        .filter(|report| report.event.starts_with(event))
        .collect()
}

/// The milliseconds since midnight (UTC) in the timestamp of a master log
/// line (`[2025-01-02T03:04:05.678Z INFO  srv] ...`): the time it was
/// written, where [`Line::at`] is when it was read. `misbehave` logs with
/// millisecond timestamps.
pub(crate) fn log_millis(line: &str) -> Option<i64> {
    let stamp = line.strip_prefix('[')?.split(' ').next()?;
    let time = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let (hms, millis) = time.split_once('.')?;
    let mut parts = hms.split(':').map(|part| part.parse::<i64>().ok());
    let (hours, minutes, seconds) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + millis.parse::<i64>().ok()?)
}

/// Milliseconds from the log timestamp of `earlier` to that of `later`
/// (across midnight too). Timestamps are truncated to the millisecond, so
/// the result can be up to 1 ms short of the real interval.
pub(crate) fn log_interval_ms(earlier: &str, later: &str) -> i64 {
    let (Some(earlier_ms), Some(later_ms)) = (log_millis(earlier), log_millis(later)) else {
        panic!("no millisecond timestamp in {earlier:?} or {later:?}");
    };
    (later_ms - earlier_ms).rem_euclid(24 * 60 * 60 * 1000)
}

/// A directory of the test's own under the system's temporary directory,
/// readable by everyone (so that an unprivileged worker can run a binary
/// copied there), removed with everything in it when dropped (by
/// `tempfile`, which also makes its name unique).
pub(crate) struct TempDir {
    pub(crate) path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix(&format!("srv-e2e-{tag}-"))
            .tempdir()
            .unwrap_or_else(|error| panic!("create a temporary directory for {tag}: {error}"));
        // Set after creation: the creation's mode is filtered by the umask.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|error| panic!("chmod {}: {error}", dir.path().display()));
        TempDir { path: dir.path().to_owned(), _dir: dir }
    }

    /// Writes `text` to the file `name` in this directory; returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> String {
        let path = self.path.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path.to_str().expect("temporary paths are UTF-8").to_owned()
    }
}
