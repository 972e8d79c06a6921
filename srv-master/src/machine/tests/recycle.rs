//! The rolling recycle (`SIGHUP`): one replacement at a time, or
//! `recycle.parallel` at a time, what stops it, and what starts it over.

use super::shell::{check, check_logs, options};
use crate::options::Options;

#[test]
fn recycle_replaces_one_worker_at_a_time() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 up 4
        1200 up 5
        1300 exited 1
        1400 up 6
        1500 exited 2
        1500 deadline
        16399 tick
        16400 tick
        16410 exited 3 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 3 workers
        1000 spawn worker 4
        1000 log INFO: worker 4 spawned (pid 1004)
        1100 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 5
        1100 log INFO: worker 5 spawned (pid 1005)
        1200 log INFO: worker 5 (pid 1005) started (online) in 100 ms
        1200 log INFO: worker 2 (pid 1002) disconnecting
        1200 send worker 2 Disconnect { grace: Some(15s) }
        1200 spawn worker 6
        1200 log INFO: worker 6 spawned (pid 1006)
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1400 log INFO: worker 6 (pid 1006) started (online) in 200 ms
        1400 log INFO: worker 3 (pid 1003) disconnecting
        1400 send worker 3 Disconnect { grace: Some(15s) }
        1400 log INFO: recycle complete: 3 workers replaced in 400 ms
        1500 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1500 next deadline 16400
        16400 log WARN: worker 3 (pid 1003) did not exit in time after disconnect; killing it
        16400 kill worker 3
        16410 log INFO: worker 3 (pid 1003) exited (signal 9) after being killed
        next deadline none
        ",
    );
}

#[test]
fn recycle_waits_for_its_own_replacement_not_any_new_worker() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1000 SIGTTIN
        1100 up 4
        1200 up 3
        1300 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 spawn worker 4
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 spawn worker 5
        1300 send worker 2 Disconnect { grace: Some(15s) }
        next deadline 16200
        ",
    );
}

#[test]
fn a_replacement_that_crashes_stops_the_recycle_and_the_old_workers_serve_on() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 hello 3
        1200 exited 3 code=1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1200 log ERROR: recycle stopped: replacement worker 3 (pid 1003) exited unasked (exit code 1); 2 old workers keep serving
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_does_not_start_in_time_stops_the_recycle() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        3000 tick
        3010 exited 3 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        3000 kill worker 3
        3000 log ERROR: recycle stopped: replacement worker 3 (pid 1003) did not report online within 2000 ms; 2 old workers keep serving
        3010 log INFO: worker 3 (pid 1003) exited (signal 9) after being killed
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_cannot_be_spawned_stops_the_recycle_and_a_later_sighup_works() {
    check(
        options(2),
        "
        0 up 1 2
        1000 spawn-fails
        1000 SIGHUP
        1000 deadline
        2000 SIGHUP
        2100 up 4
        2200 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 next deadline none
        2000 spawn worker 4
        2100 send worker 1 Disconnect { grace: Some(15s) }
        2100 spawn worker 5
        2200 send worker 2 Disconnect { grace: Some(15s) }
        next deadline 17100
        ",
    );
}

#[test]
fn a_sighup_during_a_recycle_starts_over_and_retires_the_replacement_in_flight() {
    check(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 up 4
        1200 SIGHUP
        1300 up 5
        1400 up 6
        1500 up 7
        1600 up 8
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 spawn worker 4
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 5
        1200 send worker 5 Disconnect { grace: None }
        1200 spawn worker 6
        1400 send worker 2 Disconnect { grace: Some(15s) }
        1400 spawn worker 7
        1500 send worker 3 Disconnect { grace: Some(15s) }
        1500 spawn worker 8
        1600 send worker 4 Disconnect { grace: Some(15s) }
        next deadline 16100
        ",
    );
}

