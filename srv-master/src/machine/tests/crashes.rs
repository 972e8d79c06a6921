//! A worker that crashes, exits on purpose, or closes its channel: its
//! replacement, the restart delay and its backoff.

use std::time::Duration;

use super::shell::{check, check_logs, options};
use crate::options::Options;

// Crashes.

#[test]
fn a_crash_is_replaced_after_the_restart_delay_not_before() {
    check(
        options(2),
        "
        0 up 1 2
        100 exited 1 signal=11
        100 deadline
        5099 tick
        5100 tick
        5100 up 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        100 next deadline 5100
        5100 spawn worker 3
        next deadline none
        ",
    );
}

#[test]
fn crashes_in_a_row_back_off_to_the_cap_and_a_stable_worker_ends_the_streak() {
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check(
        options,
        "
        0 up 1
        100 exited 1 signal=11
        100 deadline
        1100 tick
        1100 up 2
        1200 exited 2 code=1
        1200 deadline
        3200 tick
        3200 up 3
        3300 exited 3 signal=6
        3300 deadline
        7300 tick
        7300 up 4
        7400 exited 4 signal=11
        7400 deadline
        11400 tick
        11400 up 5
        15399 exited 5 signal=11
        15399 deadline
        19399 tick
        19399 up 6
        23399 exited 6 signal=11
        23399 deadline
        ",
        "
        0 spawn worker 1
        100 next deadline 1100
        1100 spawn worker 2
        1200 next deadline 3200
        3200 spawn worker 3
        3300 next deadline 7300
        7300 spawn worker 4
        7400 next deadline 11400
        11400 spawn worker 5
        15399 next deadline 19399
        19399 spawn worker 6
        23399 next deadline 24399
        next deadline 24399
        ",
    );
}

#[test]
fn spawn_failures_back_off_like_crashes() {
    let mut options = options(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check_logs(
        options,
        "
        0 up 1
        0 spawn-fails 2
        100 exited 1 signal=11
        1100 tick
        3100 tick
        7100 tick
        7100 up 4
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 log WARN: worker 1 (pid 1001) exited unasked (signal 11); restarting in 1000 ms
        1100 spawn worker 2
        1100 log WARN: worker 2 could not be spawned: cannot spawn /srv/app: No such file or directory; restarting in 2000 ms
        3100 spawn worker 3
        3100 log WARN: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory; restarting in 4000 ms
        7100 spawn worker 4
        7100 log INFO: worker 4 spawned (pid 1004)
        7100 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        next deadline none
        ",
    );
}

#[test]
fn a_worker_killed_by_a_signal_is_replaced_after_restart_delay() {
    check_logs(
        options(1),
        "
        0 exited 1 signal=11
        0 deadline
        4999 tick
        5000 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log WARN: worker 1 (pid 1001) exited unasked (signal 11); restarting in 5000 ms
        0 next deadline 5000
        5000 spawn worker 2
        5000 log INFO: worker 2 spawned (pid 1002)
        next deadline 7000
        ",
    );
}

// Exits on purpose.

#[test]
fn an_announced_exit_is_replaced_at_once_and_a_different_code_is_a_crash() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1100 exit-msg 1 code=0
        1110 exited 1 code=0
        1120 up 3
        1200 exit-msg 2 code=3
        1210 exited 2 code=1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1110 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        1110 spawn worker 3
        1110 log INFO: worker 3 spawned (pid 1003)
        1120 log INFO: worker 3 (pid 1003) started (online) in 10 ms
        1210 log WARN: worker 2 (pid 1002) exited (exit code 1) after announcing exit code 3; restarting in 5000 ms
        next deadline 6210
        ",
    );
}

#[test]
fn an_exit_on_purpose_within_the_early_exit_window_of_the_spawn_is_a_crash() {
    // Hello, Online, Exit and exit in 35 ms, again and again: the spawns
    // are spaced by the backoff (restart.delay 0, so 0, 200, 400 ms), not
    // 35 ms apart.
    let mut options = options(1);
    options.restart.delay = Duration::ZERO;
    check_logs(
        options,
        "
        30 up 1
        30 exit-msg 1 code=0
        35 exited 1 code=0
        35 tick
        65 up 2
        65 exit-msg 2 code=0
        70 exited 2 code=0
        270 tick
        300 up 3
        300 exit-msg 3 code=0
        305 exited 3 code=0
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        30 log INFO: worker 1 (pid 1001) started (online) in 30 ms
        35 log WARN: worker 1 (pid 1001) exited on purpose (exit code 0) 35 ms after its spawn, within 1000 ms: counted as a crash; restarting in 0 ms
        35 spawn worker 2
        35 log INFO: worker 2 spawned (pid 1002)
        65 log INFO: worker 2 (pid 1002) started (online) in 30 ms
        70 log WARN: worker 2 (pid 1002) exited on purpose (exit code 0) 35 ms after its spawn, within 1000 ms: counted as a crash; restarting in 200 ms
        270 spawn worker 3
        270 log INFO: worker 3 spawned (pid 1003)
        300 log INFO: worker 3 (pid 1003) started (online) in 30 ms
        305 log WARN: worker 3 (pid 1003) exited on purpose (exit code 0) 35 ms after its spawn, within 1000 ms: counted as a crash; restarting in 400 ms
        next deadline 705
        ",
    );
}

