//! Planned recycles (`worker.max_rss`, `worker.max_age`): replacement
//! first, then the old worker drains; and how they meet a `SIGHUP`, an
//! upgrade, `SIGTTOU`, a shutdown and a replacement that fails to start.

use std::time::Duration;

use super::shell::{check, check_logs, options};
use crate::options::Options;

/// `count` workers, at most 100 MiB each, restarted after 100 ms.
fn memory(count: usize) -> Options {
    let mut options = options(count);
    options.worker.max_rss = Some(100);
    options.restart.delay = Duration::from_millis(100);
    options
}

/// `count` workers, each replaced after about 10 s.
fn aged(count: usize) -> Options {
    let mut options = options(count);
    options.worker.max_age = Some(Duration::from_millis(10_000));
    options.restart.delay = Duration::from_millis(100);
    options
}

#[test]
fn a_worker_over_max_rss_is_replaced_first_and_then_drains_with_the_figure_logged() {
    check_logs(
        memory(2),
        "
        0 up 1 2
        500 rss 2 mb=150
        1000 tick
        1200 up 3
        1300 exited 2 code=0
        2000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 sample rss worker 1
        1000 sample rss worker 2
        1000 log WARN: worker 2 (pid 1002) uses 150.0 MiB, over worker.max_rss (100 MiB), 1000 ms after its start: recycling it
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1200 log INFO: worker 3 (pid 1003) started (online) in 200 ms
        1200 log INFO: worker 2 (pid 1002) disconnecting
        1200 send worker 2 Disconnect { grace: Some(15s) }
        1300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        2000 sample rss worker 1
        2000 sample rss worker 3
        next deadline 3000
        ",
    );
}

#[test]
fn memory_replacements_run_up_to_recycle_parallel_at_once() {
    let mut options = memory(3);
    options.recycle.parallel = 2;
    check(
        options,
        "
        0 up 1 2 3
        10 rss 1 2 3 mb=101
        1000 tick
        1100 up 4
        1200 up 5
        1200 exited 1 2 code=0
        2000 tick
        2100 up 6
        2200 exited 3 code=0
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 sample rss worker 1
        1000 sample rss worker 2
        1000 sample rss worker 3
        1000 spawn worker 4
        1000 spawn worker 5
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 6
        1200 send worker 2 Disconnect { grace: Some(15s) }
        2000 sample rss worker 4
        2000 sample rss worker 5
        2100 send worker 3 Disconnect { grace: Some(15s) }
        next deadline 3000
        ",
    );
}

#[test]
fn a_worker_under_max_rss_is_sampled_each_second_and_kept() {
    check(
        memory(1),
        "
        0 hello 1
        500 online 1
        500 rss 1 mb=100
        1000 tick
        1000 deadline
        1999 tick
        2000 tick
        ",
        "
        0 spawn worker 1
        1000 sample rss worker 1
        1000 next deadline 2000
        2000 sample rss worker 1
        next deadline 3000
        ",
    );
}