#[test]
fn a_sigterm_during_a_recycle_stops_it_and_shuts_everything_down() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 SIGTERM
        1200 exited 1 2 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 close listeners
        1100 log INFO: recycle stopped by SIGTERM with 2 workers not replaced
        1100 log INFO: SIGTERM: shutting down 3 workers (grace 15000 ms)
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 3 (pid 1003) disconnecting
        1100 send worker 3 Disconnect { grace: None }
        1200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1200 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        1200 log INFO: shutdown complete: all workers exited
        1200 exit 0
        next deadline none
        ",
    );
}

#[test]
fn an_old_worker_that_crashes_while_its_replacement_starts_is_not_restarted() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exited 1 signal=11
        1100 deadline
        1200 up 3
        1300 up 4
        1400 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log WARN: worker 1 (pid 1001) exited unasked (signal 11); its replacement is already starting
        1100 next deadline 3000
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 spawn worker 4
        1200 log INFO: worker 4 spawned (pid 1004)
        1300 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1300 log INFO: worker 2 (pid 1002) disconnecting
        1300 send worker 2 Disconnect { grace: Some(15s) }
        1300 log INFO: recycle complete: 2 workers replaced in 300 ms
        1400 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn an_old_worker_that_crashes_before_its_turn_is_restarted_and_skipped() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exited 2 signal=11
        1200 up 3
        1200 deadline
        6100 tick
        6100 up 4
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 next deadline 6100
        6100 spawn worker 4
        next deadline 16200
        ",
    );
}

#[test]
fn a_sighup_spawns_one_replacement_and_retires_its_old_worker_once_it_started() {
    check(
        Options::default(),
        "
        0 up 1 2 3 4
        0 SIGHUP
        0 up 5
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 spawn worker 5
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 spawn worker 6
        next deadline 2000
        ",
    );
}

#[test]
fn the_recycle_ends_when_the_last_replacement_started() {
    check(
        options(1),
        "
        0 up 1
        0 SIGHUP
        0 state
        0 up 2
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 state phase=Reloading started=1 target=1 workers=2 ready=true recycling=true failure=None
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 state phase=Ready started=1 target=1 workers=2 ready=true recycling=false failure=None
        next deadline 15000
        ",
    );
}

#[test]
fn a_stopped_recycle_counts_only_the_old_workers_still_there() {
    // Worker 3 crashes before its turn and leaves the queue: when the
    // replacement fails, worker 1 (its old worker) and worker 2 serve on.
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 exited 3 signal=11
        1200 exited 4 code=1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 3 workers
        1000 spawn worker 4
        1000 log INFO: worker 4 spawned (pid 1004)
        1100 log WARN: worker 3 (pid 1003) exited unasked (signal 11); restarting in 5000 ms
        1200 log ERROR: recycle stopped: replacement worker 4 (pid 1004) exited unasked (exit code 1); 2 old workers keep serving
        next deadline 6100
        ",
    );
}

/// `worker.count` workers with `recycle.parallel` at `parallel`.
fn parallel(count: usize, parallel: usize) -> Options {
    let mut options = options(count);
    options.recycle.parallel = parallel;
    options
}

#[test]
fn recycle_parallel_starts_that_many_replacements_and_retires_each_old_worker_once_its_own_started()
{
    // Worker 6 (for worker 2) starts before worker 5 (for worker 1): worker 2
    // retires first, and worker 7 takes 6's turn at once.
    check_logs(
        parallel(4, 2),
        "
        0 up 1 2 3 4
        1000 SIGHUP
        1000 state
        1100 up 6
        1100 state
        1200 up 5
        1300 up 7 8
        1300 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 4 spawned (pid 1004)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        0 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 4 workers, 2 at a time
        1000 spawn worker 5
        1000 spawn worker 6
        1000 log INFO: worker 5 spawned (pid 1005)
        1000 log INFO: worker 6 spawned (pid 1006)
        1000 state phase=Reloading started=4 target=4 workers=6 ready=true recycling=true failure=None
        1100 log INFO: worker 6 (pid 1006) started (online) in 100 ms
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 spawn worker 7
        1100 log INFO: worker 7 spawned (pid 1007)
        1100 state phase=Reloading started=4 target=4 workers=7 ready=true recycling=true failure=None
        1200 log INFO: worker 5 (pid 1005) started (online) in 200 ms
        1200 log INFO: worker 1 (pid 1001) disconnecting
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 spawn worker 8
        1200 log INFO: worker 8 spawned (pid 1008)
        1300 log INFO: worker 7 (pid 1007) started (online) in 200 ms
        1300 log INFO: worker 3 (pid 1003) disconnecting
        1300 send worker 3 Disconnect { grace: Some(15s) }
        1300 log INFO: worker 8 (pid 1008) started (online) in 100 ms
        1300 log INFO: worker 4 (pid 1004) disconnecting
        1300 send worker 4 Disconnect { grace: Some(15s) }
        1300 log INFO: recycle complete: 4 workers replaced in 300 ms
        1300 state phase=Ready started=4 target=4 workers=8 ready=true recycling=false failure=None
        next deadline 16100
        ",
    );
}

