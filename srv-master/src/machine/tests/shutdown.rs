//! Shutdown: `SIGTERM` or `SIGINT` disconnects every worker with
//! `shutdown.timeout`, a second one kills them, and the master exits after
//! the last.

use std::time::Duration;

use super::shell::{check, check_logs, options};
use crate::options::Options;

#[test]
fn shutdown_disconnects_every_worker_and_exits_after_the_last() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGTERM
        1000 deadline
        1100 exited 1
        1200 exited 3
        1300 exited 2
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
        1000 close listeners
        1000 log INFO: SIGTERM: shutting down 3 workers (grace 15000 ms)
        1000 log INFO: worker 1 (pid 1001) disconnecting
        1000 send worker 1 Disconnect { grace: Some(15s) }
        1000 log INFO: worker 2 (pid 1002) disconnecting
        1000 send worker 2 Disconnect { grace: Some(15s) }
        1000 log INFO: worker 3 (pid 1003) disconnecting
        1000 send worker 3 Disconnect { grace: Some(15s) }
        1000 next deadline 16000
        1100 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 3 (pid 1003) exited (exit code 0) as asked
        1300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1300 log INFO: shutdown complete: all workers exited
        1300 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_kills_a_worker_that_ignores_disconnect_at_the_timeout() {
    check(
        options(2),
        "
        0 up 1 2
        1000 SIGTERM
        1100 exited 1
        15999 tick
        16000 tick
        16010 exited 2 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 close listeners
        1000 send worker 1 Disconnect { grace: Some(15s) }
        1000 send worker 2 Disconnect { grace: Some(15s) }
        16000 kill worker 2
        16010 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_cuts_the_grace_of_a_worker_already_retiring_to_the_shutdown_timeout() {
    // Recycled workers retire with recycle.timeout (20 s); a SIGTERM then
    // gives them no more than shutdown.timeout (1 s) from the signal, and
    // tells them so (they said `Hello` with a version that knows the grace).
    let mut longer = options(2);
    longer.recycle.timeout = Duration::from_millis(20_000);
    longer.shutdown.timeout = Duration::from_millis(1000);
    check(
        longer,
        "
        0 up 1 2
        1000 SIGHUP
        1000 up 3 4
        2000 SIGTERM
        2000 deadline
        2100 exited 1 3 4
        2999 tick
        3000 tick
        3010 exited 2 signal=9
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 send worker 1 Disconnect { grace: Some(20s) }
        1000 spawn worker 4
        1000 send worker 2 Disconnect { grace: Some(20s) }
        2000 close listeners
        2000 send worker 1 Disconnect { grace: Some(1s) }
        2000 send worker 2 Disconnect { grace: Some(1s) }
        2000 send worker 3 Disconnect { grace: Some(1s) }
        2000 send worker 4 Disconnect { grace: Some(1s) }
        2000 next deadline 3000
        3000 kill worker 2
        3010 exit 0
        next deadline none
        ",
    );
    // A grace that ends before the shutdown's is kept, not extended.
    let shorter = {
        let mut options = options(1);
        options.recycle.timeout = Duration::from_millis(1500);
        options.shutdown.timeout = Duration::from_millis(15_000);
        options
    };
    check(
        shorter,
        "
        0 up 1
        1000 SIGHUP
        1000 up 2
        2000 SIGTERM
        2000 deadline
        2000 exited 2
        2500 tick
        2510 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        1000 spawn worker 2
        1000 send worker 1 Disconnect { grace: Some(1.5s) }
        2000 close listeners
        2000 send worker 2 Disconnect { grace: Some(15s) }
        2000 next deadline 2500
        2500 kill worker 1
        2510 exit 0
        next deadline none
        ",
    );
}

#[test]
fn each_worker_gets_the_disconnect_of_its_protocol_version() {
    // Workers 1 and 4 speak protocol 1 (built before the grace travelled):
    // their `Disconnect` has no grace, the form their decoder knows, and a
    // shutdown that cuts their grace does not tell them again. Workers 2
    // and 3 speak the current version and are told each grace.
    let mut options = options(2);
    options.recycle.timeout = Duration::from_millis(20_000);
    options.shutdown.timeout = Duration::from_millis(1000);
    check(
        options,
        "
        0 hello 1 version=1
        0 online 1
        0 up 2
        1000 SIGHUP
        1000 up 3
        1000 hello 4 version=1
        1000 online 4
        2000 SIGTERM
        2100 exited 1 2 3 4
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        1000 spawn worker 3
        1000 send worker 1 Disconnect { grace: None }
        1000 spawn worker 4
        1000 send worker 2 Disconnect { grace: Some(20s) }
        2000 close listeners
        2000 send worker 2 Disconnect { grace: Some(1s) }
        2000 send worker 3 Disconnect { grace: Some(1s) }
        2000 send worker 4 Disconnect { grace: None }
        2100 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_second_sigterm_or_sigint_kills_every_worker_at_once() {
    for second in ["SIGTERM", "SIGINT"] {
        check_logs(
            options(2),
            &format!(
                "
                0 up 1 2
                1000 SIGINT
                2000 {second}
                2010 exited 1 signal=9
                2020 exited 2 signal=9
                "
            ),
            &format!(
                "
                0 spawn worker 1
                0 spawn worker 2
                0 log INFO: worker 1 spawned (pid 1001)
                0 log INFO: worker 2 spawned (pid 1002)
                0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
                0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
                1000 close listeners
                1000 log INFO: SIGINT: shutting down 2 workers (grace 15000 ms)
                1000 log INFO: worker 1 (pid 1001) disconnecting
                1000 send worker 1 Disconnect {{ grace: Some(15s) }}
                1000 log INFO: worker 2 (pid 1002) disconnecting
                1000 send worker 2 Disconnect {{ grace: Some(15s) }}
                2000 log WARN: {second} again: forcing shutdown, killing 2 workers
                2000 kill worker 1
                2000 kill worker 2
                2010 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
                2020 log INFO: worker 2 (pid 1002) exited (signal 9) after being killed
                2020 log INFO: forced shutdown complete: all workers exited
                2020 exit 0
                next deadline none
                "
            ),
        );
    }
}

#[test]
fn nothing_is_restarted_during_shutdown() {
    check(
        options(3),
        "
        0 up 1 2 3
        100 exited 1 signal=11
        100 deadline
        200 SIGTERM
        200 deadline
        300 exited 2 signal=11
        5100 tick
        15200 tick
        15210 exited 3 signal=9
        20000 tick
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        100 next deadline 5100
        200 close listeners
        200 send worker 2 Disconnect { grace: Some(15s) }
        200 send worker 3 Disconnect { grace: Some(15s) }
        200 next deadline 15200
        15200 kill worker 3
        15210 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_with_no_live_worker_exits_at_once() {
    check(
        options(1),
        "
        0 up 1
        100 exited 1 signal=11
        200 SIGTERM
        ",
        "
        0 spawn worker 1
        200 close listeners
        200 exit 0
        next deadline none
        ",
    );
}

#[test]
fn signals_during_shutdown_are_ignored() {
    check_logs(
        options(1),
        "
        0 up 1
        100 SIGTERM
        200 SIGHUP
        200 SIGTTIN
        200 SIGTTOU
        300 exited 1
        400 SIGTERM
        400 SIGHUP
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        100 close listeners
        100 log INFO: SIGTERM: shutting down 1 workers (grace 15000 ms)
        100 log INFO: worker 1 (pid 1001) disconnecting
        100 send worker 1 Disconnect { grace: Some(15s) }
        200 log INFO: SIGHUP ignored: shutting down
        200 log INFO: SIGTTIN ignored: shutting down
        200 log INFO: SIGTTOU ignored: shutting down
        300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        300 log INFO: shutdown complete: all workers exited
        300 exit 0
        next deadline none
        ",
    );
}

#[test]
fn a_whole_life_from_start_to_shutdown() {
    check(
        options(1),
        "
        0 up 1
        0 SIGTERM
        0 exited 1
        ",
        "
        0 spawn worker 1
        0 close listeners
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 exit 0
        next deadline none
        ",
    );
}

#[test]
fn shutdown_retires_every_started_worker() {
    check(
        Options::default(),
        "
        0 up 1 2
        0 state
        0 SIGTERM
        0 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=2 target=4 workers=4 ready=false recycling=false failure=None
        0 close listeners
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 send worker 2 Disconnect { grace: Some(15s) }
        0 send worker 3 Disconnect { grace: None }
        0 send worker 4 Disconnect { grace: None }
        0 state phase=Stopping started=0 target=4 workers=4 ready=false recycling=false failure=None
        next deadline 15000
        ",
    );
}

#[test]
fn the_log_says_how_each_worker_ended_not_only_that_it_was_asked() {
    // SIGTERM to the whole process group: the master shuts down, and its
    // workers got the signal too. Worker 1 drained and exited 0 (srv-worker
    // makes SIGTERM a disconnect); worker 2 kept the default action and died
    // of it; worker 3 exited with an error; worker 4, killed at the grace,
    // had exited on its own just before the SIGKILL landed.
    let mut options = options(4);
    options.shutdown.timeout = Duration::from_millis(1000);
    check_logs(
        options,
        "
        0 up 1 2 3 4
        100 SIGTERM
        110 exited 2 signal=15
        200 exited 1
        300 exited 3 code=1
        1100 tick
        1110 exited 4 code=0
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
        100 close listeners
        100 log INFO: SIGTERM: shutting down 4 workers (grace 1000 ms)
        100 log INFO: worker 1 (pid 1001) disconnecting
        100 send worker 1 Disconnect { grace: Some(1s) }
        100 log INFO: worker 2 (pid 1002) disconnecting
        100 send worker 2 Disconnect { grace: Some(1s) }
        100 log INFO: worker 3 (pid 1003) disconnecting
        100 send worker 3 Disconnect { grace: Some(1s) }
        100 log INFO: worker 4 (pid 1004) disconnecting
        100 send worker 4 Disconnect { grace: Some(1s) }
        110 log WARN: worker 2 (pid 1002) was killed by signal 15 (SIGTERM) while draining
        200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        300 log WARN: worker 3 (pid 1003) exited (exit code 1) after disconnect, with an error
        1100 log WARN: worker 4 (pid 1004) did not exit in time after disconnect; killing it
        1100 kill worker 4
        1110 log INFO: worker 4 (pid 1004) exited (exit code 0) as it was being killed
        1110 log INFO: shutdown complete: all workers exited
        1110 exit 0
        next deadline none
        ",
    );
}
