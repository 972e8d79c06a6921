//! Signals at awkward times, each with a defined outcome:
//!
//! - `SIGHUP` while the workers are still starting: the recycle replaces
//!   them all, and ends with `worker.count` workers spawned after it.
//! - `SIGTERM` while workers are starting (first start, or the one
//!   `SIGTTIN` added): every worker is disconnected and the master exits 0
//!   as soon as they are gone. A worker told to go is under
//!   `shutdown.timeout` only: its `worker.timeout` is forgotten, neither
//!   keeping the master alive nor killing it.
//! - `SIGTERM` during a recycle whose replacement is still starting: the
//!   recycle stops, no further replacement is spawned, every worker exits
//!   as asked, exit 0.
//! - `SIGTTOU` at 1 worker: ignored with a log line, the worker keeps
//!   serving, and `SIGTTIN`/`SIGTTOU` keep counting from 1.
//! - The master itself stalled (`SIGSTOP`) while its workers report online
//!   in time, and resumed after their `worker.timeout`: the master's stall
//!   is not the workers' fault, none is killed.
//!
//! "No timeout is forgotten" is checked three ways: the master exits within
//! the timeouts that apply plus slack, the log shows no kill that should not
//! happen, and the master does not spin while it waits (its CPU time, read
//! from `/proc`, stays a small part of the wall time).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Exit, Master, count, find_from, log_interval_ms, misbehave, reports};
use crate::http_support::{
    get_from_each, get_ok, http, serving_pids, start_on_port_0, wait_addr, wait_exited_as_asked,
    wait_serving,
};
use crate::proc_support::cpu_time;

/// Lines that show a kill, a crash or a restart: none belongs in these
/// scenarios unless a test says so.
const TROUBLE: [&str; 4] = ["killing it", "exited unasked", "did not report", "restarting in"];

/// How long the slow workers of these tests take to report online: long
/// enough that a signal sent when their spawn is logged surely arrives
/// before, even on a busy machine.
const SLOW_START_MS: u64 = 1500;

fn assert_absent(master: &Master, lines: &[String], needles: &[&str]) {
    for needle in needles {
        if count(lines, needle) != 0 {
            master.fail(&format!("unexpected line containing {needle:?}"));
        }
    }
}

fn assert_once(master: &Master, lines: &[String], needle: &str) {
    if count(lines, needle) != 1 {
        master.fail(&format!("expected exactly one line containing {needle:?}"));
    }
}

/// Fails unless the line containing `first` comes before every line
/// containing `then`: the precondition of a scenario ("the signal arrived
/// while ...").
fn assert_before(master: &Master, lines: &[String], first: &str, then: &str) {
    let Some(first_at) = find_from(lines, 0, first) else {
        master.fail(&format!("no line containing {first:?}"));
    };
    if find_from(lines, 0, then).is_some_and(|then_at| then_at < first_at) {
        master.fail(&format!(
            "precondition: {first:?} should come before any {then:?} (a very slow machine?)"
        ));
    }
}

/// The master's CPU time so far.
fn master_cpu(master: &Master) -> Duration {
    cpu_time(master.pid()).unwrap_or_else(|| master.fail("cannot read the master's CPU time"))
}

/// Fails if the master used more than a quarter of `wall` in CPU time since
/// it had used `cpu_before`: a deadline left due would make it spin.
fn assert_idle(master: &Master, cpu_before: Duration, wall: Duration) {
    let used_ms = u64::try_from((master_cpu(master) - cpu_before).as_millis()).expect("short");
    let wall_ms = u64::try_from(wall.as_millis()).expect("a test is short");
    if used_ms > wall_ms / 4 + 20 {
        master.fail(&format!("the master used {used_ms} ms of CPU in {wall_ms} ms: it spins"));
    }
}

