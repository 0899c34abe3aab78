//! What `ndmpd dma backup` and `ndmpd dma restore` share: the DATA connection and the tape
//! one (the same server, LOCAL, or another, TCP), the mover set up for a stream, and its end.

use super::connection::{Client, ClientError};
use super::session::{login, AuthMethod};
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{Reply, Request};
use std::time::Duration;

/// The two agents of a job; `tape` is `None` when the DATA server's own tape is used.
pub struct Agents {
    /// The control connection to the DATA server.
    pub data: Client,
    /// The control connection to the tape server, in a three-way job.
    pub tape: Option<Client>,
}

impl Agents {
    /// Logs in to the DATA server and, when it is given, the tape server, with the same
    /// credentials.
    pub async fn login(
        server: &str,
        tape_server: Option<&str>,
        user: &str,
        password: &[u8],
        auth: AuthMethod,
    ) -> Result<Agents, ClientError> {
        let data = login(server, user, password, auth).await?;
        let tape = match tape_server {
            Some(t) => Some(login(t, user, password, auth).await?),
            None => None,
        };
        Ok(Agents { data, tape })
    }

    /// The connection that drives the mover and the tape.
    pub fn tape(&mut self) -> &mut Client {
        self.tape.as_mut().unwrap_or(&mut self.data)
    }

    /// Opens `drive` rewound with the record size and an open window, has the mover listen in
    /// `mode` (LOCAL on one server, TCP across two), and connects the DATA server to it.
    pub async fn connect(
        &mut self,
        drive: &str,
        open: TapeOpenMode,
        record_size: u32,
        mode: MoverMode,
    ) -> Result<(), ClientError> {
        let addr_type = if self.tape.is_some() {
            AddrType::TCP
        } else {
            AddrType::LOCAL
        };
        let t = self.tape();
        t.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
            len: record_size,
        }))
        .await?;
        t.call_ok(Request::TapeOpen(TapeOpenRequest {
            device: drive.into(),
            mode: open,
        }))
        .await?;
        t.call_ok(Request::TapeMtio(TapeMtioRequest {
            tape_op: MtioOp::REW,
            count: 1,
        }))
        .await?;
        t.call_ok(Request::MoverSetWindow(MoverRangeRequest {
            offset: 0,
            length: u64::MAX,
        }))
        .await?;
        let r = t
            .call_ok(Request::MoverListen(MoverListenRequest { mode, addr_type }))
            .await?;
        let Reply::MoverListen(ListenReply { connect_addr, .. }) = r else {
            return Err(ClientError::Unexpected(format!(
                "MOVER_LISTEN answered {:?}",
                r.code()
            )));
        };
        self.data
            .call_ok(Request::DataConnect(DataConnectRequest {
                addr: connect_addr,
            }))
            .await?;
        Ok(())
    }

    /// Waits for the mover to halt, stops it, closes the tape (its filemark ends a backup's
    /// image) and both connections; returns why the mover halted.
    pub async fn finish(mut self) -> Result<MoverHaltReason, ClientError> {
        let t = self.tape();
        let reason = loop {
            if let Reply::MoverGetState(s) = t.call_ok(Request::MoverGetState(Void)).await? {
                if s.state == MoverState::HALTED {
                    break s.halt_reason;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        t.call_ok(Request::MoverStop(Void)).await?;
        t.call_ok(Request::TapeClose(Void)).await?;
        if let Some(t) = self.tape {
            t.close().await?;
        }
        self.data.close().await?;
        Ok(reason)
    }
}
