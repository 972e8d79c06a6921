//! The node module's own example: hello from every worker, goodbye on Ctrl+C.

use nix::sys::signal::Signal;

use crate::harness::{Exit, Master, count, hello, misbehave, pids_after};

#[test]
fn hello_and_goodbye_once_per_worker_then_ctrl_c_exits_0() {
    let mut master = Master::start(hello(), &["--workers", "4"]);
    let lines = master.wait_until("4 workers started and said hello", |lines| {
        count(lines, "started (online)") == 4 && pids_after(lines, "Hello from ").len() == 4
    });
    let mut hellos = pids_after(&lines, "Hello from ");
    let mut workers = master.worker_pids();
    assert_eq!(count(&lines, "Hello from "), 4, "one hello per worker");
    hellos.sort();
    workers.sort();
    assert_eq!(hellos, workers, "the hellos come from the spawned workers");
    assert!(workers.iter().all(|&pid| master.is_alive(pid)), "every worker runs");

    // Ctrl+C: SIGINT to the whole process group.
    master.signal_group(Signal::SIGINT);
    let lines = master.wait_until("4 goodbyes", |lines| count(lines, "Goodbye from ") == 4);
    let mut goodbyes = pids_after(&lines, "Goodbye from ");
    goodbyes.sort();
    assert_eq!(goodbyes, workers, "every worker says goodbye once");
    assert_eq!(master.wait_exit(), Exit::Code(0));
    let lines = master.lines();
    assert_eq!(count(&lines, "as asked"), 4, "every worker exited when asked");
    assert_eq!(count(&lines, "shutdown complete"), 1);
    let alive: Vec<_> = workers.iter().filter(|&&pid| master.is_alive(pid)).collect();
    assert!(alive.is_empty(), "workers {alive:?} outlived the master");
}

/// `hello` without arguments is the program of the `srv` crate's
/// documentation (`srv::run(srv::Options::default(), ..)`): 4 workers. An
/// operator's `kill -INT` reaches the master alone (unlike Ctrl+C, which
/// reaches the group), and every worker still says goodbye.
#[test]
fn srv_run_with_default_options_says_4_hellos_and_sigint_to_the_master_4_goodbyes() {
    let mut master = Master::start(hello(), &[]);
    let lines = master.wait_until("4 workers online and 4 hellos", |lines| {
        count(lines, "started (online)") == 4 && count(lines, "Hello from ") == 4
    });
    let mut hellos = pids_after(&lines, "Hello from ");
    let mut workers = master.worker_pids();
    hellos.sort();
    workers.sort();
    assert_eq!(hellos, workers, "one hello from each spawned worker");

    master.signal(Signal::SIGINT);
    let lines = master.wait_until("4 goodbyes", |lines| count(lines, "Goodbye from ") == 4);
    let mut goodbyes = pids_after(&lines, "Goodbye from ");
    goodbyes.sort();
    assert_eq!(goodbyes, workers, "every worker says goodbye once");
    assert_eq!(master.wait_exit(), Exit::Code(0));
    let lines = master.lines();
    assert_eq!(count(&lines, "as asked"), 4, "every worker returned from the callback");
    assert_eq!(count(&lines, "Hello from "), 4, "no worker was replaced");
}

/// The upgrade in place runs the program once as a probe, in which
/// `srv::run` must report and return without starting anything, then as the
/// master again under the same pid, which recycles the workers.
#[test]
fn srv_run_upgrades_in_place_on_sigusr2() {
    let mut master = Master::start(hello(), &["--workers", "2"]);
    master.wait_until("2 hellos", |lines| count(lines, "Hello from ") == 2);
    let old = master.worker_pids();
    master.signal(Signal::SIGUSR2);
    let lines = master.wait_until("the upgrade to complete", |lines| {
        count(lines, "upgrade complete in ") == 1 || count(lines, "upgrade failed: ") > 0
    });
    if count(&lines, "upgrade failed: ") > 0 {
        master.fail("the upgrade failed");
    }
    let needle = format!("master {} upgraded in place", master.pid());
    assert_eq!(count(&lines, &needle), 1, "the same master runs the program again");
    let lines = master.wait_until("2 new hellos and 2 goodbyes", |lines| {
        count(lines, "Hello from ") == 4 && count(lines, "Goodbye from ") == 2
    });
    let mut goodbyes = pids_after(&lines, "Goodbye from ");
    let mut old_sorted = old.clone();
    goodbyes.sort();
    old_sorted.sort();
    assert_eq!(goodbyes, old_sorted, "the old workers said goodbye");
    let new: Vec<_> = pids_after(&lines, "Hello from ").into_iter().skip(2).collect();
    assert!(new.iter().all(|pid| !old.contains(pid)), "new workers said hello: {new:?}");
    // The probe started no worker: one hello per spawned worker, no more.
    assert_eq!(count(&lines, "Hello from "), master.worker_pids().len());

    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

/// A callback's error is logged with the worker's pid and ends the worker
/// with exit code 1, which the master counts as a crash and replaces.
#[test]
fn srv_run_logs_a_callbacks_error_and_the_worker_exits_1() {
    let args = [
        "--callback-error",
        "--workers",
        "1",
        "--restart-delay",
        "100",
        "--max-restart-delay",
        "200",
    ];
    let mut master = Master::start(misbehave(), &args);
    let lines = master.wait_until("two failures and a restart", |lines| {
        count(lines, "failed: failed on purpose") >= 2
            && count(lines, "exited unasked (exit code 1)") >= 2
    });
    let first = pids_after(&lines, "spawned (pid ")[0];
    let logged = format!("worker {first} failed: failed on purpose");
    assert_eq!(count(&lines, &logged), 1, "the error names the worker's pid");
    assert!(count(&lines, "callback fails") >= 2, "the callback ran in each worker");
    assert!(count(&lines, "restarting in ") >= 1, "the master restarts a failed worker");
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

/// Bad options are one readable line (`main` returns `srv::Error`, whose
/// `Debug` is its message) and exit 1, with no worker started.
#[test]
fn srv_run_with_invalid_options_is_one_clear_error_and_exit_1() {
    let mut master = Master::start(hello(), &["--workers", "0"]);
    assert_eq!(master.wait_exit(), Exit::Code(1));
    let lines = master.lines();
    let expected = "Error: invalid option worker.count: must be at least 1";
    if !lines.iter().any(|line| line == expected) {
        master.fail(&format!("no line {expected:?}"));
    }
    assert_eq!(count(&lines, "spawned"), 0, "no worker started");
}
