//! Starting workers: `worker.count`, `worker.require`, and options the
//! master refuses.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{Exit, Master, count, misbehave, reports};

#[test]
fn n_workers_start() {
    let master = Master::start(misbehave(), &["--workers", "3", "--worker-timeout", "10000"]);
    let lines = master.wait_for_count("started (online)", 3);
    let workers = master.worker_pids();
    assert_eq!(workers.len(), 3, "3 workers spawned: {workers:?}");
    let online: Vec<_> = reports(&lines, "online").into_iter().map(|report| report.pid).collect();
    assert_eq!(online.len(), 3, "every worker reported online once");
    for pid in &workers {
        assert!(online.contains(pid), "worker pid {pid} reported online");
        assert!(master.is_alive(*pid), "worker pid {pid} runs");
    }
}

#[test]
fn require_listen_kills_workers_that_only_go_online() {
    let master = Master::start(
        misbehave(),
        &["--workers", "2", "--require", "listen", "--worker-timeout", "500"],
    );
    let lines = master.wait_for_count("did not report listen within 500 ms", 2);
    let online = reports(&lines, "online");
    assert!(online.len() >= 2, "the workers did report online, which is not enough");
    assert_eq!(count(&lines, "started ("), 0, "no worker counts as started");
    for report in &online[..2] {
        let killed = format!("(pid {}) did not report listen within 500 ms", report.pid);
        assert_eq!(count(&lines, &killed), 1, "worker pid {} was killed", report.pid);
    }
    // And replaced (after the default restart delay, which is not this
    // test's business): the kill is reaped as such.
    master.wait_for_count("exited (signal 9) after being killed", 2);
}

#[test]
fn require_listen_starts_workers_that_listen() {
    let master = Master::start(
        misbehave(),
        &[
            "--workers",
            "2",
            "--worker-timeout",
            "10000",
            "--require",
            "listen",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let lines = master.wait_for_count("started (listen)", 2);
    assert_eq!(count(&lines, "did not report"), 0);
    // The master binds once; both workers got that socket.
    assert_eq!(count(&lines, "(requested 127.0.0.1:0)"), 1, "one bind for both workers");
    let listening = reports(&lines, "listening on ");
    assert_eq!(listening.len(), 2);
    assert_eq!(listening[0].event, listening[1].event, "both workers share one socket");
    let addr: SocketAddr = listening[0].event["listening on ".len()..].parse().unwrap();
    assert_ne!(addr.port(), 0);
    // The socket listens: the kernel completes the handshake from the backlog.
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|error| master.fail(&format!("cannot connect to {addr}: {error}")));
}

#[test]
fn bad_options_are_refused_with_an_error_naming_the_option() {
    let cases: [(&[&str], &str); 4] = [
        (&["--workers", "0"], "invalid option worker.count"),
        (&["--require", "ready"], "invalid option worker.require"),
        (&["--worker-timeout", "0"], "invalid option worker.timeout"),
        (
            &["--restart-delay", "2000", "--max-restart-delay", "1000"],
            "invalid option restart.max_delay",
        ),
    ];
    for (args, error) in cases {
        let mut master = Master::start(misbehave(), args);
        let exit = master.wait_exit();
        let lines = master.lines();
        if exit == Exit::Code(0) || count(&lines, error) == 0 {
            master.fail(&format!("expected a non-zero exit and {error:?}, got {exit:?}"));
        }
        if count(&lines, "spawned") + count(&lines, "misbehave: worker") != 0 {
            master.fail("a worker was started despite bad options");
        }
    }
}
