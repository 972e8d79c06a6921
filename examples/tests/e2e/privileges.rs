//! Privilege drop (`worker.user`, `worker.group`) and the listen allow-list
//! (`listen.allow`): a root master binds, unprivileged workers serve, and a
//! worker cannot make the master open an address it was not allowed.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nix::unistd::{Uid, User};

use crate::harness::{Exit, Master, TempDir, count};
use crate::http_support::{get_ok, http, wait_serving};

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

    master.signal(nix::sys::signal::Signal::SIGTERM);
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
