//! What a worker says: `Hello` first, once, with the master's protocol
//! version (or it is refused, with `REFUSED_GRACE` to exit), and no more
//! than `MAX_MESSAGES_PER_WINDOW` messages within a `FLOOD_WINDOW`.

use super::shell::{check, check_logs, options};
use crate::options::Options;

#[test]
fn a_message_before_hello_fails_the_worker() {
    check_logs(
        options(1),
        "
        10 online 1
        20 exited 1 signal=9
        5009 tick
        5010 tick
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 kill worker 1
        10 log WARN: worker 1 (pid 1001) sent Online before Hello; restarting in 5000 ms
        20 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        5010 spawn worker 2
        5010 log INFO: worker 2 spawned (pid 1002)
        next deadline 7010
        ",
    );
}

#[test]
fn a_hello_with_another_protocol_version_is_refused_and_may_exit_by_itself() {
    // What a refused worker sends meanwhile is ignored: a srv-worker sends
    // its first requests right after `Hello`, and a newer one may send
    // messages this master cannot decode.
    check_logs(
        options(1),
        "
        10 hello 1 version=3
        10 deadline
        11 listen-request 1
        12 garbage 1
        500 exited 1 code=1
        5010 tick
        ",
        r#"
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 3, master speaks 1 to 2" }
        10 log WARN: worker 1 (pid 1001) protocol version mismatch: worker speaks 3, master speaks 1 to 2; restarting in 5000 ms
        10 next deadline 1010
        500 log INFO: worker 1 (pid 1001) exited (exit code 1) after being refused
        5010 spawn worker 2
        5010 log INFO: worker 2 spawned (pid 1002)
        next deadline 7010
        "#,
    );
}

#[test]
fn a_refused_worker_that_does_not_exit_is_killed_after_the_grace() {
    check_logs(
        options(1),
        "
        10 hello 1 version=3
        1009 tick
        1010 tick
        1020 exited 1 signal=9
        ",
        r#"
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        10 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 3, master speaks 1 to 2" }
        10 log WARN: worker 1 (pid 1001) protocol version mismatch: worker speaks 3, master speaks 1 to 2; restarting in 5000 ms
        1010 log WARN: worker 1 (pid 1001) did not exit in time after being refused; killing it
        1010 kill worker 1
        1020 log INFO: worker 1 (pid 1001) exited (signal 9) after being killed
        next deadline 5010
        "#,
    );
}

#[test]
fn a_refusal_during_shutdown_kills_at_once() {
    check(
        options(1),
        "
        10 SIGTERM
        20 hello 1 version=3
        ",
        "
        0 spawn worker 1
        10 close listeners
        10 send worker 1 Disconnect { grace: None }
        20 kill worker 1
        next deadline none
        ",
    );
}

#[test]
fn a_worker_flooding_the_channel_is_killed_and_replaced() {
    // Up to the limit within one window is fine (`up` is two messages); the
    // next window starts counting afresh; one message over the limit is a
    // flood.
    check_logs(
        options(2),
        "
        0 up 1 2
        10 flood 1 n=997
        999 online 1
        1000 flood 1 n=1000
        1500 flood 1 n=1
        1600 online 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1500 kill worker 1
        1500 log WARN: worker 1 (pid 1001) flooded the channel: more than 1000 messages within 1000 ms; restarting in 5000 ms
        next deadline 6500
        ",
    );
}

#[test]
fn the_rest_of_a_flood_is_ignored() {
    check(
        options(1),
        "
        0 up 1
        10 flood 1 n=5000
        20 exited 1 signal=9
        ",
        "
        0 spawn worker 1
        10 kill worker 1
        next deadline 5010
        ",
    );
}

#[test]
fn a_second_hello_or_garbage_kills_the_worker() {
    check_logs(
        options(2),
        "
        0 up 1 2
        10 hello 1
        20 garbage 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        10 kill worker 1
        10 log WARN: worker 1 (pid 1001) said Hello twice; restarting in 5000 ms
        20 kill worker 2
        20 log WARN: worker 2 (pid 1002) broke the protocol: bad frame; restarting in 5000 ms
        next deadline 5010
        ",
    );
}

#[test]
fn a_refused_worker_gets_refused_grace_to_exit() {
    check(
        Options::default(),
        "
        0 hello 1 version=3
        999 tick
        1000 tick
        ",
        r#"
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 send worker 1 Refused { reason: "protocol version mismatch: worker speaks 3, master speaks 1 to 2" }
        1000 kill worker 1
        next deadline 2000
        "#,
    );
}

#[test]
fn the_message_count_starts_afresh_each_flood_window() {
    // Chatty, but within each window's limit: not killed.
    check(
        options(1),
        "
        0 hello 1
        1000 flood 1 n=1000
        2000 flood 1 n=1000
        3000 flood 1 n=1000
        ",
        "
        0 spawn worker 1
        next deadline none
        ",
    );
}

#[test]
fn hello_and_max_messages_per_window_more_within_one_window_is_a_flood() {
    // `Hello` and MAX_MESSAGES_PER_WINDOW `Online`s: one message too many.
    check_logs(
        options(1),
        "
        0 hello 1
        0 flood 1 n=1000
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 kill worker 1
        0 log WARN: worker 1 (pid 1001) flooded the channel: more than 1000 messages within 1000 ms; restarting in 5000 ms
        next deadline 5000
        ",
    );
}
