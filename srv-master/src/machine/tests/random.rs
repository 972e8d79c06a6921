//! Random event sequences, drawn by proptest: whatever happens, the fake
//! shell's invariants hold.
//!
//! A case is a [`World`] (the options) and up to 120 [`Step`]s. A step is
//! drawn before the state it meets is known, so it carries numbers that
//! `random_run` reads against that state: `roll` chooses what happens (the
//! table in `random_run`), `pick` the worker among those it can happen to,
//! `variant` the flavour (which signal, message or protocol version). A
//! failing case shrinks to fewer and smaller steps, which proptest prints.
//!
//! [`config`] sets the case count; `PROPTEST_CASES` raises it for a longer
//! run. Failures are saved beside this file
//! (`random.proptest-regressions`) and replayed first.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::FileFailurePersistence;
use srv_proto::PROTOCOL_VERSION;

use super::shell::{Shell, options};
use crate::options::Require;

/// `cases` cases, unless `PROPTEST_CASES` says otherwise, with failures
/// saved beside this file rather than in a `proptest-regressions` folder at
/// the crate root.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// The options of one case.
#[derive(Debug, Clone)]
struct World {
    /// `worker.count`, 1 to 4.
    count: usize,
    /// `restart.delay`.
    restart_delay_ms: u64,
    /// `worker.require = listen` (one case in three), else `online`.
    require_listen: bool,
    /// `worker.max_start_failures`: 1, the default 3, or so many that the
    /// master never gives up.
    max_start_failures: u32,
    /// `recycle.parallel`, 1 to `count`.
    parallel: usize,
    /// `worker.max_rss = 100` (MiB; one case in three): `rss` steps mark
    /// workers above it.
    max_rss: bool,
    /// `worker.max_age` in ms (one case in three).
    max_age_ms: Option<u64>,
    /// `worker.watchdog = 2000` (one case in four): workers not heard
    /// from for 2 s are killed as hung.
    watchdog: bool,
}

/// One step of a case, read against the state it meets (see the module
/// docs).
#[derive(Debug, Clone)]
struct Step {
    /// What happens, out of 100.
    roll: u8,
    /// The worker it happens to, among those it can happen to.
    pick: Index,
    /// The flavour, out of 4 (or out of 2, as `variant % 2`).
    variant: u8,
    /// Milliseconds after the previous step.
    later: u64,
    /// Milliseconds that pass more when nothing else happens.
    idle: u64,
}

impl Step {
    fn pick(&self, ids: &[u32]) -> Option<u32> {
        (!ids.is_empty()).then(|| *self.pick.get(ids))
    }
}

