//! The scenarios of `cargo xtask bench` with the server idle, or under the
//! light load of the probe: startup, recycle (and the start breakdown),
//! lossless recycles under load, crash recovery, the master's cost, and
//! throughput. Their figures are defined in the notes (`bench.rs`).

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::report::{Better, Results, Unit};
use super::server::{self, LogEvent, Server};
use super::{
    Bench, LOSSLESS_MAX_DURATION, LOSSLESS_MAX_REQUESTS, LOSSLESS_PROGRESS, LOSSLESS_THREADS,
    LoadGuard, PROBE_AFTER, RECYCLE_WITHIN, REQUEST_TIMEOUT, START_WITHIN, THROUGHPUT_MAX_REQUESTS,
    THROUGHPUT_THREADS, WORKERS, ms,
};
use srv_load::{Answer, LoadConfig, Mode};

/// Launch → first answer, and → every worker answering.
pub(super) fn startup(bench: &Bench, results: &mut Results) -> Result<()> {
    for _ in 0..bench.settings.repeats {
        let server = bench.start_master(WORKERS, &[])?;
        let launched = server.launched_at();
        let probe = LoadGuard::probe(&server);
        let (all_started, ()) =
            server.wait_event(0, &format!("{WORKERS} started lines"), START_WITHIN, {
                let mut started = 0;
                move |event| {
                    started += usize::from(matches!(event, LogEvent::Started { .. }));
                    (started == WORKERS).then_some(())
                }
            })?;
        probe.wait_progress(PROBE_AFTER, START_WITHIN)?;
        let since = probe.started();
        let report = probe.stop();
        let at = |answer: &Answer| since + answer.at - launched;
        let first = report.answers.first().map(at).context("the probe got no answer")?;
        let mut seen = BTreeSet::new();
        let all = report
            .answers
            .iter()
            .find(|answer| seen.insert(answer.pid) && seen.len() == WORKERS)
            .map(at)
            .with_context(|| {
                format!("only {seen:?} of {WORKERS} workers answered the probe\n{}", server.tail())
            })?;
        let name = "launch → first `GET /` answered";
        results.record("startup", name, Unit::Ms, Better::Lower, ms(first));
        let name = format!("launch → all {WORKERS} workers started");
        let started = all_started - launched;
        results.record("startup", &name, Unit::Ms, Better::Lower, ms(started));
        let name = format!("launch → all {WORKERS} workers answering `GET /`");
        results.record("startup", &name, Unit::Ms, Better::Lower, ms(all));
        eprintln!(
            "    first answer {first:.1?}, all {WORKERS} started {started:.1?}, all answering {all:.1?}"
        );
    }
    Ok(())
}

/// One worker's start, from the master's debug lines, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct StartSteps {
    fork_exec: u64,
    /// Each step and its time since the exec.
    steps: Vec<(String, u64)>,
}

impl StartSteps {
    fn step(&self, name: &str) -> Option<u64> {
        self.steps.iter().find(|(step, _)| step == name).map(|(_, us)| *us)
    }

    /// From the exec to the last step the master saw before the start.
    fn after_exec(&self) -> u64 {
        self.steps.iter().map(|(_, us)| *us).max().unwrap_or(0)
    }
}

/// The starts of the workers forked within `events`, in the order they
/// started: each `start after its exec` line whose worker's `forked and
/// executed` line is among the events too (the debug line of a worker that
/// started before `events` began may come just after).
pub(super) fn starts_within(events: &[LogEvent]) -> Vec<StartSteps> {
    let mut starts = Vec::new();
    for event in events {
        if let LogEvent::StartSteps { pid, steps } = event {
            let fork_exec = events.iter().find_map(|event| match event {
                LogEvent::ForkExec { pid: forked, us } if forked == pid => Some(*us),
                _ => None,
            });
            if let Some(fork_exec) = fork_exec {
                starts.push(StartSteps { fork_exec, steps: steps.clone() });
            }
        }
    }
    starts
}

/// The starts of a recycle's replacements: [`starts_within`] the events
/// of `server` from `mark` to its `recycle complete` line.
pub(super) fn recycle_starts(server: &Server, mark: usize) -> Vec<StartSteps> {
    let events: Vec<LogEvent> = server
        .events_since(mark)
        .into_iter()
        .map(|(_, event)| event)
        .take_while(|event| !matches!(event, LogEvent::RecycleComplete { .. }))
        .collect();
    starts_within(&events)
}

