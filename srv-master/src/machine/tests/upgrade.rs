//! The upgrade in place (`SIGUSR2`): the probe and how it is judged, the
//! exec, the adoption by the new master and its recycle, and the signals
//! that arrive meanwhile.

use super::shell::{check_logs, options};

/// The whole flow: the probe vouches for the new program, the exec
/// happens, and the new master recycles every worker of the old program;
/// the status says `upgrading` until the last one is replaced.
#[test]
fn an_upgrade_probes_execs_and_recycles_every_worker() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGUSR2
        1000 status
        1050 probe-exited
        1050 status
        1100 up 3
        1200 up 4
        1300 exited 1 2
        1300 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1000 status upgrading: probing the new program; 2/2 workers ready
        1050 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1050 exec
        1050 log INFO: upgrade: adopted 2 workers from the previous master; recycling the 2 that serve or start, which run the old program
        1050 spawn worker 3
        1050 log INFO: worker 3 spawned (pid 1003)
        1050 status upgrading: recycling: 2/2 workers ready
        1100 log INFO: worker 3 (pid 1003) started (online) in 50 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 4
        1100 log INFO: worker 4 spawned (pid 1004)
        1200 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1200 log INFO: worker 2 (pid 1002) disconnecting
        1200 send worker 2 Disconnect { grace: Some(15s) }
        1200 log INFO: recycle complete: 2 workers replaced in 150 ms
        1200 log INFO: upgrade complete in 200 ms: the master and its 2 workers run the new program
        1300 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1300 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1300 status 2/2 workers ready
        next deadline none
        ",
    );
}

/// Every way a probe fails leaves the master and its workers as they were,
/// logs why, and the status keeps saying it until the next upgrade; a
/// second `SIGUSR2` during an upgrade is ignored; a probe that hangs is
/// killed at its deadline; an exec that fails is a failed upgrade too.
#[test]
fn each_failed_probe_changes_nothing_and_says_why() {
    check_logs(
        options(1),
        "
        0 up 1
        1000 SIGUSR2
        1000 probe-exited code=2 missing output=1
        1000 status
        2000 SIGUSR2
        2000 status
        2000 probe-exited missing
        3000 SIGUSR2
        3000 probe-exited garbage
        4000 SIGUSR2
        4000 probe-exited code=1 refused
        5000 SIGUSR2
        5000 probe-exited protocol=99
        6000 SIGUSR2
        6000 probe-exited handover=99
        7000 probe-spawn-fails
        7000 SIGUSR2
        8000 SIGUSR2
        8000 deadline
        12999 tick
        13000 tick
        13000 status
        13010 probe-exited signal=9 missing
        13010 status
        14000 SIGUSR2
        14000 exec-fails
        14000 probe-exited
        14000 status
        ",
        r#"
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1000 log ERROR: upgrade failed: the new program exited (exit code 2) without a probe report; its output ends with "boom\n"; the master runs on unchanged, and so do its workers
        1000 status 1/1 workers ready; upgrade failed: the new program exited (exit code 2) without a probe report; its output ends with "boom\n"
        2000 log INFO: SIGUSR2: upgrading the master in place
        2000 probe
        2000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        2000 status upgrading: probing the new program; 1/1 workers ready
        2000 log ERROR: upgrade failed: the new program exited without a probe report: it is not an srv master, or one too old to be upgraded to; the master runs on unchanged, and so do its workers
        3000 log INFO: SIGUSR2: upgrading the master in place
        3000 probe
        3000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        3000 log ERROR: upgrade failed: the new program's probe report is not one: expected value at line 1; the master runs on unchanged, and so do its workers
        4000 log INFO: SIGUSR2: upgrading the master in place
        4000 probe
        4000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        4000 log ERROR: upgrade failed: the new program refuses its options: invalid option worker.count: must be at least 1; the master runs on unchanged, and so do its workers
        5000 log INFO: SIGUSR2: upgrading the master in place
        5000 probe
        5000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        5000 log ERROR: upgrade failed: the new program (srv 9.9.9) accepts workers of protocol versions 99 to 99, and the workers speak 2; the master runs on unchanged, and so do its workers
        6000 log INFO: SIGUSR2: upgrading the master in place
        6000 probe
        6000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        6000 log ERROR: upgrade failed: the new program (srv 9.9.9) reads handover formats 99 to 99, and this master writes 2; the master runs on unchanged, and so do its workers
        7000 log INFO: SIGUSR2: upgrading the master in place
        7000 probe
        7000 log ERROR: upgrade failed: cannot execute /srv/app: Permission denied; the master runs on unchanged, and so do its workers
        8000 log INFO: SIGUSR2: upgrading the master in place
        8000 probe
        8000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        8000 next deadline 13000
        13000 log ERROR: upgrade failed: the new program did not report within 5000 ms (a probe that hangs); the master runs on unchanged, and so do its workers
        13000 kill probe
        13000 status upgrading: probing the new program; 1/1 workers ready
        13010 status 1/1 workers ready; upgrade failed: the new program did not report within 5000 ms (a probe that hangs)
        14000 log INFO: SIGUSR2: upgrading the master in place
        14000 probe
        14000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        14000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        14000 exec
        14000 log ERROR: upgrade failed: cannot execute /srv/app: Text file busy; the master runs on unchanged, and so do its workers
        14000 status 1/1 workers ready; upgrade failed: cannot execute /srv/app: Text file busy
        next deadline none
        "#,
    );
}

