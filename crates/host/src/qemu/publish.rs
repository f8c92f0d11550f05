//! Published ports: a TCP listener on the host's address for each published
//! port of a VM, relaying every connection into the VM's network namespace
//! (the connection to the guest is made from inside it, where the guest's
//! address means something). The ports of a VM are written beside it, so that
//! an agent that restarts publishes them again on the same host ports.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use super::network::in_namespace;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The VM's port.
    pub guest: u16,
    /// Where the host accepts connections for it.
    pub host: SocketAddr,
}

/// Relays connections accepted by `listener` to `target` inside namespace `ns`,
/// until aborted.
pub async fn relay(listener: TcpListener, ns: String, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let ns = ns.clone();
        tokio::spawn(async move {
            match connect_inside(ns, target).await {
                Ok(mut guest) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
                }
                Err(e) => tracing::debug!(%target, error = %e, "published port: guest unreachable"),
            }
        });
    }
}

async fn connect_inside(ns: String, target: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = tokio::task::spawn_blocking(move || {
        in_namespace(&ns, || {
            let stream = std::net::TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    TcpStream::from_std(stream)
}
