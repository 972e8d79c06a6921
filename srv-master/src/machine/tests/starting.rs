//! Starting: `worker.count` workers spawn, each must report `worker.require`
//! within `worker.timeout` (counted from when its process exists), and one
//! too slow to start is killed and replaced.

use std::time::Duration;

use super::shell::{check, check_debug_logs, check_logs, options};
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

// Never starting: `worker.max_start_failures`.

#[test]
fn start_failures_of_every_kind_in_a_row_make_the_master_give_up_with_exit_1() {
    // A crash before online, a timeout, a failed spawn: the third failure
    // in a row with no worker ever started stops the master, naming it.
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(1000);
    check_logs(
        options,
        "
        100 exited 1 code=3
        1100 tick
        3100 tick
        3110 exited 2 signal=9
        3110 spawn-fails
        5100 tick
        5100 status
        5100 state
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        100 log WARN: worker 1 (pid 1001) exited unasked (exit code 3); restarting in 1000 ms
        1100 spawn worker 2
        1100 log INFO: worker 2 spawned (pid 1002)
        3100 kill worker 2
        3100 log WARN: worker 2 (pid 1002) did not report online within 2000 ms; restarting in 2000 ms
        3110 log INFO: worker 2 (pid 1002) exited (signal 9) after being killed
        5100 spawn worker 3
        5100 log ERROR: no worker could start: 3 failed starts in a row (worker.max_start_failures = 3), the last: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory: stopping
        5100 close listeners
        5100 log INFO: no worker could start: shutting down 0 workers (grace 15000 ms)
        5100 log INFO: shutdown complete: all workers exited
        5100 exit 1
        5100 status failed: no worker could start: 3 failed starts in a row (worker.max_start_failures = 3), the last: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory; stopping: 0 workers left
        5100 state phase=Stopping started=0 target=1 workers=0 ready=false recycling=false failure=Some(\"no worker could start: 3 failed starts in a row (worker.max_start_failures = 3), the last: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory\")
        next deadline none
        ",
    );
}

#[test]
fn giving_up_disconnects_the_workers_still_starting_and_exits_after_the_last() {
    // Worker 1 crashes at once, every time; worker 2 is slow but would
    // start. One line reaching the limit is enough: nothing has started.
    let mut options = options(2);
    options.worker.timeout = Duration::from_millis(10000);
    options.restart.delay = Duration::from_millis(100);
    check(
        options,
        "
        0 exited 1 code=3
        100 tick
        100 exited 3 code=3
        300 tick
        300 exited 4 code=3
        300 state
        400 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        100 spawn worker 3
        300 spawn worker 4
        300 close listeners
        300 send worker 2 Disconnect { grace: None }
        300 state phase=Stopping started=0 target=2 workers=1 ready=false recycling=false failure=Some(\"no worker could start: 3 failed starts in a row (worker.max_start_failures = 3), the last: worker 4 (pid 1004) exited unasked (exit code 3)\")
        400 exit 1
        next deadline none
        ",
    );
}

#[test]
fn max_start_failures_1_gives_up_at_the_first_failure() {
    let mut options = options(1);
    options.worker.max_start_failures = 1;
    check(
        options,
        "
        2000 tick
        2010 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        2000 kill worker 1
        2000 close listeners
        2010 exit 1
        next deadline none
        ",
    );
}

#[test]
fn once_a_worker_has_started_start_failures_are_restarted_however_many() {
    // Worker 1 serves; worker 2's line fails to start five times in a row,
    // past the limit of 3, and is restarted each time with the backoff.
    let mut options = options(2);
    options.restart.delay = Duration::from_millis(100);
    options.restart.max_delay = Duration::from_millis(400);
    check(
        options,
        "
        0 up 1
        0 exited 2 code=3
        100 tick
        100 exited 3 code=3
        300 tick
        300 exited 4 code=3
        700 tick
        700 exited 5 code=3
        1100 tick
        1100 exited 6 code=3
        1500 tick
        1500 up 7
        1500 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        100 spawn worker 3
        300 spawn worker 4
        700 spawn worker 5
        1100 spawn worker 6
        1500 spawn worker 7
        1500 state phase=Ready started=2 target=2 workers=2 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn a_worker_that_started_once_and_keeps_crashing_is_restarted_however_many_times() {
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(100);
    options.restart.max_delay = Duration::from_millis(400);
    check(
        options,
        "
        0 up 1
        10 exited 1 signal=11
        110 tick
        110 exited 2 code=3
        310 tick
        310 exited 3 code=3
        710 tick
        710 exited 4 code=3
        1110 tick
        1110 state
        ",
        "
        0 spawn worker 1
        110 spawn worker 2
        310 spawn worker 3
        710 spawn worker 4
        1110 spawn worker 5
        1110 state phase=Ready started=0 target=1 workers=1 ready=false recycling=false failure=None
        next deadline 3110
        ",
    );
}

#[test]
fn giving_up_at_a_deadline_spares_the_worker_whose_exit_is_reported() {
    // Worker 2's start deadline decides to give up while the event is
    // worker 1's exit: worker 1 is gone, and is not asked to disconnect.
    let mut options = options(2);
    options.worker.max_start_failures = 1;
    check_logs(
        options,
        "
        2000 exited 1 code=3
        2010 exited 2 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        2000 kill worker 2
        2000 log ERROR: no worker could start: 1 failed start in a row (worker.max_start_failures = 1), the last: worker 2 (pid 1002) did not report online within 2000 ms: stopping
        2000 close listeners
        2000 log INFO: no worker could start: shutting down 2 workers (grace 15000 ms)
        2000 log WARN: worker 1 (pid 1001) exited unasked (exit code 3)
        2010 log INFO: worker 2 (pid 1002) exited (signal 9) after being killed
        2010 log INFO: shutdown complete: all workers exited
        2010 exit 1
        next deadline none
        ",
    );
}

#[test]
fn a_started_worker_logs_where_its_start_went_at_debug_level() {
    // Worker 1 starts once listening (which counts as online too); worker 2
    // says hello and online without listening.
    check_debug_logs(
        options(2),
        "
        5 hello 1
        7 listen-request 1
        9 listening 1
        12 up 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        7 listen worker 1 127.0.0.1:8080
        9 log INFO: worker 1 (pid 1001) listening on 127.0.0.1:8080
        9 log INFO: worker 1 (pid 1001) started (online) in 9 ms
        9 log DEBUG: worker 1 (pid 1001) start after its exec: hello +5.00 ms, listen request +7.00 ms, listening +9.00 ms
        12 log INFO: worker 2 (pid 1002) started (online) in 12 ms
        12 log DEBUG: worker 2 (pid 1002) start after its exec: hello +12.00 ms, online +12.00 ms
        next deadline none
        ",
    );
}
