//! What the in-process comm tests share.

use std::net::SocketAddr;

/// A free loopback address for a job's rank 0 to listen on.
pub fn free_master() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}
