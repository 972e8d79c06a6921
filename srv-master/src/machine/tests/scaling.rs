//! Scaling: `SIGTTIN` adds a worker, `SIGTTOU` removes one.

use std::time::Duration;

use super::shell::{check, check_logs, options};
use crate::options::Options;

#[test]
fn sigttin_spawns_one_more_worker() {
    check_logs(
        options(1),
        "
        0 up 1
        100 SIGTTIN
        200 up 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 log INFO: SIGTTIN: workers 1 -> 2
        100 spawn worker 2
        100 log INFO: worker 2 spawned (pid 1002)
        200 log INFO: worker 2 (pid 1002) started (online) in 100 ms
        next deadline none
        ",
    );
}

#[test]
fn sigttou_drops_a_pending_restart_then_a_starting_worker_then_the_newest() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        100 exited 3 signal=11
        200 SIGTTOU
        300 SIGTTIN
        400 SIGTTOU
        500 SIGTTOU
        600 SIGTTOU
        700 exited 4 2
        5100 tick
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
        100 log WARN: worker 3 (pid 1003) exited unasked (signal 11); restarting in 5000 ms
        200 log INFO: SIGTTOU: workers 3 -> 2
        300 log INFO: SIGTTIN: workers 2 -> 3
        300 spawn worker 4
        300 log INFO: worker 4 spawned (pid 1004)
        400 log INFO: SIGTTOU: workers 3 -> 2
        400 log INFO: worker 4 (pid 1004) disconnecting
        400 send worker 4 Disconnect { grace: None }
        500 log INFO: SIGTTOU: workers 2 -> 1
        500 log INFO: worker 2 (pid 1002) disconnecting
        500 send worker 2 Disconnect { grace: Some(15s) }
        600 log WARN: SIGTTOU ignored: already at 1 worker
        700 log INFO: worker 4 (pid 1004) exited (exit code 0) as asked
        700 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        next deadline none
        ",
    );
}

#[test]
fn a_worker_removed_by_sigttou_whose_spawn_then_fails_is_not_restarted() {
    let mut options = options(2);
    options.restart.delay = Duration::from_millis(1000);
    check_logs(
        options,
        "
        0 up 1 2
        100 exited 2 signal=11
        1100 spawn-fails
        1100 SIGTTOU
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        100 log WARN: worker 2 (pid 1002) exited unasked (signal 11); restarting in 1000 ms
        1100 spawn worker 3
        1100 log INFO: SIGTTOU: workers 2 -> 1
        1100 log INFO: worker 3 disconnecting
        1100 send worker 3 Disconnect { grace: None }
        1100 log WARN: worker 3 could not be spawned: cannot spawn /srv/app: No such file or directory
        next deadline none
        ",
    );
}

#[test]
fn sigttou_during_a_recycle_retires_an_old_worker_still_queued() {
    check(
        options(3),
        "
        0 up 1 2 3
        1000 SIGHUP
        1100 SIGTTOU
        1200 up 4
        1300 up 5
        1400 exited 1 2 3
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        1000 spawn worker 4
        1100 send worker 3 Disconnect { grace: Some(15s) }
        1200 send worker 1 Disconnect { grace: Some(15s) }
        1200 spawn worker 5
        1300 send worker 2 Disconnect { grace: Some(15s) }
        next deadline none
        ",
    );
}

#[test]
fn sigttin_raises_the_target_and_spawns() {
    check_logs(
        Options::default(),
        "
        0 SIGTTIN
        0 state
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
        0 log INFO: SIGTTIN: workers 4 -> 5
        0 spawn worker 5
        0 log INFO: worker 5 spawned (pid 1005)
        0 state phase=Starting started=0 target=5 workers=5 ready=false recycling=false failure=None
        next deadline 2000
        ",
    );
}

#[test]
fn sigttou_lowers_the_target_and_retires_a_worker() {
    check(
        Options::default(),
        "
        0 state
        0 SIGTTOU
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=0 target=4 workers=4 ready=false recycling=false failure=None
        0 send worker 4 Disconnect { grace: None }
        0 state phase=Starting started=0 target=3 workers=4 ready=false recycling=false failure=None
        next deadline 2000
        ",
    );
}
