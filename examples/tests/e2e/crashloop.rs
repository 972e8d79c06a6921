//! Crash loops: a worker that crashes right after it starts, one that exits
//! on purpose right after it starts, and a worker program that cannot be
//! executed at all, are restarted with a bounded exponential backoff from
//! `restart.delay` to `restart.max_delay`; a worker that stays up long
//! enough resets it; every log line names the next delay; and the master
//! does not busy-loop meanwhile. A worker that exits on purpose once it has
//! run a while is replaced at once.
//!
//! Workers that never start make the master give up: after
//! `worker.max_start_failures` failed starts in a row (3 by default) with no
//! worker ever started, it stops and exits 1, naming the last failure. Once
//! a worker has started, crashes are restarted however many.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{
    Exit, Master, TempDir, count, log_interval_ms, misbehave, pids_after, wait_until,
};

/// `restart.delay` and `restart.max_delay` of these tests: the delays go
/// 100, 200, 400, 800, 800, ...
const DELAY_MS: &str = "100";
const MAX_DELAY_MS: &str = "800";
const EXPECTED_DELAYS: [u64; 5] = [100, 200, 400, 800, 800];

/// Log timestamps are truncated to the millisecond (see `failures.rs`).
const TIMESTAMP_SLACK_MS: i64 = 2;

/// How long the master's CPU time is watched while it keeps failing to
/// start a worker, and the most it may use meanwhile: a master that waits
/// for its deadlines uses a few milliseconds; one that spins uses all of it.
const CPU_WINDOW: Duration = Duration::from_secs(10);
const MAX_CPU: Duration = Duration::from_millis(300);

/// The delay of every `restarting in N ms` line among `lines` that also
/// contains `needle`, in order, with the index of the line.
fn restart_delays(lines: &[String], needle: &str) -> Vec<(usize, u64)> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .filter_map(|(index, line)| {
            let rest = &line[line.find("; restarting in ")? + "; restarting in ".len()..];
            Some((index, rest.strip_suffix(" ms")?.parse().ok()?))
        })
        .collect()
}

/// Fails unless the first delays are [`EXPECTED_DELAYS`], and each next
/// line containing `next` (the next attempt) came no sooner than the delay
/// its restart line announced.
fn assert_backoff(master: &Master, lines: &[String], delays: &[(usize, u64)], next: &str) {
    let values: Vec<u64> = delays.iter().map(|(_, delay)| *delay).collect();
    if values.len() < EXPECTED_DELAYS.len() || values[..EXPECTED_DELAYS.len()] != EXPECTED_DELAYS {
        master.fail(&format!("restart delays {values:?}, expected {EXPECTED_DELAYS:?} first"));
    }
    for &(index, delay) in &delays[..EXPECTED_DELAYS.len()] {
        let Some(offset) = lines[index + 1..].iter().position(|line| line.contains(next)) else {
            master.fail(&format!("no {next:?} after line {:?}", lines[index]));
        };
        let waited = log_interval_ms(&lines[index], &lines[index + 1 + offset]);
        if waited < delay as i64 - TIMESTAMP_SLACK_MS {
            master.fail(&format!(
                "next attempt {waited} ms after {:?}, before its delay",
                lines[index]
            ));
        }
    }
}

#[test]
fn a_worker_crashing_at_start_backs_off_to_the_cap_and_a_stable_worker_resets_it() {
    // Workers 1 to 5 crash at once; worker 6 behaves.
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--worker-timeout",
            "10000",
            "--crash-after-ms",
            "0",
            "--only-worker-ids",
            "1,2,3,4,5",
            "--restart-delay",
            DELAY_MS,
            "--max-restart-delay",
            MAX_DELAY_MS,
            // Five failed starts before the first success.
            "--max-start-failures",
            "6",
        ],
    );
    let lines = master.wait_for_count("started (online)", 1);
    let delays = restart_delays(&lines, "exited unasked (exit code 3)");
    assert_backoff(&master, &lines, &delays, "spawned (pid ");
    if delays.len() != EXPECTED_DELAYS.len() || !lines.iter().any(|l| l.contains("worker 6 (pid "))
    {
        master.fail("expected five crashes, then worker 6 started");
    }

    // Worker 6 stays up longer than restart.max_delay, so its crash starts
    // a new streak: the delay is restart.delay again.
    let stable = pids_after(&lines, "spawned (pid ")[5];
    let started = master
        .timed_lines()
        .into_iter()
        .find(|line| line.text.contains(&format!("(pid {stable}) started (online)")))
        .expect("waited for it")
        .at;
    wait_until(started + Duration::from_millis(1200), || false);
    master.signal_worker(stable, Signal::SIGKILL);
    let needle = format!("(pid {stable}) exited unasked (signal 9); restarting in 100 ms");
    master.wait_until_within(Duration::from_secs(5), &needle, |lines| count(lines, &needle) == 1);
    let lines = master.wait_for_count("started (online)", 2);
    if !lines
        .iter()
        .any(|line| line.contains("worker 7 (pid ") && line.contains("started (online)"))
    {
        master.fail("worker 7 did not replace worker 6");
    }
}

