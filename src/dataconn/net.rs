//! TCP data connections: where MOVER_LISTEN and DATA_LISTEN listen and which addresses they
//! offer, and how MOVER_CONNECT and DATA_CONNECT reach the addresses a peer offers.

use crate::format::out::ImageOut;
use crate::wire::netapp::TcpIpv6Addr;
use crate::wire::types::{Addr, TcpAddr};
use std::io::{self, IoSlice, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Bytes of small writes a [`Gather`] holds before they go out.
const GATHER_BUFFER: usize = 256 * 1024;

/// A write at least this long is never copied into a [`Gather`]'s buffer.
const GATHER_DIRECT: usize = 64 * 1024;

/// The buffers an image writer fills for a TCP connection: one send each.
const TCP_CHUNK: usize = 1 << 20;

/// The sending side of a backup stream over TCP. Small writes (headers, short files) are
/// gathered; a write that is large or does not fit leaves with the gathered bytes in front of
/// it in one vectored write, straight from the caller's buffer: the image's bytes are copied
/// only by the kernel, and each send is large.
#[derive(Debug)]
pub struct Gather<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Gather<W> {
    /// A gathering writer in front of `inner` (a socket, in practice).
    pub fn new(inner: W) -> Self {
        Gather {
            inner,
            buf: Vec::with_capacity(GATHER_BUFFER),
        }
    }
}

impl<W: Write> Write for Gather<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() < GATHER_DIRECT && self.buf.len() + data.len() <= GATHER_BUFFER {
            self.buf.extend_from_slice(data);
            return Ok(data.len());
        }
        loop {
            let n = match self
                .inner
                .write_vectored(&[IoSlice::new(&self.buf), IoSlice::new(data)])
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // the gathered bytes are first on the wire: only what is left of them is kept
            if n < self.buf.len() {
                self.buf.drain(..n);
                continue;
            }
            let took = n - self.buf.len();
            self.buf.clear();
            if took > 0 {
                return Ok(took);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.inner.flush()
    }
}

/// Backup over TCP: the writer's buffers go out whole, straight from where file data was
/// read into them; large ones keep the sends few.
impl<W: Write> ImageOut for Gather<W> {
    fn chunk(&self) -> usize {
        TCP_CHUNK
    }
}

/// Corks (`on`) or uncorks a TCP socket (TCP_CORK): while corked the kernel sends only full
/// segments, so a stream sent in pieces that are not multiples of the segment size still
/// leaves in full segments; uncorking sends what is held at once.
pub fn cork(s: &std::net::TcpStream, on: bool) -> io::Result<()> {
    set_int(s, libc::IPPROTO_TCP, libc::TCP_CORK, on.into())
}

/// Sets SO_RCVLOWAT: a read or poll of `s` waits for `bytes` (or the end of the stream).
pub fn set_rcvlowat(s: &std::net::TcpStream, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(s, libc::SOL_SOCKET, libc::SO_RCVLOWAT, v)
}

/// Sets an integer socket option (ones `nix` has no name for).
fn set_int(
    s: &std::net::TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a c_int option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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

/// A listening data socket for CAE (NDMP_ADDR_TCP_IPV6) and the addresses to offer.
#[derive(Debug)]
pub struct ListeningV6 {
    /// The bound socket: on the loopback address of the control connection's family when
    /// that is loopback, else dual-stack on every address.
    pub listener: TcpListener,
    /// The LISTEN reply's addresses, all with the listener's port: the control connection's
    /// own address first, then the host's other IPv6 addresses, then its IPv4 addresses in
    /// IPv4-mapped form (reachable through the dual-stack socket).
    pub offered: Vec<TcpIpv6Addr>,
}

/// Listens for a CAE data connection; like [`listen`], with IPv6 addresses offered first.
pub async fn listen_ipv6(
    control: SocketAddr,
    ports: Option<(u16, u16)>,
) -> io::Result<ListeningV6> {
    let ctrl = match control.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    let v4_loopback = ctrl.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback());
    let loopback = ctrl.is_loopback() || v4_loopback;
    // an IPv4 loopback control connection keeps the data socket on 127.0.0.1, reached
    // through its IPv4-mapped form
    let bind_ip = if loopback {
        ctrl
    } else {
        Ipv6Addr::UNSPECIFIED
    };
    let listener = bind_in_range(IpAddr::V6(bind_ip), ports).await?;
    let port = listener.local_addr()?.port();
    let mut ips = vec![ctrl];
    if !loopback {
        let mapped = interface_ipv4s().into_iter().map(|ip| ip.to_ipv6_mapped());
        for ip in interface_ipv6s().into_iter().chain(mapped) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    let offered = ips
        .into_iter()
        .map(|ip| TcpIpv6Addr::new(ip, port))
        .collect();
    Ok(ListeningV6 { listener, offered })
}

async fn bind_in_range(
    ip: impl Into<IpAddr>,
    ports: Option<(u16, u16)>,
) -> io::Result<TcpListener> {
    let ip: IpAddr = ip.into();
    let socket = || match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => {
            let s = TcpSocket::new_v6()?;
            // dual-stack, so IPv4-mapped offers are reachable too
            use nix::sys::socket::{setsockopt, sockopt::Ipv6V6Only};
            setsockopt(&s, Ipv6V6Only, &false).map_err(io::Error::from)?;
            Ok(s)
        }
    };
    let Some((lo, hi)) = ports else {
        let sock = socket()?;
        sock.bind(SocketAddr::from((ip, 0)))?;
        return sock.listen(16);
    };
    let mut last = None;
    for port in lo..=hi {
        let sock = socket()?;
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

/// The host's up, global-scope IPv6 addresses (link-local ones need a scope the wire
/// address cannot carry).
fn interface_ipv6s() -> Vec<Ipv6Addr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
        let Some(sin6) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in6()) else {
            continue;
        };
        let ip = sin6.ip();
        let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
        if up && !ip.is_loopback() && !link_local && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Connects to the first of `addrs` that answers, in the peer's order of preference.
pub async fn connect(addrs: &[TcpAddr], per_try: Duration) -> io::Result<TcpStream> {
    let sas: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::from((a.ip(), a.port)))
        .collect();
    connect_any(&sas, per_try).await
}

/// [`connect`] for CAE's IPv6 addresses.
pub async fn connect_ipv6(addrs: &[TcpIpv6Addr], per_try: Duration) -> io::Result<TcpStream> {
    let sas: Vec<SocketAddr> = addrs.iter().map(TcpIpv6Addr::socket_addr).collect();
    connect_any(&sas, per_try).await
}

/// The endpoints of a TCP or TCP_IPV6 address, in the peer's order; `None` for other types.
pub fn tcp_targets(a: &Addr) -> Option<Vec<SocketAddr>> {
    match a {
        Addr::Tcp { tcp_addr } => Some(
            tcp_addr
                .iter()
                .map(|t| SocketAddr::from((t.ip(), t.port)))
                .collect(),
        ),
        Addr::TcpIpv6 { tcp_ipv6_addr } => {
            Some(tcp_ipv6_addr.iter().map(TcpIpv6Addr::socket_addr).collect())
        }
        _ => None,
    }
}

/// Connects to the first of `addrs` that answers, in order.
pub async fn connect_any(addrs: &[SocketAddr], per_try: Duration) -> io::Result<TcpStream> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address list is empty",
        ));
    }
    let mut failures = Vec::new();
    for &sa in addrs {
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

/// The one-address form of a connected peer, as MOVER_GET_STATE reports it: TCP for an
/// IPv4 peer (also when it reached a dual-stack socket), TCP_IPV6 for an IPv6 one.
pub fn peer_addr(sa: SocketAddr) -> Addr {
    let ip = match sa.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return peer_addr_ipv6(sa),
        },
    };
    Addr::Tcp {
        tcp_addr: vec![TcpAddr {
            ip_addr: u32::from(ip),
            port: sa.port(),
            addr_env: Vec::new(),
        }],
    }
}

