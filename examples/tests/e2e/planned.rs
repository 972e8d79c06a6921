//! Planned recycles of the reference server under load: a worker above
//! `worker.max_rss` (made so by `GET /alloc`) and workers older than
//! `worker.max_age` are replaced, replacement first, and not one request of
//! the project's load generator fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use nix::unistd::Pid;

use crate::harness::{Master, count, find_from};
use crate::http_support::{
    LoadGuard, assert_lossless, get_ok, http, start_on_port_0, wait_addr, wait_exited_as_asked,
    wait_serving,
};
use crate::load::{LoadConfig, Mode};

/// How long an old worker may take to be replaced and drain.
const REPLACED_WITHIN: Duration = Duration::from_secs(10);

fn load(addr: SocketAddr, mode: Mode) -> LoadGuard {
    LoadGuard::start(LoadConfig {
        threads: 4,
        mode,
        // Bounds only for a test that goes wrong; the test stops its load.
        max_requests: 1_000_000,
        max_duration: Duration::from_secs(25),
        timeout: Duration::from_secs(5),
        ..LoadConfig::new(addr)
    })
}

/// Fails unless a worker started after the line that decided to replace
/// `old` (`decided`) and before `old` was told to disconnect: the
/// replacement came first.
fn assert_replacement_first(master: &Master, lines: &[String], decided: usize, old: Pid) {
    let disconnecting = find_from(lines, decided, &format!("(pid {old}) disconnecting"))
        .unwrap_or_else(|| master.fail(&format!("worker pid {old} was never disconnected")));
    let started = find_from(lines, decided, ") started (")
        .unwrap_or_else(|| master.fail("no replacement started"));
    if started > disconnecting {
        master.fail(&format!("worker pid {old} was disconnected before its replacement started"));
    }
}

#[test]
fn a_worker_over_max_rss_is_replaced_under_load_without_a_failed_request() {
    let master = start_on_port_0(
        http(),
        &["--workers", "2", "--max-rss", "64", "--recycle-timeout", "5000"],
    );
    let addr = wait_addr(&master);
    let before = wait_serving(&master, 2);
    let load = load(addr, Mode::NewConnection);
    load.wait_progress(&master, 50, Duration::from_secs(10));

    let answer = get_ok(&master, addr, "/alloc?mb=100");
    let pid = answer.pid().unwrap_or_else(|| master.fail("no pid in the /alloc answer"));
    if !answer.body.starts_with("holds 100 MiB ") || !before.contains(&pid) {
        master.fail(&format!("/alloc answered {:?}", answer.body));
    }
    let over = format!("(pid {pid}) uses ");
    let lines = master.wait_until_within(REPLACED_WITHIN, "the memory recycle", |lines| {
        count(lines, &format!("(pid {pid}) exited (exit code 0) as asked")) == 1
    });
    let decided = find_from(&lines, 0, &over).expect("exited after it was over");
    // The figure: 100 MiB held, and the worker's own few MiB.
    let figure: f64 = lines[decided][lines[decided].find(&over).expect("found") + over.len()..]
        .split(' ')
        .next()
        .and_then(|mib| mib.parse().ok())
        .unwrap_or_else(|| master.fail("no figure in the max_rss line"));
    if !(100.0..200.0).contains(&figure) || !lines[decided].contains("over worker.max_rss (64 MiB)")
    {
        master.fail(&format!("the max_rss line says {figure} MiB"));
    }
    assert_replacement_first(&master, &lines, decided, pid);
    load.wait_progress(&master, 50, Duration::from_secs(10));
    let report = load.stop();
    assert_lossless(&master, &report, 100);
    // The other worker, under the limit, serves on; nothing else happened.
    let after = wait_serving(&master, 2);
    if after.intersection(&before).count() != 1 || count(&master.lines(), " uses ") != 1 {
        master.fail(&format!("serving {after:?} after, {before:?} before"));
    }
}

#[test]
fn workers_are_replaced_at_max_age_one_at_a_time_under_load_without_a_failed_request() {
    let master = start_on_port_0(
        http(),
        &["--workers", "2", "--max-age", "2000", "--recycle-timeout", "5000"],
    );
    let addr = wait_addr(&master);
    let first: BTreeSet<Pid> = wait_serving(&master, 2);
    let load = load(addr, Mode::KeepAlive);
    load.wait_progress(&master, 50, Duration::from_secs(10));
    wait_exited_as_asked(&master, &first, REPLACED_WITHIN);
    let report = load.stop();
    assert_lossless(&master, &report, 100);

    let lines = master.lines();
    for old in &first {
        let decided = find_from(&lines, 0, &format!("(pid {old}) is "))
            .unwrap_or_else(|| master.fail(&format!("no max_age line for pid {old}")));
        let line = &lines[decided];
        // `... ms old, over worker.max_age (2000 ms, N ms for it with its jitter)`
        let jittered: u64 = line
            .split("(2000 ms, ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| master.fail("no jittered age in the max_age line"));
        if !(1800..=2200).contains(&jittered) {
            master.fail(&format!("a jittered age of {jittered} ms, not within ±10% of 2000"));
        }
        assert_replacement_first(&master, &lines, decided, *old);
    }
    // One at a time: the second old worker was chosen only once the first
    // one's replacement had started (and the first was disconnecting).
    let decisions: Vec<usize> =
        first.iter().filter_map(|old| find_from(&lines, 0, &format!("(pid {old}) is "))).collect();
    let (earlier, later) = (decisions[0].min(decisions[1]), decisions[0].max(decisions[1]));
    if find_from(&lines, earlier, " disconnecting").is_none_or(|at| at > later) {
        master.fail("two workers were replaced for their age at once");
    }
}
