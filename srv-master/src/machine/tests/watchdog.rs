//! The watchdog (`worker.watchdog`): a started worker silent for a period
//! is killed as hung and replaced with the crash backoff; who is watched,
//! and with which period, across an upgrade.

use std::time::Duration;

use super::shell::{check, check_logs, options};
use crate::options::Options;

/// `count` workers watched every second, restarted after 100 ms.
fn watched(count: usize) -> Options {
    let mut options = options(count);
    options.worker.watchdog = Some(Duration::from_millis(1000));
    options.restart.delay = Duration::from_millis(100);
    options
}

#[test]
fn a_started_worker_silent_for_a_period_is_killed_as_hung_and_replaced_like_a_crash() {
    check_logs(
        watched(2),
        "
        0 up 1 2
        500 alive 1
        500 deadline
        999 tick
        1000 tick
        1010 exited 2 signal=9
        1100 tick
        1100 up 3
        1500 tick
        1500 exited 1 signal=9
        1600 tick
        1600 up 4
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        500 next deadline 1000
        1000 kill worker 2
        1000 log WARN: worker 2 (pid 1002) hung: silent for 1000 ms (worker.watchdog = 1000 ms) and never sent a heartbeat (its serving loop must call Worker::alive); restarting in 100 ms
        1010 log INFO: worker 2 (pid 1002) exited (signal 9) after being killed
        1100 spawn worker 3
        1100 log INFO: worker 3 spawned (pid 1003)
        1100 log INFO: worker 3 (pid 1003) started (online) in 0 ms
        1500 kill worker 1
        1500 log WARN: worker 1 (pid 1001) hung: silent for 1000 ms (worker.watchdog = 1000 ms); restarting in 100 ms
        1500 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        1600 spawn worker 4
        1600 log INFO: worker 4 spawned (pid 1004)
        1600 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        next deadline 2100
        ",
    );
}

#[test]
fn heartbeats_keep_a_worker_and_the_period_counts_from_its_start_then_from_each() {
    check(
        watched(1),
        "
        0 hello 1
        1500 online 1
        1500 deadline
        2400 alive 1
        2400 deadline
        3300 alive 1
        4299 tick
        4299 deadline
        ",
        "
        0 spawn worker 1
        1500 next deadline 2500
        2400 next deadline 3400
        4299 next deadline 4300
        next deadline 4300
        ",
    );
}

