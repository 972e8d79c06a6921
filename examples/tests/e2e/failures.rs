//! Workers that fail: never online, crash. The master kills, waits, and
//! replaces them.

use crate::harness::{Master, count, find_from, log_interval_ms, misbehave, pids_after, reports};

/// Log timestamps are truncated to the millisecond, and the master reads
/// its clock a few microseconds before it writes a line, so a measured
/// interval may be short of the real one by this much.
const TIMESTAMP_SLACK_MS: i64 = 2;

#[test]
fn never_online_worker_is_killed_after_worker_timeout_and_replaced() {
    let master = Master::start(
        misbehave(),
        &["--workers", "1", "--never-online", "--worker-timeout", "500", "--restart-delay", "100"],
    );
    let lines =
        master.wait_until("the killed worker replaced and its replacement running", |lines| {
            let spawned = pids_after(lines, "spawned (pid ");
            count(lines, "exited (signal 9) after being killed") >= 1
                && spawned.len() >= 2
                && reports(lines, "started").iter().any(|report| report.pid == spawned[1])
        });
    let workers = pids_after(&lines, "spawned (pid ");
    let (first, second) = (workers[0], workers[1]);
    assert_ne!(first, second);

    let spawned = find_from(&lines, 0, &format!("spawned (pid {first})")).unwrap();
    let timed_out =
        find_from(&lines, 0, &format!("(pid {first}) did not report online within 500 ms"))
            .unwrap_or_else(|| master.fail("the first worker was not killed for the timeout"));
    let took = log_interval_ms(&lines[spawned], &lines[timed_out]);
    assert!(
        took >= 500 - TIMESTAMP_SLACK_MS,
        "killed {took} ms after spawn, before worker.timeout"
    );
    let killed = find_from(
        &lines,
        timed_out,
        &format!("(pid {first}) exited (signal 9) after being killed"),
    );
    let respawned = find_from(&lines, 0, &format!("spawned (pid {second})")).unwrap();
    assert!(timed_out < respawned, "the replacement comes after the kill");
    assert!(killed.is_some(), "the first worker died of SIGKILL");
    assert!(!master.is_alive(first), "the first worker is gone");
    let started = reports(&lines, "started");
    assert!(started.iter().any(|report| report.pid == second), "the replacement runs misbehave");
}

#[test]
fn crashed_worker_is_replaced_after_restart_delay_and_not_before() {
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "2",
            "--worker-timeout",
            "10000",
            "--crash-after-ms",
            "200",
            "--only-worker-ids",
            "1",
            "--restart-delay",
            "1000",
        ],
    );
    let lines = master.wait_until("the crashed worker replaced", |lines| {
        pids_after(lines, "spawned (pid ").len() >= 3
    });
    let workers = pids_after(&lines, "spawned (pid ");
    let crashed = reports(&lines, "exiting (code 3)");
    assert_eq!(crashed.len(), 1, "one crash");
    assert_eq!(crashed[0].id, 1, "only worker 1 misbehaves");

    let restarting = find_from(
        &lines,
        0,
        &format!("(pid {}) exited unasked (exit code 3); restarting in 1000 ms", crashed[0].pid),
    )
    .unwrap_or_else(|| master.fail("no restart scheduled for the crash"));
    let respawned = find_from(&lines, restarting, "spawned (pid ")
        .unwrap_or_else(|| master.fail("no spawn after the restart was scheduled"));
    assert!(lines[respawned].contains(&format!("spawned (pid {})", workers[2])));
    let waited = log_interval_ms(&lines[restarting], &lines[respawned]);
    assert!(
        waited >= 1000 - TIMESTAMP_SLACK_MS,
        "replaced after {waited} ms, before restart.delay"
    );
    assert_eq!(workers.len(), 3, "nothing else was spawned: {workers:?}");
    assert!(master.is_alive(workers[1]), "the well-behaved worker kept running");
}
