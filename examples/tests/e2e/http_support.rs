//! Helpers for the end-to-end tests that drive the reference server
//! (`examples/src/bin/http.rs`): start it on port 0 and read the port from
//! the master's log, a tiny blocking HTTP client, the worker pids the
//! master's log says are serving, and a guard that stops a load generator.
//!
//! The master's log lines these helpers read (target `srv`, see
//! `srv-master/src/machine.rs` and `event_loop.rs`):
//!
//! ```text
//! listening on 127.0.0.1:40123 (requested 127.0.0.1:0)
//! worker 3 (pid 1234) started (online) in 2 ms
//! worker 3 (pid 1234) disconnecting
//! worker 3 (pid 1234) exited (exit code 0) as asked
//! ```

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::harness::{Master, wait_until};
use crate::load::{Load, LoadConfig, Report};

/// The timeout of one request of [`get`], for connecting and for each read
/// and write.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The reference server.
pub(crate) fn http() -> &'static str {
    env!("CARGO_BIN_EXE_http")
}

/// Starts `program` (the reference server or a copy of it) as a master on
/// 127.0.0.1 port 0, with `args` after `--port 0`.
pub(crate) fn start_on_port_0(program: &str, args: &[&str]) -> Master {
    let mut all = vec!["--addr", "127.0.0.1", "--port", "0"];
    all.extend_from_slice(args);
    Master::start(program, &all)
}

/// The address the master bound for `--port 0`, from its
/// `listening on 127.0.0.1:NNNN (requested 127.0.0.1:0)` line; waits for
/// the line.
pub(crate) fn wait_addr(master: &Master) -> SocketAddr {
    let lines = master.wait_until("the master's \"listening on\" line", |lines| {
        lines.iter().any(|line| listening_addr(line).is_some())
    });
    let addr = lines.iter().find_map(|line| listening_addr(line)).expect("waited for it");
    if addr.port() == 0 || !addr.ip().is_loopback() {
        master.fail(&format!("the master listens on {addr}, not on a loopback port"));
    }
    addr
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr = rest.strip_suffix(" (requested 127.0.0.1:0)")?;
    addr.parse().ok()
}

/// Pids of the workers that the log says are started and neither
/// disconnecting nor exited: the ones that accept connections.
pub(crate) fn serving_pids(lines: &[String]) -> BTreeSet<Pid> {
    let mut serving = BTreeSet::new();
    for line in lines {
        let Some((pid, what)) = worker_event(line) else { continue };
        if what.starts_with("started (") {
            serving.insert(pid);
        } else if what.starts_with("disconnecting") || what.starts_with("exited") {
            serving.remove(&pid);
        }
    }
    serving
}

/// The pid and the rest of a master line `worker N (pid P) <what>`.
fn worker_event(line: &str) -> Option<(Pid, &str)> {
    let rest = &line[line.find("] worker ")? + "] worker ".len()..];
    let (_, rest) = rest.split_once(" (pid ")?;
    let (pid, what) = rest.split_once(") ")?;
    Some((Pid::from_raw(pid.parse().ok()?), what))
}

/// Waits until exactly `n` workers are serving and every one of them runs;
/// returns their pids.
pub(crate) fn wait_serving(master: &Master, n: usize) -> BTreeSet<Pid> {
    let lines = master.wait_until(&format!("{n} serving workers"), |lines| {
        let serving = serving_pids(lines);
        serving.len() == n && serving.iter().all(|&pid| master.is_alive(pid))
    });
    serving_pids(&lines)
}

/// Waits until the master logged that every worker in `pids` exited when
/// asked to (`exited (exit code 0) as asked`), within `within`.
pub(crate) fn wait_exited_as_asked(master: &Master, pids: &BTreeSet<Pid>, within: Duration) {
    master.wait_until_within(within, &format!("workers {pids:?} exited as asked"), |lines| {
        pids.iter().all(|pid| {
            let needle = format!("(pid {pid}) exited (exit code 0) as asked");
            lines.iter().any(|line| line.contains(&needle))
        })
    });
}

/// A response of [`get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body (the reference server's bodies are short text).
    pub(crate) body: String,
}

impl Response {
    /// The worker pid of a `GET /` answer (`ok <pid>`) or of a `GET /exe`
    /// answer (`exe <hash> <pid>`).
    pub(crate) fn pid(&self) -> Option<Pid> {
        let pid = self.body.split_whitespace().last()?;
        pid.parse().ok().map(Pid::from_raw)
    }
}