/// `SIGTERM` during the probe: the probe is killed, the shutdown proceeds,
/// and the master exits only once the probe is reaped.
#[test]
fn sigterm_during_the_probe_kills_it_and_the_exit_waits_for_it() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGUSR2
        1100 SIGTERM
        1100 status
        1200 exited 1 2
        1200 status
        1300 probe-exited signal=9 missing
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1100 close listeners
        1100 log INFO: upgrade stopped by SIGTERM: killing the probe
        1100 kill probe
        1100 log INFO: SIGTERM: shutting down 2 workers (grace 15000 ms)
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: Some(15s) }
        1100 status stopping: 2 workers left
        1200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1200 status stopping: 0 workers left
        1300 log INFO: shutdown complete: all workers exited
        1300 exit 0
        next deadline none
        ",
    );
}

/// `SIGHUP` during the probe waits for it: after a failed probe the recycle
/// runs; after a successful one the upgrade's own recycle does its work.
#[test]
fn sighup_during_the_probe_is_done_after_it() {
    check_logs(
        options(1),
        "
        0 up 1
        1000 SIGUSR2
        1100 SIGHUP
        1200 probe-exited missing
        1300 up 2
        1400 exited 1
        2000 SIGUSR2
        2100 SIGHUP
        2100 SIGUSR2
        2200 probe-exited
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1100 log INFO: SIGHUP during the upgrade: recycling once it is over
        1200 log ERROR: upgrade failed: the new program exited without a probe report: it is not an srv master, or one too old to be upgraded to; the master runs on unchanged, and so do its workers
        1200 log INFO: SIGHUP: recycling 1 workers
        1200 spawn worker 2
        1200 log INFO: worker 2 spawned (pid 1002)
        1300 log INFO: worker 2 (pid 1002) started (online) in 100 ms
        1300 log INFO: worker 1 (pid 1001) disconnecting
        1300 send worker 1 Disconnect { grace: Some(15s) }
        1300 log INFO: recycle complete: 1 workers replaced in 100 ms
        1400 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        2000 log INFO: SIGUSR2: upgrading the master in place
        2000 probe
        2000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        2100 log INFO: SIGHUP during the upgrade: recycling once it is over
        2100 log WARN: SIGUSR2 ignored: an upgrade is in progress
        2200 log INFO: the SIGHUP received during the upgrade is done by the upgrade's recycle
        2200 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        2200 exec
        2200 log INFO: upgrade: adopted 1 workers from the previous master; recycling the 1 that serve or start, which run the old program
        2200 spawn worker 3
        2200 log INFO: worker 3 spawned (pid 1003)
        next deadline 4200
        ",
    );
}

/// An upgrade during a recycle supersedes it: the replacement in flight
/// (not serving yet) retires, so exactly the target is handed over, and the
/// new master recycles every live worker.
#[test]
fn an_upgrade_during_a_recycle_supersedes_it() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGHUP
        1100 up 3
        1150 SIGUSR2
        1200 probe-exited
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGHUP: recycling 2 workers
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log INFO: worker 3 (pid 1003) started (online) in 100 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 4
        1100 log INFO: worker 4 spawned (pid 1004)
        1150 log INFO: SIGUSR2: upgrading the master in place
        1150 probe
        1150 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1200 log INFO: upgrade: the recycle in progress is superseded by the upgrade's own
        1200 log INFO: worker 4 (pid 1004) disconnecting
        1200 send worker 4 Disconnect { grace: None }
        1200 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1200 exec
        1200 log INFO: upgrade: adopted 4 workers from the previous master; recycling the 2 that serve or start, which run the old program
        1200 spawn worker 5
        1200 log INFO: worker 5 spawned (pid 1005)
        next deadline 3200
        ",
    );
}

