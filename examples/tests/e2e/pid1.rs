//! The master as PID 1 of a new pid namespace, as in a container
//! (`unshare --pid --fork --mount-proc`): it reaps the orphans its workers
//! leave behind, which the kernel re-parents to it, and `SIGTERM` still
//! shuts it down gracefully (PID 1 of a namespace gets only the signals it
//! has a handler for, and the master installs one).
//!
//! The harness starts `unshare`, which forks the master as the namespace's
//! PID 1 and waits for it; the master logs the pids it sees inside the
//! namespace (`master 1 starting ...`). The test signals the master by its
//! pid outside the namespace: `unshare`'s only child.
//!
//! When `unshare` is missing or not allowed (no `CAP_SYS_ADMIN`), the test
//! says `skipped: <reason>` on stderr and passes.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::{Exit, Master, count, misbehave, reports, wait_until};
use crate::proc_support::{children, descendants, namespace_pid, state};

const UNSHARE: [&str; 4] = ["unshare", "--pid", "--fork", "--mount-proc"];

/// How long each worker's orphan sleeps: long enough that a recycle ends
/// the worker first, so the orphan outlives it.
const ORPHAN_MS: &str = "3000";

/// Why this machine cannot run a process as PID 1 of a new pid namespace,
/// or `None` when it can (`unshare ... true` succeeds).
fn unshare_unavailable() -> Option<String> {
    let mut child = match Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return Some(format!("cannot run `{}`: {error}", UNSHARE.join(" "))),
    };
    let mut status = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until(deadline, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Some(format!("`{} true` did not exit within 10 s", UNSHARE.join(" ")));
    };
    if status.success() {
        return None;
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    Some(format!("`{} true` failed ({status}): {}", UNSHARE.join(" "), stderr.trim()))
}

/// The master's pid outside the namespace: the only child of `unshare`,
/// which is PID 1 inside.
fn namespace_init(master: &Master) -> Pid {
    let mut init = None;
    let found = wait_until(Instant::now() + Duration::from_secs(5), || {
        init = match children(master.pid())[..] {
            [child] if namespace_pid(child) == Some(1) => Some(child),
            _ => None,
        };
        init.is_some()
    });
    if !found {
        master.fail("unshare has no child that is PID 1 of its namespace");
    }
    init.expect("found")
}

/// The processes of the namespace (PID 1's descendants) that are zombies.
fn zombies_in_namespace(init: Pid) -> Vec<Pid> {
    descendants(init).into_iter().filter(|&pid| state(pid) == Some('Z')).collect()
}

#[test]
fn as_pid_1_the_master_reaps_orphans_and_sigterm_shuts_it_down() {
    if let Some(reason) = unshare_unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let program = misbehave();
    let mut args = UNSHARE[1..].to_vec();
    args.extend([
        program,
        "--workers",
        "2",
        "--worker-timeout",
        "10000",
        "--recycle-timeout",
        "5000",
        "--shutdown-timeout",
        "5000",
        "--orphan-ms",
        ORPHAN_MS,
    ]);
    let mut master = Master::start(UNSHARE[0], &args);
    let lines = master.wait_until("2 workers started, each with an orphan", |lines| {
        count(lines, "started (online)") == 2 && reports(lines, "forked orphan pid").len() == 2
    });
    if count(&lines, "master 1 starting 2 workers") != 1 {
        master.fail("the master does not run as PID 1 of its namespace");
    }
    let init = namespace_init(&master);

    // A recycle ends the first workers while their orphans still sleep: the
    // kernel re-parents the orphans to PID 1, which must reap them.
    let old_orphans: BTreeSet<String> = reports(&lines, "forked orphan pid")
        .iter()
        .filter_map(|report| report.event.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    master.signal_worker(init, Signal::SIGHUP);
    master.wait_until_within(Duration::from_secs(10), "the recycle to complete", |lines| {
        count(lines, "recycle complete: 2 workers replaced") == 1
            && count(lines, "exited (exit code 0) as asked") == 2
    });
    let orphans_ms: u64 = ORPHAN_MS.parse().expect("a number");
    master.wait_until_within(
        Duration::from_millis(orphans_ms + 10_000),
        &format!("the orphans {old_orphans:?} reaped by PID 1"),
        |lines| {
            old_orphans
                .iter()
                .all(|pid| count(lines, &format!("reaped orphan pid {pid} (exit code 0)")) == 1)
        },
    );
    // No zombie is left in the namespace (an exited process may be a zombie
    // for a moment before its parent reaps it, so this waits).
    let mut zombies = Vec::new();
    let clean = wait_until(Instant::now() + Duration::from_secs(5), || {
        zombies = zombies_in_namespace(init);
        zombies.is_empty()
    });
    if !clean {
        master.fail(&format!("zombies in the namespace: {zombies:?}"));
    }

    // SIGTERM to PID 1: a graceful shutdown, and `unshare` passes on its
    // exit code.
    master.signal_worker(init, Signal::SIGTERM);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    let lines = master.lines();
    if exit != Exit::Code(0) {
        master.fail(&format!("expected exit code 0 after SIGTERM, got {exit:?}"));
    }
    for needle in ["SIGTERM: shutting down 2 workers", "shutdown complete: all workers exited"] {
        if count(&lines, needle) != 1 {
            master.fail(&format!("expected one line with {needle:?}"));
        }
    }
    if count(&lines, "exited (exit code 0) as asked") != 4 || count(&lines, "killing it") != 0 {
        master.fail("every worker, old and new, should have exited as asked");
    }
    if reports(&lines, "disconnected (Requested)").len() != 4 {
        master.fail("every worker should have been disconnected");
    }
}