/// One recycle, seen from outside and from the master's log.
#[derive(Debug)]
pub(super) struct RecycleTiming {
    /// SIGHUP sent → `recycle complete` line read.
    pub(super) wall: Duration,
    /// The master's own `recycle complete ... in T ms`.
    pub(super) master_ms: u64,
    /// The replacements' starts, in the order they started.
    pub(super) starts: Vec<StartSteps>,
}

impl RecycleTiming {
    /// SIGHUP sent → `recycle complete` read, minus the replacements'
    /// fork, exec and start, in milliseconds: with one replacement at a
    /// time, the part of the recycle spent neither in the kernel's fork and
    /// exec nor in a worker. It holds the signal's delivery and the log
    /// line's trip to the bench too, so it bounds the master's share from
    /// above (the master's own `T` would bound it from below, but only to
    /// the millisecond).
    fn master_share_ms(&self) -> f64 {
        let workers: u64 =
            self.starts.iter().map(|start| start.fork_exec + start.after_exec()).sum();
        (ms(self.wall) - workers as f64 / 1000.0).max(0.0)
    }

    /// The mean over the replacements of `figure`, in milliseconds; `None`
    /// when a replacement lacks it.
    fn mean_ms(&self, figure: impl Fn(&StartSteps) -> Option<u64>) -> Option<f64> {
        let values = self.starts.iter().map(figure).collect::<Option<Vec<u64>>>()?;
        (!values.is_empty())
            .then(|| values.iter().sum::<u64>() as f64 / values.len() as f64 / 1000.0)
    }

    /// Records the start breakdown of the replacements (the mean of each
    /// step) and, when they started one at a time, the master's share, as
    /// figures of `scenario`, each name followed by `suffix`.
    pub(super) fn record_breakdown(
        &self,
        results: &mut Results,
        scenario: &str,
        suffix: &str,
        one_at_a_time: bool,
    ) -> Result<()> {
        if one_at_a_time {
            let name = format!("master's own share of the recycle{suffix}");
            results.record(scenario, &name, Unit::Ms, Better::Lower, self.master_share_ms());
        }
        let breakdown: [(&str, Option<f64>); 4] = [
            ("fork + exec", self.mean_ms(|start| Some(start.fork_exec))),
            ("exec → Hello (loading)", self.mean_ms(|start| start.step("hello"))),
            (
                "Hello → ListenRequest",
                self.mean_ms(|start| {
                    start.step("listen request")?.checked_sub(start.step("hello")?)
                }),
            ),
            (
                "ListenRequest → Listening (listen round trip)",
                self.mean_ms(|start| {
                    start.step("listening")?.checked_sub(start.step("listen request")?)
                }),
            ),
        ];
        for (name, value) in breakdown {
            let value = value.with_context(|| format!("no {name} in {:?}", self.starts))?;
            let name = format!("{name}{suffix}");
            results.record(scenario, &name, Unit::Ms, Better::Lower, value);
        }
        Ok(())
    }
}

/// Sends SIGHUP and waits for the recycle to complete, every worker
/// replaced, and for the old workers to exit.
fn recycle_once(server: &Server, n_workers: usize) -> Result<RecycleTiming> {
    let mark = server.mark();
    let sent = server.signal(Signal::SIGHUP)?;
    let (done_at, (replaced, master_ms)) = server.wait_event(
        mark,
        "\"recycle complete\" line",
        RECYCLE_WITHIN,
        |event| match event {
            LogEvent::RecycleComplete { replaced, ms } => Some((*replaced, *ms)),
            _ => None,
        },
    )?;
    let starts = recycle_starts(server, mark);
    if replaced != n_workers || starts.len() != n_workers {
        bail!(
            "the recycle replaced {replaced} workers and started {} of {n_workers}\n{}",
            starts.len(),
            server.tail()
        );
    }
    // The next recycle, or the next scenario, starts with the old workers
    // gone, not draining beside it.
    server.wait_event(mark, &format!("{n_workers} old workers exited"), RECYCLE_WITHIN, {
        let mut exited = 0;
        move |event| {
            exited += usize::from(matches!(event, LogEvent::Exited { .. }));
            (exited == n_workers).then_some(())
        }
    })?;
    Ok(RecycleTiming { wall: done_at - sent, master_ms, starts })
}