/// What the master logs when a worker exits on purpose too soon after its
/// spawn (`EARLY_EXIT_WINDOW` in the machine).
const EARLY_EXIT: &str = "within 1000 ms: counted as a crash";

#[test]
fn a_worker_that_exits_on_purpose_right_after_online_backs_off_like_a_crash() {
    // Hello, Online, Exit { code: 0 }, exit: without the early-exit window,
    // each is replaced at once, tens of milliseconds apart, forever.
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--worker-timeout",
            "10000",
            "--exit-after-ms",
            "0",
            "--restart-delay",
            DELAY_MS,
            "--max-restart-delay",
            MAX_DELAY_MS,
        ],
    );
    let lines = master.wait_until("five early exits on purpose and a sixth spawn", |lines| {
        restart_delays(lines, EARLY_EXIT).len() >= EXPECTED_DELAYS.len()
            && pids_after(lines, "spawned (pid ").len() > EXPECTED_DELAYS.len()
    });
    let delays = restart_delays(&lines, EARLY_EXIT);
    assert_backoff(&master, &lines, &delays, "spawned (pid ");
    if count(&lines, "; replacing it") != 0 {
        master.fail("an early exit on purpose was replaced at once");
    }
}

#[test]
fn a_worker_that_exits_on_purpose_after_the_window_is_replaced_at_once() {
    // Worker 1 recycles itself 1.2 s after it started; restart.delay is
    // far longer than this test waits, so only an immediate replacement
    // (not counted as a crash) brings worker 3.
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "2",
            "--worker-timeout",
            "10000",
            "--exit-after-ms",
            "1200",
            "--only-worker-ids",
            "1",
            "--restart-delay",
            "60000",
            "--max-restart-delay",
            "60000",
        ],
    );
    let lines = master.wait_until_within(Duration::from_secs(15), "worker 3 started", |lines| {
        lines
            .iter()
            .any(|line| line.contains("worker 3 (pid ") && line.contains("started (online)"))
    });
    let first = pids_after(&lines, "spawned (pid ")[0];
    let needle = format!("(pid {first}) exited on purpose (exit code 0); replacing it");
    if count(&lines, &needle) != 1 || count(&lines, "restarting in") != 0 {
        master.fail(&format!("expected {needle:?} and no restart delay"));
    }
}

/// The CPU time of `pid` so far.
fn cpu_time(master: &Master, pid: Pid) -> Duration {
    crate::proc_support::cpu_time(pid)
        .unwrap_or_else(|| master.fail(&format!("cannot read /proc/{pid}/stat")))
}

/// The master of `misbehave --worker-program program` keeps failing to
/// spawn: each failure names the path and the error, the delays back off,
/// and the master uses next to no CPU for [`CPU_WINDOW`].
fn unspawnable_program_backs_off_without_spinning(program: &str, error: &str) {
    let mut master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--worker-program",
            program,
            "--restart-delay",
            DELAY_MS,
            "--max-restart-delay",
            MAX_DELAY_MS,
            // Keep trying for the whole CPU window.
            "--max-start-failures",
            "1000",
        ],
    );
    let failed = format!("could not be spawned: cannot execute {program}: {error}");
    master.wait_for_count(&failed, 1);
    let (window_start, cpu_before) = (Instant::now(), cpu_time(&master, master.pid()));
    wait_until(window_start + CPU_WINDOW, || false);
    let cpu = cpu_time(&master, master.pid()).saturating_sub(cpu_before);
    if master.try_exit().is_some() {
        master.fail("the master exited; it should keep trying");
    }
    eprintln!("crashloop: master CPU time over {CPU_WINDOW:?} of failing spawns: {cpu:?}");
    if cpu > MAX_CPU {
        master.fail(&format!("the master used {cpu:?} of CPU in {CPU_WINDOW:?}: a busy loop"));
    }
    let lines = master.lines();
    let delays = restart_delays(&lines, &failed);
    assert_backoff(&master, &lines, &delays, &failed);
    // Attempts are at least the capped delay apart once it is reached.
    let attempts = count(&lines, "could not be spawned");
    let most = 5 + CPU_WINDOW.as_millis() as usize / 800 + 1;
    if attempts > most || attempts != delays.len() {
        master.fail(&format!(
            "{attempts} attempts to spawn ({} delays), expected at most {most}",
            delays.len()
        ));
    }
}

