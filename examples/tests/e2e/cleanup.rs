//! The harness itself: a failing test leaves no process behind.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use crate::harness::{Master, is_alive, misbehave};

#[test]
fn a_panicking_test_leaves_no_process_behind() {
    let pids = Mutex::new(Vec::new());
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        // Workers that ignore disconnects would outlive a master killed
        // without care.
        let master = Master::start(
            misbehave(),
            &["--workers", "2", "--worker-timeout", "10000", "--ignore-disconnect"],
        );
        master.wait_for_count("started (online)", 2);
        let mut seen = pids.lock().unwrap();
        seen.push(master.pid());
        seen.extend(master.worker_pids());
        drop(seen);
        let helper = std::thread::spawn(|| panic!("deliberate panic in a helper thread"));
        // The helper's panic reaches this scope, as a failing helper's would.
        let Err(payload) = helper.join();
        panic::resume_unwind(payload);
    }));
    assert!(result.is_err(), "the scope panicked");
    let pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), 3, "a master and 2 workers: {pids:?}");
    let alive: Vec<_> = pids.iter().filter(|&&pid| is_alive(pid)).collect();
    assert!(alive.is_empty(), "{alive:?} survived the panicking scope");
}