/// SIGHUP → recycle complete, one at a time and all at once; the master's
/// share, and the start breakdown of the replacements.
pub(super) fn recycle(bench: &Bench, results: &mut Results) -> Result<()> {
    for parallel in [1, WORKERS] {
        let server = bench.start_master(WORKERS, &["--recycle-parallel", &parallel.to_string()])?;
        server.wait_serving(WORKERS, START_WITHIN)?;
        for _ in 0..bench.settings.repeats {
            let timing = recycle_once(&server, WORKERS)?;
            let name = format!("SIGHUP → all {WORKERS} replaced, recycle.parallel {parallel}");
            results.record("recycle", &name, Unit::Ms, Better::Lower, ms(timing.wall));
            eprintln!(
                "    parallel {parallel}: {:.1?}; master says {} ms, replacements {:?}",
                timing.wall, timing.master_ms, timing.starts
            );
            if parallel == 1 {
                timing.record_breakdown(results, "start breakdown", "", true)?;
            }
        }
    }
    Ok(())
}

/// Requests sent and failed while the master is recycled again and again.
pub(super) fn lossless(bench: &Bench, results: &mut Results) -> Result<()> {
    let recycles = bench.settings.recycles;
    for (mode, label) in [(Mode::NewConnection, "new connection"), (Mode::KeepAlive, "keep-alive")]
    {
        let server = bench.start_master(WORKERS, &[])?;
        server.wait_serving(WORKERS, START_WITHIN)?;
        let load = LoadGuard::start(LoadConfig {
            threads: LOSSLESS_THREADS,
            mode,
            max_requests: LOSSLESS_MAX_REQUESTS,
            max_duration: LOSSLESS_MAX_DURATION,
            timeout: REQUEST_TIMEOUT,
            ..LoadConfig::new(server.addr())
        });
        let within = Duration::from_secs(10);
        load.wait_progress(LOSSLESS_PROGRESS, within)?;
        for index in 1..=recycles {
            recycle_once(&server, WORKERS)
                .with_context(|| format!("{label}: recycle {index} of {recycles}"))?;
            load.wait_progress(LOSSLESS_PROGRESS, within)
                .with_context(|| format!("{label}: after recycle {index} of {recycles}"))?;
        }
        let report = load.stop();
        let scenario = format!("lossless, {label}");
        let sent = format!("requests sent during {recycles} recycles");
        results.record(&scenario, &sent, Unit::Count, Better::Higher, report.sent as f64);
        let failed = report.failed() as f64;
        results.record(&scenario, "requests failed", Unit::Count, Better::Lower, failed);
        eprintln!("    {label}: {report}");
    }
    Ok(())
}

/// SIGKILL of a worker → its replacement spawned, started, answering.
pub(super) fn crash_recovery(bench: &Bench, results: &mut Results) -> Result<()> {
    let server = bench.start_master(WORKERS, &["--restart-delay", "0"])?;
    for _ in 0..bench.settings.repeats {
        let original = server.wait_serving(WORKERS, START_WITHIN)?;
        let victim = *original.first().expect("waited for the workers");
        let probe = LoadGuard::probe(&server);
        probe.wait_progress(PROBE_AFTER, START_WITHIN)?;
        let mark = server.mark();
        let killed = server.signal_worker(victim, Signal::SIGKILL)?;
        let within = Duration::from_secs(10);
        let (spawned_at, replacement) = server.wait_event(
            mark,
            "replacement's \"spawned\" line",
            within,
            |event| match event {
                LogEvent::Spawned { pid } => Some(*pid),
                _ => None,
            },
        )?;
        let (started_at, ()) = server.wait_event(
            mark,
            "replacement's \"started\" line",
            within,
            |event| match event {
                LogEvent::Started { pid, .. } if *pid == replacement => Some(()),
                _ => None,
            },
        )?;
        probe.wait_progress(PROBE_AFTER, within)?;
        let since = probe.started();
        let report = probe.stop();
        let answering = report
            .answers
            .iter()
            .find(|answer| answer.pid == replacement)
            .map(|answer| since + answer.at - killed)
            .with_context(|| format!("the replacement never answered: {report}"))?;
        let scenario = "crash recovery";
        let spawned = spawned_at - killed;
        let started = started_at - killed;
        let name = "SIGKILL → replacement spawned";
        results.record(scenario, name, Unit::Ms, Better::Lower, ms(spawned));
        let name = "SIGKILL → replacement started";
        results.record(scenario, name, Unit::Ms, Better::Lower, ms(started));
        let name = "SIGKILL → replacement answering `GET /`";
        results.record(scenario, name, Unit::Ms, Better::Lower, ms(answering));
        eprintln!("    spawned {spawned:.1?}, started {started:.1?}, answering {answering:.1?}");
    }
    Ok(())
}