#[test]
fn aged_workers_are_replaced_one_at_a_time_each_at_its_own_jittered_age() {
    check_logs(
        aged(3),
        "
        0 up 1 2 3
        0 deadline
        20000 tick
        20000 up 4
        20010 exited 1 code=0
        20010 deadline
        20020 up 5
        20030 exited 3 code=0
        20030 deadline
        20040 up 6
        20050 exited 2 code=0
        20050 deadline
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
        0 next deadline 9470
        20000 log INFO: worker 1 (pid 1001) is 20000 ms old, over worker.max_age (10000 ms, 9470 ms for it with its jitter): recycling it
        20000 spawn worker 4
        20000 log INFO: worker 4 spawned (pid 1004)
        20000 log INFO: worker 4 (pid 1004) started (online) in 0 ms
        20000 log INFO: worker 1 (pid 1001) disconnecting
        20000 send worker 1 Disconnect { grace: Some(15s) }
        20000 log INFO: worker 3 (pid 1003) is 20000 ms old, over worker.max_age (10000 ms, 9720 ms for it with its jitter): recycling it
        20000 spawn worker 5
        20000 log INFO: worker 5 spawned (pid 1005)
        20010 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        20010 next deadline 22000
        20020 log INFO: worker 5 (pid 1005) started (online) in 20 ms
        20020 log INFO: worker 3 (pid 1003) disconnecting
        20020 send worker 3 Disconnect { grace: Some(15s) }
        20020 log INFO: worker 2 (pid 1002) is 20020 ms old, over worker.max_age (10000 ms, 10210 ms for it with its jitter): recycling it
        20020 spawn worker 6
        20020 log INFO: worker 6 spawned (pid 1006)
        20030 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        20030 next deadline 22020
        20040 log INFO: worker 6 (pid 1006) started (online) in 20 ms
        20040 log INFO: worker 2 (pid 1002) disconnecting
        20040 send worker 2 Disconnect { grace: Some(15s) }
        20050 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        20050 next deadline 29790
        next deadline 29790
        ",
    );
}

#[test]
fn a_sighup_supersedes_a_planned_replacement_and_replaces_every_worker() {
    check(
        memory(2),
        "
        0 up 1 2
        10 rss 1 mb=500
        1000 tick
        1010 SIGHUP
        1020 exited 3 code=0
        1030 up 4
        1040 exited 1 code=0
        1050 up 5
        1060 exited 2 code=0
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 sample rss worker 1
        1000 sample rss worker 2
        1000 spawn worker 3
        1010 send worker 3 Disconnect { grace: None }
        1010 spawn worker 4
        1030 send worker 1 Disconnect { grace: Some(15s) }
        1030 spawn worker 5
        1050 send worker 2 Disconnect { grace: Some(15s) }
        next deadline 2000
        ",
    );
}