/// Sends SIGTERM, waits for the exit (at most `within`) and checks it is a
/// clean exit 0, without spinning; returns how long it took.
fn sigterm_and_exit(master: &mut Master, within: Duration) -> Duration {
    let cpu_before = master_cpu(master);
    let sent = Instant::now();
    master.signal(Signal::SIGTERM);
    let exit = master.wait_exit_within(within);
    let took = sent.elapsed();
    if exit != Exit::Code(0) {
        master.fail(&format!("expected exit code 0 after SIGTERM, got {exit:?}"));
    }
    // The master is not reaped yet: its CPU times are still readable.
    assert_idle(master, cpu_before, took);
    took
}

fn assert_none_alive(master: &Master, pids: &[Pid]) {
    let alive: Vec<&Pid> = pids.iter().filter(|&&pid| master.is_alive(pid)).collect();
    if !alive.is_empty() {
        master.fail(&format!("workers {alive:?} outlived the master"));
    }
}

fn start_slow(extra: &[&str]) -> Master {
    let delay = SLOW_START_MS.to_string();
    let mut args = vec!["--online-delay-ms", delay.as_str()];
    args.extend_from_slice(extra);
    Master::start(misbehave(), &args)
}

#[test]
fn sighup_while_workers_start_replaces_them_all() {
    let master =
        start_slow(&["--workers", "2", "--worker-timeout", "10000", "--recycle-timeout", "5000"]);
    let lines = master.wait_for_count("spawned (pid ", 2);
    let first: BTreeSet<Pid> = master.worker_pids().into_iter().collect();
    master.signal(Signal::SIGHUP);
    let lines_sent = lines.len();
    let within = Duration::from_millis(4 * SLOW_START_MS + 5000);
    let lines = master.wait_until_within(within, "the recycle to complete", |lines| {
        count(lines, "recycle complete: ") == 1
    });
    assert_before(&master, &lines, "SIGHUP: recycling 2 workers", "started (online)");
    assert_once(&master, &lines, "recycle complete: 2 workers replaced");
    wait_exited_as_asked(&master, &first, Duration::from_secs(5));
    let lines = master.lines();
    let serving = serving_pids(&lines);
    let sighup = find_from(&lines, lines_sent, "SIGHUP: recycling").expect("checked");
    for &pid in &serving {
        let spawned = find_from(&lines, 0, &format!("spawned (pid {pid})"));
        if spawned.is_none_or(|spawned| spawned < sighup) || !master.is_alive(pid) {
            master.fail(&format!("serving worker pid {pid} was not spawned after the SIGHUP"));
        }
    }
    if serving.len() != 2 || !serving.is_disjoint(&first) {
        master.fail(&format!("expected 2 new workers serving, got {serving:?} (first {first:?})"));
    }
    assert_absent(&master, &lines, &TROUBLE);
    assert_eq!(count(&lines, "spawned (pid "), 4, "2 workers, then 2 replacements");
}

#[test]
fn sigterm_while_workers_start_disconnects_them_and_exits_promptly() {
    // worker.timeout is past the slow start: a start deadline that survived
    // the SIGTERM would kill the workers, or keep the master waiting.
    let worker_timeout = SLOW_START_MS + 2500;
    let mut master = start_slow(&[
        "--workers",
        "2",
        "--worker-timeout",
        &worker_timeout.to_string(),
        "--shutdown-timeout",
        "20000",
    ]);
    master.wait_for_count("spawned (pid ", 2);
    let workers = master.worker_pids();
    let took = sigterm_and_exit(&mut master, Duration::from_secs(15));
    let lines = master.lines();
    // The workers report online only after their slow start, after the
    // SIGTERM: a worker told to go never counts as started.
    let sigterm = find_from(&lines, 0, "SIGTERM: shutting down 2 workers")
        .unwrap_or_else(|| master.fail("no SIGTERM line"));
    let online = lines
        .iter()
        .position(|line| line.starts_with("misbehave: worker ") && line.ends_with(" online"));
    if online.is_some_and(|online| online < sigterm) {
        master.fail("precondition: a worker was online before SIGTERM (a very slow machine?)");
    }
    if took >= Duration::from_millis(worker_timeout) {
        master.fail(&format!("the master took {took:?} to exit, past worker.timeout"));
    }
    assert_eq!(count(&lines, "started (online)"), 0);
    assert_eq!(reports(&lines, "disconnected (Requested)").len(), 2);
    assert_eq!(count(&lines, "exited (exit code 0) as asked"), 2);
    assert_absent(&master, &lines, &TROUBLE);
    assert_none_alive(&master, &workers);
}

