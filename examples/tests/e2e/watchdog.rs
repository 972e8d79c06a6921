//! The watchdog (`worker.watchdog`): a worker whose serving loop stops is
//! killed as hung and replaced, within the period plus a margin.
//!
//! The bound: a serving loop that stops at `t` sent its last heartbeat
//! after `t - P/4` (srv-worker's `heartbeat` module), so the master kills
//! it by `t + P`, plus a turn of its loop; the replacement is spawned
//! `restart.delay` later (a hang is a crash, with the crash backoff) and
//! then starts. These tests run with `P` = 1000 ms and `restart.delay` =
//! 100 ms, and allow [`MARGIN`] on top of `P + restart.delay` for the
//! master's turn, the replacement's start and a busy machine: the
//! replacement serves within 2.1 s of the stop or the deadlock.
//!
//! - A stopped worker (`SIGSTOP`) of the reference server, whose accept
//!   loop sends the heartbeats, is killed as hung (the log says for how
//!   long it was silent) and replaced; the other worker, idle all along,
//!   is never taken for hung.
//! - The async examples (`axum`, `hyper`, `actix`), whose heartbeat is
//!   srv-worker's task on their runtime (started by the `serve` helpers),
//!   serve three periods, idle and under requests, without a worker taken
//!   for hung.
//! - The whole process group stopped for three periods and resumed (as
//!   `Ctrl+Z` and `fg`, `docker pause` and `unpause` do): the master says
//!   it did not run and no worker is taken for hung, though each one's
//!   last heartbeat is three periods old when the master runs again.
//! - The master alone stopped for three periods and resumed, while its
//!   workers run on and send heartbeats it does not read: none is taken
//!   for hung, though most heartbeats are read past their deadlines.
//! - A worker sent `SIGTERM` alone, which disconnects it (and stops its
//!   heartbeats) while it finishes a request three periods long: not taken
//!   for hung, it answers the request and exits 0.
//! - A deadlocked worker (`misbehave --deadlock-after-ms`: its main loop
//!   and a thread of its own wait for each other's lock, while srv-worker's
//!   own reader thread runs on) is killed as hung and replaced; before the
//!   deadlock, its heartbeats keep it alive for more than two periods.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Line, Master, count, is_stopped, misbehave, reports, wait_until};
use crate::http_support::{get, get_ok, http, start_on_port_0, wait_addr, wait_serving};
use crate::proc_support::fd_count;

/// `worker.watchdog` in these tests.
const PERIOD: Duration = Duration::from_millis(1000);

/// `restart.delay` in these tests.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// What a busy machine may add to `PERIOD + RESTART_DELAY` (see the module
/// docs).
const MARGIN: Duration = Duration::from_millis(1000);

/// The `silent for N ms` of a master's `hung:` line.
fn silent_ms(line: &str) -> Option<u64> {
    let rest = &line[line.find("hung: silent for ")? + "hung: silent for ".len()..];
    rest.split(' ').next()?.parse().ok()
}

/// The first line read that contains `needle`.
fn first_line(lines: &[Line], needle: &str) -> Option<Line> {
    lines.iter().find(|line| line.text.contains(needle)).cloned()
}

/// Checks the master's `hung` line for `pid`: silent for at least the
/// period, at most the period and the margin; returns the line.
fn assert_hung(master: &Master, pid: Pid) -> Line {
    let needle = format!("(pid {pid}) hung: silent for ");
    master.wait_until(&format!("worker pid {pid} killed as hung"), |lines| {
        count(lines, &needle) == 1
    });
    let hung = first_line(&master.timed_lines(), &needle).expect("waited for it");
    let silent = silent_ms(&hung.text).unwrap_or_else(|| master.fail("no figure in the hung line"));
    let most = (PERIOD + MARGIN).as_millis() as u64;
    if !(PERIOD.as_millis() as u64..=most).contains(&silent) {
        master.fail(&format!("silent for {silent} ms: expected the period, at most {most} ms"));
    }
    if !hung.text.contains("worker.watchdog = 1000 ms") {
        master.fail("the hung line does not name worker.watchdog");
    }
    hung
}