fn world() -> impl Strategy<Value = World> {
    let delays: &'static [u64] = &[0, 100, 1000, 5000];
    let limits: &'static [u32] = &[1, 3, 1000];
    let ages: &'static [Option<u64>] = &[None, None, Some(3000), Some(20_000)];
    (
        1..=4usize,
        select(delays),
        prop::bool::weighted(1.0 / 3.0),
        select(limits),
        prop::bool::weighted(1.0 / 3.0),
        select(ages),
        prop::bool::weighted(0.25),
    )
        .prop_flat_map(
            |(
                count,
                restart_delay_ms,
                require_listen,
                max_start_failures,
                max_rss,
                max_age_ms,
                watchdog,
            )| {
                (1..=count).prop_map(move |parallel| World {
                    count,
                    restart_delay_ms,
                    require_listen,
                    max_start_failures,
                    parallel,
                    max_rss,
                    max_age_ms,
                    watchdog,
                })
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    // Mostly at once, sometimes a little or a second later.
    let later: &'static [u64] = &[0, 0, 0, 1, 10, 100, 1000];
    (0..100u8, any::<Index>(), 0..4u8, select(later), 0..6000u64)
        .prop_map(|(roll, pick, variant, later, idle)| Step { roll, pick, variant, later, idle })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Random signals (`SIGUSR2` and the upgrade's probe and exec included),
    /// messages, crashes, exits, memory figures (`worker.max_rss`), ages
    /// (`worker.max_age`), heartbeats (`worker.watchdog`) and time; after
    /// every step the
    /// fake shell's invariants hold (a master that gives up before any worker
    /// started counts as shutting down), and the machine never runs more than the
    /// target plus `recycle.parallel` replacements (of a recycle or planned).
    /// With planned recycles or a watchdog, time also passes in a
    /// well-behaved world (with a watchdog, sometimes after a stop of the
    /// whole process group), and never are fewer than the target started
    /// meanwhile. Every so often the
    /// world turns well-behaved until it is quiet: then exactly the target runs,
    /// all started, and after a `SIGHUP` all of them were spawned after it, and
    /// never during that recycle were fewer than the target started. The end is
    /// a shutdown that exits exactly once.
    #[test]
    fn random_event_sequences_keep_the_invariants(
        world in world(),
        steps in vec(step(), 0..=STEPS),
    ) {
        random_run(&world, &steps);
    }
}

/// Cases per run: as many as the 600 seeded runs this test had before it
/// used proptest, each of at most [`STEPS`] steps.
const CASES: u32 = 600;

/// The most steps in one case.
const STEPS: usize = 120;

fn random_run(world: &World, steps: &[Step]) {
    let count = world.count;
    let mut options = options(count);
    options.restart.delay = Duration::from_millis(world.restart_delay_ms);
    options.restart.max_delay = Duration::from_millis(8000);
    options.recycle.timeout = Duration::from_millis(3000);
    options.shutdown.timeout = Duration::from_millis(3000);
    if world.require_listen {
        options.worker.require = Require::Listen;
    }
    options.worker.max_start_failures = world.max_start_failures;
    options.recycle.parallel = world.parallel;
    options.worker.max_rss = world.max_rss.then_some(100);
    options.worker.max_age = world.max_age_ms.map(Duration::from_millis);
    options.worker.watchdog = world.watchdog.then_some(Duration::from_millis(2000));
    // Time that passes in a well-behaved world replaces workers (planned
    // recycles) or has them prove alive (the watchdog).
    let periodic = world.max_rss || world.max_age_ms.is_some() || world.watchdog;
    let mut shell = Shell::start(options, false);
    let (mut target, mut shutting_down) = (count, false);
    for step in steps {
        if shell.exits > 0 {
            break;
        }
        let (live, serving, leaving) = (shell.live(), shell.serving(), shell.leaving());
        let later = step.later;
        let mut lines = Vec::new();
        match step.roll {
            0..6 => lines.push("SIGHUP".to_owned()),
            6..11 => {
                target += usize::from(!shutting_down);
                lines.push("SIGTTIN".to_owned());
            }
            11..17 => {
                target -= usize::from(!shutting_down && target > 1);
                lines.push("SIGTTOU".to_owned());
            }
            17..19 => {
                shutting_down = true;
                lines.push(["SIGTERM", "SIGINT"][usize::from(step.variant % 2)].to_owned());
            }
            19..45 => {
                if let Some(id) = step.pick(&live) {
                    let process = &shell.processes[&id];
                    lines.push(match (process.greeted, step.variant) {
                        (false, _) => format!("hello {id}"),
                        (true, 0) => format!("listen-request {id}"),
                        (true, 1) => format!("listening {id}"),
                        (true, _) => format!("online {id}"),
                    });
                }
            }
            45..52 => lines.extend(step.pick(&serving).map(|id| format!("exited {id} signal=11"))),
            52..56 => {
                if let Some(id) = step.pick(&serving) {
                    lines.push(format!("exit-msg {id} code=3"));
                    lines.push(format!("exited {id} code=3"));
                }
            }
            56..70 => {
                if let Some(id) = step.pick(&leaving) {
                    let killed = shell.processes[&id].killed;
                    lines.push(format!(
                        "exited {id} {}",
                        if killed { "signal=9" } else { "code=0" }
                    ));
                }
            }
            70..73 => lines.extend(step.pick(&live).map(|id| format!("closed {id}"))),
            73..75 => {
                let line = ["garbage", "flood n=1001"][usize::from(step.variant % 2)];
                lines.extend(step.pick(&live).map(|id| format!("{line} {id}")));
            }
            75..77 => {
                let version =
                    [PROTOCOL_VERSION, PROTOCOL_VERSION + 1][usize::from(step.variant % 2)];
                lines.extend(step.pick(&live).map(|id| format!("hello {id} version={version}")));
            }
            77..79 => lines.push("spawn-fails".to_owned()),
            79..84 if !shutting_down && shell.failing_spawns == 0 => {
                if !settle_running(&mut shell, target) {
                    shutting_down = true;
                    continue;
                }
                let before = shell.processes.keys().max().copied().unwrap_or(0);
                // Nothing fails from here until the recycle is over: the
                // target keeps serving throughout.
                shell.keep_started(Some(target));
                shell.line(&format!("{} SIGHUP", shell.now_ms));
                shell.settle();
                shell.keep_started(None);
                shell.check_settled(target);
                let live = shell.live();
                if live.iter().any(|id| *id <= before) {
                    shell.broken(&format!(
                        "{live:?} live after a SIGHUP when {before} was the newest"
                    ));
                }
            }
            84..88 if !shutting_down && !settle_running(&mut shell, target) => {
                shutting_down = true;
                continue;
            }
            84..88 if !shutting_down && periodic && shell.failing_spawns == 0 => {
                // Time passes in a world without failures: planned
                // recycles replace workers (a few ages of 3 s, a memory
                // sample every second), watched workers prove alive, and
                // never are fewer than the target started (a worker taken
                // for hung would be).
                shell.keep_started(Some(target));
                if world.watchdog && step.variant == 0 {
                    // The whole process group stops for 5 s (Ctrl+Z, docker
                    // pause), the workers with the master, just after each
                    // worker proved alive: the master runs again with every
                    // heartbeat older than a period, and still no worker is
                    // taken for hung.
                    shell.settle();
                    let now = shell.now_ms;
                    let greeted: Vec<u32> = shell
                        .serving()
                        .into_iter()
                        .filter(|id| shell.processes[id].greeted)
                        .collect();
                    for id in greeted {
                        shell.line(&format!("{now} alive {id}"));
                    }
                    shell.line(&format!("{} tick", now + 5000));
                }
                shell.settle_until(shell.now_ms + 10_000);
                shell.keep_started(None);
                shell.check_settled(target);
            }
            88..91 => lines.push("SIGUSR2".to_owned()),
            91..95 => match &shell.probe {
                Some(probe) if probe.killed => {
                    lines.push("probe-exited signal=9 missing".to_owned())
                }
                Some(_) => lines.push(
                    [
                        "probe-exited",
                        "probe-exited code=2 missing",
                        "probe-exited protocol=99",
                        "probe-exited garbage",
                    ][usize::from(step.variant)]
                    .to_owned(),
                ),
                None => {}
            },
            95 => lines.push("exec-fails".to_owned()),
            96 => lines.push("probe-spawn-fails".to_owned()),
            97..100 if world.max_rss && step.variant < 2 => {
                let mb = [500, 10][usize::from(step.variant % 2)];
                lines.extend(step.pick(&serving).map(|id| format!("rss {id} mb={mb}")));
            }
            97..100 if world.watchdog => {
                let greeted: Vec<u32> =
                    serving.iter().copied().filter(|id| shell.processes[id].greeted).collect();
                lines.extend(step.pick(&greeted).map(|id| format!("alive {id}")));
            }
            _ => {}
        }
        let ms = shell.now_ms + later;
        if lines.is_empty() {
            // Nothing else happens: time passes.
            shell.line(&format!("{} tick", ms + step.idle));
        }
        for line in lines {
            shell.line(&format!("{ms} {line}"));
        }
        if !shutting_down {
            // A master whose workers never started may give up: it stops on
            // its own, which only a start failure before any start may cause.
            if shell.gave_up() {
                shutting_down = true;
            } else {
                shell.check_running(target);
            }
        }
    }
    if !shutting_down && settle_running(&mut shell, target) {
        shell.line(&format!("{} SIGTERM", shell.now_ms));
    }
    shell.settle();
    shell.check_exited();
}

/// Settles a running master and checks that exactly `target` workers
/// serve; `false` if it gave up instead (its workers never started), and
/// then it has exited.
fn settle_running(shell: &mut Shell, target: usize) -> bool {
    shell.settle();
    if shell.gave_up() {
        shell.check_exited();
        return false;
    }
    shell.check_settled(target);
    true
}
