//! What the master reports to a service manager: the phase and the
//! `STATUS=` line through start, recycle and shutdown.

use super::shell::{check, options};
use crate::options::Options;

#[test]
fn status_follows_start_recycle_and_shutdown() {
    check(
        options(2),
        "
        0 status
        0 up 1
        0 status
        0 up 2
        0 status
        10 exited 1 code=1
        10 status
        5010 tick
        5020 up 3
        6000 SIGHUP
        6000 status
        6100 SIGTERM
        6100 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 status starting: 0/2 workers ready
        0 status starting: 1/2 workers ready
        0 status 2/2 workers ready
        10 status 1/2 workers ready
        5010 spawn worker 3
        6000 spawn worker 4
        6000 status recycling: 2/2 workers ready
        6100 close listeners
        6100 send worker 2 Disconnect { grace: Some(15s) }
        6100 send worker 3 Disconnect { grace: Some(15s) }
        6100 send worker 4 Disconnect { grace: None }
        6100 status stopping: 3 workers left
        next deadline 21100
        ",
    );
}

#[test]
fn the_service_phase_follows_start_recycle_and_shutdown() {
    check(
        options(1),
        "
        0 state
        0 up 1
        0 state
        0 SIGHUP
        0 state
        0 SIGTERM
        0 state
        ",
        "
        0 spawn worker 1
        0 state phase=Starting started=0 target=1 workers=1 ready=false recycling=false failure=None
        0 state phase=Ready started=1 target=1 workers=1 ready=true recycling=false failure=None
        0 spawn worker 2
        0 state phase=Reloading started=1 target=1 workers=2 ready=true recycling=true failure=None
        0 close listeners
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 send worker 2 Disconnect { grace: None }
        0 state phase=Stopping started=0 target=1 workers=2 ready=false recycling=false failure=None
        next deadline 15000
        ",
    );
}

#[test]
fn the_status_at_start() {
    check(
        Options::default(),
        "
        0 state
        0 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 spawn worker 3
        0 spawn worker 4
        0 state phase=Starting started=0 target=4 workers=4 ready=false recycling=false failure=None
        0 status starting: 0/4 workers ready
        next deadline 2000
        ",
    );
}

#[test]
fn the_status_line_counts_started_workers_then_workers_left() {
    check(
        options(2),
        "
        0 up 1
        0 status
        0 up 2
        0 status
        0 SIGTERM
        0 status
        ",
        "
        0 spawn worker 1
        0 spawn worker 2
        0 status starting: 1/2 workers ready
        0 status 2/2 workers ready
        0 close listeners
        0 send worker 1 Disconnect { grace: Some(15s) }
        0 send worker 2 Disconnect { grace: Some(15s) }
        0 status stopping: 2 workers left
        next deadline 15000
        ",
    );
}