#[test]
fn a_failed_replacement_stops_a_parallel_recycle_and_retires_the_others_still_starting() {
    // Workers 6 and 5 replaced workers 2 and 1; worker 7 (for worker 3)
    // crashes: the recycle stops, worker 8 (for worker 4) is not wanted any
    // more, workers 3 and 4 serve on beside 5 and 6, and nothing is
    // restarted.
    check_logs(
        parallel(4, 2),
        "
        0 up 1 2 3 4
        1000 SIGHUP
        1100 up 6
        1150 up 5
        1200 exited 2
        1300 exited 7 code=1
        1300 state
        1400 exited 1 8
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 4 spawned (pid 1004)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        0 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 4 workers, 2 at a time
        1000 spawn worker 5
        1000 spawn worker 6
        1000 log INFO: worker 5 spawned (pid 1005)
        1000 log INFO: worker 6 spawned (pid 1006)
        1100 log INFO: worker 6 (pid 1006) started (online) in 100 ms
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 spawn worker 7
        1100 log INFO: worker 7 spawned (pid 1007)
        1150 log INFO: worker 5 (pid 1005) started (online) in 150 ms
        1150 log INFO: worker 1 (pid 1001) disconnecting
        1150 send worker 1 Disconnect { grace: Some(15s) }
        1150 spawn worker 8
        1150 log INFO: worker 8 spawned (pid 1008)
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1300 log ERROR: recycle stopped: replacement worker 7 (pid 1007) exited unasked (exit code 1); 2 old workers keep serving
        1300 log INFO: worker 8 (pid 1008) disconnecting
        1300 send worker 8 Disconnect { grace: None }
        1300 state phase=Ready started=4 target=4 workers=6 ready=true recycling=false failure=None
        1400 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1400 log INFO: worker 8 (pid 1008) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_times_out_as_another_one_exits_leaves_that_one_unreplaced() {
    // At 3000 worker 3 is killed for its start timeout while the event is
    // worker 4's exit: the recycle stops, and worker 4, which would have been
    // retired, is gone; neither is restarted.
    check_logs(
        parallel(2, 2),
        "
        0 up 1 2
        1000 SIGHUP
        3000 exited 4 signal=11
        3000 state
        3010 exited 3 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers, 2 at a time
        1000 spawn worker 3
        1000 spawn worker 4
        1000 log INFO: worker 3 spawned (pid 1003)
        1000 log INFO: worker 4 spawned (pid 1004)
        3000 kill worker 3
        3000 log ERROR: recycle stopped: replacement worker 3 (pid 1003) did not report online within 2000 ms; 2 old workers keep serving
        3000 log WARN: worker 4 (pid 1004) exited unasked (signal 11); not replaced: its recycle stopped
        3000 state phase=Ready started=2 target=2 workers=3 ready=true recycling=false failure=None
        3010 log INFO: worker 3 (pid 1003) exited (signal 9) after being killed
        next deadline none
        ",
    );
}

#[test]
fn a_sighup_during_a_parallel_recycle_retires_every_replacement_in_flight() {
    check(
        parallel(3, 2),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 up 4
        1200 SIGHUP
        1200 state
        1300 up 7 8
        1400 up 9
        1400 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 spawn worker 4
        1000 spawn worker 5
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 6
        1200 send worker 5 Disconnect { grace: None }
        1200 send worker 6 Disconnect { grace: None }
        1200 spawn worker 7
        1200 spawn worker 8
        1200 state phase=Reloading started=3 target=3 workers=8 ready=true recycling=true failure=None
        1300 send worker 2 Disconnect { grace: Some(15s) }
        1300 spawn worker 9
        1300 send worker 3 Disconnect { grace: Some(15s) }
        1400 send worker 4 Disconnect { grace: Some(15s) }
        1400 state phase=Ready started=3 target=3 workers=9 ready=true recycling=false failure=None
        next deadline 16100
        ",
    );
}

#[test]
fn a_sigterm_during_a_parallel_recycle_stops_it_and_shuts_everything_down() {
    check_logs(
        parallel(3, 3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1050 up 4
        1100 SIGTERM
        1200 exited 1 2 3 4 5 6
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 3 spawned (pid 1003)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        0 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 3 workers, 3 at a time
        1000 spawn worker 4
        1000 spawn worker 5
        1000 spawn worker 6
        1000 log INFO: worker 4 spawned (pid 1004)
        1000 log INFO: worker 5 spawned (pid 1005)
        1000 log INFO: worker 6 spawned (pid 1006)
        1050 log INFO: worker 4 (pid 1004) started (online) in 50 ms
        1050 log INFO: worker 1 (pid 1001) disconnecting
        1050 send worker 1 Disconnect { grace: Some(15s) }
        1100 close listeners
        1100 log INFO: recycle stopped by SIGTERM with 2 workers not replaced
        1100 log INFO: SIGTERM: shutting down 6 workers (grace 15000 ms)
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 3 (pid 1003) disconnecting
        1100 send worker 3 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 4 (pid 1004) disconnecting
        1100 send worker 4 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 5 (pid 1005) disconnecting
        1100 send worker 5 Disconnect { grace: None }
        1100 log INFO: worker 6 (pid 1006) disconnecting
        1100 send worker 6 Disconnect { grace: None }
        1200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1200 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        1200 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        1200 log INFO: worker 5 (pid 1005) exited (exit code 0) as asked
        1200 log INFO: worker 6 (pid 1006) exited (exit code 0) as asked
        1200 log INFO: shutdown complete: all workers exited
        1200 exit 0
        next deadline none
        ",
    );
}

#[test]
fn sigttou_during_a_parallel_recycle_removes_an_old_worker_and_its_replacement() {
    // Every worker is an old one being replaced or a replacement: one pair
    // goes, both of its workers, and the other pair finishes the recycle.
    check_logs(
        parallel(2, 2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 SIGTTOU
        1200 up 3
        1200 state
        1300 exited 1 2 4
        1300 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers, 2 at a time
        1000 spawn worker 3
        1000 spawn worker 4
        1000 log INFO: worker 3 spawned (pid 1003)
        1000 log INFO: worker 4 spawned (pid 1004)
        1100 log INFO: SIGTTOU: workers 2 -> 1
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 4 (pid 1004) disconnecting
        1100 send worker 4 Disconnect { grace: None }
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 log INFO: worker 1 (pid 1001) disconnecting
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 log INFO: recycle complete: 1 workers replaced in 200 ms
        1200 state phase=Ready started=1 target=1 workers=4 ready=true recycling=false failure=None
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1300 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        1300 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn sigttou_during_a_parallel_recycle_removes_an_old_worker_still_queued_first() {
    check(
        parallel(4, 2),
        "
        0 up 1 2 3 4
        1000 SIGHUP
        1100 SIGTTOU
        1200 up 5 6
        1300 up 7
        1300 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        1000 spawn worker 5
        1000 spawn worker 6
        1100 send worker 4 Disconnect { grace: Some(15s) }
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 spawn worker 7
        1200 send worker 2 Disconnect { grace: Some(15s) }
        1300 send worker 3 Disconnect { grace: Some(15s) }
        1300 state phase=Ready started=3 target=3 workers=7 ready=true recycling=false failure=None
        next deadline 16100
        ",
    );
}

#[test]
fn sigttin_during_a_parallel_recycle_adds_a_worker_that_is_not_replaced() {
    check(
        parallel(2, 2),
        "
        0 up 1 2
        1000 SIGHUP
        1000 SIGTTIN
        1100 up 3 4 5
        1100 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 spawn worker 4
        1000 spawn worker 5
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 state phase=Ready started=3 target=3 workers=5 ready=true recycling=false failure=None
        next deadline 16100
        ",
    );
}

#[test]
fn an_old_worker_that_exits_on_purpose_during_a_parallel_recycle_is_replaced_by_its_replacement() {
    // Worker 1 says it will exit and does, long after its spawn: an exit on
    // purpose, which is replaced at once; but its replacement is already
    // starting, so nothing more is spawned.
    check_logs(
        parallel(2, 2),
        "
        0 up 1 2
        5000 SIGHUP
        5100 exit-msg 1 code=0
        5100 exited 1
        5200 up 3 4
        5200 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        5000 log INFO: SIGHUP: recycling 2 workers, 2 at a time
        5000 spawn worker 3
        5000 spawn worker 4
        5000 log INFO: worker 3 spawned (pid 1003)
        5000 log INFO: worker 4 spawned (pid 1004)
        5100 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        5200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        5200 log INFO: worker 4 (pid 1004) started (online) in 200 ms
        5200 log INFO: worker 2 (pid 1002) disconnecting
        5200 send worker 2 Disconnect { grace: Some(15s) }
        5200 log INFO: recycle complete: 2 workers replaced in 200 ms
        5200 state phase=Ready started=2 target=2 workers=3 ready=true recycling=false failure=None
        next deadline 20200
        ",
    );
}

#[test]
fn a_parallel_replacement_that_cannot_be_spawned_stops_the_recycle_and_retires_the_other() {
    check_logs(
        parallel(2, 2),
        "
        0 up 1 2
        1000 spawn-fails
        1000 SIGHUP
        1000 state
        1100 exited 4
        1100 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers, 2 at a time
        1000 spawn worker 3
        1000 spawn worker 4
        1000 log ERROR: recycle stopped: replacement worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory; 2 old workers keep serving
        1000 log INFO: worker 4 disconnecting
        1000 send worker 4 Disconnect { grace: None }
        1000 log INFO: worker 4 spawned (pid 1004)
        1000 state phase=Ready started=2 target=2 workers=3 ready=true recycling=false failure=None
        1100 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        1100 state phase=Ready started=2 target=2 workers=2 ready=true recycling=false failure=None
        next deadline none
        ",
    );
}

#[test]
fn a_parallel_recycle_before_any_start_gives_up_like_any_start_failure() {
    // No worker ever started: a replacement that crashes is a start failure
    // like any other, and with worker.max_start_failures 1 the master gives
    // up, stopping the recycle and every worker.
    let mut options = parallel(2, 2);
    options.worker.max_start_failures = 1;
    check_logs(
        options,
        "
        100 SIGHUP
        200 exited 3 code=1
        300 exited 1 2 4
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        100 log INFO: SIGHUP: recycling 2 workers, 2 at a time
        100 spawn worker 3
        100 spawn worker 4
        100 log INFO: worker 3 spawned (pid 1003)
        100 log INFO: worker 4 spawned (pid 1004)
        200 log ERROR: no worker could start: 1 failed start in a row (worker.max_start_failures = 1), the last: worker 3 (pid 1003) exited unasked (exit code 1): stopping
        200 close listeners
        200 log INFO: recycle stopped by no worker could start with 2 workers not replaced
        200 log INFO: no worker could start: shutting down 3 workers (grace 15000 ms)
        200 log INFO: worker 1 (pid 1001) disconnecting
        200 send worker 1 Disconnect { grace: None }
        200 log INFO: worker 2 (pid 1002) disconnecting
        200 send worker 2 Disconnect { grace: None }
        200 log INFO: worker 4 (pid 1004) disconnecting
        200 send worker 4 Disconnect { grace: None }
        300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        300 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        300 log INFO: shutdown complete: all workers exited
        300 exit 1
        next deadline none
        ",
    );
}
