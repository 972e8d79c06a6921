//! `cargo xtask ci`: every check CI makes, in order, stopping at the first
//! failure.
//!
//! `.ci/run` and the README's test command are exactly this, so what passes
//! on a laptop passes in CI. The order puts the cheap checks first: format,
//! lints, unit and integration tests (which include the `tidy` checks, a
//! `#[test]` module of xtask), end-to-end tests, then documentation.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One named step: a cargo command that must exit with 0.
struct Step {
    name: &'static str,
    command: Command,
}

fn steps() -> Vec<Step> {
    let mut fmt = crate::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    // One clippy run covers every target, the e2e test target included
    // (it only builds with the `e2e` feature). `--locked` because
    // `Cargo.lock` is committed: CI must not silently update it.
    let mut clippy = crate::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--features",
        "srv-examples/e2e",
        "--",
        "-D",
        "warnings",
    ]);

    // Debug build; the e2e target has `required-features`, so it is skipped.
    let mut test = crate::cargo();
    test.args(["test", "--workspace"]);

    let mut doc = crate::cargo();
    doc.args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings");

    vec![
        Step { name: "fmt", command: fmt },
        Step { name: "clippy", command: clippy },
        Step { name: "test", command: test },
        Step { name: "test-e2e", command: crate::e2e::command(&[]) },
        Step { name: "doc", command: doc },
    ]
}

pub(crate) fn run() -> Result<()> {
    let ci_start = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    for Step { name, mut command } in steps() {
        eprintln!("==> ci step `{name}`");
        let start = Instant::now();
        let res = crate::run_step(&mut command);
        let elapsed = start.elapsed();
        if let Err(error) = res {
            print_timings(&timings);
            bail!("ci failed at step `{name}` after {elapsed:.1?}: {error:#}");
        }
        eprintln!("==> ci step `{name}` passed in {elapsed:.1?}");
        timings.push((name, elapsed));
    }
    print_timings(&timings);
    eprintln!("ci passed in {:.1?}", ci_start.elapsed());
    Ok(())
}

fn print_timings(timings: &[(&str, Duration)]) {
    for (name, elapsed) in timings {
        eprintln!("    {name:<10} {elapsed:>8.1?}");
    }
}
