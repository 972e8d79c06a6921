//! Random event sequences: whatever happens, the fake shell's invariants
//! hold.

use std::time::Duration;

use srv_proto::PROTOCOL_VERSION;

use super::shell::{Shell, options};
use crate::options::Require;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, ids: &[u32]) -> Option<u32> {
        (!ids.is_empty()).then(|| ids[self.below(ids.len() as u64) as usize])
    }
}

/// Random signals, messages, crashes, exits and time; after every step the
/// fake shell's invariants hold, and the machine never runs more than the
/// target plus one recycle replacement. Every so often the world turns
/// well-behaved until it is quiet: then exactly the target runs, all
/// started, and after a `SIGHUP` all of them were spawned after it. The end
/// is a shutdown that exits exactly once.
#[test]
fn random_event_sequences_keep_the_invariants() {
    for seed in 1..=600 {
        random_run(seed);
    }
}

fn random_run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let count = 1 + rng.below(4) as usize;
    let mut options = options(count);
    options.restart.delay = Duration::from_millis([0, 100, 1000, 5000][rng.below(4) as usize]);
    options.restart.max_delay = Duration::from_millis(8000);
    options.recycle.timeout = Duration::from_millis(3000);
    options.shutdown.timeout = Duration::from_millis(3000);
    if rng.below(3) == 0 {
        options.worker.require = Require::Listen;
    }
    let mut shell = Shell::start(options, false);
    shell.label = format!(" (seed {seed})");
    let (mut target, mut shutting_down) = (count, false);
    for _ in 0..120 {
        if shell.exits > 0 {
            break;
        }
        let (live, serving, leaving) = (shell.live(), shell.serving(), shell.leaving());
        let later = [0, 0, 0, 1, 10, 100, 1000][rng.below(7) as usize];
        let mut lines = Vec::new();
        match rng.below(100) {
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
                lines.push(["SIGTERM", "SIGINT"][rng.below(2) as usize].to_owned());
            }
            19..45 => {
                if let Some(id) = rng.pick(&live) {
                    let process = &shell.processes[&id];
                    lines.push(match (process.greeted, rng.below(4)) {
                        (false, _) => format!("hello {id}"),
                        (true, 0) => format!("listen-request {id}"),
                        (true, 1) => format!("listening {id}"),
                        (true, _) => format!("online {id}"),
                    });
                }
            }
            45..52 => lines.extend(rng.pick(&serving).map(|id| format!("exited {id} signal=11"))),
            52..56 => {
                if let Some(id) = rng.pick(&serving) {
                    lines.push(format!("exit-msg {id} code=3"));
                    lines.push(format!("exited {id} code=3"));
                }
            }
            56..70 => {
                if let Some(id) = rng.pick(&leaving) {
                    let killed = shell.processes[&id].killed;
                    lines.push(format!(
                        "exited {id} {}",
                        if killed { "signal=9" } else { "code=0" }
                    ));
                }
            }
            70..73 => lines.extend(rng.pick(&live).map(|id| format!("closed {id}"))),
            73..75 => {
                let line = ["garbage", "flood n=1001"][rng.below(2) as usize];
                lines.extend(rng.pick(&live).map(|id| format!("{line} {id}")));
            }
            75..77 => {
                let version = [PROTOCOL_VERSION, PROTOCOL_VERSION + 1][rng.below(2) as usize];
                lines.extend(rng.pick(&live).map(|id| format!("hello {id} version={version}")));
            }
            77..79 => lines.push("spawn-fails".to_owned()),
            79..84 if !shutting_down && shell.failing_spawns == 0 => {
                shell.settle();
                shell.check_settled(target);
                let before = shell.processes.keys().max().copied().unwrap_or(0);
                shell.line(&format!("{} SIGHUP", shell.now_ms));
                shell.settle();
                shell.check_settled(target);
                let live = shell.live();
                if live.iter().any(|id| *id <= before) {
                    shell.broken(&format!(
                        "{live:?} live after a SIGHUP when {before} was the newest"
                    ));
                }
            }
            84..88 if !shutting_down => {
                shell.settle();
                shell.check_settled(target);
            }
            _ => {}
        }
        let ms = shell.now_ms + later;
        if lines.is_empty() {
            // Nothing else happens: time passes.
            shell.line(&format!("{} tick", ms + rng.below(6000)));
        }
        for line in lines {
            shell.line(&format!("{ms} {line}"));
        }
        if !shutting_down {
            shell.check_running(target);
        }
    }
    if !shutting_down {
        shell.settle();
        shell.check_settled(target);
        shell.line(&format!("{} SIGTERM", shell.now_ms));
    }
    shell.settle();
    shell.check_exited();
}