/// The master's memory, and its CPU time idle and per recycle.
pub(super) fn master_cost(bench: &Bench, results: &mut Results) -> Result<()> {
    let recycles = bench.settings.recycles;
    let server = bench.start_master(WORKERS, &[])?;
    server.wait_serving(WORKERS, START_WITHIN)?;
    let master = server.pid();
    let (rss_kib, _) = server::memory_kib(master)?;
    let idle_start = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    thread::sleep(bench.settings.idle);
    let idle_end = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    let mark = server.mark();
    for index in 1..=recycles {
        recycle_once(&server, WORKERS).with_context(|| format!("recycle {index} of {recycles}"))?;
    }
    // Reaping the last old workers is part of the recycles' cost.
    let old_workers = WORKERS * recycles;
    server.wait_event(mark, &format!("{old_workers} old workers exited"), RECYCLE_WITHIN, {
        let mut exited = 0;
        move |event| {
            exited += usize::from(matches!(event, LogEvent::Exited { .. }));
            (exited == old_workers).then_some(())
        }
    })?;
    let recycles_end = (server::cpu_ns(master)?, server::cpu_ticks(master)?);
    let (_, peak_kib) = server::memory_kib(master)?;

    let scenario = "master cost";
    let mib = |kib: u64| kib as f64 / 1024.0;
    results.record(scenario, "RSS with 4 workers", Unit::Mib, Better::Lower, mib(rss_kib));
    let name = format!("peak RSS after {recycles} recycles");
    results.record(scenario, &name, Unit::Mib, Better::Lower, mib(peak_kib));
    let idle = format!("CPU over {} s idle", bench.settings.idle.as_secs());
    let per_recycle = format!("CPU per recycle (mean of {recycles})");
    let mut schedstat_ms = (None, None);
    if let ((Some(idle_start), _), (Some(idle_end), _), (Some(recycles_end), _)) =
        (idle_start, idle_end, recycles_end)
    {
        let ns_to_ms = |ns: u64| ns as f64 / 1e6;
        let idle_ms = ns_to_ms(idle_end - idle_start);
        let recycle_ms = ns_to_ms(recycles_end - idle_end) / recycles as f64;
        let name = format!("{idle}, schedstat");
        results.record(scenario, &name, Unit::Ms, Better::Lower, idle_ms);
        let name = format!("{per_recycle}, schedstat");
        results.record(scenario, &name, Unit::Ms, Better::Lower, recycle_ms);
        schedstat_ms = (Some(idle_ms), Some(recycle_ms));
    } else {
        results.note("/proc/<pid>/schedstat is missing on this kernel: CPU only in ticks".into());
    }
    let idle_ticks_ms = bench.ticks_to_ms(idle_end.1 - idle_start.1);
    let name = format!("{idle}, utime+stime");
    results.record(scenario, &name, Unit::Ms, Better::Lower, idle_ticks_ms);
    let recycle_ticks_ms = bench.ticks_to_ms(recycles_end.1 - idle_end.1) / recycles as f64;
    let name = format!("{per_recycle}, utime+stime");
    results.record(scenario, &name, Unit::Ms, Better::Lower, recycle_ticks_ms);
    let show = |ms: Option<f64>| ms.map_or("-".to_owned(), |ms| format!("{ms:.2} ms"));
    eprintln!(
        "    RSS {rss_kib} KiB (peak {peak_kib} KiB); CPU idle {} (ticks: {idle_ticks_ms} ms), \
         per recycle {} (ticks: {recycle_ticks_ms} ms)",
        show(schedstat_ms.0),
        show(schedstat_ms.1)
    );
    Ok(())
}