/// What is left of every deadline goes across the exec: a starting worker's
/// `worker.timeout`, a pending restart's delay, a retiring worker's grace.
#[test]
fn deadlines_and_restarts_survive_the_handover() {
    check_logs(
        options(3),
        "
        0 up 1 2 3
        1000 SIGTTOU
        2000 exited 1 signal=11
        3000 SIGTTIN
        3500 hello 4
        4000 SIGUSR2
        4100 probe-exited
        4100 deadline
        5000 tick
        5000 deadline
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
        1000 log INFO: SIGTTOU: workers 3 -> 2
        1000 log INFO: worker 3 (pid 1003) disconnecting
        1000 send worker 3 Disconnect { grace: Some(15s) }
        2000 log WARN: worker 1 (pid 1001) exited unasked (signal 11); restarting in 5000 ms
        3000 log INFO: SIGTTIN: workers 2 -> 3
        3000 spawn worker 4
        3000 log INFO: worker 4 spawned (pid 1004)
        4000 log INFO: SIGUSR2: upgrading the master in place
        4000 probe
        4000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        4100 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        4100 exec
        4100 log INFO: upgrade: adopted 3 workers from the previous master; recycling the 2 that serve or start, which run the old program
        4100 spawn worker 5
        4100 log INFO: worker 5 spawned (pid 1005)
        4100 next deadline 5000
        5000 kill worker 4
        5000 log WARN: worker 4 (pid 1004) did not report online within 2000 ms; restarting in 5000 ms
        5000 next deadline 6100
        next deadline 6100
        ",
    );
}

/// A new `worker.count` wins over the old target: workers are added, or the
/// surplus retires (the newest first) before the recycle.
#[test]
fn a_changed_worker_count_is_applied_by_the_new_master() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 new-count 3
        1000 SIGUSR2
        1000 probe-exited
        1100 up 3 4
        1200 up 5
        1300 state
        2000 new-count 1
        2000 SIGUSR2
        2000 probe-exited
        2100 up 6
        2100 state
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1000 exec
        1000 log INFO: upgrade: worker.count changed from 2 to 3
        1000 log INFO: upgrade: adopted 2 workers from the previous master; recycling the 2 that serve or start, which run the old program
        1000 spawn worker 3
        1000 spawn worker 4
        1000 log INFO: worker 3 spawned (pid 1003)
        1000 log INFO: worker 4 spawned (pid 1004)
        1100 log INFO: worker 3 (pid 1003) started (online) in 100 ms
        1100 log INFO: worker 4 (pid 1004) started (online) in 100 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 5
        1100 log INFO: worker 5 spawned (pid 1005)
        1200 log INFO: worker 5 (pid 1005) started (online) in 100 ms
        1200 log INFO: worker 2 (pid 1002) disconnecting
        1200 send worker 2 Disconnect { grace: Some(15s) }
        1200 log INFO: recycle complete: 2 workers replaced in 200 ms
        1200 log INFO: upgrade complete in 200 ms: the master and its 3 workers run the new program
        1300 state phase=Ready started=3 target=3 workers=5 ready=true recycling=false failure=None
        2000 log INFO: SIGUSR2: upgrading the master in place
        2000 probe
        2000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        2000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        2000 exec
        2000 log INFO: upgrade: worker.count changed from 3 to 1
        2000 log INFO: upgrade: adopted 5 workers from the previous master; recycling the 3 that serve or start, which run the old program
        2000 log INFO: worker 5 (pid 1005) disconnecting
        2000 send worker 5 Disconnect { grace: Some(15s) }
        2000 log INFO: worker 4 (pid 1004) disconnecting
        2000 send worker 4 Disconnect { grace: Some(15s) }
        2000 spawn worker 6
        2000 log INFO: worker 6 spawned (pid 1006)
        2100 log INFO: worker 6 (pid 1006) started (online) in 100 ms
        2100 log INFO: worker 3 (pid 1003) disconnecting
        2100 send worker 3 Disconnect { grace: Some(15s) }
        2100 log INFO: recycle complete: 1 workers replaced in 100 ms
        2100 log INFO: upgrade complete in 100 ms: the master and its 1 workers run the new program
        2100 state phase=Ready started=1 target=1 workers=6 ready=true recycling=false failure=None
        next deadline 16100
        ",
    );
}

