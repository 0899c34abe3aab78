//! One DMA control connection to an NDMP server: connect, negotiate, authenticate and call,
//! with the posts that arrive meanwhile queued aside.

use crate::auth::md5_digest;
use crate::wire::header::{Body, Message, MessageError};
use crate::wire::messages::{
    ConfigGetAuthAttrRequest, ConnectClientAuthRequest, ConnectOpenRequest,
    NotifyConnectionStatusPost, Void,
};
use crate::wire::record::{RecordCodec, RecordError};
use crate::wire::types::{
    AuthAttr, AuthData, AuthMd5, AuthText, AuthType, ConnectionStatusReason, HasAssociatedMessage,
};
use crate::wire::v3;
use crate::wire::xdr::{Fixed, Limits, NdmpString};
use crate::wire::{MessageCode, NdmpError, Reply, Request};
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

/// How long `connect` waits for the TCP handshake plus the server's first message.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on every later wait (a reply, a send, a `recv` is given its own).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `close` waits for the server to hang up after CONNECT_CLOSE: it has nothing to
/// send back, so this only covers its scheduling latency.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed: connect, read, write, or a reset.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Record marking failed: a record from the server over the limit or cut short, or a
    /// request too large to send.
    #[error("record marking: {0}")]
    Record(RecordError),
    /// A record from the server is not a message this client can decode.
    #[error("undecodable message from the server: {0}")]
    Decode(#[from] MessageError),
    /// The server answered with an error (header error_code, or the reply body's error field),
    /// with the words of the LOG_MESSAGEs it posted about the request, when it did.
    #[error("{} failed: {error}{}", code_name(*.code), because(.why))]
    Ndmp {
        /// The message code of the request.
        code: MessageCode,
        /// The error it got.
        error: NdmpError,
        /// What the server said about it: the text of its LOG_MESSAGEs tied to the request
        /// (associated_message_sequence), joined with "; ".
        why: Option<String>,
    },
    /// The server's first message said REFUSED or SHUTDOWN instead of CONNECTED.
    #[error("server refused the connection: {} {}", .0.reason, .0.text_reason)]
    Refused(NotifyConnectionStatusPost),
    /// The server closed the connection where a message was due.
    #[error("connection closed by the server")]
    Closed,
    /// Nothing came within the time allowed; the text names what was awaited.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// What the server sent or did is not what this client can go on from (a message out of
    /// place, a job that ended otherwise than it should); the text says what.
    #[error("unexpected from the server: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The NDMP error the server answered with, if that is what this is.
    pub fn ndmp_error(&self) -> Option<NdmpError> {
        match self {
            ClientError::Ndmp { error, .. } => Some(*error),
            _ => None,
        }
    }
}

impl From<RecordError> for ClientError {
    fn from(e: RecordError) -> Self {
        // A socket error surfaces through the codec; keep it an I/O error so callers can
        // tell a reset connection from a framing violation.
        match e {
            RecordError::Io(io) => ClientError::Io(io),
            other => ClientError::Record(other),
        }
    }
}

/// ": WORDS" after an NDMP error, when the server gave words.
fn because(why: &Option<String>) -> String {
    why.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
}

fn code_name(code: MessageCode) -> String {
    match code.name() {
        Some(n) => n.to_string(),
        None => format!("message {:#x}", code.0),
    }
}

/// Seconds since 1970 for the header's time_stamp. A clock before 1970 or after 2106 is
/// clamped rather than wrapped, since the field is informational.
fn unix_now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// One DMA control connection to an NDMP server.
#[derive(Debug)]
pub struct Client {
    framed: Framed<TcpStream, RecordCodec>,
    /// The sequence number the next request will carry.
    next_seq: u32,
    /// Posts (and any other server-originated message) that arrived while waiting for a reply.
    posts: VecDeque<Message>,
    peer: SocketAddr,
    local: SocketAddr,
    status: NotifyConnectionStatusPost,
    timeout: Duration,
    /// The words the server posted about the last request answered.
    last_why: Option<String>,
    /// The protocol version agreed by CONNECT_OPEN: how records are decoded and requests
    /// encoded; the library itself always works with v4 values.
    version: u16,
}

