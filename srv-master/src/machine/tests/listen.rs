//! Listen requests and failures: `listen.allow`, `MAX_LISTEN_REQUESTS`, a
//! failure before any worker served (the master stops with exit 1) or once
//! serving (only that worker fails), and requests during shutdown.

use super::shell::{check, check_logs, options};

#[test]
fn a_listen_failure_before_any_worker_started_stops_the_master_with_exit_1() {
    check_logs(
        options(2),
        "
        0 hello 1 2
        0 listen-request 1
        0 listen-fails 1
        10 exited 1 code=1
        10 exited 2
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 listen worker 1 127.0.0.1:8080
        0 log ERROR: cannot listen on 127.0.0.1:8080: bind 127.0.0.1:8080: Address already in use (os error 98): stopping
        0 close listeners
        0 log INFO: cannot listen on 127.0.0.1:8080: bind 127.0.0.1:8080: Address already in use (os error 98): shutting down 2 workers (grace 15000 ms)
        0 log INFO: worker 1 (pid 1001) disconnecting
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 log INFO: worker 2 (pid 1002) disconnecting
        0 send worker 2 Disconnect { grace: Some(15s) }
        10 log WARN: worker 1 (pid 1001) exited (exit code 1) after disconnect, with an error
        10 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        10 log INFO: shutdown complete: all workers exited
        10 exit 1
        next deadline none
        ",
    );
}

#[test]
fn a_listen_failure_once_serving_only_fails_that_worker() {
    check(
        options(1),
        "
        0 up 1
        100 SIGHUP
        110 hello 2
        110 listen-request 2 127.0.0.1:9090
        110 listen-fails 2 127.0.0.1:9090
        120 exited 2 code=1
        ",
        "
        0 spawn worker 1
        100 spawn worker 2
        110 listen worker 2 127.0.0.1:9090
        next deadline none
        ",
    );
}

#[test]
fn a_listen_request_during_shutdown_is_refused_without_binding() {
    check(
        options(1),
        "
        0 hello 1
        100 SIGTERM
        110 listen-request 1
        120 exited 1
        ",
        "
        0 spawn worker 1
        100 close listeners
        100 send worker 1 Disconnect { grace: Some(15s) }
        110 send worker 1 ListenReply { requested: Tcp(127.0.0.1:8080), result: Err(ListenError { errno: None, message: \"listen 127.0.0.1:8080: the master is shutting down\" }) }
        120 exit 0
        next deadline none
        ",
    );
}

#[test]
fn listen_allow_refuses_other_addresses_without_binding() {
    let allow = || {
        let mut options = options(1);
        options.listen.allow = vec!["0.0.0.0:80".parse().unwrap()];
        options
    };
    // Once serving, only the asking worker gets the error.
    check_logs(
        allow(),
        "
        0 up 1
        10 listen-request 1 0.0.0.0:80
        20 listen-request 1 0.0.0.0:22
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        10 listen worker 1 0.0.0.0:80
        20 send worker 1 ListenReply { requested: Tcp(0.0.0.0:22), result: Err(ListenError { errno: Some(13), message: \"listen 0.0.0.0:22: not in listen.allow\" }) }
        20 log WARN: worker 1 (pid 1001): listen 0.0.0.0:22: not in listen.allow
        next deadline none
        ",
    );
    // Before any worker served, it is a configuration error: stop.
    check(
        allow(),
        "
        0 hello 1
        20 listen-request 1 0.0.0.0:22
        30 exited 1 code=1
        ",
        "
        0 spawn worker 1
        20 send worker 1 ListenReply { requested: Tcp(0.0.0.0:22), result: Err(ListenError { errno: Some(13), message: \"listen 0.0.0.0:22: not in listen.allow\" }) }
        20 close listeners
        20 send worker 1 Disconnect { grace: Some(15s) }
        30 exit 1
        next deadline none
        ",
    );
}

#[test]
fn a_worker_asking_to_listen_too_often_is_killed() {
    check_logs(
        options(1),
        &format!(
            "
            0 up 1
            10 listen-requests 1 n={}
            ",
            crate::machine::messages::MAX_LISTEN_REQUESTS + 1
        ),
        &format!(
            "
            0 spawn worker 1
            0 log INFO: worker 1 spawned (pid 1001)
            0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
            {}
            10 kill worker 1
            10 log WARN: worker 1 (pid 1001) asked to listen more than 64 times; restarting in 5000 ms
            next deadline 5010
            ",
            vec!["10 listen worker 1 127.0.0.1:8080"; 64].join("\n            ")
        ),
    );
}

#[test]
fn a_listen_failure_before_any_worker_started_is_the_masters_failure() {
    check(
        options(1),
        "
        0 listen-fails 1 0.0.0.0:80
        0 state
        0 exited 1 code=1
        ",
        r#"
        0 spawn worker 1
        0 close listeners
        0 send worker 1 Disconnect { grace: None }
        0 state phase=Stopping started=0 target=1 workers=1 ready=false recycling=false failure=Some("cannot listen on 0.0.0.0:80: bind 0.0.0.0:80: Address already in use (os error 98)")
        0 exit 1
        next deadline none
        "#,
    );
}

#[test]
fn a_worker_may_listen_on_sixteen_addresses() {
    // MAX_LISTEN_REQUESTS bounds what a worker can make the master hold, and
    // leaves room for a real server's few addresses.
    check(
        options(1),
        "
        0 up 1
        10 listen-requests 1 n=16
        ",
        "
        0 spawn worker 1
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        10 listen worker 1 127.0.0.1:8080
        next deadline none
        ",
    );
}
