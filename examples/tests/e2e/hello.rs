//! The node module's own example: hello from every worker, goodbye on Ctrl+C.

use nix::sys::signal::Signal;

use crate::harness::{Exit, Master, count, hello, pids_after};

#[test]
fn hello_and_goodbye_once_per_worker_then_ctrl_c_exits_0() {
    let mut master = Master::start(hello(), &["--workers", "4"]);
    let lines = master.wait_until("4 workers started and said hello", |lines| {
        count(lines, "started (online)") == 4 && pids_after(lines, "Hello from ").len() == 4
    });
    let mut hellos = pids_after(&lines, "Hello from ");
    let mut workers = master.worker_pids();
    assert_eq!(count(&lines, "Hello from "), 4, "one hello per worker");
    hellos.sort();
    workers.sort();
    assert_eq!(hellos, workers, "the hellos come from the spawned workers");
    assert!(workers.iter().all(|&pid| master.is_alive(pid)), "every worker runs");

    // Ctrl+C: SIGINT to the whole process group.
    master.signal_group(Signal::SIGINT);
    let lines = master.wait_until("4 goodbyes", |lines| count(lines, "Goodbye from ") == 4);
    let mut goodbyes = pids_after(&lines, "Goodbye from ");
    goodbyes.sort();
    assert_eq!(goodbyes, workers, "every worker says goodbye once");
    assert_eq!(master.wait_exit(), Exit::Code(0));
    let lines = master.lines();
    assert_eq!(count(&lines, "as asked"), 4, "every worker exited when asked");
    assert_eq!(count(&lines, "shutdown complete"), 1);
    let alive: Vec<_> = workers.iter().filter(|&&pid| master.is_alive(pid)).collect();
    assert!(alive.is_empty(), "workers {alive:?} outlived the master");
}
