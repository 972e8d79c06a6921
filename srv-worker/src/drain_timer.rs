//! The end of a drain as a tokio timer that follows the master: what
//! `srv_worker::hyper::serve` and `srv_worker::actix::serve` wait for.
//!
//! The deadline can change while a worker drains: a shutdown during a
//! recycle cuts the grace and says so with a second `Disconnect`, and a
//! worker disconnected by `SIGTERM` (no grace: its own limit) learns the
//! master's grace when the master's `Disconnect` arrives a moment later. So
//! the timer looks at [`Worker::drain_until`] again every [`RECHECK`].

use std::time::Duration;

use tokio::time::Instant;

use crate::Worker;
use crate::drain::FALLBACK_LIMIT;

/// How often a draining worker looks at its deadline again.
const RECHECK: Duration = Duration::from_millis(100);

/// Completes at `worker.drain_until()` as it stands, following its changes.
/// Called once the worker is disconnected.
pub(crate) async fn drain_deadline_passed(worker: &Worker) {
    let fallback = Instant::now() + FALLBACK_LIMIT;
    loop {
        let until = worker.drain_until().map_or(fallback, Instant::from_std);
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep_until(until.min(now + RECHECK)).await;
    }
}
