//! Storms and leaks: a burst of `SIGHUP`s converges to exactly
//! `worker.count` workers, all spawned after the last one, with no zombie;
//! and a thousand recycles leave the master's descriptors and memory where
//! they were.
//!
//! Both use `misbehave` workers, which start in a few milliseconds and exit
//! at once when disconnected, so the master's own work is what is measured.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Line, Master, count, log_millis, misbehave, wait_until};
use crate::http_support::serving_pids;
use crate::proc_support::{children, fd_count, rss_kib, wall_millis_now, zombie_children};

/// Workers in the storm test.
const N_STORM_WORKERS: usize = 3;

/// `SIGHUP`s in the storm, sent [`STORM_INTERVAL`] apart: one second.
const N_SIGHUPS: usize = 50;
const STORM_INTERVAL: Duration = Duration::from_millis(20);

/// How long each storm worker takes to come online: a recycle of
/// [`N_STORM_WORKERS`] lasts longer than [`STORM_INTERVAL`], so most
/// `SIGHUP`s arrive during a recycle and start it over.
const STORM_ONLINE_DELAY_MS: &str = "50";

/// Recycles measured by the leak test, after [`N_WARM_UP`] that let lazily
/// allocated buffers (maps, the log's formatter, epoll's lists) reach their
/// working size.
const N_RECYCLES: usize = 1_000;
const N_WARM_UP: usize = 20;

/// How much the master's resident set may grow over [`N_RECYCLES`].
const MAX_RSS_GROWTH_KIB: u64 = 1024;

/// Lines that must never appear when workers behave: a kill, a crash, a
/// start timeout.
const TROUBLE: [&str; 4] = ["killing it", "exited unasked", "did not report", "restarting in"];

fn assert_no_trouble(master: &Master, lines: &[String]) {
    for needle in TROUBLE {
        if count(lines, needle) != 0 {
            master.fail(&format!("unexpected line containing {needle:?}"));
        }
    }
}

/// The line `worker N spawned (pid P)` of `pid`, with when it was read.
fn spawned_line(lines: &[Line], pid: Pid) -> Option<&Line> {
    let needle = format!("spawned (pid {pid})");
    lines.iter().find(|line| line.text.contains(&needle))
}

/// Whether `pid` was spawned after a signal sent at `sent` (read by the
/// harness then) and `sent_wall` (the log's clock, [`wall_millis_now`]):
/// its `spawned` line was both read and written after it.
fn spawned_after(lines: &[Line], pid: Pid, sent: Instant, sent_wall: i64) -> bool {
    let Some(line) = spawned_line(lines, pid) else { return false };
    let Some(written) = log_millis(&line.text) else { return false };
    // Across midnight too; a line written before would be almost a day
    // "after".
    let after_ms = (written - sent_wall).rem_euclid(24 * 60 * 60 * 1000);
    line.at >= sent && after_ms < 60_000
}

/// The master's children, all running (no zombie), are exactly `workers`.
fn children_are(master: &Master, workers: &BTreeSet<Pid>) -> bool {
    let children: BTreeSet<Pid> = children(master.pid()).into_iter().collect();
    &children == workers && zombie_children(master.pid()).is_empty()
}