impl Client {
    /// Connects and reads the server's first message, which must be NOTIFY_CONNECTION_STATUS
    /// (REFUSED/SHUTDOWN -> `ClientError::Refused`). Bounded by [`CONNECT_TIMEOUT`].
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = bounded(
            CONNECT_TIMEOUT,
            "the TCP connection",
            TcpStream::connect(addr),
        )
        .await??;
        // Requests are small and each waits for its reply: never let Nagle hold one back.
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let local = stream.local_addr()?;
        let mut framed = Framed::new(stream, RecordCodec::default());
        let first = bounded(
            CONNECT_TIMEOUT,
            "NOTIFY_CONNECTION_STATUS",
            read_message(&mut framed, 4),
        )
        .await??;
        let Some(first) = first else {
            return Err(ClientError::Closed);
        };
        let status = match first.body {
            Body::Request(Request::NotifyConnectionStatus(s)) if !first.header.is_reply() => s,
            _ => {
                return Err(ClientError::Unexpected(format!(
                    "first message is {} {}, not NOTIFY_CONNECTION_STATUS",
                    code_name(first.header.message_code),
                    if first.header.is_reply() {
                        "reply"
                    } else {
                        "request"
                    }
                )))
            }
        };
        if status.reason != ConnectionStatusReason::CONNECTED {
            return Err(ClientError::Refused(status));
        }
        Ok(Client {
            framed,
            next_seq: 1,
            posts: VecDeque::new(),
            peer,
            local,
            status,
            timeout: DEFAULT_TIMEOUT,
            last_why: None,
            version: 4,
        })
    }

    /// The NOTIFY_CONNECTION_STATUS the server greeted us with (its offered version).
    pub fn connection_status(&self) -> &NotifyConnectionStatusPost {
        &self.status
    }

    /// The server's end of the control connection, as reached.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Our end of the control connection (what a server's session list shows as the DMA).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sets the bound on each later wait for a reply or a send.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The bound on each wait for a reply or a send (see [`set_timeout`](Client::set_timeout)).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes the sequence number for a new request. Starts at 1 and skips 0 on wrap-around,
    /// since a reply_sequence of 0 means "no request".
    pub fn next_sequence(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        seq
    }

    /// What the server said about the last request answered: the text of the LOG_MESSAGEs it
    /// posted tied to that request, joined with "; "; `None` when it posted none.
    pub fn last_why(&self) -> Option<&str> {
        self.last_why.as_deref()
    }

    /// The error `error` for a request `code` just answered, with the server's words about it.
    pub fn refusal(&self, code: MessageCode, error: NdmpError) -> ClientError {
        ClientError::Ndmp {
            code,
            error,
            why: self.last_why.clone(),
        }
    }

    /// The text of the queued LOG_MESSAGEs about the request with sequence `seq`.
    fn words_about(&self, seq: u32) -> Option<String> {
        let words: Vec<String> = self
            .posts
            .iter()
            .filter_map(|m| match &m.body {
                Body::Request(Request::LogMessage(l))
                    if l.associated_message_valid
                        == HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE
                        && l.associated_message_sequence == seq =>
                {
                    Some(l.entry.to_string())
                }
                _ => None,
            })
            .collect();
        (!words.is_empty()).then(|| words.join("; "))
    }

    /// The posts (NOTIFY, LOG, FH) queued while waiting for replies, oldest first.
    pub fn take_posts(&mut self) -> Vec<Message> {
        self.posts.drain(..).collect()
    }

    /// Sends a request and waits for the reply whose reply_sequence matches; posts that arrive
    /// meanwhile are queued. A header error gives `ClientError::Ndmp`. The reply body is
    /// returned as-is: its own error field is NOT turned into an `Err` (see [`call_ok`]).
    ///
    /// [`call_ok`]: Client::call_ok
    pub async fn call(&mut self, req: Request) -> Result<Reply, ClientError> {
        let limit = self.timeout;
        self.call_timeout(req, limit).await
    }

    /// [`call`](Client::call) with its own bound on the wait, for a request some servers
    /// never answer (NDMJOB ignores CONFIG_GET_EXT_LIST).
    pub async fn call_timeout(
        &mut self,
        req: Request,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let code = req.code();
        let seq = self.next_sequence();
        self.last_why = None;
        let msg = Message::request(seq, unix_now(), req);
        let what = code.name().unwrap_or("a reply");
        self.send_bounded(&msg, what).await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next =
                tokio::time::timeout_at(deadline, read_message(&mut self.framed, self.version))
                    .await
                    .map_err(|_| ClientError::Timeout(what))??;
            let Some(m) = next else {
                return Err(ClientError::Closed);
            };
            if !m.header.is_reply() {
                self.posts.push_back(m);
                continue;
            }
            if m.header.reply_sequence != seq {
                if m.header.reply_sequence < seq {
                    // The late answer to an earlier call that timed out: nobody waits for it.
                    tracing::debug!(
                        reply_sequence = m.header.reply_sequence,
                        "dropping stale reply"
                    );
                    continue;
                }
                return Err(ClientError::Unexpected(format!(
                    "{} reply to sequence {} while waiting for {} (sequence {seq})",
                    code_name(m.header.message_code),
                    m.header.reply_sequence,
                    code_name(code),
                )));
            }
            if m.header.message_code != code {
                return Err(ClientError::Unexpected(format!(
                    "{} reply to {} (sequence {seq})",
                    code_name(m.header.message_code),
                    code_name(code),
                )));
            }
            self.last_why = self.words_about(seq);
            if !m.header.error_code.is_ok() {
                return Err(self.refusal(code, m.header.error_code));
            }
            return match m.body {
                Body::Reply(r) => Ok(r),
                // Message::decode only yields these for requests or header errors, both
                // handled above; kept as errors rather than panics all the same.
                other => Err(ClientError::Unexpected(format!(
                    "{} reply without a body: {other:?}",
                    code_name(code)
                ))),
            };
        }
    }

    /// Like [`call`](Client::call), but a reply whose body reports an error other than
    /// NO_ERR becomes `ClientError::Ndmp` too.
    pub async fn call_ok(&mut self, req: Request) -> Result<Reply, ClientError> {
        let code = req.code();
        let reply = self.call(req).await?;
        match reply.error() {
            Some(error) if !error.is_ok() => Err(self.refusal(code, error)),
            _ => Ok(reply),
        }
    }

    /// Test helper: sends `payload` as one record, whatever it contains.
    pub async fn send_record(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let timeout = self.timeout;
        bounded(timeout, "a send", self.framed.send(payload)).await??;
        Ok(())
    }

    /// Test helper: sends a message exactly as given (sequence and all).
    pub async fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        self.send_bounded(msg, "a send").await
    }

    /// Test helper: the next message of any kind, queued posts first; `None` on EOF.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Option<Message>, ClientError> {
        if let Some(m) = self.posts.pop_front() {
            return Ok(Some(m));
        }
        bounded(
            timeout,
            "a message",
            read_message(&mut self.framed, self.version),
        )
        .await?
    }

    /// CONNECT_OPEN: asks for protocol `version` (3 or 4); once agreed, the connection speaks
    /// it.
    pub async fn open(&mut self, version: u16) -> Result<(), ClientError> {
        self.call_ok(Request::ConnectOpen(ConnectOpenRequest {
            protocol_version: version,
        }))
        .await?;
        self.version = version;
        Ok(())
    }

    /// The protocol version spoken (4 until a CONNECT_OPEN agreed on another).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// CONNECT_CLIENT_AUTH with the password in clear text.
    pub async fn auth_text(&mut self, user: &str, password: &[u8]) -> Result<(), ClientError> {
        self.client_auth(AuthData::Text(AuthText {
            auth_id: user.into(),
            auth_password: NdmpString::from(password),
        }))
        .await
    }

    /// CONFIG_GET_AUTH_ATTR(MD5) for a challenge, then CONNECT_CLIENT_AUTH with the digest.
    pub async fn auth_md5(&mut self, user: &str, password: &[u8]) -> Result<(), ClientError> {
        let reply = self
            .call_ok(Request::ConfigGetAuthAttr(ConfigGetAuthAttrRequest {
                auth_type: AuthType::MD5,
            }))
            .await?;
        let challenge = match reply {
            Reply::ConfigGetAuthAttr(r) => match r.server_attr {
                AuthAttr::Md5 { challenge } => challenge,
                other => {
                    return Err(ClientError::Unexpected(format!(
                        "CONFIG_GET_AUTH_ATTR(MD5) answered with {other:?}"
                    )))
                }
            },
            other => {
                return Err(ClientError::Unexpected(format!(
                    "CONFIG_GET_AUTH_ATTR answered with {other:?}"
                )))
            }
        };
        self.client_auth(AuthData::Md5(AuthMd5 {
            auth_id: user.into(),
            auth_digest: Fixed(md5_digest(password, &challenge.0)),
        }))
        .await
    }

    /// CONNECT_CLIENT_AUTH with AUTH_NONE.
    pub async fn auth_none(&mut self) -> Result<(), ClientError> {
        self.client_auth(AuthData::None).await
    }

    async fn client_auth(&mut self, auth_data: AuthData) -> Result<(), ClientError> {
        self.call_ok(Request::ConnectClientAuth(ConnectClientAuthRequest {
            auth_data,
        }))
        .await
        .map(drop)
    }

    /// CONNECT_CLOSE (which has no reply), then shuts the socket and waits briefly for the
    /// server to hang up, so it has read the request before our end goes away.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let seq = self.next_sequence();
        let msg = Message::request(seq, unix_now(), Request::ConnectClose(Void));
        self.send_bounded(&msg, "CONNECT_CLOSE").await?;
        let mut stream = self.framed.into_inner();
        // Only the write half: reading on until EOF avoids a reset if the server still had
        // something (a post) in flight.
        stream.shutdown().await?;
        let drain = async {
            let mut buf = [0u8; 4096];
            loop {
                match tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => continue,
                    // The server is allowed to reset instead of closing cleanly.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(ClientError::Io(e)),
                }
            }
        };
        bounded(self.timeout.min(CLOSE_DRAIN), "the server to close", drain).await?
    }

    async fn send_bounded(&mut self, msg: &Message, what: &'static str) -> Result<(), ClientError> {
        let timeout = self.timeout;
        if self.version == v3::VERSION {
            let msg = v3::downgrade(msg.clone());
            bounded(timeout, what, self.framed.send(&msg)).await??;
            return Ok(());
        }
        bounded(timeout, what, self.framed.send(msg)).await??;
        Ok(())
    }
}