/// The one-address form of a peer connected over CAE, in the IPv6 form.
pub fn peer_addr_ipv6(sa: SocketAddr) -> Addr {
    let ip = match sa.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    Addr::TcpIpv6 {
        tcp_ipv6_addr: vec![TcpIpv6Addr::new(ip, sa.port())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket stand-in that takes at most `limit` bytes per call and logs each call.
    struct Chunky {
        got: Vec<u8>,
        calls: Vec<usize>,
        limit: usize,
    }

    impl Write for Chunky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..k]);
                n += k;
            }
            self.calls.push(n);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    #[test]
    fn gather_sends_small_writes_together_and_large_ones_with_them() {
        let mut g = Gather::new(Chunky {
            got: vec![],
            calls: vec![],
            limit: usize::MAX,
        });
        let head = pattern(1024, 1);
        let body = pattern(256 * 1024, 2);
        g.write_all(&head).unwrap();
        g.write_all(&head).unwrap();
        assert!(g.inner.calls.is_empty(), "small writes are held");
        g.write_all(&body).unwrap();
        assert_eq!(
            g.inner.calls,
            vec![2048 + 256 * 1024],
            "one call for all three"
        );
        g.write_all(&head).unwrap();
        g.flush().unwrap();
        assert_eq!(g.inner.calls, vec![2048 + 256 * 1024, 1024]);
        let want = [&head[..], &head, &body, &head].concat();
        assert!(g.inner.got == want, "bytes in order");
    }

    #[test]
    fn gather_keeps_the_order_through_partial_writes() {
        let mut g = Gather::new(Chunky {
            got: vec![],
            calls: vec![],
            limit: 777,
        });
        let mut want = Vec::new();
        for (i, n) in [5, 70_000, 3, 200_000, 1, 250_000, 64 * 1024, 9]
            .iter()
            .enumerate()
        {
            let d = pattern(*n, i as u8);
            g.write_all(&d).unwrap();
            want.extend_from_slice(&d);
        }
        g.flush().unwrap();
        assert_eq!(g.inner.got.len(), want.len());
        assert!(g.inner.got == want, "every byte once, in order");
        assert!(g.inner.calls.iter().all(|&c| c <= 777));
    }

    #[test]
    fn gather_reports_a_socket_that_takes_nothing() {
        let mut g = Gather::new(Chunky {
            got: vec![],
            calls: vec![],
            limit: 0,
        });
        let e = g.write_all(&pattern(100_000, 0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

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
