//! Small MOVER and TAPE request helpers the mover tests share: requests by name, the mover's
//! state, a TCP listen with our end connected, and the next pause or halt notice.

use ndmpd::client::Client;
use ndmpd::wire::header::Body;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::{Reply, Request};
use std::time::Duration;
use tokio::net::TcpStream;

/// TAPE_OPEN of `dev` in `mode`.
pub fn open(dev: &str, mode: TapeOpenMode) -> Request {
    Request::TapeOpen(TapeOpenRequest {
        device: dev.into(),
        mode,
    })
}

/// MOVER_SET_WINDOW.
pub fn window(offset: u64, length: u64) -> Request {
    Request::MoverSetWindow(MoverRangeRequest { offset, length })
}

/// A request without a body, such as `void(Request::MoverStop)`.
pub fn void(f: fn(Void) -> Request) -> Request {
    f(Void)
}

/// MOVER_GET_STATE's reply.
pub async fn mover_state(c: &mut Client) -> MoverGetStateReply {
    match c.call_ok(void(Request::MoverGetState)).await.unwrap() {
        Reply::MoverGetState(s) => s,
        other => panic!("{other:?}"),
    }
}

/// MOVER_LISTEN over TCP, and our end of the data connection.
pub async fn listen(c: &mut Client, mode: MoverMode) -> TcpStream {
    let r = c
        .call_ok(Request::MoverListen(MoverListenRequest {
            mode,
            addr_type: AddrType::TCP,
        }))
        .await
        .unwrap();
    let Reply::MoverListen(ListenReply {
        connect_addr: Addr::Tcp { tcp_addr },
        ..
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(tcp_addr.len(), 1, "a loopback server offers loopback only");
    let a = &tcp_addr[0];
    TcpStream::connect((a.ip(), a.port)).await.unwrap()
}

/// The next NOTIFY_MOVER_PAUSED or NOTIFY_MOVER_HALTED, skipping log lines.
pub async fn mover_post(c: &mut Client) -> Request {
    loop {
        let m = c
            .recv(Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the server closed the connection");
        if let Body::Request(r @ (Request::NotifyMoverPaused(_) | Request::NotifyMoverHalted(_))) =
            m.body
        {
            return r;
        }
    }
}

/// Record size 10240, vtape0 open read/write, the window (0, `window`), the mover listening
/// LOCAL for a backup and this session's DATA server connected to it: ready to start.
pub async fn local_backup_connected(c: &mut Client, window: u64) {
    for r in [
        Request::MoverSetRecordSize(MoverSetRecordSizeRequest { len: 10240 }),
        open("vtape0", TapeOpenMode::RDWR),
        self::window(0, window),
        Request::MoverListen(MoverListenRequest {
            mode: MoverMode::READ,
            addr_type: AddrType::LOCAL,
        }),
        Request::DataConnect(DataConnectRequest { addr: Addr::Local }),
    ] {
        c.call_ok(r).await.unwrap();
    }
}