#[test]
fn hung_workers_back_off_like_crashes() {
    let mut options = watched(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check(
        options,
        "
        0 up 1
        1000 tick
        1000 exited 1 signal=9
        2000 tick
        2000 up 2
        3000 tick
        3000 exited 2 signal=9
        3000 deadline
        ",
        "
        0 spawn worker 1
        1000 kill worker 1
        2000 spawn worker 2
        3000 kill worker 2
        3000 next deadline 5000
        next deadline 5000
        ",
    );
}

#[test]
fn only_started_workers_of_protocol_2_are_watched() {
    // Worker 1 speaks protocol 1 and cannot send a heartbeat; worker 2 is
    // starting, under worker.timeout.
    let mut options = watched(2);
    options.worker.timeout = Duration::from_millis(5000);
    check_logs(
        options,
        "
        0 hello 1 version=1
        0 online 1
        0 hello 2
        0 deadline
        4999 tick
        5000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 next deadline 5000
        5000 kill worker 2
        5000 log WARN: worker 2 (pid 1002) did not report online within 5000 ms; restarting in 100 ms
        next deadline 5100
        ",
    );
}

#[test]
fn a_retiring_worker_is_under_its_grace_not_the_watchdog() {
    check(
        watched(2),
        "
        0 hello 1 version=1
        0 online 1
        0 up 2
        500 SIGTTOU
        500 deadline
        15499 tick
        15500 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        500 send worker 2 Disconnect { grace: Some(15s) }
        500 next deadline 15500
        15500 kill worker 2
        next deadline none
        ",
    );
}

#[test]
fn alive_from_a_worker_of_protocol_1_breaks_the_protocol() {
    check_logs(
        watched(1),
        "
        0 hello 1 version=1
        0 online 1
        100 alive 1
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 kill worker 1
        100 log WARN: worker 1 (pid 1001) broke the protocol: sent Alive, which its protocol version 1 does not have; restarting in 100 ms
        next deadline 200
        ",
    );
}

#[test]
fn without_a_watchdog_nobody_is_watched_and_alive_is_harmless() {
    check(
        options(1),
        "
        0 up 1
        100 alive 1
        100 deadline
        100000 tick
        ",
        "
        0 spawn worker 1
        100 next deadline none
        next deadline none
        ",
    );
}

#[test]
fn a_hung_worker_of_a_recycle_is_replaced_by_its_replacement() {
    check_logs(
        watched(1),
        "
        0 up 1
        900 alive 1
        1000 SIGHUP
        1900 tick
        1900 up 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 1 workers
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1900 kill worker 1
        1900 log WARN: worker 1 (pid 1001) hung: silent for 1000 ms (worker.watchdog = 1000 ms); its replacement is already starting
        1900 log INFO: worker 2 (pid 1002) started (online) in 900 ms
        1900 log INFO: recycle complete: 1 workers replaced in 900 ms
        next deadline 2900
        ",
    );
}

#[test]
fn each_worker_is_watched_with_the_period_it_was_told_across_an_upgrade() {
    // The old master watches every second; the new one does not watch.
    // Worker 1, adopted, still sends its heartbeats and is still watched:
    // when it hangs, its replacement takes its place. Worker 3, spawned by
    // the new master, was told no period and is never watched.
    check_logs(
        watched(1),
        "
        0 up 1
        800 alive 1
        900 SIGUSR2
        900 new-watchdog 0
        950 probe-exited
        1799 tick
        1800 tick
        1900 up 2
        9000 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        900 log INFO: SIGUSR2: upgrading the master in place
        900 probe
        900 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        950 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        950 exec
        950 log INFO: upgrade: adopted 1 workers from the previous master; recycling the 1 that serve or start, which run the old program
        950 spawn worker 2
        950 log INFO: worker 2 spawned (pid 1002)
        1800 kill worker 1
        1800 log WARN: worker 1 (pid 1001) hung: silent for 1000 ms (worker.watchdog = 1000 ms); its replacement is already starting
        1900 log INFO: worker 2 (pid 1002) started (online) in 950 ms
        1900 log INFO: recycle complete: 1 workers replaced in 950 ms
        1900 log INFO: upgrade complete in 1000 ms: the master and its 1 workers run the new program
        next deadline none
        ",
    );
}

#[test]
fn a_worker_told_no_period_is_not_watched_by_the_master_an_upgrade_starts_with_one() {
    // The old master did not watch; the new one does. Worker 1 sends no
    // heartbeat, as it was told, and is never killed as hung; worker 2,
    // spawned by the new master, is watched.
    check(
        options(1),
        "
        0 up 1
        900 SIGUSR2
        900 new-watchdog 1000
        950 probe-exited
        1000 hello 2
        1000 deadline
        2900 online 2
        2900 deadline
        ",
        "
        0 spawn worker 1
        900 probe
        950 exec
        950 spawn worker 2
        1000 next deadline 2950
        2900 send worker 1 Disconnect { grace: Some(15s) }
        2900 next deadline 3900
        next deadline 3900
        ",
    );
}

#[test]
fn a_stall_of_the_master_is_not_counted_against_its_workers() {
    // The master meant to wake up at 1000 (worker 2's deadline) but ran
    // again only at 5000: the whole process group was stopped (Ctrl+Z,
    // docker pause), its workers with it. Each worker keeps what was left
    // of its period at 500, the master's last event: worker 1 proves alive
    // in time, worker 2 does not and is killed one period after its last
    // sign, the stall not counted.
    check_logs(
        watched(2),
        "
        0 up 1 2
        500 alive 1
        5000 tick
        5000 deadline
        5400 alive 1
        5499 tick
        5500 tick
        5500 deadline
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        5000 log WARN: the master did not run for 4500 ms (4000 ms past its deadline: stopped, frozen or starved); the watchdog does not count it against the workers it watches (2)
        5000 next deadline 5500
        5500 kill worker 2
        5500 log WARN: worker 2 (pid 1002) hung: silent for 1000 ms (worker.watchdog = 1000 ms) and never sent a heartbeat (its serving loop must call Worker::alive); restarting in 100 ms
        5500 next deadline 5600
        next deadline 5600
        ",
    );
}

#[test]
fn a_master_late_by_less_than_a_stall_kills_a_silent_worker_at_once() {
    // Late by 250 ms (`STALL`) at most, the master is busy, not stalled:
    // the worker silent since its start is hung.
    check(
        watched(1),
        "
        0 up 1
        1250 tick
        ",
        "
        0 spawn worker 1
        1250 kill worker 1
        next deadline 1350
        ",
    );
}

#[test]
fn a_worker_that_announced_its_exit_drains_unwatched() {
    // Worker 1 got SIGTERM alone: srv-worker disconnected it, said it
    // will exit 0, and sends no more heartbeats while it finishes its
    // requests, three periods here. It is not taken for hung, and once it
    // exits it is replaced without counting a crash.
    check_logs(
        watched(1),
        "
        0 up 1
        500 alive 1
        600 exit-msg 1 code=0
        600 deadline
        1500 tick
        2500 tick
        3600 exited 1 code=0
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        600 next deadline none
        3600 log INFO: worker 1 (pid 1001) exited on purpose (exit code 0); replacing it
        3600 spawn worker 2
        3600 log INFO: worker 2 spawned (pid 1002)
        next deadline 5600
        ",
    );
}

#[test]
fn hangs_are_judged_at_a_tick_once_the_reports_of_the_turn_are_handled() {
    // The shell reads the heartbeat at 1200, past the deadline at 1000
    // (the master was late, though by less than a stall), and hands it
    // over at its true time: it counts, and the turn's tick finds the
    // worker alive. A report is never judged late against the watchdog:
    // only the tick at the end of the turn judges hangs.
    check(
        watched(1),
        "
        0 up 1
        1200 alive 1
        1200 tick
        1200 deadline
        ",
        "
        0 spawn worker 1
        1200 next deadline 2200
        next deadline 2200
        ",
    );
}