#[test]
fn an_exit_on_purpose_counts_from_the_spawn_and_is_replaced_at_once_from_the_window_on() {
    // Worker 1 took 900 ms to start and exits at once: 999 ms after its
    // spawn, a crash. Worker 3 exits 1000 ms after its spawn: a recycle of
    // its own, replaced at once.
    check_logs(
        options(2),
        "
        0 up 2
        900 up 1
        999 exit-msg 1 code=0
        999 exited 1 code=0
        5999 tick
        6000 up 3
        6999 exit-msg 3 code=0
        6999 exited 3 code=0
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        900 log INFO: worker 1 (pid 1001) started (online) in 900 ms
        999 log WARN: worker 1 (pid 1001) exited on purpose (exit code 0) 999 ms after its spawn, within 1000 ms: counted as a crash; restarting in 5000 ms
        5999 spawn worker 3
        5999 log INFO: worker 3 spawned (pid 1003)
        6000 log INFO: worker 3 (pid 1003) started (online) in 1 ms
        6999 log INFO: worker 3 (pid 1003) exited on purpose (exit code 0); replacing it
        6999 spawn worker 4
        6999 log INFO: worker 4 spawned (pid 1004)
        next deadline 8999
        ",
    );
}

#[test]
fn an_old_worker_that_exits_on_purpose_while_its_replacement_starts_is_not_replaced_twice() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exit-msg 1 code=0
        1100 exited 1 code=0
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
        1100 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
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
fn an_old_worker_that_exits_on_purpose_before_its_turn_is_replaced_at_once_and_skipped() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 exit-msg 2 code=0
        1100 exited 2 code=0
        1200 up 3 4
        1300 exited 1
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
        1100 log INFO: worker 2 (pid 1002) exited on purpose (exit code 0); replacing it
        1100 spawn worker 4
        1100 log INFO: worker 4 spawned (pid 1004)
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 log INFO: worker 1 (pid 1001) disconnecting
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 log INFO: recycle complete: 1 workers replaced in 200 ms
        1200 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

// A closed channel.

#[test]
fn a_worker_that_closes_its_channel_and_stays_is_killed_after_the_grace() {
    check_logs(
        options(1),
        "
        0 up 1
        100 closed 1
        100 deadline
        1099 tick
        1100 tick
        1100 deadline
        1110 exited 1 signal=9
        6100 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 next deadline 1100
        1100 kill worker 1
        1100 log WARN: worker 1 (pid 1001) closed its channel but did not exit; restarting in 5000 ms
        1100 next deadline 6100
        1110 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        6100 spawn worker 2
        6100 log INFO: worker 2 spawned (pid 1002)
        next deadline 8100
        ",
    );
}

#[test]
fn a_closed_channel_then_a_prompt_exit_is_just_a_crash() {
    check_logs(
        options(1),
        "
        0 up 1
        100 closed 1
        150 exited 1 code=101
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        150 log WARN: worker 1 (pid 1001) exited unasked (exit code 101); restarting in 5000 ms
        next deadline 5150
        ",
    );
}

#[test]
fn a_closed_channel_of_a_retiring_worker_leaves_only_the_retire_deadline() {
    check(
        options(1),
        "
        0 up 1
        100 closed 1
        500 SIGTERM
        1100 tick
        1100 deadline
        15500 tick
        15510 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        500 close listeners
        500 send worker 1 Disconnect { grace: Some(15s) }
        1100 next deadline 15500
        15500 kill worker 1
        15510 exit 0
        next deadline none
        ",
    );
}

#[test]
fn an_exit_reported_after_a_deadline_passed_is_not_killed() {
    check_logs(
        options(2),
        "
        0 up 1
        2500 exited 2 code=1
        3000 SIGTERM
        18500 exited 1
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        2500 log WARN: worker 2 (pid 1002) exited unasked (exit code 1); restarting in 5000 ms
        3000 close listeners
        3000 log INFO: SIGTERM: shutting down 1 workers (grace 15000 ms)
        3000 log INFO: worker 1 (pid 1001) disconnecting
        3000 send worker 1 Disconnect { grace: Some(15s) }
        18500 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        18500 log INFO: shutdown complete: all workers exited
        18500 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_closed_channel_gives_the_worker_channel_close_grace_to_exit() {
    check(
        Options::default(),
        "
        0 up 1
        0 closed 1
        0 deadline
        999 tick
        1000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 next deadline 1000
        1000 kill worker 1
        next deadline 2000
        ",
    );
}

#[test]
fn a_worker_that_sigterm_made_exit_on_its_own_is_replaced_at_once_and_not_counted_as_a_crash() {
    // SIGTERM to worker 1 alone: srv-worker disconnects it and announces
    // `Exit { code: 0 }`; it drains, exits 0, and is replaced at once.
    // Worker 2 also announced exit code 0 on its SIGTERM, but a second
    // SIGTERM killed it: a crash, and the log says what was announced.
    check_logs(
        options(2),
        "
        0 up 1 2
        5000 exit-msg 1 code=0
        5000 exit-msg 2 code=0
        5400 exited 1 code=0
        5400 exited 2 signal=15
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        5400 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        5400 spawn worker 3
        5400 log INFO: worker 3 spawned (pid 1003)
        5400 log WARN: worker 2 (pid 1002) exited (signal 15) after announcing exit code 0; restarting in 5000 ms
        next deadline 7400
        ",
    );
}