/// Keep-alive req/s through the shared socket, beside the server alone.
pub(super) fn throughput(bench: &Bench, results: &mut Results) -> Result<()> {
    let configs = [(None, "standalone, no master"), (Some(1), "1 worker"), (Some(2), "2 workers")];
    let configs = configs.into_iter().chain([(Some(WORKERS), "4 workers")]);
    let mut standalone_rps = None;
    for (workers, label) in configs {
        let server = match workers {
            None => {
                let args = ["--addr", "127.0.0.1", "--port", "0", "--standalone"];
                Server::start(&bench.http, &args, START_WITHIN)?
            }
            Some(n) => {
                let server = bench.start_master(n, &[])?;
                server.wait_serving(n, START_WITHIN)?;
                server
            }
        };
        // Serving before the clock starts.
        let probe = LoadGuard::probe(&server);
        probe.wait_progress(10, START_WITHIN)?;
        if probe.stop().ok == 0 {
            bail!("{label}: no answer to GET /\n{}", server.tail());
        }
        let report = LoadGuard::start(LoadConfig {
            threads: THROUGHPUT_THREADS,
            mode: Mode::KeepAlive,
            max_requests: THROUGHPUT_MAX_REQUESTS,
            max_duration: bench.settings.throughput,
            timeout: REQUEST_TIMEOUT,
            ..LoadConfig::new(server.addr())
        })
        .wait();
        if report.failed() > 0 || report.ok == 0 {
            bail!("{label}: requests failed without any recycle: {report}\n{}", server.tail());
        }
        let rps = report.ok as f64 / report.duration.as_secs_f64();
        results.record("throughput", label, Unit::Rps, Better::Higher, rps);
        match (workers, standalone_rps) {
            (None, _) => standalone_rps = Some(rps),
            (Some(_), Some(base)) => {
                let name = format!("{label} / standalone");
                results.record("throughput", &name, Unit::Ratio, Better::Higher, rps / base);
            }
            (Some(_), None) => {}
        }
        eprintln!("    {label}: {rps:.0} req/s ({report})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(pid: u32, steps: &[(&str, u64)]) -> LogEvent {
        let steps = steps.iter().map(|(name, us)| ((*name).to_owned(), *us)).collect();
        LogEvent::StartSteps { pid, steps }
    }

    #[test]
    fn the_starts_are_those_of_the_workers_forked_within_the_events() {
        let events = [
            // Worker 1 started before: its fork is not among the events.
            steps(1, &[("hello", 900)]),
            LogEvent::ForkExec { pid: 2, us: 600 },
            LogEvent::Spawned { pid: 2 },
            steps(2, &[("hello", 400), ("listen request", 450), ("listening", 700)]),
        ];
        let starts = starts_within(&events);
        assert_eq!(starts.len(), 1);
        assert_eq!((starts[0].fork_exec, starts[0].after_exec()), (600, 700));
        assert_eq!(starts[0].step("listen request"), Some(450));
        assert_eq!(starts[0].step("online"), None);
    }

    #[test]
    fn the_master_share_is_what_the_kernel_and_the_workers_did_not_take() {
        let start = |fork_exec, listening| StartSteps {
            fork_exec,
            steps: vec![("hello".to_owned(), 500), ("listening".to_owned(), listening)],
        };
        let timing = RecycleTiming {
            wall: Duration::from_micros(10_300),
            master_ms: 10,
            starts: vec![start(1_000, 1_000), start(1_500, 1_500), start(2_000, 1_000)],
        };
        // 10.3 ms minus 8 ms of forks, execs and starts.
        let share = timing.master_share_ms();
        assert!((share - 2.3).abs() < 1e-9, "{share}");
        assert_eq!(timing.mean_ms(|start| Some(start.fork_exec)), Some(1.5));
        assert_eq!(timing.mean_ms(|start| start.step("online")), None);
        let slow = RecycleTiming { wall: Duration::from_millis(5), ..timing };
        assert_eq!(slow.master_share_ms(), 0.0);
    }
}
