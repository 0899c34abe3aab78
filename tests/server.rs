//! The control session over real sockets: connection status, version negotiation, the
//! pre-auth rules, both auth methods, bad input, the session limit, kill and shutdown.

use ndmpd::client::{Client, ClientError};
mod common;

use common::TestServer;
use ndmpd::config::{AuthMethod, Config};
use ndmpd::wire::header::{Body, Message};
use ndmpd::wire::messages::*;
use ndmpd::wire::sample::Gen;
use ndmpd::wire::types::*;
use ndmpd::wire::{MessageCode, NdmpError, Reply, Request};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "backup";
const PASSWORD: &[u8] = b"s3cret-pw";

async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    common::start(USER, PASSWORD, tweak).await
}

async fn authed(t: &TestServer) -> Client {
    let mut c = Client::connect(t.addr).await.unwrap();
    c.open(4).await.unwrap();
    c.auth_md5(USER, PASSWORD).await.unwrap();
    c
}

fn ndmp_err(r: Result<Reply, ClientError>) -> NdmpError {
    match r {
        Ok(reply) => reply.error().unwrap_or(NdmpError::NO_ERR),
        Err(e) => e
            .ndmp_error()
            .unwrap_or_else(|| panic!("expected an NDMP error, got {e}")),
    }
}

#[tokio::test]
async fn connection_status_first_then_version_negotiation() {
    let t = start(|_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    let st = c.connection_status();
    assert_eq!(st.reason, ConnectionStatusReason::CONNECTED);
    assert_eq!(st.protocol_version, 4);
    let r = c
        .call(Request::ConnectOpen(ConnectOpenRequest {
            // 3 and 4 are spoken (tests/ndmjob_v3.rs); 2 is not
            protocol_version: 2,
        }))
        .await;
    assert_eq!(ndmp_err(r), NdmpError::ILLEGAL_ARGS_ERR);
    // the refusal is explained in a LOG_MESSAGE tied to the request
    let logs: Vec<_> = c
        .take_posts()
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Request(Request::LogMessage(l)) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].log_type, LogType::ERROR);
    assert!(logs[0].entry.to_string().contains("version 2"));
    c.open(4).await.unwrap();
    // an implicit version is fine too: a fresh connection may skip CONNECT_OPEN
    let mut c2 = Client::connect(t.addr).await.unwrap();
    c2.auth_text(USER, PASSWORD).await.unwrap();
}

