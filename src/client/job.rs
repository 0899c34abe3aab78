//! What `ndmpd dma backup` and `ndmpd dma restore` share: the DATA connection and the tape
//! one (the same server, LOCAL, or another, TCP), the mover set up for a stream, and its end;
//! and where on a cartridge an image goes: rewind, tape file N, the end of the data, labels.

use super::connection::{Client, ClientError};
use super::session::{login_version, AuthMethod};
use crate::wire::header::Body;
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
    /// Both servers of a three-way job selected NetApp CAE: the data connection may use
    /// IPv6 addresses (NDMP_ADDR_TCP_IPV6).
    pub cae: bool,
}

/// The login (user, password) a job uses on its tape server and that server's robot: its own
/// `tape_login` when the job has a separate tape server, else the DATA server's.
pub fn tape_side<'a>(
    tape_server: Option<&str>,
    tape_login: Option<&'a (String, Vec<u8>)>,
    user: &'a str,
    password: &'a [u8],
) -> (&'a str, &'a [u8]) {
    match (tape_server, tape_login) {
        (Some(_), Some((u, p))) => (u, p),
        _ => (user, password),
    }
}

impl Agents {
    /// Logs in to the DATA server and, when it is given, the tape server, with the same
    /// credentials, in NDMP version 4.
    pub async fn login(
        server: &str,
        tape_server: Option<&str>,
        user: &str,
        password: &[u8],
        auth: AuthMethod,
    ) -> Result<Agents, ClientError> {
        Agents::login_version(server, tape_server, (user, password), None, auth, 4).await
    }

    /// Logs in to the DATA server as `login` (user, password) and, when it is given, the tape
    /// server as `tape_login` (else as `login`: one account on both), in protocol `version`
    /// (3 or 4) on both servers.
    pub async fn login_version(
        server: &str,
        tape_server: Option<&str>,
        login: (&str, &[u8]),
        tape_login: Option<(&str, &[u8])>,
        auth: AuthMethod,
        version: u16,
    ) -> Result<Agents, ClientError> {
        let mut data = login_version(server, login.0, login.1, auth, version).await?;
        let (tape, cae) = match tape_server {
            Some(t) => {
                let (user, password) = tape_login.unwrap_or(login);
                let mut tape = login_version(t, user, password, auth, version).await?;
                // both ends of the data connection must know the IPv6 address type; v3 has
                // no extension negotiation
                let cae = version >= 4
                    && super::ext::select_cae(&mut data).await?
                    && super::ext::select_cae(&mut tape).await?;
                (Some(tape), cae)
            }
            None => (None, false),
        };
        Ok(Agents { data, tape, cae })
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
        self.open_tape(drive, open, record_size).await?;
        rewind(self.tape()).await?;
        self.listen(mode).await
    }

    /// Sets the mover's record size and opens `drive`, where its head is (not rewound).
    pub async fn open_tape(
        &mut self,
        drive: &str,
        open: TapeOpenMode,
        record_size: u32,
    ) -> Result<(), ClientError> {
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
        Ok(())
    }

