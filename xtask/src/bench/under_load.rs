//! The recycle under load: clients keep both cores busy while the master
//! replaces every worker, and the figures say how long until every answer
//! comes from a new worker, and how many requests were answered meanwhile
//! (see the notes in `bench.rs`).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use super::report::{Better, Results, Unit};
use super::scenarios::{RecycleTiming, recycle_starts};
use super::server::LogEvent;
use super::{
    Bench, LoadGuard, RECYCLE_WITHIN, REQUEST_TIMEOUT, START_WITHIN, UNDER_LOAD_AFTER,
    UNDER_LOAD_MAX_DURATION, UNDER_LOAD_MAX_REQUESTS, UNDER_LOAD_THREADS, UNDER_LOAD_WARMUP,
    WORKERS, ms,
};
use srv_load::{Answer, LoadConfig, Mode};

/// What the answers say about one recycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handover {
    /// SIGHUP → the last answer from an old worker (zero if none came
    /// after the SIGHUP).
    every_answer_new: Duration,
    /// Answers from the SIGHUP to that last old answer, both included.
    answered_meanwhile: usize,
}

/// `answers` (in time order, times since the load started) against a
/// SIGHUP sent at `sighup` and the `old` workers' pids.
fn handover(answers: &[Answer], sighup: Duration, old: &BTreeSet<u32>) -> Handover {
    let last_old =
        answers.iter().filter(|answer| old.contains(&answer.pid)).map(|answer| answer.at);
    let last_old = last_old.max().filter(|&at| at >= sighup).unwrap_or(sighup);
    let answered_meanwhile =
        answers.iter().filter(|answer| answer.at >= sighup && answer.at <= last_old).count();
    Handover { every_answer_new: last_old - sighup, answered_meanwhile }
}

/// One recycle under [`UNDER_LOAD_THREADS`] clients, per connection mode
/// and `recycle.parallel` 1 and [`WORKERS`].
pub(super) fn recycle_under_load(bench: &Bench, results: &mut Results) -> Result<()> {
    for (mode, label) in [(Mode::NewConnection, "new connection"), (Mode::KeepAlive, "keep-alive")]
    {
        for parallel in [1, WORKERS] {
            let extra = ["--recycle-parallel", &parallel.to_string()];
            let server = bench.start_master(WORKERS, &extra)?;
            let old: BTreeSet<u32> = server.wait_serving(WORKERS, START_WITHIN)?;
            let load = LoadGuard::start(LoadConfig {
                threads: UNDER_LOAD_THREADS,
                mode,
                max_requests: UNDER_LOAD_MAX_REQUESTS,
                max_duration: UNDER_LOAD_MAX_DURATION,
                timeout: REQUEST_TIMEOUT,
                record_answers: true,
                ..LoadConfig::new(server.addr())
            });
            let within = Duration::from_secs(10);
            load.wait_progress(UNDER_LOAD_WARMUP, within)?;
            let mark = server.mark();
            let sent = server.signal(Signal::SIGHUP)?;
            let (complete, master_ms) =
                server.wait_event(mark, "\"recycle complete\" line", RECYCLE_WITHIN, |event| {
                    match event {
                        LogEvent::RecycleComplete { ms, .. } => Some(*ms),
                        _ => None,
                    }
                })?;
            // Once the old workers exited, no answer can come from them.
            server.wait_event(mark, "the old workers' exits", RECYCLE_WITHIN, {
                let mut exited = BTreeSet::new();
                let old = old.clone();
                move |event| {
                    if let LogEvent::Exited { pid } = event
                        && old.contains(pid)
                    {
                        exited.insert(*pid);
                    }
                    (exited.len() == old.len()).then_some(())
                }
            })?;
            load.wait_progress(UNDER_LOAD_AFTER, within)?;
            let since = load.started();
            let report = load.stop();
            let sighup = sent.checked_duration_since(since).context("SIGHUP before the load")?;
            let handover = handover(&report.answers, sighup, &old);
            let scenario = format!("recycle under load, {label}");
            let at_once = format!("recycle.parallel {parallel}");
            let name = format!("SIGHUP → every answer from a new worker, {at_once}");
            let every_new = ms(handover.every_answer_new);
            results.record(&scenario, &name, Unit::Ms, Better::Lower, every_new);
            let name = format!("requests answered meanwhile, {at_once}");
            let meanwhile = handover.answered_meanwhile as f64;
            results.record(&scenario, &name, Unit::Count, Better::Higher, meanwhile);
            let name = format!("SIGHUP → recycle complete, {at_once}");
            results.record(&scenario, &name, Unit::Ms, Better::Lower, ms(complete - sent));
            let name = format!("requests failed, {at_once}");
            let failed = report.failed() as f64;
            results.record(&scenario, &name, Unit::Count, Better::Lower, failed);
            if parallel == 1 {
                // Where the time of a one-at-a-time recycle goes under load.
                let starts = recycle_starts(&server, mark);
                let timing = RecycleTiming { wall: complete - sent, master_ms, starts };
                timing.record_breakdown(results, &scenario, &format!(", {at_once}"), true)?;
            }
            eprintln!(
                "    {label}, parallel {parallel}: every answer new after {every_new:.1} ms, \
                 {meanwhile} answered meanwhile, complete after {:.1?}; {report}",
                complete - sent
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ms: u64, pid: u32) -> Answer {
        Answer { at: Duration::from_millis(ms), pid }
    }

    #[test]
    fn the_handover_ends_with_the_last_answer_from_an_old_worker() {
        let old = BTreeSet::from([1, 2]);
        let answers = [answer(5, 1), answer(10, 2), answer(12, 3), answer(15, 1), answer(20, 3)];
        let sighup = Duration::from_millis(10);
        assert_eq!(
            handover(&answers, sighup, &old),
            Handover { every_answer_new: Duration::from_millis(5), answered_meanwhile: 3 }
        );
        // No old answer after the SIGHUP: every answer is new at once.
        let answers = [answer(5, 1), answer(12, 3)];
        assert_eq!(
            handover(&answers, sighup, &old),
            Handover { every_answer_new: Duration::ZERO, answered_meanwhile: 0 }
        );
    }
}