#[test]
fn a_stopped_worker_is_killed_as_hung_and_replaced_within_the_period_and_a_margin() {
    let master = start_on_port_0(
        http(),
        &["--workers", "2", "--watchdog", "1000", "--restart-delay", "100"],
    );
    let addr = wait_addr(&master);
    let pids = wait_serving(&master, 2);
    let mut pids = pids.into_iter();
    let (stopped, other) = (pids.next().expect("2 workers"), pids.next().expect("2 workers"));

    master.signal_worker(stopped, Signal::SIGSTOP);
    let stopped_at = Instant::now();
    let hung = assert_hung(&master, stopped);
    master.wait_for_count(&format!("(pid {stopped}) exited (signal 9) after being killed"), 1);
    let serving = wait_serving(&master, 2);
    let started = master
        .timed_lines()
        .into_iter()
        .find(|line| {
            line.at >= hung.at
                && line.text.contains(") started (")
                && !line.text.contains(&format!("(pid {other})"))
        })
        .unwrap_or_else(|| master.fail("no replacement started after the hung worker"));
    let took = started.at.saturating_duration_since(stopped_at);
    if took > PERIOD + RESTART_DELAY + MARGIN {
        master.fail(&format!("the replacement started {} ms after the stop", took.as_millis()));
    }
    if !serving.contains(&other) || serving.contains(&stopped) {
        master.fail(&format!("serving {serving:?}: expected {other} and a replacement"));
    }
    // Idle since its start, which is now more than a period ago, the
    // other worker proved alive from its accept loop all along.
    if count(&master.lines(), &format!("(pid {other}) hung")) != 0 {
        master.fail("the idle worker was taken for hung");
    }
    for _ in 0..4 {
        get_ok(&master, addr, "/");
    }
}

#[test]
fn a_stopped_and_resumed_process_group_keeps_its_workers() {
    stopped_and_resumed_workers_are_kept(Stopped::Group);
}

#[test]
fn a_stopped_and_resumed_master_keeps_its_workers() {
    stopped_and_resumed_workers_are_kept(Stopped::Master);
}

/// What [`stopped_and_resumed_workers_are_kept`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The master's whole process group, workers included (`Ctrl+Z`,
    /// `docker pause`).
    Group,
    /// The master alone: its workers run on and queue their heartbeats.
    Master,
}

/// Stops `what` for three periods and resumes it: the master says it did
/// not run, no worker is taken for hung, and the same workers serve.
fn stopped_and_resumed_workers_are_kept(what: Stopped) {
    let master = start_on_port_0(http(), &["--workers", "2", "--watchdog", "1000"]);
    let addr = wait_addr(&master);
    let pids = wait_serving(&master, 2);
    let send = |signal| match what {
        Stopped::Group => master.signal_group(signal),
        Stopped::Master => master.signal(signal),
    };
    send(Signal::SIGSTOP);
    let all_stopped = || {
        is_stopped(master.pid())
            && (what == Stopped::Master || pids.iter().all(|&pid| is_stopped(pid)))
    };
    if !wait_until(Instant::now() + Duration::from_secs(5), all_stopped) {
        send(Signal::SIGCONT);
        master.fail(&format!("{what:?} did not stop"));
    }
    // The length of the stop, not an assertion: three periods.
    std::thread::sleep(3 * PERIOD);
    send(Signal::SIGCONT);
    master.wait_until("the master's line about its stall", |lines| {
        count(lines, "the master did not run for ") == 1
    });
    let until = Instant::now() + 2 * PERIOD;
    while Instant::now() < until {
        get_ok(&master, addr, "/");
        std::thread::sleep(Duration::from_millis(100));
    }
    if count(&master.lines(), " hung") != 0 {
        master.fail(&format!("a worker was taken for hung after a stop of the {what:?}"));
    }
    let serving = wait_serving(&master, 2);
    if serving != pids {
        master.fail(&format!("serving {serving:?}, started with {pids:?}"));
    }
}