#[tokio::test]
async fn only_the_five_preauth_messages_are_answered_before_auth() {
    let t = start(|_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    let mut g = Gen::new(5);
    for code in Request::CODES {
        if code.is_post()
            || matches!(
                *code,
                MessageCode::CONNECT_OPEN
                    | MessageCode::CONNECT_CLIENT_AUTH
                    | MessageCode::CONNECT_CLOSE
                    | MessageCode::CONFIG_GET_SERVER_INFO
                    | MessageCode::CONFIG_GET_AUTH_ATTR
            )
        {
            continue;
        }
        let req = Request::sample(*code, &mut g).unwrap();
        assert_eq!(
            ndmp_err(c.call(req).await),
            NdmpError::NOT_AUTHORIZED_ERR,
            "{code:?} before auth"
        );
    }
    // the allowed ones work, and the server hides what it is
    let info = match c.call_ok(Request::ConfigGetServerInfo(Void)).await.unwrap() {
        Reply::ConfigGetServerInfo(i) => i,
        other => panic!("{other:?}"),
    };
    assert!(info.vendor_name.is_empty() && info.product_name.is_empty());
    assert!(info.revision_number.is_empty());
    assert_eq!(info.auth_type, vec![AuthType::MD5, AuthType::TEXT]);
    let attr = c
        .call_ok(Request::ConfigGetAuthAttr(ConfigGetAuthAttrRequest {
            auth_type: AuthType::MD5,
        }))
        .await
        .unwrap();
    assert!(matches!(
        attr,
        Reply::ConfigGetAuthAttr(ConfigGetAuthAttrReply {
            server_attr: AuthAttr::Md5 { .. },
            ..
        })
    ));
    c.auth_text(USER, PASSWORD).await.unwrap();
    match c.call_ok(Request::ConfigGetServerInfo(Void)).await.unwrap() {
        Reply::ConfigGetServerInfo(i) => assert_eq!(i.product_name.to_string(), "ndmpd"),
        other => panic!("{other:?}"),
    }
    c.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap();
}

#[tokio::test]
async fn text_auth_wrong_then_right_on_one_connection() {
    let t = start(|_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    let e = c.auth_text(USER, b"wrong").await.unwrap_err();
    assert_eq!(e.ndmp_error(), Some(NdmpError::NOT_AUTHORIZED_ERR));
    let e = c.auth_text("nobody", PASSWORD).await.unwrap_err();
    assert_eq!(e.ndmp_error(), Some(NdmpError::NOT_AUTHORIZED_ERR));
    assert!(t.registry.list()[0].user.is_none());
    c.auth_text(USER, PASSWORD).await.unwrap();
    let info = &t.registry.list()[0];
    assert_eq!(info.user.as_deref(), Some(USER));
    assert_eq!(info.auth_method, Some("text"));
}

#[tokio::test]
async fn md5_auth_needs_a_fresh_challenge_each_time() {
    let t = start(|_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    let e = c.auth_md5(USER, b"wrong").await.unwrap_err();
    assert_eq!(e.ndmp_error(), Some(NdmpError::NOT_AUTHORIZED_ERR));

    // a digest for a challenge that was already used is refused, even if it is right
    let challenge = match c
        .call_ok(Request::ConfigGetAuthAttr(ConfigGetAuthAttrRequest {
            auth_type: AuthType::MD5,
        }))
        .await
        .unwrap()
    {
        Reply::ConfigGetAuthAttr(ConfigGetAuthAttrReply {
            server_attr: AuthAttr::Md5 { challenge },
            ..
        }) => challenge,
        other => panic!("{other:?}"),
    };
    let auth = |digest| {
        Request::ConnectClientAuth(ConnectClientAuthRequest {
            auth_data: AuthData::Md5(AuthMd5 {
                auth_id: USER.into(),
                auth_digest: ndmpd::wire::xdr::Fixed(digest),
            }),
        })
    };
    let digest = ndmpd::auth::md5_digest(PASSWORD, &challenge.0);
    c.call_ok(auth(digest)).await.unwrap();
    let mut c2 = Client::connect(t.addr).await.unwrap();
    assert_eq!(
        ndmp_err(c2.call(auth(digest)).await),
        NdmpError::NOT_AUTHORIZED_ERR,
        "replayed digest on a new connection"
    );
    c2.auth_md5(USER, PASSWORD).await.unwrap();
}

#[tokio::test]
async fn auth_none_only_when_configured() {
    let t = start(|_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    assert_eq!(
        c.auth_none().await.unwrap_err().ndmp_error(),
        Some(NdmpError::ILLEGAL_ARGS_ERR)
    );
    let t = start(|c| c.auth.methods = vec![AuthMethod::None]).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    c.auth_none().await.unwrap();
    c.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap();
    // and with NONE only, the password methods are off
    let mut c = Client::connect(t.addr).await.unwrap();
    assert_eq!(
        c.auth_text(USER, PASSWORD).await.unwrap_err().ndmp_error(),
        Some(NdmpError::ILLEGAL_ARGS_ERR)
    );
}

#[tokio::test]
async fn unknown_codes_and_bad_bodies_get_header_errors() {
    let t = start(|_| {}).await;
    let mut c = authed(&t).await;
    // a vendor message: NOT_SUPPORTED in the header, on the right sequence
    let seq = c.next_sequence();
    let mut raw = Vec::new();
    for w in [seq, 0, 0, 0x2050_0100, 0, 0] {
        raw.extend_from_slice(&u32::to_be_bytes(w));
    }
    c.send_record(&raw).await.unwrap();
    let reply = next_reply(&mut c).await;
    assert_eq!(reply.header.reply_sequence, seq);
    assert_eq!(reply.header.message_code, MessageCode(0x2050_0100));
    assert_eq!(reply.header.error_code, NdmpError::NOT_SUPPORTED_ERR);
    assert_eq!(reply.body, Body::Empty);

    // TAPE_OPEN whose device string claims 0xfffffff0 bytes: XDR_DECODE_ERR
    let seq = c.next_sequence();
    let mut raw = Vec::new();
    for w in [seq, 0, 0, 0x300, 0, 0, 0xffff_fff0] {
        raw.extend_from_slice(&u32::to_be_bytes(w));
    }
    c.send_record(&raw).await.unwrap();
    let reply = next_reply(&mut c).await;
    assert_eq!(reply.header.reply_sequence, seq);
    assert_eq!(reply.header.error_code, NdmpError::XDR_DECODE_ERR);

    // a known message out of place: its error in the body
    let r = c
        .call(Request::TapeExecuteCdb(ExecuteCdbRequest::default()))
        .await
        .unwrap();
    assert_eq!(r.error(), Some(NdmpError::DEV_NOT_OPEN_ERR));
    // and the session is still fine
    c.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap();
}

async fn next_reply(c: &mut Client) -> Message {
    loop {
        let m = c
            .recv(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("connection open");
        if m.header.is_reply() {
            return m;
        }
    }
}

#[tokio::test]
async fn garbage_closes_the_connection() {
    let t = start(|_| {}).await;
    // raw random bytes
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    let mut g = Gen::new(99);
    let _ = s.write_all(&g.bytes(64 << 10)).await;
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "server kept a connection that sent 64 KiB of noise");

    // well-framed records whose headers are nonsense
    let mut c = Client::connect(t.addr).await.unwrap();
    for _ in 0..8 {
        c.send_record(&[1, 2, 3]).await.unwrap();
    }
    assert!(c.recv(Duration::from_secs(10)).await.unwrap().is_none());
    assert_eq!(t.registry.len(), 0);
}

#[tokio::test]
async fn connect_close_gets_no_reply() {
    let t = start(|_| {}).await;
    let mut c = authed(&t).await;
    let seq = c.next_sequence();
    c.send(&Message::request(seq, 0, Request::ConnectClose(Void)))
        .await
        .unwrap();
    assert!(
        c.recv(Duration::from_secs(10)).await.unwrap().is_none(),
        "expected the server to close without replying"
    );
}

#[tokio::test]
async fn session_limit_refuses_with_notice() {
    let t = start(|c| c.max_sessions = 2).await;
    let _a = authed(&t).await;
    let _b = authed(&t).await;
    match Client::connect(t.addr).await {
        Err(ClientError::Refused(st)) => assert_eq!(st.reason, ConnectionStatusReason::REFUSED),
        other => panic!("expected REFUSED, got {other:?}"),
    }
    drop(_a);
    // once a slot frees up, connections are accepted again
    for _ in 0..50 {
        if t.registry.len() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    authed(&t).await;
}

#[tokio::test]
async fn shutdown_notifies_every_session() {
    let t = start(|_| {}).await;
    let mut a = authed(&t).await;
    let mut b = Client::connect(t.addr).await.unwrap();
    t.stop.cancel();
    for c in [&mut a, &mut b] {
        let m = c.recv(Duration::from_secs(10)).await.unwrap().unwrap();
        match m.body {
            Body::Request(Request::NotifyConnectionStatus(p)) => {
                assert_eq!(p.reason, ConnectionStatusReason::SHUTDOWN)
            }
            other => panic!("{other:?}"),
        }
        assert!(c.recv(Duration::from_secs(10)).await.unwrap().is_none());
    }
    tokio::time::timeout(Duration::from_secs(10), t.done)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn operator_kill_ends_one_session() {
    let t = start(|_| {}).await;
    let mut a = authed(&t).await;
    let mut b = authed(&t).await;
    let victim = t
        .registry
        .list()
        .into_iter()
        .find(|s| s.client_address.port() == local_port(&a))
        .unwrap();
    assert!(t.registry.kill(victim.id));
    let m = a.recv(Duration::from_secs(10)).await.unwrap().unwrap();
    match m.body {
        Body::Request(Request::NotifyConnectionStatus(p)) => {
            assert_eq!(p.reason, ConnectionStatusReason::SHUTDOWN);
            assert!(p.text_reason.to_string().contains("operator"));
        }
        other => panic!("{other:?}"),
    }
    b.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap();
}

fn local_port(c: &Client) -> u16 {
    // the registry records the client's address as the server saw it
    c.local_addr().port()
}

#[tokio::test]
async fn config_replies_describe_the_machine() {
    let t = start(|_| {}).await;
    let mut c = authed(&t).await;
    match c.call_ok(Request::ConfigGetHostInfo(Void)).await.unwrap() {
        Reply::ConfigGetHostInfo(h) => {
            assert_eq!(h.os_type.to_string(), "Linux");
            assert!(!h.hostname.is_empty() && !h.hostid.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match c.call_ok(Request::ConfigGetFsInfo(Void)).await.unwrap() {
        Reply::ConfigGetFsInfo(f) => {
            assert_eq!(f.fs_info.len(), 1);
            assert!(f.fs_info[0].total_size > 0);
        }
        other => panic!("{other:?}"),
    }
    match c.call_ok(Request::ConfigGetTapeInfo(Void)).await.unwrap() {
        Reply::ConfigGetTapeInfo(ti) => {
            let names: Vec<String> = ti
                .tape_info
                .iter()
                .map(|d| d.caplist[0].device.to_string())
                .collect();
            assert_eq!(names, ["vtape0", "vtape1"]);
        }
        other => panic!("{other:?}"),
    }
    match c
        .call_ok(Request::ConfigGetConnectionType(Void))
        .await
        .unwrap()
    {
        Reply::ConfigGetConnectionType(ct) => {
            assert_eq!(ct.addr_types, vec![AddrType::LOCAL, AddrType::TCP])
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn extension_discovery_and_negotiation() {
    let t = start(|_| {}).await;
    let mut c = authed(&t).await;
    let set = |sel: Vec<ClassVersion>| {
        Request::ConfigSetExtList(ConfigSetExtListRequest::Spec {
            ndmp_selected_ext: sel,
        })
    };
    let cv = |c, v| ClassVersion {
        ext_class_id: c,
        ext_version: v,
    };
    assert_eq!(
        ndmp_err(c.call(set(vec![])).await),
        NdmpError::PRECONDITION_ERR
    );
    match c.call_ok(Request::ConfigGetExtList(Void)).await.unwrap() {
        // NetApp CAE and CAB, version 1 each: what is implemented, and only that
        Reply::ConfigGetExtList(l) => assert_eq!(
            l.class_list,
            vec![
                ClassList {
                    ext_class_id: 0x2051,
                    ext_version: vec![1]
                },
                ClassList {
                    ext_class_id: 0x2052,
                    ext_version: vec![1]
                }
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ndmp_err(c.call(set(vec![cv(0x2052, 1), cv(0x2052, 1)])).await),
        NdmpError::EXT_DUPL_CLASSES_ERR
    );
    assert_eq!(
        ndmp_err(c.call(set(vec![cv(0x2050, 3)])).await),
        NdmpError::CLASS_NOT_SUPPORTED_ERR
    );
    // NDMJOB's layout is understood too
    let nj = Request::ConfigSetExtList(ConfigSetExtListRequest::Ndmjob {
        error: NdmpError::NO_ERR,
        accepted_ext: vec![ClassList {
            ext_class_id: 0x2051,
            ext_version: vec![2],
        }],
    });
    assert_eq!(
        ndmp_err(c.call(nj).await),
        NdmpError::VERSION_NOT_SUPPORTED_ERR
    );
    assert_eq!(ndmp_err(c.call(set(vec![])).await), NdmpError::NO_ERR);
    assert_eq!(
        ndmp_err(c.call(set(vec![])).await),
        NdmpError::EXT_DANDN_ILLEGAL_ERR
    );
    assert_eq!(
        ndmp_err(c.call(Request::ConfigGetExtList(Void)).await),
        NdmpError::EXT_DANDN_ILLEGAL_ERR
    );
}

#[tokio::test]
async fn server_auth_proves_the_shared_secret() {
    let t = start(|_| {}).await;
    let mut c = authed(&t).await;
    let challenge = [7u8; 64];
    let r = c
        .call_ok(Request::ConnectServerAuth(ConnectServerAuthRequest {
            client_attr: AuthAttr::Md5 {
                challenge: ndmpd::wire::xdr::Fixed(challenge),
            },
        }))
        .await
        .unwrap();
    match r {
        Reply::ConnectServerAuth(ConnectServerAuthReply {
            server_result: AuthData::Md5(m),
            ..
        }) => assert_eq!(
            m.auth_digest.0,
            ndmpd::auth::md5_digest(PASSWORD, &challenge)
        ),
        other => panic!("{other:?}"),
    }
}