    /// Opens the window over the whole stream, has the mover listen in `mode` (LOCAL on one
    /// server, TCP across two) and connects the DATA server to it. The tape is used from where
    /// its head is.
    pub async fn listen(&mut self, mode: MoverMode) -> Result<(), ClientError> {
        let addr_type = self.data_addr_type();
        let t = self.tape();
        let window = Request::MoverSetWindow(MoverRangeRequest {
            offset: 0,
            length: u64::MAX,
        });
        // v3 takes MOVER_SET_WINDOW only in LISTEN or PAUSED; v4 wants it before the listen
        let v3 = t.version() < 4;
        if !v3 {
            t.call_ok(window.clone()).await?;
        }
        let r = t
            .call_ok(Request::MoverListen(MoverListenRequest { mode, addr_type }))
            .await?;
        if v3 {
            t.call_ok(window).await?;
        }
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

    /// The address type [`Agents::listen`] asks the mover for: LOCAL on one server, TCP
    /// across two, TCP_IPV6 when CAE is in effect and the tape server was reached over IPv6
    /// (as other DMAs decide).
    pub fn data_addr_type(&self) -> AddrType {
        match &self.tape {
            None => AddrType::LOCAL,
            Some(t) if self.cae && is_ipv6(t.peer_addr()) => AddrType::TCP_IPV6,
            Some(_) => AddrType::TCP,
        }
    }

    /// The next post from either connection, waiting at most `wait`. Both connections are
    /// waited on at once: taking them in turn left a post on the second waiting out the
    /// first's share of `wait` (a three-way backup ended 125 ms after its mover halted).
    pub async fn next_post(&mut self, wait: Duration) -> Result<Option<Request>, ClientError> {
        // a message is whole in the framed buffer or not taken at all, so the branch that
        // loses is dropped without losing anything
        let got = match self.tape.as_mut() {
            None => self.data.recv(wait).await,
            Some(tape) => tokio::select! {
                r = self.data.recv(wait) => r,
                r = tape.recv(wait) => r,
            },
        };
        match got {
            Ok(Some(m)) => match m.body {
                Body::Request(r) => Ok(Some(r)),
                _ => Ok(None),
            },
            Ok(None) => Err(ClientError::Closed),
            Err(ClientError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Goes on after a pause on the tape now open: the window from `seek` to the end of the
    /// stream (its length such that offset + length is all ones: the mover refuses a sum
    /// that overflows), then MOVER_CONTINUE.
    pub async fn continue_at(&mut self, seek: u64) -> Result<(), ClientError> {
        let t = self.tape();
        t.call_ok(Request::MoverSetWindow(MoverRangeRequest {
            offset: seek,
            length: u64::MAX - seek,
        }))
        .await?;
        t.call_ok(Request::MoverContinue(Void)).await?;
        Ok(())
    }

    /// Stops what runs after a failure, as far as it goes: DATA_ABORT and MOVER_ABORT, then
    /// TAPE_CLOSE (so the part written so far ends with its filemark). Errors are ignored:
    /// the job has failed already.
    pub async fn abort(mut self) {
        let _ = self.data.call(Request::DataAbort(Void)).await;
        let t = self.tape();
        let _ = t.call(Request::MoverAbort(Void)).await;
        for _ in 0..100 {
            match t.call(Request::MoverGetState(Void)).await {
                Ok(Reply::MoverGetState(s)) if s.state != MoverState::HALTED => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => break,
            }
        }
        let _ = t.call(Request::MoverStop(Void)).await;
        let _ = t.call(Request::TapeClose(Void)).await;
        let _ = self.data.call(Request::DataStop(Void)).await;
        if let Some(t) = self.tape {
            let _ = t.close().await;
        }
        let _ = self.data.close().await;
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

/// Spacing forward this many filemarks reaches the end of any cartridge.
const TO_THE_END: u32 = 0x7fff_ffff;

/// What is on a cartridge, found by spacing to the end of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfData {
    /// Tape files ended by a filemark.
    pub files: u32,
    /// Records follow the last filemark without one of their own (a write cut short).
    pub open_file: bool,
}

impl EndOfData {
    /// Nothing is on the cartridge.
    pub fn blank(&self) -> bool {
        self.files == 0 && !self.open_file
    }
}

async fn mtio(c: &mut Client, op: MtioOp, count: u32) -> Result<u32, ClientError> {
    match c
        .call_ok(Request::TapeMtio(TapeMtioRequest { tape_op: op, count }))
        .await?
    {
        Reply::TapeMtio(r) => Ok(r.resid_count),
        other => Err(ClientError::Unexpected(format!(
            "TAPE_MTIO answered {:?}",
            other.code()
        ))),
    }
}

/// Rewinds the open tape.
pub async fn rewind(c: &mut Client) -> Result<(), ClientError> {
    mtio(c, MtioOp::REW, 1).await.map(|_| ())
}

/// Rewinds and spaces forward over every filemark to the end of the data (vtape and st
/// drives stop there with NO_ERR and the filemarks not passed as the residue); the head is
/// left at the end of the data.
pub async fn space_to_end(c: &mut Client) -> Result<EndOfData, ClientError> {
    rewind(c).await?;
    let resid = mtio(c, MtioOp::FSF, TO_THE_END).await?;
    let files = TO_THE_END - resid.min(TO_THE_END);
    let blockno = match c.call_ok(Request::TapeGetState(Void)).await? {
        Reply::TapeGetState(s) => s.blockno,
        _ => 0,
    };
    Ok(EndOfData {
        files,
        // all ones is "unknown": a drive that cannot tell is taken at its filemark count
        open_file: blockno != 0 && blockno != u32::MAX,
    })
}

/// Rewinds and spaces forward to the start of tape file `file`; an error in words when the
/// cartridge has no such file (spacing alone would stop at the end of the data and call
/// that the start of a file).
pub async fn seek_file(c: &mut Client, file: u32) -> Result<(), ClientError> {
    let end = space_to_end(c).await?;
    let files = end.files + u32::from(end.open_file);
    if file >= files {
        return Err(ClientError::Unexpected(format!(
            "there is no tape file {file} on this cartridge: it holds {files} file(s){}",
            if files > 0 {
                format!(", 0 to {}", files - 1)
            } else {
                String::new()
            }
        )));
    }
    rewind(c).await?;
    if file > 0 {
        mtio(c, MtioOp::FSF, file).await?;
    }
    Ok(())
}

/// Where the image goes on the open (writable) tape: file 0 when `overwrite` or the cartridge
/// is blank, else after its last file. A file cut short is closed with a filemark first, so
/// the image never joins it. The head is left there.
pub async fn position_for_append(c: &mut Client, overwrite: bool) -> Result<u32, ClientError> {
    if overwrite {
        rewind(c).await?;
        return Ok(0);
    }
    let end = space_to_end(c).await?;
    if end.open_file {
        mtio(c, MtioOp::EOF, 1).await?;
        return Ok(end.files + 1);
    }
    Ok(end.files)
}

/// The last tape file of the open cartridge, for a restore given none.
pub async fn last_file(c: &mut Client) -> Result<u32, ClientError> {
    let end = space_to_end(c).await?;
    match (end.files, end.open_file) {
        (0, false) => Err(ClientError::Unexpected(
            "the cartridge is blank: there is no image to read".into(),
        )),
        (n, true) => Ok(n),
        (n, false) => Ok(n - 1),
    }
}

/// The ndmjob label in a record: `##ndmjob -m LABEL` (or `-V`) on its first line.
pub fn parse_ndmjob_label(record: &[u8]) -> Option<String> {
    let rest = record.strip_prefix(b"##ndmjob -")?;
    let (&kind, rest) = rest.split_first()?;
    if !matches!(kind, b'm' | b'V') {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let end = rest
        .iter()
        .position(|&b| b == b'\n' || b == b'#' || b == 0)
        .unwrap_or(rest.len());
    let label = std::str::from_utf8(&rest[..end]).ok()?.trim();
    (!label.is_empty()).then(|| label.to_string())
}

/// Reads the first record of the open tape for an ndmjob label and rewinds; `None` for a
/// blank cartridge or one that starts with something else.
pub async fn read_label(c: &mut Client) -> Result<Option<String>, ClientError> {
    rewind(c).await?;
    let r = c
        .call(Request::TapeRead(TapeReadRequest { count: 64 << 10 }))
        .await?;
    rewind(c).await?;
    Ok(match r {
        Reply::TapeRead(r) if r.error.is_ok() => parse_ndmjob_label(&r.data_in.0),
        _ => None,
    })
}

/// A real IPv6 peer (not an IPv4 one seen through a dual-stack socket).
fn is_ipv6(sa: std::net::SocketAddr) -> bool {
    match sa.ip() {
        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_none(),
        std::net::IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::header::Message;
    use crate::wire::record::RecordCodec;
    use futures::SinkExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::codec::Framed;

    /// A scripted server: a connected client, and the server's framed end after its greeting.
    async fn scripted() -> (Client, Framed<TcpStream, RecordCodec>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { Client::connect(addr).await.unwrap() });
        let (sock, _) = listener.accept().await.unwrap();
        let mut server = Framed::new(sock, RecordCodec::default());
        let hello = Request::NotifyConnectionStatus(NotifyConnectionStatusPost {
            reason: ConnectionStatusReason::CONNECTED,
            protocol_version: 4,
            text_reason: "hi".into(),
        });
        server.send(&Message::request(1, 0, hello)).await.unwrap();
        (client.await.unwrap(), server)
    }

    #[tokio::test]
    async fn a_post_on_the_tape_connection_is_taken_while_the_data_one_is_silent() {
        let (data, _data_server) = scripted().await;
        let (tape, mut tape_server) = scripted().await;
        let mut agents = Agents {
            data,
            tape: Some(tape),
            cae: false,
        };
        let halted = Request::NotifyMoverHalted(NotifyMoverHaltedPost {
            reason: MoverHaltReason::CONNECT_CLOSED,
        });
        tape_server
            .send(&Message::request(2, 0, halted))
            .await
            .unwrap();
        // taking the connections in turn would sit out the silent one's half of the hour
        let post = tokio::time::timeout(
            Duration::from_secs(20),
            agents.next_post(Duration::from_secs(3600)),
        )
        .await
        .expect("the tape's post waited behind the silent DATA connection")
        .unwrap();
        assert!(
            matches!(
                post,
                Some(Request::NotifyMoverHalted(NotifyMoverHaltedPost {
                    reason: MoverHaltReason::CONNECT_CLOSED
                }))
            ),
            "{post:?}"
        );
    }

    #[test]
    fn ndmjob_labels_are_read_from_their_record() {
        let mut rec = b"##ndmjob -m DAILY3\n".to_vec();
        rec.resize(512, b'#');
        assert_eq!(parse_ndmjob_label(&rec).as_deref(), Some("DAILY3"));
        assert_eq!(
            parse_ndmjob_label(b"##ndmjob -V VOL1\n###").as_deref(),
            Some("VOL1")
        );
        assert_eq!(parse_ndmjob_label(b"##ndmjob -x A\n"), None);
        assert_eq!(parse_ndmjob_label(b"##ndmjob -m \n"), None);
        assert_eq!(parse_ndmjob_label(&[0u8; 1024]), None);
        assert_eq!(parse_ndmjob_label(b""), None);
    }
}
