//! `cargo xtask ci`: every check CI makes, in order, stopping at the first
//! failure.
//!
//! `.ci/run` and the README's test command are exactly this, so what passes
//! on a laptop passes in CI. The order puts the cheap checks first: format,
//! lints, unit and integration tests (which include the `tidy` checks, a
//! `#[test]` module of xtask), end-to-end tests, documentation, then the
//! dependency graph (cargo-deny: bans, licenses, sources; installed first
//! when missing).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One named step: a cargo command that must exit with 0, after `prepare`
/// (which installs what the command needs) if there is one.
struct Step {
    name: &'static str,
    prepare: Option<fn() -> Result<()>>,
    command: Command,
}

/// The cargo-deny release CI installs when it is missing; pinned, so that a
/// new release cannot change what CI checks.
const CARGO_DENY: &str = "cargo-deny@0.20.2";

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

    // The advisories check is left out: its database is fetched from
    // GitHub, which CI cannot reach. `deny.toml` says what is checked.
    let mut deny = crate::cargo();
    deny.args(["deny", "--locked", "check", "bans", "licenses", "sources"]);

    vec![
        Step { name: "fmt", prepare: None, command: fmt },
        Step { name: "clippy", prepare: None, command: clippy },
        Step { name: "test", prepare: None, command: test },
        Step { name: "test-e2e", prepare: None, command: crate::e2e::command(&[]) },
        Step { name: "doc", prepare: None, command: doc },
        Step { name: "deny", prepare: Some(install_cargo_deny), command: deny },
    ]
}

/// Installs cargo-deny from crates.io unless `cargo deny` already runs.
fn install_cargo_deny() -> Result<()> {
    let present = crate::cargo()
        .args(["deny", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        return Ok(());
    }
    eprintln!("==> cargo-deny is missing: installing {CARGO_DENY} (a few minutes, once)");
    crate::run_step(crate::cargo().args(["install", "--locked", CARGO_DENY]))
}

pub(crate) fn run() -> Result<()> {
    let ci_start = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    for Step { name, prepare, mut command } in steps() {
        eprintln!("==> ci step `{name}`");
        let start = Instant::now();
        let res = prepare
            .map_or(Ok(()), |prepare| prepare())
            .and_then(|()| crate::run_step(&mut command));
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
