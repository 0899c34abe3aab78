//! Data connections, used alike by DATA and MOVER: TCP (listen, connect, addresses offered)
//! and LOCAL (an in-process pipe of record buffers), and the LOCAL pairing of one session.

pub mod local;
pub mod net;

use local::{DataEnd, MoverEnd};
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// An established data connection: a TCP socket, or this session's end `L` of a LOCAL pipe.
#[derive(Debug)]
pub enum Conn<L> {
    /// A TCP connection to the peer (another server's DATA or MOVER, or this one's).
    Tcp(TcpStream),
    /// The in-process pipe to this session's other interface.
    Local(L),
}

/// DATA's side of a data connection.
pub type DataConn = Conn<DataEnd>;

/// The MOVER's side of a data connection.
pub type MoverConn = Conn<MoverEnd>;

impl DataConn {
    /// The connection with what unblocks it on abort: a second TCP handle to shut down, or
    /// the abort flag a LOCAL pipe watches.
    pub fn interruptible(self, abort: &Arc<AtomicBool>) -> (Option<TcpStream>, DataConn) {
        match self {
            Conn::Tcp(s) => (s.try_clone().ok(), Conn::Tcp(s)),
            Conn::Local(mut end) => {
                end.set_abort(abort.clone());
                (None, Conn::Local(end))
            }
        }
    }
}

/// The LOCAL pairing of one session's DATA and MOVER (spec: NDMP_ADDR_LOCAL). Whichever
/// listens leaves its offer here and the other's CONNECT takes it; both servers hold a
/// handle, so neither reaches into the other.
#[derive(Debug, Clone, Default)]
pub struct LocalLink(Arc<Mutex<LinkState>>);

#[derive(Debug, Default)]
struct LinkState {
    /// MOVER_LISTEN(LOCAL): DATA's end of the pipe, and the wake-up of the waiting mover.
    mover_offer: Option<(DataEnd, oneshot::Sender<()>)>,
    /// DATA_LISTEN(LOCAL) waits for MOVER_CONNECT(LOCAL).
    data_waiting: bool,
    /// MOVER_CONNECT(LOCAL) answered DATA's listen: DATA's end, not yet taken.
    for_data: Option<DataEnd>,
}

impl LocalLink {
    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// MOVER_LISTEN(LOCAL): makes the pipe and leaves DATA's end on offer. The receiver
    /// fires when DATA_CONNECT(LOCAL) takes it, and fails when the offer is withdrawn.
    pub fn mover_listen(&self, record_size: usize) -> (MoverEnd, oneshot::Receiver<()>) {
        let (mover_end, data_end) = local::pipe(record_size);
        let (wake, wait) = oneshot::channel();
        self.state().mover_offer = Some((data_end, wake));
        (mover_end, wait)
    }

    /// The mover stopped listening or halted: its offer goes.
    pub fn withdraw_mover_offer(&self) {
        self.state().mover_offer = None;
    }

    /// DATA_CONNECT(LOCAL): DATA's end of a listening mover's pipe, waking the mover.
    pub fn data_connect(&self) -> Option<DataEnd> {
        let (end, wake) = self.state().mover_offer.take()?;
        let _ = wake.send(());
        Some(end)
    }

    /// DATA_LISTEN(LOCAL) is waiting for this session's MOVER_CONNECT(LOCAL).
    pub fn data_listen(&self) {
        self.state().data_waiting = true;
    }

    /// DATA stopped listening (abort, halt, session end); an end not yet taken goes too.
    pub fn withdraw_data_listen(&self) {
        let mut s = self.state();
        s.data_waiting = false;
        s.for_data = None;
    }

    /// True while DATA listens LOCAL and no mover has connected.
    pub fn data_waiting(&self) -> bool {
        self.state().data_waiting
    }

    /// MOVER_CONNECT(LOCAL): the mover's end of a new pipe whose other end waits for DATA;
    /// `None` when DATA is not listening LOCAL.
    pub fn mover_connect(&self, record_size: usize) -> Option<MoverEnd> {
        let mut s = self.state();
        if !s.data_waiting {
            return None;
        }
        let (mover_end, data_end) = local::pipe(record_size);
        s.data_waiting = false;
        s.for_data = Some(data_end);
        Some(mover_end)
    }

    /// DATA's end of a pipe a MOVER_CONNECT(LOCAL) made, once.
    pub fn take_for_data(&self) -> Option<DataEnd> {
        self.state().for_data.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_listens_data_connects_and_wakes_it() {
        let link = LocalLink::default();
        assert!(link.data_connect().is_none(), "nothing offered yet");
        let (_mover, mut wait) = link.mover_listen(1024);
        assert!(wait.try_recv().is_err(), "not yet connected");
        assert!(link.data_connect().is_some());
        assert!(wait.try_recv().is_ok(), "the mover is woken");
        assert!(link.data_connect().is_none(), "an offer is taken once");
    }

    #[test]
    fn a_withdrawn_offer_fails_the_waiting_mover() {
        let link = LocalLink::default();
        let (_mover, mut wait) = link.mover_listen(1024);
        link.withdraw_mover_offer();
        assert!(matches!(
            wait.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert!(link.data_connect().is_none());
    }

    #[test]
    fn data_listens_mover_connects_and_data_takes_its_end() {
        let link = LocalLink::default();
        assert!(link.mover_connect(1024).is_none(), "DATA is not listening");
        link.data_listen();
        assert!(link.data_waiting());
        assert!(link.mover_connect(1024).is_some());
        assert!(!link.data_waiting());
        assert!(
            link.mover_connect(1024).is_none(),
            "one connection per listen"
        );
        assert!(link.take_for_data().is_some());
        assert!(link.take_for_data().is_none());
    }

    #[test]
    fn data_withdrawing_drops_an_untaken_end() {
        let link = LocalLink::default();
        link.data_listen();
        link.mover_connect(1024).unwrap();
        link.withdraw_data_listen();
        assert!(link.take_for_data().is_none());
        assert!(!link.data_waiting());
    }
}
