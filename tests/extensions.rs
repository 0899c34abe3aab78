//! NetApp extensions: negotiation as real DMAs do it (blind, twice, with a class we do not
//! offer), CAE's IPv6 data addresses and CAB's data-connection prepare byte for byte, and a
//! three-way backup and restore between two ndmpd processes over `[::1]` with CAE.

mod common;

use bytes::{Bytes, BytesMut};
use common::daemon::spawn_on;
use ndmpd::client::job::Agents;
use ndmpd::client::{AuthMethod, Client};
use ndmpd::wire::header::{Body, Message};
use ndmpd::wire::messages::*;
use ndmpd::wire::netapp::{CabDataConnPrepareRequest, TcpIpv6Addr};
use ndmpd::wire::types::*;
use ndmpd::wire::xdr::{Fixed, Xdr, XdrReader};
use ndmpd::wire::{MessageCode, NdmpError, Reply, Request};
use serde_json::Value;
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::Duration;

const PW: &[u8] = b"ext-pw";

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// A request record by hand: the 24-byte header, then `body`.
fn request_record(seq: u32, code: u32, body: &[u8]) -> Vec<u8> {
    let mut r = words(&[seq, 0, 0, code, 0, 0]);
    r.extend_from_slice(body);
    r
}

/// `{bu_type "dump", env [FILESYSTEM=/v]}` as open-eBackup and Bareos send it after the
/// header (the former with a word before it).
fn prepare_body() -> Vec<u8> {
    [
        words(&[4]),
        b"dump".to_vec(),
        words(&[1, 10]),
        b"FILESYSTEM\0\0".to_vec(),
        words(&[2]),
        b"/v\0\0".to_vec(),
    ]
    .concat()
}

fn set_ext(classes: &[(u16, u16)]) -> Request {
    Request::ConfigSetExtList(ConfigSetExtListRequest::Spec {
        ndmp_selected_ext: classes
            .iter()
            .map(|&(c, v)| ClassVersion {
                ext_class_id: c,
                ext_version: v,
            })
            .collect(),
    })
}

async fn err(c: &mut Client, r: Request) -> NdmpError {
    c.call(r).await.unwrap().error().unwrap()
}

/// Sends a hand-built request record and returns the error of its reply.
async fn raw_call(c: &mut Client, code: u32, body: &[u8]) -> NdmpError {
    let seq = c.next_sequence();
    c.send_record(&request_record(seq, code, body))
        .await
        .unwrap();
    loop {
        let m = c.recv(Duration::from_secs(10)).await.unwrap().unwrap();
        if m.header.is_reply() && m.header.reply_sequence == seq {
            if m.header.error_code != NdmpError::NO_ERR {
                return m.header.error_code;
            }
            let Body::Reply(r) = m.body else {
                panic!("{m:?}")
            };
            return r.error().unwrap();
        }
    }
}

fn curl_json(rest: std::net::SocketAddr, path: &str) -> Value {
    let out = Command::new("curl")
        .args(["-s", "-g", "-u", "ndmp:ext-pw"])
        .arg(format!("http://{rest}{path}"))
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn golden_bytes_of_the_cae_address() {
    // MOVER_LISTEN reply offering [2001:db8::1]:10100 and [::ffff:10.0.0.5]:10100, the first
    // with the CAB affinity pair
    let mut first = TcpIpv6Addr::new("2001:db8::1".parse().unwrap(), 10100);
    first.addr_env = vec![Pval::new("AFFINITY", "local")];
    let second = TcpIpv6Addr::new("::ffff:10.0.0.5".parse().unwrap(), 10100);
    let reply = ListenReply {
        error: NdmpError::NO_ERR,
        connect_addr: Addr::TcpIpv6 {
            tcp_ipv6_addr: vec![first, second],
        },
    };
    let want = [
        words(&[0, 0x2051_0004, 2]),
        vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        words(&[10100, 1, 8]),
        b"AFFINITY".to_vec(),
        words(&[5]),
        b"local\0\0\0".to_vec(),
        vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5],
        words(&[10100, 0]),
    ]
    .concat();
    let mut out = BytesMut::new();
    reply.encode(&mut out);
    assert_eq!(&out[..], &want[..]);
    let back = Reply::decode(MessageCode::MOVER_LISTEN, &mut XdrReader::new(want.into()));
    assert_eq!(back.unwrap(), Reply::MoverListen(reply));

    // DATA_CONNECT to [::1]:7, as a DMA sends it
    let bytes = [
        words(&[0x2051_0004, 1]),
        Ipv6Addr::LOCALHOST.octets().to_vec(),
        words(&[7, 0]),
    ]
    .concat();
    let r = Request::decode(MessageCode::DATA_CONNECT, &mut XdrReader::new(bytes.into()));
    let Ok(Request::DataConnect(DataConnectRequest {
        addr: Addr::TcpIpv6 { tcp_ipv6_addr },
    })) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(tcp_ipv6_addr[0].ip(), Ipv6Addr::LOCALHOST);
    assert_eq!(tcp_ipv6_addr[0].port, 7);
    assert_eq!(
        tcp_ipv6_addr[0].ipv6_addr,
        Fixed(Ipv6Addr::LOCALHOST.octets())
    );
    assert_eq!(AddrType::TCP_IPV6.name(), Some("TCP_IPV6"));
}