#[test]
fn a_starting_worker_told_to_go_is_under_shutdown_timeout_not_worker_timeout() {
    // The worker never reports online and ignores the disconnect: it is
    // killed at shutdown.timeout after the SIGTERM, and not at its
    // worker.timeout, which falls before.
    let mut master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--never-online",
            "--ignore-disconnect",
            "--worker-timeout",
            "1500",
            "--shutdown-timeout",
            "3000",
        ],
    );
    master.wait_until("the worker started", |lines| reports(lines, "started").len() == 1);
    let workers = master.worker_pids();
    let took = sigterm_and_exit(&mut master, Duration::from_secs(10));
    let lines = master.lines();
    let spawned = find_from(&lines, 0, "spawned (pid ").expect("waited for it");
    let sigterm = find_from(&lines, 0, "SIGTERM: shutting down 1 workers")
        .unwrap_or_else(|| master.fail("no SIGTERM line"));
    if log_interval_ms(&lines[spawned], &lines[sigterm]) >= 1500 {
        master.fail("precondition: SIGTERM came after worker.timeout (a very slow machine?)");
    }
    assert_absent(&master, &lines, &["did not report", "exited unasked", "restarting in"]);
    assert_once(&master, &lines, "did not exit in time after disconnect; killing it");
    assert_once(&master, &lines, "exited (signal 9) after being killed");
    let killing = find_from(&lines, 0, "killing it").expect("checked");
    let grace = log_interval_ms(&lines[sigterm], &lines[killing]);
    if !(3000 - 2..3000 + 1000).contains(&grace) {
        master.fail(&format!("killed {grace} ms after SIGTERM, not at shutdown.timeout"));
    }
    if took >= Duration::from_millis(3000 + 3000) {
        master.fail(&format!("the master took {took:?} to exit"));
    }
    assert_none_alive(&master, &workers);
}

#[test]
fn sigterm_during_a_recycle_stops_it_and_exits_0() {
    // Workers 1 and 2 start at once; their replacements (3, 4) slowly.
    let worker_timeout = SLOW_START_MS + 5000;
    let mut master = start_slow(&[
        "--only-worker-ids",
        "3,4,5,6",
        "--workers",
        "2",
        "--worker-timeout",
        &worker_timeout.to_string(),
        "--recycle-timeout",
        "5000",
        "--shutdown-timeout",
        "20000",
    ]);
    master.wait_for_count("started (online)", 2);
    master.signal(Signal::SIGHUP);
    master.wait_until_within(Duration::from_secs(5), "the replacement spawned", |lines| {
        count(lines, "worker 3 spawned (pid ") == 1
    });
    let took = sigterm_and_exit(&mut master, Duration::from_secs(15));
    let lines = master.lines();
    assert_before(&master, &lines, "SIGTERM: shutting down 3 workers", "worker 3 (pid ");
    if took >= Duration::from_millis(worker_timeout) {
        master.fail(&format!("the master took {took:?} to exit, past worker.timeout"));
    }
    assert_once(&master, &lines, "recycle stopped by SIGTERM with 2 workers not replaced");
    assert_absent(&master, &lines, &["recycle complete", "worker 4 spawned"]);
    assert_eq!(count(&lines, "started (online)"), 2, "the replacement never counts as started");
    let workers = master.worker_pids();
    assert_eq!(workers.len(), 3, "2 workers and 1 replacement");
    assert_eq!(count(&lines, "exited (exit code 0) as asked"), 3);
    assert_eq!(reports(&lines, "disconnected (Requested)").len(), 3);
    assert_absent(&master, &lines, &TROUBLE);
    assert_none_alive(&master, &workers);
}