#[test]
fn fifty_sighups_in_one_second_converge_to_worker_count_fresh_workers() {
    let workers = N_STORM_WORKERS.to_string();
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            &workers,
            "--worker-timeout",
            "10000",
            "--recycle-timeout",
            "5000",
            "--online-delay-ms",
            STORM_ONLINE_DELAY_MS,
        ],
    );
    master.wait_for_count("started (online)", N_STORM_WORKERS);
    let began = Instant::now();
    let mut last_sent = (began, wall_millis_now());
    for n in 0..N_SIGHUPS {
        if n > 0 {
            // The storm's pace is the point here, not a wait for a condition.
            std::thread::sleep(STORM_INTERVAL);
        }
        last_sent = (Instant::now(), wall_millis_now());
        master.signal(Signal::SIGHUP);
    }
    let storm = began.elapsed();
    let (sent, sent_wall) = last_sent;

    // Converged: the last recycle the master began is complete, exactly
    // `worker.count` workers serve, each spawned after the last SIGHUP, and
    // the old ones are all reaped.
    let converged = |timed: &[Line]| {
        let lines: Vec<String> = timed.iter().map(|line| line.text.clone()).collect();
        let last_begun = lines.iter().rposition(|line| line.contains("SIGHUP: recycling"));
        let last_done = lines.iter().rposition(|line| line.contains("recycle complete: "));
        let serving = serving_pids(&lines);
        last_begun.is_some_and(|begun| last_done.is_some_and(|done| done > begun))
            && serving.len() == N_STORM_WORKERS
            && serving.iter().all(|&pid| spawned_after(timed, pid, sent, sent_wall))
            && children_are(&master, &serving)
    };
    master.wait_until_within(
        Duration::from_secs(20),
        &format!("{N_STORM_WORKERS} workers spawned after the last SIGHUP, the rest reaped"),
        |_| converged(&master.timed_lines()),
    );
    // And it stays so: nothing was left pending to spawn or kill later.
    let settled = master.lines();
    let serving = serving_pids(&settled);
    let settle_until = Instant::now() + Duration::from_millis(500);
    wait_until(settle_until, || master.lines().len() != settled.len());
    let lines = master.lines();
    if lines.len() != settled.len() || !children_are(&master, &serving) {
        master.fail(&format!("the master did more after converging to {serving:?}"));
    }
    assert_no_trouble(&master, &lines);
    let recycles = count(&lines, "SIGHUP: recycling");
    if recycles == 0 || recycles > N_SIGHUPS {
        master.fail(&format!("{recycles} recycles began for {N_SIGHUPS} SIGHUPs"));
    }
    if count(&lines, "(starting over)") == 0 {
        master.fail("no SIGHUP arrived during a recycle: the storm tested nothing");
    }
    // Every worker but the serving ones exited as asked.
    let spawned = count(&lines, "spawned (pid ");
    let as_asked = count(&lines, "as asked");
    if as_asked + N_STORM_WORKERS != spawned {
        master.fail(&format!("{spawned} workers spawned, {as_asked} exited as asked"));
    }
    eprintln!(
        "storms: {N_SIGHUPS} SIGHUPs in {} ms began {recycles} recycles ({} starting over), \
         {spawned} workers spawned",
        storm.as_millis(),
        count(&lines, "(starting over)"),
    );
}

/// Sends `SIGHUP` and waits for the `done + 1`-th completed recycle.
fn recycle(master: &Master, done: usize) {
    master.signal(Signal::SIGHUP);
    master.wait_until_within(Duration::from_secs(10), "a recycle to complete", |lines| {
        count(lines, "recycle complete: 1 workers replaced") > done
    });
}

/// Waits until `recycles` old workers exited as asked and the master's only
/// child is the serving worker; returns the master's descriptor count and
/// resident set in KiB then.
fn quiet_measure(master: &Master, recycles: usize) -> (usize, u64) {
    let lines = master.wait_until_within(
        Duration::from_secs(10),
        &format!("{recycles} old workers reaped"),
        |lines| {
            count(lines, "exited (exit code 0) as asked") == recycles
                && children_are(master, &serving_pids(lines))
        },
    );
    if serving_pids(&lines).len() != 1 {
        master.fail("expected one serving worker");
    }
    let fds = fd_count(master.pid()).unwrap_or_else(|| master.fail("cannot read the fds"));
    let rss = rss_kib(master.pid()).unwrap_or_else(|| master.fail("cannot read VmRSS"));
    (fds, rss)
}

#[test]
fn a_thousand_recycles_leak_no_fd_and_no_memory() {
    let master = Master::start_with_timeout(
        misbehave(),
        &["--workers", "1", "--worker-timeout", "10000", "--recycle-timeout", "5000"],
        Duration::from_secs(240),
    );
    master.wait_for_count("started (online)", 1);
    for done in 0..N_WARM_UP {
        recycle(&master, done);
    }
    let (fds_before, rss_before) = quiet_measure(&master, N_WARM_UP);
    let began = Instant::now();
    for done in N_WARM_UP..N_WARM_UP + N_RECYCLES {
        recycle(&master, done);
    }
    let took = began.elapsed();
    let (fds_after, rss_after) = quiet_measure(&master, N_WARM_UP + N_RECYCLES);
    eprintln!(
        "storms: {N_RECYCLES} recycles in {} ms; master fds {fds_before} -> {fds_after}, \
         VmRSS {rss_before} -> {rss_after} KiB",
        took.as_millis()
    );
    let lines = master.lines();
    assert_no_trouble(&master, &lines);
    if fds_after != fds_before {
        master.fail(&format!("the master's fds went from {fds_before} to {fds_after}"));
    }
    if rss_after > rss_before + MAX_RSS_GROWTH_KIB {
        master.fail(&format!(
            "the master's VmRSS grew from {rss_before} to {rss_after} KiB over {N_RECYCLES} recycles"
        ));
    }
}
