//! `http --config FILE`: srv's options from a TOML file, command-line flags
//! over it, and a file with an unknown key refused with the dotted key.
//! Also: the deployment examples in `deploy/` agree with their sample config
//! file (stop timeouts above `shutdown.timeout`, one listening address).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use srv_master::Options;

use crate::harness::{Exit, Master, TempDir, count};
use crate::http_support::{get_ok, http, start_on_port_0, wait_addr, wait_serving};

/// A config file of its own, in a temporary directory removed when dropped.
struct ConfigFile {
    /// Removes the file when dropped.
    _dir: TempDir,
    path: String,
}

impl ConfigFile {
    fn new(tag: &str, text: &str) -> ConfigFile {
        let dir = TempDir::new(&format!("config-{tag}"));
        let path = dir.write("srv.toml", text);
        ConfigFile { _dir: dir, path }
    }

    fn path(&self) -> &str {
        &self.path
    }
}

#[test]
fn a_toml_config_file_sets_the_worker_count_and_flags_override_it() {
    // Declared first, dropped last: after the masters that read it.
    let config = ConfigFile::new(
        "count",
        "# srv options for the e2e test\n\
         [worker]\n\
         count = 3\n\
         [shutdown]\n\
         timeout = 5000\n",
    );

    let master = start_on_port_0(http(), &["--config", config.path()]);
    let addr = wait_addr(&master);
    let workers = wait_serving(&master, 3);
    let pid = get_ok(&master, addr, "/").pid();
    if !pid.is_some_and(|pid| workers.contains(&pid)) {
        master.fail(&format!("GET / answered by {pid:?}, not by one of {workers:?}"));
    }
    drop(master);

    // A flag wins over the file, wherever it stands.
    let master = start_on_port_0(http(), &["--workers", "2", "--config", config.path()]);
    wait_addr(&master);
    wait_serving(&master, 2);
    if count(&master.lines(), "spawned (pid ") != 2 {
        master.fail("--workers 2 did not override worker.count = 3 of the config file");
    }
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused_naming_the_dotted_key() {
    let config = ConfigFile::new("unknown", "[worker]\ncount = 2\ncont = 3\n");
    let mut master =
        Master::start(http(), &["--addr", "127.0.0.1", "--port", "0", "--config", config.path()]);
    let exit = master.wait_exit();
    let lines = master.lines();
    let expected = format!("{}: invalid option worker.cont: unknown field `cont`", config.path());
    if exit == Exit::Code(0) || count(&lines, &expected) != 1 {
        master.fail(&format!("expected a non-zero exit and {expected:?}, got {exit:?}"));
    }
    if count(&lines, "spawned") != 0 {
        master.fail("a worker was started despite the bad config file");
    }
}

/// `deploy/` of the repository.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read_deploy_file(name: &str) -> String {
    let path = deploy_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// The number right after `prefix` in `text`, for example the `25` of
/// `TimeoutStopSec=25`; panics naming `file` if there is none.
fn number_after(file: &str, text: &str, prefix: &str) -> u64 {
    let start = text.find(prefix).unwrap_or_else(|| panic!("{file}: no {prefix:?}"));
    let rest = &text[start + prefix.len()..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().unwrap_or_else(|_| panic!("{file}: no number after {prefix:?}"))
}

#[test]
fn the_deployment_examples_agree_with_their_config_file() {
    let config = deploy_dir().join("srv-http.toml");
    let options = Options::from_file(&config).unwrap_or_else(|error| panic!("{error}"));
    // It says it lists the defaults.
    assert_eq!(options, Options::default(), "deploy/srv-http.toml differs from the defaults");
    let shutdown = options.shutdown.timeout;

    // Every process monitor waits longer than the master's own grace before
    // it kills the workers.
    let stop_timeouts = [
        ("systemd/srv-http.service", "\nTimeoutStopSec="),
        ("upstart/srv-http.conf", "\nkill timeout "),
        ("container.md", "--stop-timeout "),
        ("container.md", "stop_grace_period: "),
        ("container.md", "terminationGracePeriodSeconds: "),
    ];
    for (file, prefix) in stop_timeouts {
        let seconds = number_after(file, &read_deploy_file(file), prefix);
        assert!(
            Duration::from_secs(seconds) > shutdown,
            "{file}: {}{seconds} s is not above shutdown.timeout ({shutdown:?})",
            prefix.trim_start()
        );
    }

    // The socket unit listens where the workers ask, or the master would
    // not adopt its socket.
    let service = read_deploy_file("systemd/srv-http.service");
    let socket = read_deploy_file("systemd/srv-http.socket");
    let listen = socket
        .lines()
        .find_map(|line| line.strip_prefix("ListenStream="))
        .expect("srv-http.socket: no ListenStream=");
    let exec_start = service
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("srv-http.service: no ExecStart=");
    let addr = word_after(exec_start, "--addr");
    let port = word_after(exec_start, "--port");
    assert_eq!(listen, format!("{addr}:{port}"), "ListenStream= and ExecStart= disagree");
}

/// The word after `flag` in a command line.
fn word_after<'a>(command: &'a str, flag: &str) -> &'a str {
    let mut words = command.split_whitespace();
    words.find(|&word| word == flag).unwrap_or_else(|| panic!("no {flag} in {command:?}"));
    words.next().unwrap_or_else(|| panic!("no value after {flag} in {command:?}"))
}

#[test]
fn a_config_file_that_cannot_be_read_is_one_error_line_without_the_usage() {
    let dir = TempDir::new("config-missing");
    let missing = dir.path.join("missing.toml");
    let missing = missing.to_str().expect("temporary paths are UTF-8");
    let mut master =
        Master::start(http(), &["--addr", "127.0.0.1", "--port", "0", "--config", missing]);
    let exit = master.wait_exit();
    let lines = master.lines();
    if exit != Exit::Code(1) || count(&lines, missing) != 1 {
        master.fail(&format!("expected exit 1 and one line naming {missing}, got {exit:?}"));
    }
    // An I/O error is not an argument error: no usage text.
    if count(&lines, "Usage:") + count(&lines, "--help") + count(&lines, "spawned") != 0 {
        master.fail("the usage was printed, or a worker started");
    }
}
