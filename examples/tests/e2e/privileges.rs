//! Privilege drop (`worker.user`, `worker.group`) and the listen allow-list
//! (`listen.allow`): a root master binds, unprivileged workers serve, and a
//! worker cannot make the master open an address it was not allowed.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::unistd::{Uid, User};

use nix::sys::signal::Signal;

use crate::harness::{Exit, Master, TempDir, count, misbehave};
use crate::http_support::{get_ok, http, wait_addr, wait_serving};

/// A free port on 127.0.0.1 below 1024, which only root may bind.
fn free_privileged_port() -> Option<u16> {
    (900..1000).find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `Uid:`, `Gid:` and `Groups:` lines of a process.
fn credentials(pid: nix::unistd::Pid) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|line| line.starts_with(name)).unwrap();
        line[name.len()..].split_whitespace().collect::<Vec<_>>().join(" ")
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn workers_run_as_the_configured_user_while_the_root_master_binds_a_privileged_port() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: privilege drop needs the tests to run as root");
        return;
    }
    let Ok(Some(nobody)) = User::from_name("nobody") else {
        eprintln!("skipped: no user 'nobody' on this machine");
        return;
    };
    let Some(port) = free_privileged_port() else {
        eprintln!("skipped: no free port between 900 and 1000 on 127.0.0.1");
        return;
    };
    // The workers execute the binary as nobody: copy it where nobody can.
    let dir = TempDir::new("privileges");
    let program = dir.path.join("http");
    std::fs::copy(http(), &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.write("srv.toml", "[worker]\nuser = \"nobody\"\n");
    let port = port.to_string();
    let args = ["--config", &config, "--port", &port, "--workers", "2"];
    let mut master = Master::start(program.to_str().unwrap(), &args);
    let pids = wait_serving(&master, 2);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    get_ok(&master, addr, "/");

    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    for pid in &pids {
        let (uids, gids, groups) = credentials(*pid);
        assert_eq!(uids, format!("{uid} {uid} {uid} {uid}"), "worker {pid} runs as nobody");
        assert_eq!(gids, format!("{gid} {gid} {gid} {gid}"), "worker {pid} has nobody's group");
        assert_eq!(groups, "", "worker {pid} has no supplementary groups");
    }
    let (master_uids, _, _) = credentials(master.pid());
    assert_eq!(master_uids, "0 0 0 0", "the master stays root");

    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

#[test]
fn an_unknown_user_is_refused_before_any_worker_starts() {
    let dir = TempDir::new("nouser");
    let config = dir.write("srv.toml", "[worker]\nuser = \"no-such-user-srv\"\n");
    let mut master = Master::start(http(), &["--config", &config, "--port", "0", "--workers", "1"]);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    assert_ne!(exit, Exit::Code(0));
    let lines = master.lines();
    assert_eq!(count(&lines, "worker.user: no such user 'no-such-user-srv'"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "spawned"), 0);
}

#[test]
fn listen_allow_lets_listed_addresses_through() {
    let port = free_port();
    let dir = TempDir::new("allow-ok");
    let config = dir.write("srv.toml", &format!("[listen]\nallow = [\"127.0.0.1:{port}\"]\n"));
    let port = port.to_string();
    let master = Master::start(http(), &["--config", &config, "--port", &port, "--workers", "1"]);
    wait_serving(&master, 1);
    get_ok(&master, format!("127.0.0.1:{port}").parse().unwrap(), "/");
}

#[test]
fn listen_allow_refuses_other_addresses_and_binds_nothing() {
    let allowed = free_port();
    let asked = free_port();
    let dir = TempDir::new("allow-refused");
    let config = dir.write("srv.toml", &format!("[listen]\nallow = [\"127.0.0.1:{allowed}\"]\n"));
    let asked = asked.to_string();
    let mut master =
        Master::start(http(), &["--config", &config, "--port", &asked, "--workers", "2"]);
    let exit = master.wait_exit_within(Duration::from_secs(15));
    assert_eq!(exit, Exit::Code(1), "a refused address at startup stops the master");
    let lines = master.lines();
    let refusal = format!("listen 127.0.0.1:{asked}: not in listen.allow");
    assert!(count(&lines, &refusal) >= 1, "the refusal is logged: {lines:#?}");
    let bound = lines.iter().filter(|line| line.contains("] listening on ")).count();
    assert_eq!(bound, 0, "nothing was bound");
}

/// `nobody` and a copy of `program` that `nobody` can execute, or `None`
/// (with the reason printed) where the tests do not run as root.
fn as_nobody(dir: &TempDir, program: &str) -> Option<(User, String)> {
    if !Uid::effective().is_root() {
        eprintln!("skipped: workers of another user need the tests to run as root");
        return None;
    }
    let Ok(Some(nobody)) = User::from_name("nobody") else {
        eprintln!("skipped: no user 'nobody' on this machine");
        return None;
    };
    let name = std::path::Path::new(program).file_name().unwrap();
    let copy = dir.path.join(name);
    std::fs::copy(program, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((nobody, copy.to_str().unwrap().to_owned()))
}

/// Issue 9, item 1: a worker running as `nobody` owns a directory on its
/// socket's path; once the root master has bound the socket there, the
/// worker renames the directory away and puts a symbolic link to a root
/// directory in its place. At shutdown the master removes its own socket,
/// wherever it went, and not the root file the link now leads to.
#[test]
fn a_worker_cannot_make_the_root_master_remove_a_file_through_its_socket_path() {
    let dir = TempDir::new("swap");
    let Some((nobody, program)) = as_nobody(&dir, misbehave()) else { return };
    // A world-writable sticky directory, like /tmp, with a directory of
    // nobody's in it; and a root directory with a file worth keeping.
    let sticky = dir.path.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let owned = sticky.join("owned");
    std::fs::create_dir(&owned).unwrap();
    nix::unistd::chown(&owned, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let victim = dir.path.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();

    let addr = format!("unix:{}", owned.join("passwd").display());
    let (owned_text, victim_text) = (owned.to_str().unwrap(), victim.to_str().unwrap());
    let args = [
        "--workers",
        "1",
        "--worker-timeout",
        "10000",
        "--user",
        "nobody",
        "--allow",
        &addr,
        "--listen",
        &addr,
        "--swap-dir",
        owned_text,
        "--swap-to",
        victim_text,
    ];
    let mut master = Master::start(&program, &args);
    master.wait_until("the worker swapped its directory for a link", |lines| {
        count(lines, &format!("swapped {owned_text}")) == 1
    });
    assert!(owned.is_symlink(), "the worker put the link in place");
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
    let kept = std::fs::read_to_string(victim.join("passwd"));
    if kept.as_deref().ok() != Some("root:x:0:0::/root:/bin/sh\n") {
        master.fail(&format!("the root file behind the link was removed or changed: {kept:?}"));
    }
    let moved = sticky.join("owned.moved").join("passwd");
    if moved.exists() {
        master.fail("the master left its socket file where the worker moved it");
    }
}

/// Issue 9, item 1: with workers running as another user, a Unix path that
/// `listen.allow` does not name is refused (and nothing is created), even
/// though the list is empty; before any worker started, that stops the
/// master with exit code 1.
#[test]
fn unix_paths_need_listen_allow_when_workers_run_as_another_user() {
    let dir = TempDir::new("unix-deny");
    let Some((_, program)) = as_nobody(&dir, misbehave()) else { return };
    let path = dir.path.join("app.sock");
    let addr = format!("unix:{}", path.display());
    let args =
        ["--workers", "1", "--worker-timeout", "10000", "--user", "nobody", "--listen", &addr];
    let mut master = Master::start(&program, &args);
    assert_eq!(master.wait_exit_within(Duration::from_secs(15)), Exit::Code(1));
    let lines = master.lines();
    let refusal = format!("listen {addr}: not in listen.allow");
    if count(&lines, &refusal) == 0 {
        master.fail(&format!("expected the refusal {refusal:?}"));
    }
    assert!(!path.exists(), "no socket file was created");
}

/// A master that is not root: the tests' own user when they do not run as
/// root, else `nobody` (the master is started as `nobody`, from a copy of
/// `program` that `nobody` can execute). Returns the user and the program.
fn unprivileged(dir: &TempDir, program: &str) -> (User, String) {
    if !Uid::effective().is_root() {
        let me = User::from_uid(Uid::current()).unwrap().expect("the tests' user exists");
        return (me, program.to_owned());
    }
    let nobody = User::from_name("nobody").unwrap().expect("a user 'nobody' on this machine");
    let name = std::path::Path::new(program).file_name().unwrap();
    let copy = dir.path.join(name);
    std::fs::copy(program, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (nobody, copy.to_str().unwrap().to_owned())
}

/// Starts `program args` as `user` (when the tests run as root).
fn start_as(user: &User, program: &str, args: &[&str]) -> Master {
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    Master::start_with(program, args, crate::harness::TEST_TIMEOUT, |command| {
        if Uid::effective().is_root() {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
    })
}

/// Issue 9, item 10: a master that is not root may name its own user as
/// `worker.user`: nothing is to change, and the workers start. Before, every
/// spawn failed (`setgroups` needs root) with a misleading "cannot execute".
#[test]
fn a_master_that_is_not_root_may_name_its_own_user() {
    let dir = TempDir::new("own-user");
    let (user, program) = unprivileged(&dir, http());
    let config = dir.write("srv.toml", &format!("[worker]\nuser = \"{}\"\n", user.name));
    let mut master =
        start_as(&user, &program, &["--config", &config, "--port", "0", "--workers", "2"]);
    let pids = wait_serving(&master, 2);
    for pid in &pids {
        let (uids, _, _) = credentials(*pid);
        let uid = user.uid.as_raw();
        assert_eq!(uids, format!("{uid} {uid} {uid} {uid}"), "worker {pid} runs as {}", user.name);
    }
    master.signal(Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}

/// Issue 9, item 10: a master that is not root, asked to run workers as
/// another user, fails at startup naming the option, and starts no worker.
#[test]
fn a_master_that_is_not_root_cannot_run_workers_as_another_user() {
    let dir = TempDir::new("other-user");
    let (user, program) = unprivileged(&dir, http());
    let config = dir.write("srv.toml", "[worker]\nuser = \"root\"\n");
    let mut master =
        start_as(&user, &program, &["--config", &config, "--port", "0", "--workers", "1"]);
    let exit = master.wait_exit_within(Duration::from_secs(10));
    assert_ne!(exit, Exit::Code(0));
    let lines = master.lines();
    let expected = format!(
        "worker.user 'root' (uid 0) needs the master to run as root; it runs as uid {}",
        user.uid
    );
    if count(&lines, &expected) != 1 {
        master.fail(&format!("expected one line with {expected:?}"));
    }
    assert_eq!(count(&lines, "spawned"), 0);
}
/// A config file that only root may read (mode 0600, as files with secrets
/// are) is read by the root master alone: workers running as `worker.user`
/// get everything they need from the master and their command line, so
/// they start and serve (issue: workers once re-read `--config`, failed with
/// "Permission denied" and were restarted forever).
#[test]
fn workers_as_another_user_start_without_reading_a_config_file_only_root_can_read() {
    if !Uid::effective().is_root() {
        eprintln!("skipped: a config file only root can read needs the tests to run as root");
        return;
    }
    let Ok(Some(nobody)) = User::from_name("nobody") else {
        eprintln!("skipped: no user 'nobody' on this machine");
        return;
    };
    // The workers execute the binary as nobody: copy it where nobody can.
    let dir = TempDir::new("secret-config");
    let program = dir.path.join("http");
    std::fs::copy(http(), &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.write("srv.toml", "[worker]\nuser = \"nobody\"\ncount = 2\n");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = ["--config", &config, "--addr", "127.0.0.1", "--port", "0"];
    let mut master = Master::start(program.to_str().unwrap(), &args);
    let addr = wait_addr(&master);
    let pids = wait_serving(&master, 2);
    let pid = get_ok(&master, addr, "/").pid();
    if !pid.is_some_and(|pid| pids.contains(&pid)) {
        master.fail(&format!("GET / answered by {pid:?}, not by one of {pids:?}"));
    }
    let uid = nobody.uid.as_raw();
    for pid in &pids {
        let (uids, _, _) = credentials(*pid);
        assert_eq!(uids, format!("{uid} {uid} {uid} {uid}"), "worker {pid} runs as nobody");
    }
    let lines = master.lines();
    if count(&lines, "Permission denied") + count(&lines, "Usage:") + count(&lines, "exited") != 0 {
        master.fail("a worker failed, or printed the usage");
    }
    master.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(master.wait_exit(), Exit::Code(0));
}
