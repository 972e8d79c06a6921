//! Independent, widely used HTTP clients drive the example servers across
//! recycles: `wrk` (keep-alive connections), `ab` (a new connection per
//! request) and `h2load` (HTTP/2 with prior knowledge), from the Debian
//! packages `wrk`, `apache2-utils` and `nghttp2-client`, which
//! `cargo xtask ci` installs when they are missing.
//!
//! # How each is driven and read
//!
//! - `wrk` and `ab` run for the whole test, bounded in time (60 s) and, for
//!   `ab`, in count; the test recycles [`N_RECYCLES`] times, each time after
//!   the new workers took load, then stops the client with SIGINT, on which
//!   both print their report. A request fails in `wrk` as a socket error
//!   (connect, read, write, timeout) or a non-2xx/3xx status; `ab` aborts
//!   at the first socket error, and counts failed requests and non-2xx
//!   responses.
//! - `h2load` never reconnects after a `GOAWAY`, the way an HTTP/2 server
//!   drains a connection, so one run meets one recycle: [`N_RECYCLES`]
//!   runs, each bounded in time, each with its per-request log. h2load
//!   counts as failed the requests it had queued and then refused to send
//!   itself once the `GOAWAY` came (their log rows have no start time).
//!   Those never reached the server; every request h2load sent must be
//!   answered 2xx, and every failure it counts must be one it never sent.
//!
//! Each test prints one line with what the client sent and what failed, for
//! the record (`cargo xtask test-e2e -- --nocapture clients`).

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{Master, TempDir, count, wait_until};
use crate::http_support::{wait_addr, wait_exited_as_asked, wait_serving};
use crate::proc_support::cpu_time;
use crate::recycle::{N_RECYCLES, N_WORKERS, RECYCLE_WITHIN, assert_replaced, recycle};

/// Connections each client keeps busy.
const CONNECTIONS: usize = 8;

/// Held by the test that runs a client: each runs flat out on the 2 cores
/// CI has, and two at once would starve the tests that run beside them.
static ONE_CLIENT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The bound of a `wrk` or `ab` run, which the test ends much earlier.
const LONG_RUN_S: u64 = 60;

/// The length of one `h2load` run, which meets one recycle (done within a
/// few hundred milliseconds of its start).
const H2LOAD_RUN_S: u64 = 3;

/// CPU time the new workers must spend after a recycle before the next:
/// the load reached them.
const BUSY: Duration = Duration::from_millis(50);

/// A client, by its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `wrk`: keep-alive connections.
    Wrk,
    /// `ab`: a new connection per request.
    Ab,
    /// `h2load`: HTTP/2 with prior knowledge.
    H2load,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::Ab => "ab",
            Tool::H2load => "h2load",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::Ab => "apache2-utils",
            Tool::H2load => "nghttp2-client",
        }
    }
}

/// What a client reported over all its runs.
#[derive(Debug, Default)]
struct Tally {
    /// Requests sent and answered or failed.
    sent: u64,
    /// Requests sent that failed, socket errors included.
    failed: u64,
    /// h2load only: requests it queued, then refused to send after a GOAWAY.
    unsent: u64,
}

/// A client process, killed by its pid when dropped (a failing test leaves
/// no load running).
struct ClientProcess {
    command: String,
    child: Option<Child>,
}

