//! Feature `tokio`: the master's socket as a tokio listener.

use std::net::TcpListener;
use std::os::fd::AsFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use srv_proto::WorkerMessage;

use crate::FakeMaster;

#[test]
fn outside_a_runtime_it_is_an_error_and_asks_the_master_nothing() {
    let (mut master, worker) = FakeMaster::connect();
    let error = worker.listen_tokio_tcp(([127, 0, 0, 1], 0)).unwrap_err();
    assert!(error.to_string().contains("needs a tokio runtime"), "{error}");
    worker.online().unwrap();
    assert_eq!(master.next(), WorkerMessage::Online, "no ListenRequest before it");
}

#[test]
fn the_masters_socket_becomes_a_non_blocking_tokio_listener() {
    let (mut master, worker) = FakeMaster::connect();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let serving = std::thread::spawn(move || {
        master.grant(&held);
        held
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let listener = worker.listen_tokio_tcp(([127, 0, 0, 1], 0)).unwrap();
        let held = serving.join().unwrap();
        // The flag belongs to the shared open file: the master's copy has it.
        let flags = fcntl(held.as_fd(), FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        listener.accept().await.unwrap();
    });
}
