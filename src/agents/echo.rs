//! The built-in echo agent: echoes TCP streams and UDP datagrams on one port. It is the
//! smallest agent that proves the supervisor (start in a node, readiness, logs, stop).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

pub struct EchoConfig {
    pub listen: SocketAddr,
    /// Waits this long after binding before reporting ready.
    pub ready_after: Duration,
}

pub async fn run(config: EchoConfig) -> std::io::Result<()> {
    let tcp = TcpListener::bind(config.listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind tcp {}: {e}", config.listen))
    })?;
    let udp = UdpSocket::bind(config.listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind udp {}: {e}", config.listen))
    })?;
    tokio::time::sleep(config.ready_after).await;
    tracing::info!(listen = %config.listen, "echo agent ready");
    super::drop_privileges()?;
    super::notify_ready();

    let udp_loop = async {
        let mut buf = vec![0u8; 65_536];
        loop {
            match udp.recv_from(&mut buf).await {
                Ok((n, peer)) => {
                    let _ = udp.send_to(&buf[..n], peer).await;
                }
                Err(e) => tracing::warn!("udp receive: {e}"),
            }
        }
    };
    let tcp_loop = async {
        loop {
            match tcp.accept().await {
                Ok((mut stream, peer)) => {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        tracing::debug!(%peer, "connection closed");
                    });
                }
                Err(e) => tracing::warn!("tcp accept: {e}"),
            }
        }
    };
    tokio::select! {
        _ = udp_loop => {}
        _ = tcp_loop => {}
        _ = super::shutdown_signal() => tracing::info!("echo agent stopping"),
    }
    Ok(())
}