impl ClientProcess {
    fn start(tool: Tool, args: &[String]) -> ClientProcess {
        let command = format!("{} {}", tool.program(), args.join(" "));
        let child = Command::new(tool.program())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                if error.kind() == ErrorKind::NotFound {
                    panic!(
                        "`{}` is not installed (Debian package {}; `cargo xtask ci` installs it)",
                        tool.program(),
                        tool.package()
                    );
                }
                panic!("cannot start `{command}`: {error}")
            });
        ClientProcess { command, child: Some(child) }
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Sends SIGINT (the client prints its report and exits), then waits.
    fn interrupt(mut self, master: &Master) -> Output {
        if self.is_running() {
            let _ = kill(self.pid(), Signal::SIGINT);
        }
        self.wait(master)
    }

    /// Waits for the client to exit, for at most 15 s.
    fn wait(mut self, master: &Master) -> Output {
        let deadline = Instant::now() + Duration::from_secs(15);
        if !wait_until(deadline, || !self.is_running()) {
            master.fail(&format!("`{}` did not exit", self.command));
        }
        let child = self.child.take().expect("running");
        child.wait_with_output().expect("collect the client's output")
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Both streams of a client's output, as text.
fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The number after `label` in `text` (`"requests in"` after the number
/// for wrk is handled by the caller), if any.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let rest = &text[text.find(label)? + label.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The number before `label` in `text`: `386780` of `386780 requests in`.
fn number_before(text: &str, label: &str) -> Option<u64> {
    let before = &text[..text.find(label)?];
    let digits: String = before
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Sum of the CPU time of `pids`.
fn cpu_of(pids: &BTreeSet<Pid>) -> Duration {
    pids.iter().filter_map(|&pid| cpu_time(pid)).sum()
}

/// Waits until the workers `pids` spent [`BUSY`] of CPU time since `before`
/// was read: the client's load reached them.
fn wait_busy(master: &Master, pids: &BTreeSet<Pid>, before: Duration) {
    let deadline = Instant::now() + Duration::from_secs(10);
    if !wait_until(deadline, || cpu_of(pids) >= before + BUSY) {
        master.fail(&format!("the load did not reach workers {pids:?}"));
    }
}

/// SIGHUPs [`N_RECYCLES`] times while `tool` loads the master `start`
/// starts (a server of [`N_WORKERS`] workers on port 0), and fails unless
/// every request the client sent was answered. The master starts once no
/// other client runs, so that its hard timeout does not tick meanwhile.
pub(crate) fn recycles_under(start: impl FnOnce() -> Master, tool: Tool) {
    let _alone = ONE_CLIENT_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let master = &start();
    let addr = wait_addr(master);
    let tally = match tool {
        Tool::Wrk | Tool::Ab => one_long_run(master, tool, addr),
        Tool::H2load => one_run_per_recycle(master, addr),
    };
    let lines = master.lines();
    if count(&lines, "killing it") + count(&lines, "exited unasked") != 0 {
        master.fail("a worker was killed or crashed during the recycles");
    }
    if tally.failed != 0 || tally.sent == 0 {
        master.fail(&format!("{tool:?}: {tally:?} over {N_RECYCLES} recycles"));
    }
    let program = master.command_line().split_whitespace().next().unwrap_or_default().to_owned();
    let program = program.rsplit('/').next().unwrap_or_default().to_owned();
    eprintln!(
        "{program}: {}: {} requests sent, {} failed over {N_RECYCLES} recycles{}",
        tool.program(),
        tally.sent,
        tally.failed,
        if tool == Tool::H2load {
            format!(" ({} more queued and never sent after a GOAWAY)", tally.unsent)
        } else {
            String::new()
        }
    );
}

fn one_long_run(master: &Master, tool: Tool, addr: SocketAddr) -> Tally {
    let url = format!("http://{addr}/");
    let args: Vec<String> = match tool {
        Tool::Wrk => {
            let duration = format!("{LONG_RUN_S}s");
            let connections = CONNECTIONS.to_string();
            ["-t1", "-c", &connections, "-d", &duration, "--timeout", "5s", &url]
                .map(str::to_owned)
                .to_vec()
        }
        Tool::Ab => {
            // `-n` after `-t`: `-t` alone implies `-n 50000`. `-l`: the
            // body carries the worker's pid, whose length varies, and ab
            // would count every length other than the first as a failure.
            let (seconds, connections) = (LONG_RUN_S.to_string(), CONNECTIONS.to_string());
            ["-q", "-l", "-c", &connections, "-t", &seconds, "-n", "10000000", "-s", "5", &url]
                .map(str::to_owned)
                .to_vec()
        }
        Tool::H2load => unreachable!("h2load runs once per recycle"),
    };
    let mut generation = wait_serving(master, N_WORKERS);
    let before = cpu_of(&generation);
    let mut client = ClientProcess::start(tool, &args);
    wait_busy(master, &generation, before);
    for _ in 0..N_RECYCLES {
        let after = recycle(master);
        assert_replaced(master, &generation, &after);
        let before = cpu_of(&after);
        wait_exited_as_asked(master, &generation, RECYCLE_WITHIN);
        wait_busy(master, &after, before);
        if !client.is_running() {
            let output = client.wait(master);
            master.fail(&format!("{tool:?} ended during the recycles:\n{}", text(&output)));
        }
        generation = after;
    }
    let output = client.interrupt(master);
    let report = text(&output);
    let parsed = match tool {
        Tool::Wrk => parse_wrk(&report),
        _ => parse_ab(&report),
    };
    parsed.unwrap_or_else(|why| master.fail(&format!("{tool:?}: {why}:\n{report}")))
}

/// `wrk`'s report: `N requests in ..`, and when any, `Socket errors:
/// connect A, read B, write C, timeout D` and `Non-2xx or 3xx responses: E`.
fn parse_wrk(report: &str) -> Result<Tally, String> {
    let sent = number_before(report, " requests in").ok_or("no request count")?;
    let mut failed = 0;
    if let Some(line) = report.lines().find(|line| line.contains("Socket errors:")) {
        for label in ["connect", "read", "write", "timeout"] {
            failed += number_after(line, label).ok_or("malformed socket errors")?;
        }
    }
    failed += number_after(report, "Non-2xx or 3xx responses:").unwrap_or(0);
    Ok(Tally { sent, failed, unsent: 0 })
}

/// `ab`'s report: `Complete requests`, `Failed requests`, and when any,
/// `Non-2xx responses` and `Write errors`. A socket error aborts `ab`
/// before any report.
fn parse_ab(report: &str) -> Result<Tally, String> {
    let sent = number_after(report, "Complete requests:").ok_or("no report: ab aborted")?;
    let failed = number_after(report, "Failed requests:").ok_or("no failed count")?
        + number_after(report, "Non-2xx responses:").unwrap_or(0)
        + number_after(report, "Write errors:").unwrap_or(0);
    Ok(Tally { sent, failed, unsent: 0 })
}

fn one_run_per_recycle(master: &Master, addr: SocketAddr) -> Tally {
    let dir = TempDir::new("h2load");
    let url = format!("http://{addr}/");
    let mut tally = Tally::default();
    let mut generation = wait_serving(master, N_WORKERS);
    for round in 0..N_RECYCLES {
        let log = dir.path.join(format!("run-{round}.log"));
        let log_arg = format!("--log-file={}", log.display());
        let duration = H2LOAD_RUN_S.to_string();
        let connections = CONNECTIONS.to_string();
        let args: Vec<String> = ["-c", &connections, "-m", "4", "-D", &duration, &log_arg, &url]
            .map(str::to_owned)
            .to_vec();
        let mut client = ClientProcess::start(Tool::H2load, &args);
        // The load flows: h2load logs every request as it ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        let logged = || std::fs::read_to_string(&log).map_or(0, |log| log.lines().count());
        if !wait_until(deadline, || logged() >= 100) {
            master.fail(&format!("h2load logged {} requests in 5 s", logged()));
        }
        let after = recycle(master);
        assert_replaced(master, &generation, &after);
        wait_exited_as_asked(master, &generation, RECYCLE_WITHIN);
        if !client.is_running() {
            master.fail("h2load ended before the recycle completed: raise H2LOAD_RUN_S");
        }
        let output = client.wait(master);
        let report = text(&output);
        let log = std::fs::read_to_string(&log).expect("read h2load's log");
        let run = parse_h2load(&report, &log)
            .unwrap_or_else(|why| master.fail(&format!("h2load: {why}:\n{report}")));
        tally.sent += run.sent;
        tally.failed += run.failed;
        tally.unsent += run.unsent;
        generation = after;
    }
    tally
}

/// `h2load`'s summary (`requests: .. F failed, .. T timeout`) and its
/// per-request log (`start µs\tstatus\tµs`, start 0 for a request never
/// sent, status -1 for a failed stream).
fn parse_h2load(report: &str, log: &str) -> Result<Tally, String> {
    let summary = report.lines().find(|line| line.starts_with("requests:")).ok_or("no summary")?;
    let counted_failed = number_before(summary, " failed").ok_or("no failed count")?;
    let timeouts = number_before(summary, " timeout").ok_or("no timeout count")?;
    let mut tally = Tally::default();
    for row in log.lines() {
        let mut fields = row.split('\t');
        let (Some(start), Some(status)) = (fields.next(), fields.next()) else {
            return Err(format!("malformed log row {row:?}"));
        };
        let status: i32 = status.parse().map_err(|_| format!("malformed log row {row:?}"))?;
        if start == "0" {
            tally.unsent += 1;
        } else {
            tally.sent += 1;
            if !(200..300).contains(&status) {
                tally.failed += 1;
            }
        }
    }
    if timeouts != 0 {
        return Err(format!("{timeouts} requests timed out"));
    }
    if counted_failed != tally.unsent + tally.failed {
        return Err(format!(
            "h2load counts {counted_failed} failed, its log {} failed and {} never sent",
            tally.failed, tally.unsent
        ));
    }
    Ok(tally)
}

#[test]
fn the_reports_of_the_clients_are_read_as_they_are_written() {
    let wrk = "  386780 requests in 8.00s, 46.11MB read\n  Socket errors: connect 0, read 141, write 2, timeout 1\nRequests/sec:  48329.28\n";
    let tally = parse_wrk(wrk).unwrap();
    assert_eq!((tally.sent, tally.failed), (386_780, 144));
    let ab =
        "Complete requests:      87222\nFailed requests:        3\nNon-2xx responses:      4\n";
    let tally = parse_ab(ab).unwrap();
    assert_eq!((tally.sent, tally.failed), (87_222, 7));
    assert!(parse_ab("apr_socket_recv: Connection reset by peer (104)\n").is_err());
    let h2 = "requests: 22038 total, 22038 started, 22038 done, 22036 succeeded, 2 failed, 2 errored, 0 timeout\n";
    let log = "1764500000000000\t200\t100\n0\t-1\t5\n1764500000000001\t200\t90\n0\t-1\t5\n";
    let tally = parse_h2load(h2, log).unwrap();
    assert_eq!((tally.sent, tally.failed, tally.unsent), (2, 0, 2));
    let sent_and_failed = "1764500000000000\t-1\t100\n0\t-1\t5\n";
    assert_eq!(parse_h2load(h2, sent_and_failed).unwrap().failed, 1);
    assert!(parse_h2load(h2, "0\t-1\t5\n").is_err(), "a failure missing from the log");
}
