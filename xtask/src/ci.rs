//! `cargo xtask ci`: every check CI makes, in order, stopping at the first
//! failure.
//!
//! `.ci/run` and the README's test command are exactly this, so what passes
//! on a laptop passes in CI. The order puts the cheap checks first: format,
//! lints, unit and integration tests (which include the `tidy` checks, a
//! `#[test]` module of xtask), end-to-end tests, documentation, then the
//! dependency graph (cargo-deny: bans, licenses, sources; installed first
//! when missing).
//!
//! The end-to-end step first installs the HTTP clients its tests drive the
//! servers with (`wrk`, `ab`, `h2load`) from their Debian packages when
//! they are missing, since CI starts from a clean machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The clients of the end-to-end tests, and the Debian package of each.
const CLIENTS: [(&str, &str); 3] =
    [("wrk", "wrk"), ("ab", "apache2-utils"), ("h2load", "nghttp2-client")];

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
        Step {
            name: "test-e2e",
            prepare: Some(install_missing_clients),
            command: crate::e2e::command(&[]),
        },
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

/// Installs the Debian packages of the clients in [`CLIENTS`] that are not
/// on `PATH`, with `apt-get` (through `sudo -n` when not root).
fn install_missing_clients() -> Result<()> {
    let missing: Vec<&str> = CLIENTS
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        eprintln!("    wrk, ab and h2load are installed");
        return Ok(());
    }
    eprintln!("    installing {}", missing.join(", "));
    let apt_get = |args: &[&str]| {
        let mut command = if nix::unistd::Uid::effective().is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    crate::run_step(&mut apt_get(&["update", "-q"]))
        .context("apt-get update (the e2e tests need wrk, ab and h2load)")?;
    let mut install = apt_get(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    crate::run_step(&mut install)
        .with_context(|| format!("apt-get install {}", missing.join(" ")))?;
    if let Some((program, package)) = CLIENTS.iter().find(|(program, _)| !on_path(program)) {
        bail!("{program} is still missing after installing {package}");
    }
    Ok(())
}

/// Whether an executable file called `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| {
        Path::new(&dir)
            .join(program)
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_path_finds_executables_only() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-program-of-srv-ci"));
        // A directory on the way is not a program.
        assert!(!on_path("."));
    }
}