#[test]
fn a_shutdown_stops_planned_replacements_and_disconnects_every_worker() {
    check_logs(
        memory(1),
        "
        0 up 1
        10 rss 1 mb=500
        1000 tick
        1010 SIGTERM
        1020 exited 1 2 code=0
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 sample rss worker 1
        1000 log WARN: worker 1 (pid 1001) uses 500.0 MiB, over worker.max_rss (100 MiB), 1000 ms after its start: recycling it
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1010 close listeners
        1010 log INFO: planned recycle stopped by SIGTERM with 1 replacements starting
        1010 log INFO: SIGTERM: shutting down 2 workers (grace 15000 ms)
        1010 log INFO: worker 1 (pid 1001) disconnecting
        1010 send worker 1 Disconnect { grace: Some(15s) }
        1010 log INFO: worker 2 (pid 1002) disconnecting
        1010 send worker 2 Disconnect { grace: None }
        1020 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1020 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1020 log INFO: shutdown complete: all workers exited
        1020 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_replacement_that_fails_leaves_the_old_worker_serving_and_pauses_with_the_backoff() {
    let mut options = memory(1);
    options.restart.delay = Duration::from_millis(1000);
    options.restart.max_delay = Duration::from_millis(4000);
    check_logs(
        options,
        "
        0 up 1
        10 rss 1 mb=500
        1000 tick
        1100 exited 2 code=3
        1100 deadline
        2100 tick
        2200 exited 3 code=3
        2200 deadline
        4200 tick
        4300 up 4
        4400 exited 1 code=0
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 sample rss worker 1
        1000 log WARN: worker 1 (pid 1001) uses 500.0 MiB, over worker.max_rss (100 MiB), 1000 ms after its start: recycling it
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1100 log ERROR: planned recycle paused: replacement worker 2 (pid 1002) exited unasked (exit code 3); worker 1 (pid 1001) serves on; planned recycles resume in 1000 ms
        1100 next deadline 2000
        2100 spawn worker 3
        2100 log INFO: worker 3 spawned (pid 1003)
        2200 log ERROR: planned recycle paused: replacement worker 3 (pid 1003) exited unasked (exit code 3); worker 1 (pid 1001) serves on; planned recycles resume in 2000 ms
        2200 next deadline 3100
        4200 spawn worker 4
        4200 log INFO: worker 4 spawned (pid 1004)
        4300 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        4300 log INFO: worker 1 (pid 1001) disconnecting
        4300 send worker 1 Disconnect { grace: Some(15s) }
        4400 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        next deadline 5200
        ",
    );
}

#[test]
fn an_old_worker_that_dies_while_its_replacement_starts_is_replaced_by_it() {
    check_logs(
        memory(1),
        "
        0 up 1
        10 rss 1 mb=500
        1000 tick
        1100 exited 1 signal=11
        1200 up 2
        1200 deadline
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 sample rss worker 1
        1000 log WARN: worker 1 (pid 1001) uses 500.0 MiB, over worker.max_rss (100 MiB), 1000 ms after its start: recycling it
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1100 log WARN: worker 1 (pid 1001) exited unasked (signal 11); its replacement is already starting
        1200 log INFO: worker 2 (pid 1002) started (online) in 200 ms
        1200 next deadline 2000
        next deadline 2000
        ",
    );
}

#[test]
fn sigttou_during_a_planned_replacement_removes_another_worker() {
    check(
        memory(2),
        "
        0 up 1 2
        10 rss 1 mb=500
        1000 tick
        1010 SIGTTOU
        1020 exited 2 code=0
        1030 up 3
        1040 exited 1 code=0
        1040 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 sample rss worker 1
        1000 sample rss worker 2
        1000 spawn worker 3
        1010 send worker 2 Disconnect { grace: Some(15s) }
        1030 send worker 1 Disconnect { grace: Some(15s) }
        1040 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        next deadline 2000
        ",
    );
}

#[test]
fn planned_replacements_wait_for_an_upgrade_and_its_recycle() {
    check(
        aged(1),
        "
        0 up 1
        8000 SIGUSR2
        9500 tick
        12000 probe-exited
        12000 up 2
        12010 exited 1 code=0
        12010 deadline
        ",
        "
        0 spawn worker 1
        8000 probe
        12000 exec
        12000 spawn worker 2
        12000 send worker 1 Disconnect { grace: Some(15s) }
        12010 next deadline 22210
        next deadline 22210
        ",
    );
}

#[test]
fn an_old_worker_that_hangs_while_its_replacement_starts_is_replaced_by_it() {
    let mut options = memory(1);
    options.worker.watchdog = Some(Duration::from_millis(1000));
    check_logs(
        options,
        "
        0 up 1
        10 rss 1 mb=500
        900 alive 1
        1000 tick
        1900 tick
        2000 up 2
        2000 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 sample rss worker 1
        1000 log WARN: worker 1 (pid 1001) uses 500.0 MiB, over worker.max_rss (100 MiB), 1000 ms after its start: recycling it
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1900 kill worker 1
        1900 log WARN: worker 1 (pid 1001) hung: silent for 1000 ms (worker.watchdog = 1000 ms); its replacement is already starting
        2000 log INFO: worker 2 (pid 1002) started (online) in 1000 ms
        2000 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        next deadline 3000
        ",
    );
}

#[test]
fn an_aged_and_a_memory_replacement_run_side_by_side_within_recycle_parallel() {
    let mut options = aged(3);
    options.worker.max_rss = Some(100);
    options.recycle.parallel = 2;
    check(
        options,
        "
        0 up 1 2 3
        9000 rss 3 mb=500
        9500 tick
        10000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        9500 spawn worker 4
        9500 sample rss worker 2
        9500 sample rss worker 3
        9500 spawn worker 5
        next deadline 10500
        ",
    );
}