/// A replacement that fails during the new master's recycle leaves the
/// upgrade incomplete, says so, and a second upgrade finishes the job.
#[test]
fn an_incomplete_upgrade_says_so_and_a_second_one_completes() {
    check_logs(
        options(2),
        "
        0 up 1 2
        1000 SIGUSR2
        1000 probe-exited
        1100 up 3
        1200 exited 4 code=1
        1200 status
        1300 SIGUSR2
        1300 probe-exited
        1400 up 5
        1500 up 6
        1500 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 2 spawned (pid 1002)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        0 log INFO: worker 2 (pid 1002) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1000 exec
        1000 log INFO: upgrade: adopted 2 workers from the previous master; recycling the 2 that serve or start, which run the old program
        1000 spawn worker 3
        1000 log INFO: worker 3 spawned (pid 1003)
        1100 log INFO: worker 3 (pid 1003) started (online) in 100 ms
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 spawn worker 4
        1100 log INFO: worker 4 spawned (pid 1004)
        1200 log ERROR: recycle stopped: replacement worker 4 (pid 1004) exited unasked (exit code 1); 1 old workers keep serving
        1200 log ERROR: upgrade incomplete: 1 workers still run the old program (a replacement failed to start); SIGHUP retries
        1200 status 2/2 workers ready; upgrade incomplete: 1 workers still run the old program (a replacement failed to start); SIGHUP retries
        1300 log INFO: SIGUSR2: upgrading the master in place
        1300 probe
        1300 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1300 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1300 exec
        1300 log INFO: upgrade: adopted 3 workers from the previous master; recycling the 2 that serve or start, which run the old program
        1300 spawn worker 5
        1300 log INFO: worker 5 spawned (pid 1005)
        1400 log INFO: worker 5 (pid 1005) started (online) in 100 ms
        1400 log INFO: worker 2 (pid 1002) disconnecting
        1400 send worker 2 Disconnect { grace: Some(15s) }
        1400 spawn worker 6
        1400 log INFO: worker 6 spawned (pid 1006)
        1500 log INFO: worker 6 (pid 1006) started (online) in 100 ms
        1500 log INFO: worker 3 (pid 1003) disconnecting
        1500 send worker 3 Disconnect { grace: Some(15s) }
        1500 log INFO: recycle complete: 2 workers replaced in 200 ms
        1500 log INFO: upgrade complete in 200 ms: the master and its 2 workers run the new program
        1500 status 2/2 workers ready
        next deadline 16100
        ",
    );
}

/// `SIGTERM` during the new master's recycle stops the upgrade and shuts
/// down; `SIGUSR2` while shutting down is ignored.
#[test]
fn sigterm_during_the_new_masters_recycle_shuts_down() {
    check_logs(
        options(1),
        "
        0 up 1
        1000 SIGUSR2
        1000 probe-exited
        1100 SIGTERM
        1100 SIGUSR2
        1100 status
        1200 exited 1 2
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        1000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        1000 exec
        1000 log INFO: upgrade: adopted 1 workers from the previous master; recycling the 1 that serve or start, which run the old program
        1000 spawn worker 2
        1000 log INFO: worker 2 spawned (pid 1002)
        1100 close listeners
        1100 log INFO: upgrade stopped by SIGTERM
        1100 log INFO: recycle stopped by SIGTERM with 1 workers not replaced
        1100 log INFO: SIGTERM: shutting down 2 workers (grace 15000 ms)
        1100 log INFO: worker 1 (pid 1001) disconnecting
        1100 send worker 1 Disconnect { grace: Some(15s) }
        1100 log INFO: worker 2 (pid 1002) disconnecting
        1100 send worker 2 Disconnect { grace: None }
        1100 log INFO: SIGUSR2 ignored: shutting down
        1100 status stopping: 2 workers left
        1200 log INFO: worker 1 (pid 1001) exited (exit code 0) as asked
        1200 log INFO: worker 2 (pid 1002) exited (exit code 0) as asked
        1200 log INFO: shutdown complete: all workers exited
        1200 exit 0
        next deadline none
        ",
    );
}

/// A probe whose exit is reported at its very deadline is judged, not
/// killed: it is gone (as a worker reaped at its deadline is not killed).
#[test]
fn a_probe_that_exits_at_its_deadline_is_judged_not_killed() {
    check_logs(
        options(1),
        "
        0 up 1
        1000 SIGUSR2
        6000 probe-exited
        ",
        "
        0 spawn worker 1
        0 log INFO: worker 1 spawned (pid 1001)
        0 log INFO: worker 1 (pid 1001) started (online) in 0 ms
        1000 log INFO: SIGUSR2: upgrading the master in place
        1000 probe
        1000 log INFO: upgrade: probing /srv/app (pid 999), for at most 5000 ms
        6000 log INFO: upgrade: the new program is a compatible srv master (srv 9.9.9); executing it in place
        6000 exec
        6000 log INFO: upgrade: adopted 1 workers from the previous master; recycling the 1 that serve or start, which run the old program
        6000 spawn worker 2
        6000 log INFO: worker 2 spawned (pid 1002)
        next deadline 8000
        ",
    );
}