#[test]
fn a_worker_sent_sigterm_alone_finishes_its_request_unwatched() {
    let master = start_on_port_0(http(), &["--workers", "1", "--watchdog", "1000"]);
    let addr = wait_addr(&master);
    let worker = *wait_serving(&master, 1).first().expect("1 worker");
    let idle_fds = fd_count(worker).unwrap_or_else(|| master.fail("no fds of the worker"));
    let slow = std::thread::spawn(move || get(addr, "/sleep?ms=3000"));
    let in_flight = || fd_count(worker).is_some_and(|n| n > idle_fds);
    if !wait_until(Instant::now() + Duration::from_secs(5), in_flight) {
        master.fail("the worker did not accept the slow request");
    }
    master.signal_worker(worker, Signal::SIGTERM);
    let answer = slow.join().expect("the request's thread");
    match answer {
        Ok(response) if response.status == 200 => {}
        other => master.fail(&format!("the request in flight got {other:?}")),
    }
    master.wait_for_count(&format!("(pid {worker}) exited on purpose (exit code 0)"), 1);
    if count(&master.lines(), " hung") != 0 {
        master.fail("the draining worker was taken for hung");
    }
    wait_serving(&master, 1);
}

/// Serves three periods with `program`'s 2 workers watched, a request
/// every 100 ms; fails if any worker is taken for hung or replaced.
fn the_serve_helpers_prove_the_runtime_alive(program: &str) {
    let master = start_on_port_0(
        program,
        &["--workers", "2", "--watchdog", "1000", "--worker-timeout", "5000"],
    );
    let addr = wait_addr(&master);
    let pids = wait_serving(&master, 2);
    let until = Instant::now() + 3 * PERIOD;
    while Instant::now() < until {
        get_ok(&master, addr, "/");
        std::thread::sleep(Duration::from_millis(100));
    }
    if count(&master.lines(), " hung") != 0 {
        master.fail("a worker was taken for hung");
    }
    let serving = wait_serving(&master, 2);
    if serving != pids {
        master.fail(&format!("serving {serving:?}, started with {pids:?}"));
    }
}

#[test]
fn axum_workers_prove_their_runtime_alive_through_srv_worker() {
    the_serve_helpers_prove_the_runtime_alive(env!("CARGO_BIN_EXE_axum"));
}

#[test]
fn hyper_workers_prove_their_runtime_alive_through_srv_worker() {
    the_serve_helpers_prove_the_runtime_alive(env!("CARGO_BIN_EXE_hyper"));
}

#[test]
fn actix_workers_prove_their_runtime_alive_through_srv_worker() {
    the_serve_helpers_prove_the_runtime_alive(env!("CARGO_BIN_EXE_actix"));
}

#[test]
fn a_deadlocked_worker_is_killed_as_hung_and_replaced_and_heartbeats_kept_it_until_then() {
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "2",
            "--watchdog",
            "1000",
            "--restart-delay",
            "100",
            "--deadlock-after-ms",
            "2500",
            "--only-worker-ids",
            "1",
        ],
    );
    let lines =
        master.wait_until("worker 1 deadlocked", |lines| !reports(lines, "deadlocked").is_empty());
    let deadlocked = reports(&lines, "deadlocked")[0].pid;
    // Worker 1 served 2.5 s (two and a half periods) before it deadlocked:
    // its heartbeats kept it, and nobody was killed.
    if count(&lines, "hung") != 0 {
        master.fail("a worker was taken for hung before any deadlock");
    }
    let deadlock_seen = first_line(&master.timed_lines(), "deadlocked").expect("seen").at;
    let hung = assert_hung(&master, deadlocked);
    let lines = master.wait_until("worker 3 online", |lines| {
        reports(lines, "online").iter().any(|report| report.id == 3)
    });
    let online = master
        .timed_lines()
        .into_iter()
        .find(|line| {
            line.text.starts_with("misbehave: worker 3 ") && line.text.ends_with(" online")
        })
        .expect("waited for it");
    let took = online.at.saturating_duration_since(deadlock_seen);
    if took > PERIOD + RESTART_DELAY + MARGIN {
        master.fail(&format!("worker 3 was online {} ms after the deadlock", took.as_millis()));
    }
    if hung.at < deadlock_seen {
        master.fail("killed as hung before the deadlock");
    }
    // The other worker, whose loop runs, is never taken for hung.
    let other = reports(&lines, "online").iter().find(|report| report.id == 2).map(|r| r.pid);
    if let Some(other) = other
        && count(&lines, &format!("(pid {other}) hung")) != 0
    {
        master.fail("the healthy worker was taken for hung");
    }
}
