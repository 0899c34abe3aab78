//! TCP data connections: where MOVER_LISTEN and DATA_LISTEN listen and which addresses they
//! offer, and how MOVER_CONNECT and DATA_CONNECT reach the addresses a peer offers.

use crate::wire::types::{Addr, TcpAddr};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A listening data socket and the addresses to hand the DMA, best first.
#[derive(Debug)]
pub struct Listening {
    /// The bound socket, on loopback when the control connection is, else on every address.
    pub listener: TcpListener,
    /// The LISTEN reply's addresses, all with the listener's port: the control connection's
    /// own address first, then the host's other IPv4 addresses.
    pub offered: Vec<TcpAddr>,
}

/// Listens for a data connection. `control` is our end of the DMA's control connection: its
/// address is the one the DMA (and so probably the peer) can reach, and comes first. A
/// loopback control connection keeps the data socket on loopback too.
pub async fn listen(control: SocketAddr, ports: Option<(u16, u16)>) -> io::Result<Listening> {
    let ctrl_ip = match control.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    let loopback = control.ip().is_loopback() || ctrl_ip.is_some_and(|ip| ip.is_loopback());
    let bind_ip = if loopback {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let listener = bind_in_range(bind_ip, ports).await?;
    let port = listener.local_addr()?.port();
    let mut ips: Vec<Ipv4Addr> = Vec::new();
    if loopback {
        ips.push(Ipv4Addr::LOCALHOST);
    } else {
        // NDMP v4's TCP address is IPv4 only: an IPv6 control connection still gets every
        // IPv4 address of the host.
        ips.extend(ctrl_ip);
        for ip in interface_ipv4s() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            ips.push(Ipv4Addr::LOCALHOST);
        }
    }
    let offered = ips
        .into_iter()
        .map(|ip| TcpAddr {
            ip_addr: u32::from(ip),
            port,
            addr_env: Vec::new(),
        })
        .collect();
    Ok(Listening { listener, offered })
}

async fn bind_in_range(ip: Ipv4Addr, ports: Option<(u16, u16)>) -> io::Result<TcpListener> {
    let Some((lo, hi)) = ports else {
        return TcpListener::bind((ip, 0)).await;
    };
    let mut last = None;
    for port in lo..=hi {
        let sock = TcpSocket::new_v4()?;
        match sock.bind(SocketAddr::from((ip, port))) {
            Ok(()) => return sock.listen(1),
            Err(e) => last = Some(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free data port in {lo}-{hi}: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

/// The host's up, non-loopback IPv4 addresses.
fn interface_ipv4s() -> Vec<Ipv4Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
        let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let ip = sin.ip();
        if up && !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Connects to the first of `addrs` that answers, in the peer's order of preference.
pub async fn connect(addrs: &[TcpAddr], per_try: Duration) -> io::Result<TcpStream> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address list is empty",
        ));
    }
    let mut failures = Vec::new();
    for a in addrs {
        let sa = SocketAddr::from((a.ip(), a.port));
        match tokio::time::timeout(per_try, TcpStream::connect(sa)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => failures.push(format!("{sa}: {e}")),
            Err(_) => failures.push(format!("{sa}: no answer in {per_try:?}")),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("could not connect to {}", failures.join("; ")),
    ))
}

/// The one-address form of a connected peer, as MOVER_GET_STATE reports it.
pub fn peer_addr(sa: SocketAddr) -> Addr {
    let ip = match sa.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    Addr::Tcp {
        tcp_addr: vec![TcpAddr {
            ip_addr: u32::from(ip),
            port: sa.port(),
            addr_env: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_control_listens_on_loopback_only() {
        let l = listen("127.0.0.1:10000".parse().unwrap(), None)
            .await
            .unwrap();
        let local = l.listener.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(l.offered.len(), 1);
        assert_eq!(l.offered[0].ip(), Ipv4Addr::LOCALHOST);
        assert_eq!(l.offered[0].port, local.port());
    }

    #[tokio::test]
    async fn the_port_range_is_honoured_and_exhaustion_is_an_error() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port();
        drop(probe);
        let l = listen("127.0.0.1:1".parse().unwrap(), Some((p, p)))
            .await
            .unwrap();
        assert_eq!(l.offered[0].port, p);
        let e = listen("127.0.0.1:1".parse().unwrap(), Some((p, p)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no free data port"), "{e}");
    }

    #[tokio::test]
    async fn connect_skips_dead_addresses_in_order() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let addr = |port| TcpAddr {
            ip_addr: u32::from(Ipv4Addr::LOCALHOST),
            port,
            addr_env: vec![],
        };
        let live_port = live.local_addr().unwrap().port();
        let s = connect(&[addr(dead_port), addr(live_port)], Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap().port(), live_port);
        let e = connect(&[addr(dead_port)], Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&dead_port.to_string()), "{e}");
    }
}
