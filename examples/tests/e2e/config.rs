//! `http --config FILE`: srv's options from a TOML file, command-line flags
//! over it, and a file with an unknown key refused with the dotted key.

use std::fs;
use std::path::PathBuf;

use crate::harness::{Exit, Master, count};
use crate::http_support::{get_ok, http, start_on_port_0, wait_addr, wait_serving};

/// A config file of its own under the system's temporary directory,
/// removed when dropped.
struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    fn new(tag: &str, text: &str) -> ConfigFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let name = format!("srv-e2e-config-{tag}-{}-{nanos}.toml", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::write(&path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        ConfigFile { path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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
