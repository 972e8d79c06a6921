//! The async example (`examples/src/bin/axum.rs`, axum on tokio) passes the
//! reference server's zero-failure recycle test: SIGHUP again and again
//! under load, with a new connection per request and with keep-alive
//! connections, and not one request fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Master, count};
use crate::http_support::{
    LoadGuard, assert_lossless, get_ok, serving_pids, start_on_port_0, wait_addr,
    wait_exited_as_asked, wait_serving,
};
use crate::load::{LoadConfig, Mode};

/// Workers per master: more than one, so the port is shared; few, for a
/// 2-core machine.
const N_WORKERS: usize = 2;

/// The number of recycles under load.
const N_RECYCLES: usize = 4;

/// Requests that must complete between two recycles, so that each
/// generation of workers serves under load.
const PROGRESS_BETWEEN_RECYCLES: u64 = 50;

/// How long a recycle, or the old workers' drain (about a second of
/// `IDLE_GRACE`), may take before the test fails.
const RECYCLE_WITHIN: Duration = Duration::from_secs(10);

fn axum() -> &'static str {
    env!("CARGO_BIN_EXE_axum")
}

fn start_axum() -> Master {
    let workers = N_WORKERS.to_string();
    start_on_port_0(
        axum(),
        &["--workers", &workers, "--recycle-timeout", "5000", "--shutdown-timeout", "5000"],
    )
}

fn load_config(addr: SocketAddr, mode: Mode) -> LoadConfig {
    LoadConfig {
        threads: 3,
        mode,
        path: "/".to_owned(),
        // Bounds only for a test that goes wrong; the test stops its load.
        max_requests: 1_000_000,
        max_duration: Duration::from_secs(25),
        timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    }
}

/// SIGHUP, then waits until the master logs the recycle complete; returns
/// the workers serving then.
fn recycle(master: &Master) -> BTreeSet<Pid> {
    let done = count(&master.lines(), "recycle complete: ");
    master.signal(Signal::SIGHUP);
    let lines = master.wait_until_within(RECYCLE_WITHIN, "the recycle to complete", |lines| {
        count(lines, "recycle complete: ") > done
    });
    let replaced = format!("recycle complete: {N_WORKERS} workers replaced");
    if count(&lines, &replaced) != done + 1 {
        master.fail(&format!("expected the line {replaced:?}"));
    }
    serving_pids(&lines)
}

fn recycles_under_load(mode: Mode) {
    let master = start_axum();
    let addr = wait_addr(&master);
    let mut workers = wait_serving(&master, N_WORKERS);
    let answered = get_ok(&master, addr, "/");
    if !answered.body.starts_with("ok ") || !answered.pid().is_some_and(|p| workers.contains(&p)) {
        master.fail(&format!("GET /: expected `ok <one of {workers:?}>`, got {answered:?}"));
    }
    let load = LoadGuard::start(load_config(addr, mode));
    load.wait_progress(&master, PROGRESS_BETWEEN_RECYCLES, Duration::from_secs(5));
    for _ in 0..N_RECYCLES {
        let new = recycle(&master);
        if new.len() != N_WORKERS || !new.is_disjoint(&workers) {
            master.fail(&format!("recycle did not replace every worker: {workers:?} -> {new:?}"));
        }
        // The old workers drain (their idle grace included) and leave by
        // themselves, well before the master's grace runs out.
        wait_exited_as_asked(&master, &workers, RECYCLE_WITHIN);
        load.wait_progress(&master, PROGRESS_BETWEEN_RECYCLES, Duration::from_secs(5));
        workers = new;
    }
    let report = load.stop();
    assert_lossless(&master, &report, (N_RECYCLES as u64 + 1) * PROGRESS_BETWEEN_RECYCLES);
    let lines = master.lines();
    if count(&lines, "killing it") + count(&lines, "exited unasked") != 0 {
        master.fail("a worker was killed or crashed during the recycles");
    }
}

#[test]
fn axum_recycles_lose_no_request_with_a_new_connection_per_request() {
    recycles_under_load(Mode::NewConnection);
}

#[test]
fn axum_recycles_lose_no_request_on_keep_alive_connections() {
    recycles_under_load(Mode::KeepAlive);
}