/// `GET path` on a new connection with `Connection: close`; reads until the
/// server closes. Only for 127.0.0.1: tests never send traffic elsewhere.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    assert!(addr.ip().is_loopback(), "test traffic goes to loopback only, not {addr}");
    let fail =
        |what: &str, error: std::io::Error| format!("GET {path} from {addr}: {what}: {error}");
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|error| fail("connect", error))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|error| fail("set timeout", error))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|error| fail("set timeout", error))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|error| fail("write", error))?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).map_err(|error| fail("read", error))?;
    let text = String::from_utf8_lossy(&bytes);
    let malformed = || format!("GET {path} from {addr}: malformed response {text:?}");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    Ok(Response { status, body: body.to_owned() })
}

/// [`get`], panicking with the master's output unless the answer is `200`.
pub(crate) fn get_ok(master: &Master, addr: SocketAddr, path: &str) -> Response {
    match get(addr, path) {
        Ok(response) if response.status == 200 => response,
        Ok(response) => master.fail(&format!("GET {path}: expected 200, got {response:?}")),
        Err(error) => master.fail(&error),
    }
}

/// Sends `GET path` on new connections until every pid in `pids` has
/// answered (at most `max_requests` requests and `within`); returns the
/// answers, all `200`. Which worker accepts a connection is the kernel's
/// choice, so reaching all of them takes a few tries.
pub(crate) fn get_from_each(
    master: &Master,
    addr: SocketAddr,
    path: &str,
    pids: &BTreeSet<Pid>,
    max_requests: usize,
    within: Duration,
) -> Vec<Response> {
    let deadline = Instant::now() + within;
    let mut answers: Vec<Response> = Vec::new();
    let reached_all = wait_until(deadline, || {
        let response = get_ok(master, addr, path);
        answers.push(response);
        let answered: BTreeSet<Pid> = answers.iter().filter_map(Response::pid).collect();
        pids.is_subset(&answered) || answers.len() >= max_requests
    });
    let answered: BTreeSet<Pid> = answers.iter().filter_map(Response::pid).collect();
    if !reached_all || !pids.is_subset(&answered) {
        master.fail(&format!(
            "GET {path}: workers {pids:?} did not all answer {} requests (answered: {answered:?})",
            answers.len()
        ));
    }
    answers
}

/// A running [`Load`] that is stopped when dropped, so that a failing test
/// does not leave client threads hammering a dead port.
pub(crate) struct LoadGuard {
    load: Option<Load>,
}

impl LoadGuard {
    /// Starts the load generator.
    pub(crate) fn start(config: LoadConfig) -> LoadGuard {
        LoadGuard { load: Some(Load::start(config)) }
    }

    /// Requests completed so far, answered or failed.
    pub(crate) fn requests_so_far(&self) -> u64 {
        self.load.as_ref().map_or(0, Load::requests_so_far)
    }

    /// Waits until `n` more requests than now have completed, within
    /// `within`: the load is flowing. Panics with the master's output if not.
    pub(crate) fn wait_progress(&self, master: &Master, n: u64, within: Duration) {
        let target = self.requests_so_far() + n;
        let deadline = Instant::now() + within;
        if !wait_until(deadline, || self.requests_so_far() >= target) {
            master.fail(&format!(
                "the load made no progress: {} requests completed, waited for {target}",
                self.requests_so_far()
            ));
        }
    }

    /// Stops sending and reports.
    pub(crate) fn stop(mut self) -> Report {
        self.load.take().expect("stopped once").stop()
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            // Each request in flight ends within its timeout.
            let _ = load.stop();
        }
    }
}

/// Fails the test with the report and the master's output unless the load
/// had no failed request and at least `min_ok` answered ones.
pub(crate) fn assert_lossless(master: &Master, report: &Report, min_ok: u64) {
    if report.failed() != 0 || report.ok != report.sent {
        master.fail(&format!("requests failed under load:\n{report}"));
    }
    if report.ok < min_ok {
        master.fail(&format!("the load answered fewer than {min_ok} requests:\n{report}"));
    }
}

/// The number of threads named `name` in the process `pid` (`comm` of each
/// task), 0 if it is gone.
pub(crate) fn threads_named(pid: Pid, name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// 64-bit FNV-1a, as `GET /exe` of the reference server computes it.
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