#[test]
fn golden_bytes_of_cab_prepare_in_both_layouts() {
    let body = prepare_body();
    let mut with_word = words(&[1]);
    with_word.extend_from_slice(&body);
    for (bytes, lead_word) in [(body, None), (with_word, Some(1))] {
        let rec = request_record(9, 0x2052_0001, &bytes);
        let m = Message::decode(Bytes::from(rec.clone())).unwrap();
        assert_eq!(m.header.message_code, MessageCode::CAB_DATA_CONN_PREPARE);
        let Body::Request(Request::CabDataConnPrepare(p)) = &m.body else {
            panic!("{m:?}")
        };
        let want = CabDataConnPrepareRequest {
            lead_word,
            bu_type: "dump".into(),
            env: vec![Pval::new("FILESYSTEM", "/v")],
        };
        assert_eq!(p, &want);
        // and back to the very bytes received
        assert_eq!(&m.to_bytes()[..], &rec[..]);
    }
    // the reply is {error}
    let mut out = BytesMut::new();
    Reply::CabDataConnPrepare(ErrorReply {
        error: NdmpError::PRECONDITION_ERR,
    })
    .encode(&mut out);
    assert_eq!(&out[..], &words(&[26])[..]);
    // a body that is neither layout is a decode error, not a guess
    let junk = request_record(10, 0x2052_0001, &words(&[1, 2]));
    assert!(Message::decode(Bytes::from(junk)).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiation_twice_and_cab_prepare_in_both_layouts_keep_the_session() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let mut c = Client::connect(t.addr).await.unwrap();
    c.auth_md5("ndmp", PW).await.unwrap();

    // only what is implemented is offered: CAE and CAB v1, not 0x2050
    let Reply::ConfigGetExtList(l) = c.call_ok(Request::ConfigGetExtList(Void)).await.unwrap()
    else {
        panic!()
    };
    let offered: Vec<(u16, Vec<u16>)> = l
        .class_list
        .iter()
        .map(|c| (c.ext_class_id, c.ext_version.clone()))
        .collect();
    assert_eq!(offered, vec![(0x2051, vec![1]), (0x2052, vec![1])]);
    // TCP_IPV6 is not listed before CAE is in effect
    let types = |r: Reply| match r {
        Reply::ConfigGetConnectionType(t) => t.addr_types,
        other => panic!("{other:?}"),
    };
    let before = types(
        c.call_ok(Request::ConfigGetConnectionType(Void))
            .await
            .unwrap(),
    );
    assert_eq!(before, vec![AddrType::LOCAL, AddrType::TCP]);

    // open-eBackup's blind selection names 0x2050: refused, and the session goes on
    let blind = set_ext(&[(0x2050, 3), (0x2051, 1), (0x2052, 1)]);
    assert_eq!(err(&mut c, blind).await, NdmpError::CLASS_NOT_SUPPORTED_ERR);
    assert!(
        c.last_why().unwrap_or("").contains("0x2050"),
        "{:?}",
        c.last_why()
    );
    assert_eq!(
        err(&mut c, set_ext(&[(0x2051, 1), (0x2052, 1)])).await,
        NdmpError::NO_ERR
    );
    // the second SET, as open-eBackup sends from NdmpGetFsInfo
    assert_eq!(
        err(&mut c, set_ext(&[(0x2051, 1), (0x2052, 1)])).await,
        NdmpError::EXT_DANDN_ILLEGAL_ERR
    );
    assert_eq!(
        err(&mut c, Request::ConfigGetExtList(Void)).await,
        NdmpError::EXT_DANDN_ILLEGAL_ERR
    );
    let after = types(
        c.call_ok(Request::ConfigGetConnectionType(Void))
            .await
            .unwrap(),
    );
    assert_eq!(
        after,
        vec![AddrType::LOCAL, AddrType::TCP, AddrType::TCP_IPV6]
    );

    // Bareos' layout, then DATA_LISTEN: the offer carries the affinity answer
    assert_eq!(
        raw_call(&mut c, 0x2052_0001, &prepare_body()).await,
        NdmpError::NO_ERR
    );
    let listen = Request::DataListen(DataListenRequest {
        addr_type: AddrType::TCP,
    });
    let Reply::DataListen(l) = c.call_ok(listen).await.unwrap() else {
        panic!()
    };
    let Addr::Tcp { tcp_addr } = &l.connect_addr else {
        panic!("{l:?}")
    };
    assert_eq!(tcp_addr[0].addr_env, vec![Pval::new("AFFINITY", "local")]);
    c.call_ok(Request::DataAbort(Void)).await.unwrap();
    c.call_ok(Request::DataStop(Void)).await.unwrap();

    // open-eBackup's layout with its extra word (1, TCP), then a LOCAL connect: the
    // documented precondition error, and the session still answers
    let mut with_word = words(&[1]);
    with_word.extend_from_slice(&prepare_body());
    assert_eq!(
        raw_call(&mut c, 0x2052_0001, &with_word).await,
        NdmpError::NO_ERR
    );
    let local = Request::DataConnect(DataConnectRequest { addr: Addr::Local });
    assert_eq!(err(&mut c, local).await, NdmpError::PRECONDITION_ERR);
    assert!(
        c.last_why().unwrap_or("").contains("precondition"),
        "{:?}",
        c.last_why()
    );
    // a body that decodes in neither layout: XDR_DECODE_ERR in the header, session alive
    assert_eq!(
        raw_call(&mut c, 0x2052_0001, &words(&[1, 2])).await,
        NdmpError::XDR_DECODE_ERR
    );
    let Reply::DataGetState(s) = c.call_ok(Request::DataGetState(Void)).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.state, DataState::IDLE);

    // the REST view shows what is in effect
    let rest = t.rest.unwrap();
    let v = tokio::task::block_in_place(|| {
        curl_json(rest, "/api/protocols/ndmp/sessions?fields=extensions")
    });
    let ext = &v["records"][0]["extensions"];
    assert_eq!(ext[0]["class"], "0x2051", "{v}");
    assert_eq!(ext[0]["name"], "connection_address");
    assert_eq!(ext[0]["version"], 1);
    assert_eq!(ext[0]["negotiated"], true);
    assert_eq!(ext[1]["class"], "0x2052", "{v}");
    assert_eq!(ext.as_array().map(Vec::len), Some(2), "{v}");
}

