//! Starting: `worker.count` workers spawn, each must report `worker.require`
//! within `worker.timeout` (counted from when its process exists), and one
//! too slow to start is killed and replaced.

use super::shell::{check, check_logs, options};
use crate::options::{Options, Require};

// Starting.

#[test]
fn workers_are_numbered_from_1() {
    check(
        options(2),
        "",
        "
        0 spawn worker 1
        0 spawn worker 2
        next deadline 2000
        ",
    );
}

#[test]
fn at_start_the_machine_only_spawns_and_logs() {
    check_logs(
        Options::default(),
        "",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 4 spawned (pid 1004)
        next deadline 2000
        ",
    );
}

#[test]
fn each_worker_must_report_worker_require_within_worker_timeout() {
    check(
        Options::default(),
        "0 deadline",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 next deadline 2000
        next deadline 2000
        ",
    );
}

#[test]
fn the_next_deadline_is_when_a_tick_has_work() {
    check(
        options(1),
        "
        0 deadline
        2000 tick
        ",
        "
        0 spawn worker 1
        0 next deadline 2000
        2000 kill worker 1
        next deadline 7000
        ",
    );
}

#[test]
fn a_spawned_worker_that_says_hello_and_online_makes_the_master_ready() {
    check(
        options(1),
        "
        0 state
        0 up 1
        0 state
        ",
        "
        0 spawn worker 1
        0 state phase=Starting started=0 target=1 workers=1 ready=false recycling=false failure=None
        0 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn the_master_is_ready_once_every_worker_started() {
    check(
        options(2),
        "
        0 up 1
        0 state
        0 up 2
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 state phase=Starting started=1 target=2 workers=2 ready=false recycling=false failure=None
        0 state phase=Ready started=2 target=2 workers=2 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn start_spawns_count_workers_and_online_starts_them() {
    check_logs(
        options(2),
        "
        5 deadline
        10 hello 1
        20 online 1
        30 up 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        5 next deadline 2000
        20 log INFO: worker 1 (pid 1001) started (online) in 20 ms
        30 log INFO: worker 2 (pid 1002) started (online) in 30 ms
        next deadline none
        ",
    );
}

#[test]
fn require_listen_starts_on_listening_not_online() {
    let mut options = options(1);
    options.worker.require = Require::Listen;
    check_logs(
        options,
        "
        10 up 1
        10 deadline
        20 listen-request 1 127.0.0.1:0
        30 listening 1 127.0.0.1:8080
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 next deadline 2000
        20 listen worker 1 127.0.0.1:0
        30 log INFO: worker 1 (pid 1001) listening on 127.0.0.1:8080
        30 log INFO: worker 1 (pid 1001) started (listen) in 30 ms
        next deadline none
        ",
    );
}

// Starting too slowly.

#[test]
fn a_worker_that_does_not_start_in_time_is_killed_and_replaced_after_the_delay() {
    check_logs(
        options(1),
        "
        10 hello 1
        1999 tick
        2000 tick
        2010 exited 1 signal=9
        6999 tick
        7000 tick
        7010 up 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        2000 kill worker 1
        2000 log WARN: worker 1 (pid 1001) did not report online within 2000 ms; restarting in 5000 ms
        2010 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        7000 spawn worker 2
        7000 log INFO: worker 2 spawned (pid 1002)
        7010 log INFO: worker 2 (pid 1002) started (online) in 10 ms
        next deadline none
        ",
    );
}

#[test]
fn worker_timeout_counts_from_when_the_process_exists() {
    // The fork took 300 ms (a busy machine): the worker still gets its whole
    // worker.timeout from then, not from when the master asked for it.
    check(
        options(1),
        "
        0 up 1
        0 spawn-slowly
        0 SIGTTIN
        0 deadline
        300 spawned 2
        300 deadline
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 next deadline 2000
        300 next deadline 2300
        next deadline 2300
        ",
    );
}