#[test]
fn sigterm_while_a_recycled_worker_drains_bounds_it_by_shutdown_timeout() {
    // Worker 1 takes 10 s to finish after its disconnect, which the
    // recycle's 20 s grace allows. A SIGTERM then promises every worker gone
    // within shutdown.timeout (1 s): the draining worker too.
    let mut master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--worker-timeout",
            "10000",
            "--slow-exit-ms",
            "10000",
            "--only-worker-ids",
            "1",
            "--recycle-timeout",
            "20000",
            "--shutdown-timeout",
            "1000",
        ],
    );
    master.wait_for_count("started (online)", 1);
    master.signal(Signal::SIGHUP);
    master.wait_until_within(Duration::from_secs(5), "worker 1 draining", |lines| {
        count(lines, "recycle complete: 1 workers replaced") == 1
            && reports(lines, "disconnected").iter().any(|report| report.id == 1)
    });
    let took = sigterm_and_exit(&mut master, Duration::from_secs(15));
    let lines = master.lines();
    if took >= Duration::from_millis(1000 + 3000) {
        master.fail(&format!("the master took {took:?} to exit, past shutdown.timeout"));
    }
    let sigterm = find_from(&lines, 0, "SIGTERM: shutting down 2 workers")
        .unwrap_or_else(|| master.fail("no SIGTERM line"));
    let killing = find_from(&lines, 0, "did not exit in time after disconnect; killing it")
        .unwrap_or_else(|| master.fail("the draining worker was not killed"));
    let grace = log_interval_ms(&lines[sigterm], &lines[killing]);
    if !(1000 - 2..1000 + 1000).contains(&grace) {
        master.fail(&format!("killed {grace} ms after SIGTERM, not at shutdown.timeout"));
    }
    if !lines[killing].contains("worker 1 (pid ") {
        master.fail("the worker killed is not the draining one");
    }
    assert_once(&master, &lines, "exited (signal 9) after being killed");
    assert_once(&master, &lines, "exited (exit code 0) as asked");
    assert_none_alive(&master, &master.worker_pids());
}

#[test]
fn sigttin_then_sigterm_before_the_new_worker_started() {
    let worker_timeout = SLOW_START_MS + 2500;
    let mut master = start_slow(&[
        "--only-worker-ids",
        "2",
        "--workers",
        "1",
        "--worker-timeout",
        &worker_timeout.to_string(),
        "--shutdown-timeout",
        "20000",
    ]);
    master.wait_for_count("started (online)", 1);
    master.signal(Signal::SIGTTIN);
    master.wait_until_within(Duration::from_secs(5), "the new worker spawned", |lines| {
        count(lines, "worker 2 spawned (pid ") == 1
    });
    let took = sigterm_and_exit(&mut master, Duration::from_secs(15));
    let lines = master.lines();
    assert_once(&master, &lines, "SIGTTIN: workers 1 -> 2");
    assert_before(&master, &lines, "SIGTERM: shutting down 2 workers", "worker 2 (pid ");
    if took >= Duration::from_millis(worker_timeout) {
        master.fail(&format!("the master took {took:?} to exit, past worker.timeout"));
    }
    assert_eq!(count(&lines, "started (online)"), 1, "the new worker never counts as started");
    let workers = master.worker_pids();
    assert_eq!(workers.len(), 2, "nothing spawned after the SIGTTIN's worker");
    assert_eq!(count(&lines, "exited (exit code 0) as asked"), 2);
    assert_eq!(reports(&lines, "disconnected (Requested)").len(), 2);
    assert_absent(&master, &lines, &TROUBLE);
    assert_none_alive(&master, &workers);
}