/// Whether `[::1]` can be listened on; if not, says how to get it (and fails under CI).
fn ipv6_loopback() -> bool {
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        return true;
    }
    common::skip(
        "IPv6 loopback [::1] is unavailable (`ip -6 addr show lo`); as root, `unshare -n` \
         then `ip link set lo up` gives a namespace that has it",
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dma_library_selects_cae_and_connects_over_ipv6() {
    if !ipv6_loopback() {
        return;
    }
    let on_v6 = |cfg: &mut ndmpd::config::Config| cfg.listen = vec!["[::1]:0".parse().unwrap()];
    let (a, b) = (
        common::start("ndmp", PW, on_v6).await,
        common::start("ndmp", PW, on_v6).await,
    );
    let (sa, sb) = (a.addr.to_string(), b.addr.to_string());
    assert!(sa.starts_with("[::1]:"), "{sa}");
    let mut agents = Agents::login(&sa, Some(&sb), "ndmp", PW, AuthMethod::Md5)
        .await
        .unwrap();
    assert!(agents.cae, "both servers offer CAE");
    assert_eq!(agents.data_addr_type(), AddrType::TCP_IPV6);
    agents
        .connect("vtape0", TapeOpenMode::RDWR, 64 << 10, MoverMode::READ)
        .await
        .unwrap();
    // DATA on A reached B's mover at [::1]: both report the IPv6 peer
    let Reply::DataGetState(d) = agents
        .data
        .call_ok(Request::DataGetState(Void))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Addr::TcpIpv6 { tcp_ipv6_addr } = &d.data_connection_addr else {
        panic!("{:?}", d.data_connection_addr)
    };
    assert_eq!(tcp_ipv6_addr[0].ip(), Ipv6Addr::LOCALHOST);
    let tape = agents.tape.as_mut().unwrap();
    // the mover learns of the accepted connection on its own session: it may still be in
    // LISTEN for a moment after DATA_CONNECT has answered
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let m = loop {
        let Reply::MoverGetState(m) = tape.call_ok(Request::MoverGetState(Void)).await.unwrap()
        else {
            panic!()
        };
        if m.state != MoverState::LISTEN || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(m.state, MoverState::ACTIVE);
    let Addr::TcpIpv6 { tcp_ipv6_addr } = &m.data_connection_addr else {
        panic!("{:?}", m.data_connection_addr)
    };
    assert_eq!(tcp_ipv6_addr[0].ip(), Ipv6Addr::LOCALHOST);
    tape.call_ok(Request::MoverAbort(Void)).await.unwrap();
}

#[test]
fn three_way_backup_and_restore_over_ipv6_loopback_with_cae() {
    if !ipv6_loopback() {
        return;
    }
    let pwdir = tempfile::tempdir().unwrap();
    let pwfile = pwdir.path().join("pw");
    std::fs::write(&pwfile, "ext-pw\n").unwrap();
    let pw = pwfile.to_str().unwrap();
    let login = ["--user", "ndmp", "--password-file", pw];
    // data ports on B: the IPv6 listen must take one of them
    let probe = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("b.toml");
    let toml = format!(
        "[[tape]]\nname = \"vtape0\"\nkind = \"virtual\"\n\n[mover]\ndata_ports = [{port}, {port}]\n"
    );
    std::fs::write(&cfg, toml).unwrap();
    let b_args = [&login[..], &["--config", cfg.to_str().unwrap()]].concat();
    let (a, b) = (
        spawn_on("[::1]:0", &login, true),
        spawn_on("[::1]:0", &b_args, true),
    );
    assert!(
        a.addr.is_ipv6() && b.addr.is_ipv6(),
        "{} {}",
        a.addr,
        b.addr
    );
    let tree = a.dir.path().join("tree");
    common::tree::build(&tree);
    let dma = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ndmpd"))
            .arg("dma")
            .args(args)
            .args(["--server", &a.addr.to_string()])
            .args(["--tape-server", &b.addr.to_string(), "--tape", "vtape0"])
            .args(["--password-file", pw])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = dma(&["backup", s(&tree)]);
    assert!(text.contains("onto vtape0"), "{text}");
    let back = a.dir.path().join("back");
    dma(&["restore", s(&back)]);
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(&back)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    common::tree::assert_same(&tree, &back);
    // both jobs went over CAE: B listened TCP_IPV6 on its one data port, A connected there
    let (la, lb) = (a.log(), b.log());
    assert_eq!(
        lb.matches("MOVER_LISTEN request: READ TCP_IPV6").count(),
        1,
        "{lb}"
    );
    assert_eq!(
        lb.matches("MOVER_LISTEN request: WRITE TCP_IPV6").count(),
        1,
        "{lb}"
    );
    let offer = format!("TCP_IPV6 [::1]:{port}");
    assert!(la.matches("DATA_CONNECT request: ").count() >= 2, "{la}");
    assert!(
        la.lines()
            .filter(|l| l.contains("DATA_CONNECT request: "))
            .all(|l| l.contains(&offer)),
        "{la}"
    );
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}