#[test]
fn a_missing_worker_program_is_named_and_backs_off_without_a_busy_loop() {
    let dir = TempDir::new("missing");
    let program = dir.path.join("nope");
    let program = program.to_str().expect("temporary paths are UTF-8");
    unspawnable_program_backs_off_without_spinning(program, "No such file or directory");
}

#[test]
fn a_worker_program_that_is_not_executable_is_named_and_backs_off_without_a_busy_loop() {
    let dir = TempDir::new("noexec");
    let program = dir.path.join("not-executable");
    fs::write(&program, "#!/bin/sh\nexit 0\n").expect("write the program");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o644)).expect("chmod -x");
    let program = program.to_str().expect("temporary paths are UTF-8");
    unspawnable_program_backs_off_without_spinning(program, "Permission denied");
}

/// Waits for the master to give up (exit 1 within `within`), then checks
/// that its log and its error name the last failure, `last`, after `n`
/// failed starts in a row; returns the log.
fn assert_gives_up(master: &mut Master, within: Duration, n: u32, last: &str) -> Vec<String> {
    assert_eq!(master.wait_exit_within(within), Exit::Code(1), "the master gives up with exit 1");
    let lines = master.lines();
    let failure = format!(
        "no worker could start: {n} failed starts in a row (worker.max_start_failures = {n}), the last: worker "
    );
    let named = |line: &&String| line.contains(&failure) && line.contains(last);
    if !lines.iter().any(|line| named(&line) && line.ends_with(": stopping")) {
        master.fail(&format!("no log line with {failure:?} naming {last:?}"));
    }
    if !lines.iter().any(|line| named(&line) && line.starts_with("Error: ")) {
        master.fail(&format!("the master's error does not name {last:?}"));
    }
    if count(&lines, "started (online)") != 0 {
        master.fail("a worker started: the master should not have given up");
    }
    lines
}

#[test]
fn workers_that_exit_before_reporting_anything_make_the_master_give_up_with_exit_1() {
    // Two workers, each exits with code 3 before saying anything. The first
    // line to fail three times in a row ends it: at most 6 spawns, and
    // about 100 + 200 ms of restart delays.
    let mut master = Master::start(
        misbehave(),
        &[
            "--workers",
            "2",
            "--worker-timeout",
            "10000",
            "--crash-after-ms",
            "0",
            "--restart-delay",
            "100",
            "--max-restart-delay",
            "400",
        ],
    );
    let lines =
        assert_gives_up(&mut master, Duration::from_secs(10), 3, "exited unasked (exit code 3)");
    let spawns = master.worker_pids().len();
    if !(3..=6).contains(&spawns) {
        master.fail(&format!("{spawns} workers spawned, expected 3 to 6"));
    }
    assert_eq!(count(&lines, "shutdown complete: all workers exited"), 1);
}

#[test]
fn a_worker_that_never_reports_is_timed_out_and_the_master_gives_up_with_exit_1() {
    let mut master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--never-online",
            "--worker-timeout",
            "300",
            "--restart-delay",
            "100",
            "--max-restart-delay",
            "400",
        ],
    );
    assert_gives_up(&mut master, Duration::from_secs(10), 3, "did not report online within 300 ms");
    if master.worker_pids().len() != 3 {
        master.fail("expected exactly 3 workers spawned");
    }
}

#[test]
fn a_worker_that_started_and_then_keeps_crashing_is_restarted_past_max_start_failures() {
    // Every worker reports online, then crashes 300 ms later: the master
    // has seen workers start, so it restarts them with the backoff, more
    // than worker.max_start_failures (3) times, and does not give up.
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "1",
            "--worker-timeout",
            "10000",
            "--crash-after-ms",
            "300",
            "--restart-delay",
            "100",
            "--max-restart-delay",
            "400",
        ],
    );
    let lines =
        master.wait_until("five crashes after a start, and a sixth worker started", |lines| {
            count(lines, "exited unasked (exit code 3); restarting in") >= 5
                && count(lines, "started (online)") >= 6
        });
    if count(&lines, "no worker could start") != 0 {
        master.fail("the master gave up although workers had started");
    }
}