#[test]
fn sigttou_at_one_worker_is_ignored_and_sigttin_still_works() {
    let mut master = start_on_port_0(
        http(),
        &["--workers", "1", "--recycle-timeout", "5000", "--shutdown-timeout", "5000"],
    );
    let addr = wait_addr(&master);
    let first = wait_serving(&master, 1);
    master.signal(Signal::SIGTTOU);
    master.wait_until_within(Duration::from_secs(5), "SIGTTOU ignored", |lines| {
        count(lines, "SIGTTOU ignored: already at 1 worker") == 1
    });
    // The one worker still serves, and nobody was told to go.
    let pid = get_ok(&master, addr, "/").pid();
    if !pid.is_some_and(|pid| first.contains(&pid)) {
        master.fail(&format!("GET / answered by {pid:?}, not by {first:?}"));
    }
    let lines = master.lines();
    if serving_pids(&lines) != first || count(&lines, "disconnecting") != 0 {
        master.fail("SIGTTOU at 1 worker changed the workers");
    }

    // The ignored SIGTTOU did not change the count: one more makes 2.
    master.signal(Signal::SIGTTIN);
    let both = wait_serving(&master, 2);
    assert_once(&master, &master.lines(), "SIGTTIN: workers 1 -> 2");
    if !first.is_subset(&both) {
        master.fail(&format!("SIGTTIN: workers {first:?} -> {both:?}"));
    }
    get_from_each(&master, addr, "/", &both, 300, Duration::from_secs(5));
    // And back to 1, where SIGTTOU is ignored again.
    master.signal(Signal::SIGTTOU);
    let one = wait_serving(&master, 1);
    master.signal(Signal::SIGTTOU);
    let lines = master.wait_until_within(Duration::from_secs(5), "SIGTTOU ignored", |lines| {
        count(lines, "SIGTTOU ignored: already at 1 worker") == 2
    });
    assert_once(&master, &lines, "SIGTTOU: workers 2 -> 1");
    let removed: BTreeSet<Pid> = both.difference(&one).copied().collect();
    wait_exited_as_asked(&master, &removed, Duration::from_secs(10));
    get_ok(&master, addr, "/");
    sigterm_and_exit(&mut master, Duration::from_secs(10));
    assert_absent(&master, &master.lines(), &TROUBLE);
}

/// Issue 9, item 4: the master is stopped (a stand-in for any stall: an
/// overloaded machine, a long turn of its loop) right after spawning two
/// workers, which report online while it is stopped; it is resumed only
/// after their `worker.timeout`. Their `Online` was in the channel before
/// the deadline, so neither is killed as late.
#[test]
fn a_stalled_master_does_not_charge_its_stall_to_the_workers() {
    let mut master = start_slow(&["--workers", "2", "--worker-timeout", "2500"]);
    master.wait_for_count("spawned (pid ", 2);
    master.signal(Signal::SIGSTOP);
    master.wait_until("the master stopped", |_| crate::harness::is_stopped(master.pid()));
    let spawned_at = master
        .timed_lines()
        .iter()
        .filter(|line| line.text.contains("spawned (pid "))
        .map(|line| line.at)
        .max()
        .expect("two spawned lines");
    let lines =
        master.wait_until("both workers sent Online", |lines| reports(lines, "online").len() == 2);
    // They reported 1500 ms after their spawn, within their 2500 ms.
    if count(&lines, "started (online)") != 0 {
        master.fail("precondition: the master read an Online before it stopped (a slow machine?)");
    }
    // Resume once both deadlines are past (the lines were read at or after
    // they were written, so the deadlines were no later than this).
    let past_deadlines = spawned_at + Duration::from_millis(2500 + 300);
    crate::harness::wait_until(past_deadlines, || false);
    master.signal(Signal::SIGCONT);
    let lines = master.wait_for_count("started (online)", 2);
    assert_absent(&master, &lines, &TROUBLE);
    sigterm_and_exit(&mut master, Duration::from_secs(10));
}
