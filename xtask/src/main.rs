//! `cargo xtask`: the project's automation, written in Rust so it runs
//! wherever cargo does.
//!
//! `.cargo/config.toml` aliases `cargo xtask` to `cargo run --package xtask --`.
//! The commands are matched by hand from `std::env::args`; there are few of
//! them and they take almost no options. Cargo is invoked through `$CARGO`
//! (the cargo that runs us), always from the workspace root.
//!
//! The `tidy` checks are a `#[test]` module, so plain `cargo test` enforces
//! them too.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "printing progress and results is what this tool is for"
)]

mod bench;
mod ci;
mod e2e;
#[cfg(test)]
mod tidy;

use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci                    everything CI checks, in order, stopping at the first failure:
                        fmt, clippy, test (includes the tidy checks), test-e2e (installs
                        wrk, ab, h2load if missing), doc, deny (cargo-deny: bans,
                        licenses, sources; installed if missing)
  test-e2e [-- args]    the end-to-end tests (release build, real processes);
                        args go to the test binary, e.g. `-- --nocapture recycle`
  bench [--runs N] [--quick] [--only NAME]
                        benchmarks against the reference server (release build):
                        startup, recycle (and the start breakdown), a recycle under
                        load, lossless recycles under load, crash recovery, master
                        cost, throughput; a markdown table on stdout and
                        target/bench/results.json. 5 runs by default; --quick does
                        1 shortened run, to check that the tool works; --only runs
                        the scenarios whose name contains NAME
  fuzz [-- args]        fuzz the frame decoder with cargo-fuzz, if it is installed;
                        args go to `cargo fuzz run decoder`
  help                  this message
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    match command.as_str() {
        "ci" => {
            if !rest.is_empty() {
                bail!("`cargo xtask ci` takes no arguments, got {rest:?}");
            }
            ci::run()?;
        }
        "test-e2e" => {
            let extra = rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest);
            run_step(&mut e2e::command(extra))?;
        }
        "bench" => return bench::run(rest),
        "fuzz" => fuzz(rest)?,
        "help" | "--help" | "-h" => print!("{USAGE}"),
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `cargo fuzz run decoder` in `fuzz/`, or says plainly that
/// cargo-fuzz is missing: it is an optional tool, so its absence is not an
/// error.
fn fuzz(extra: &[String]) -> Result<()> {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        eprintln!(
            "cargo-fuzz is not installed, so there is nothing to fuzz with; \
             install it with `cargo install cargo-fuzz` (fuzzing needs a nightly toolchain)"
        );
        return Ok(());
    }
    let fuzz_dir = workspace_root().join("fuzz");
    if !fuzz_dir.join("Cargo.toml").is_file() {
        bail!("no fuzz crate: {} does not exist", fuzz_dir.join("Cargo.toml").display());
    }
    let mut command = cargo();
    command.current_dir(&fuzz_dir).args(["fuzz", "run", "decoder"]).args(extra);
    run_step(&mut command)
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace")
}

/// A `Command` for the cargo that runs us (`$CARGO`, else `cargo` on the
/// `PATH`), started in the workspace root.
fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(workspace_root());
    command
}

/// Runs `command` with inherited stdio, failing unless it exits with 0.
fn run_step(command: &mut Command) -> Result<()> {
    let shown = show(command);
    eprintln!("$ {shown}");
    let start = Instant::now();
    let status = command.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status}) after {:.1?}", start.elapsed());
    }
    Ok(())
}

/// `command` as a shell-like line, with the environment it sets and the
/// directory it runs in when that is not the workspace root.
fn show(command: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            parts.push(format!("{}={:?}", key.to_string_lossy(), value.to_string_lossy()));
        }
    }
    let program = Path::new(command.get_program());
    // `$CARGO` is an absolute path into the toolchain; `cargo` reads better.
    let program = match program.file_stem() {
        Some(stem) if stem == "cargo" => "cargo".into(),
        _ => program.to_string_lossy(),
    };
    parts.push(program.into_owned());
    parts.extend(command.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    let mut line = parts.join(" ");
    if let Some(dir) = command.get_current_dir()
        && dir != workspace_root()
    {
        let dir = dir.strip_prefix(workspace_root()).unwrap_or(dir);
        line = format!("(cd {} && {line})", dir.display());
    }
    line
}