/// Runs `fut` for at most `limit`; `what` names the awaited thing in the timeout error.
async fn bounded<F: Future>(
    limit: Duration,
    what: &'static str,
    fut: F,
) -> Result<F::Output, ClientError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ClientError::Timeout(what))
}

/// Reads and decodes one message; `None` on a clean EOF between records.
async fn read_message(
    framed: &mut Framed<TcpStream, RecordCodec>,
    version: u16,
) -> Result<Option<Message>, ClientError> {
    match framed.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(record)) if version == v3::VERSION => {
            let m = Message::decode_version(record, Limits::default(), version)?;
            Ok(Some(v3::upgrade_from_server(m)))
        }
        Some(Ok(record)) => Ok(Some(Message::decode(record)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{ConfigGetHostInfoReply, ErrorReply};
    use tokio::net::TcpListener;

    /// A scripted server end: accepts one connection and hands back its framed socket.
    async fn pair() -> (
        Framed<TcpStream, RecordCodec>,
        tokio::task::JoinHandle<Client>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { Client::connect(addr).await.unwrap() });
        let (sock, _) = listener.accept().await.unwrap();
        let mut server = Framed::new(sock, RecordCodec::default());
        server
            .send(&Message::request(
                1,
                unix_now(),
                Request::NotifyConnectionStatus(NotifyConnectionStatusPost {
                    reason: ConnectionStatusReason::CONNECTED,
                    protocol_version: 4,
                    text_reason: "hi".into(),
                }),
            ))
            .await
            .unwrap();
        (server, client)
    }

    async fn next(server: &mut Framed<TcpStream, RecordCodec>) -> Message {
        Message::decode(server.next().await.unwrap().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn client_queues_posts_and_matches_reply_sequence() {
        let (mut server, client) = pair().await;
        let mut client = client.await.unwrap();
        assert_eq!(client.connection_status().protocol_version, 4);
        let call = tokio::spawn(async move {
            let r = client.call(Request::ConfigGetHostInfo(Void)).await.unwrap();
            (client, r)
        });
        let req = next(&mut server).await;
        assert_eq!(req.header.sequence, 1);
        assert_eq!(req.header.message_code, MessageCode::CONFIG_GET_HOST_INFO);
        assert!(req.header.time_stamp > 1_600_000_000, "real Unix seconds");
        // a post and a stale reply before the real one
        let post = Message::request(
            2,
            0,
            Request::NotifyConnectionStatus(NotifyConnectionStatusPost::default()),
        );
        server.send(&post).await.unwrap();
        let body = ConfigGetHostInfoReply {
            hostname: "h".into(),
            ..Default::default()
        };
        server
            .send(&Message::reply(
                3,
                0,
                1,
                Reply::ConfigGetHostInfo(body.clone()),
            ))
            .await
            .unwrap();
        let (mut client, reply) = call.await.unwrap();
        assert_eq!(reply, Reply::ConfigGetHostInfo(body));
        assert_eq!(client.take_posts(), vec![post]);
        assert_eq!(client.next_sequence(), 2);
    }

    #[tokio::test]
    async fn client_header_and_body_errors() {
        let (mut server, client) = pair().await;
        let mut client = client.await.unwrap();
        let call = tokio::spawn(async move {
            let a = client.call(Request::ConfigGetFsInfo(Void)).await;
            let b = client.call(Request::DataStop(Void)).await;
            let c = client.call_ok(Request::DataStop(Void)).await;
            (a, b, c)
        });
        let r1 = next(&mut server).await;
        server
            .send(&Message::header_error(
                1,
                0,
                &r1.header,
                NdmpError::NOT_SUPPORTED_ERR,
            ))
            .await
            .unwrap();
        for seq in [2, 3] {
            let r = next(&mut server).await;
            assert_eq!(r.header.sequence, seq);
            let body = Reply::DataStop(ErrorReply::new(NdmpError::ILLEGAL_STATE_ERR));
            server
                .send(&Message::reply(seq, 0, seq, body))
                .await
                .unwrap();
        }
        let (a, b, c) = call.await.unwrap();
        assert!(matches!(
            a,
            Err(ClientError::Ndmp {
                code: MessageCode::CONFIG_GET_FS_INFO,
                error: NdmpError::NOT_SUPPORTED_ERR,
                why: None,
            })
        ));
        assert_eq!(b.unwrap().error(), Some(NdmpError::ILLEGAL_STATE_ERR));
        assert_eq!(
            c.unwrap_err().ndmp_error(),
            Some(NdmpError::ILLEGAL_STATE_ERR)
        );
    }

    #[tokio::test]
    async fn a_refusal_carries_the_words_posted_about_its_request() {
        use crate::wire::messages::LogMessagePost;
        use crate::wire::types::LogType;
        let (mut server, client) = pair().await;
        let mut client = client.await.unwrap();
        let call = tokio::spawn(async move {
            let e = client.call_ok(Request::DataStop(Void)).await.unwrap_err();
            (client, e)
        });
        let r = next(&mut server).await;
        let log = |seq: u32, about: u32, text: &str| {
            Message::request(
                seq,
                0,
                Request::LogMessage(LogMessagePost {
                    log_type: LogType::ERROR,
                    message_id: 0,
                    entry: text.into(),
                    associated_message_valid: HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE,
                    associated_message_sequence: about,
                }),
            )
        };
        // words about another request are not this refusal's
        server.send(&log(2, 99, "unrelated")).await.unwrap();
        server
            .send(&log(3, r.header.sequence, "first"))
            .await
            .unwrap();
        server
            .send(&log(4, r.header.sequence, "second"))
            .await
            .unwrap();
        let body = Reply::DataStop(ErrorReply::new(NdmpError::ILLEGAL_STATE_ERR));
        server
            .send(&Message::reply(5, 0, r.header.sequence, body))
            .await
            .unwrap();
        let (client, e) = call.await.unwrap();
        assert_eq!(
            e.to_string(),
            "DATA_STOP failed: ILLEGAL_STATE_ERR: first; second"
        );
        assert_eq!(client.last_why(), Some("first; second"));
    }

    #[tokio::test]
    async fn client_times_out_and_sees_eof() {
        let (server, client) = pair().await;
        let mut client = client.await.unwrap();
        client.set_timeout(Duration::from_millis(200));
        let err = client.call(Request::DataGetState(Void)).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Timeout("DATA_GET_STATE")),
            "{err}"
        );
        drop(server);
        let err = client.call(Request::DataGetState(Void)).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Closed | ClientError::Io(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn client_refused_by_first_message() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(Client::connect(addr));
        let (sock, _) = listener.accept().await.unwrap();
        let mut server = Framed::new(sock, RecordCodec::default());
        let refused = NotifyConnectionStatusPost {
            reason: ConnectionStatusReason::REFUSED,
            protocol_version: 4,
            text_reason: "too many sessions".into(),
        };
        server
            .send(&Message::request(
                1,
                0,
                Request::NotifyConnectionStatus(refused.clone()),
            ))
            .await
            .unwrap();
        match client.await.unwrap() {
            Err(ClientError::Refused(s)) => assert_eq!(s, refused),
            other => panic!("{other:?}"),
        }
    }
}
