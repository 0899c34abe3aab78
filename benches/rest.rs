//! The REST view's listing speed: 1,000 registered sessions, listed over loopback HTTP with a
//! filter and `fields=*`, the way an operator's dashboard polls. Medians and p95 in ms.

use ndmpd::config::Credentials;
use ndmpd::registry::Registry;
use ndmpd::rest::{Identity, RestState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

const SESSIONS: u32 = 1000;

/// One GET with basic auth ("ndmp:pw") on a fresh connection: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic bmRtcDpwdw==\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = if bench { 200 } else { 3 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::new());
    let mut held = Vec::new();
    for i in 0..SESSIONS {
        let client =
            SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 40000 + i as u16));
        let local = SocketAddr::from(([10, 0, 255, 1], 10000));
        let reg = registry.register(client, local, CancellationToken::new());
        reg.entry().update(|s| {
            s.user = Some("ndmp".into());
            s.tape.device = Some(format!("vtape{}", i % 4));
            s.tape.mode = Some("read_write");
            s.data.state = if i % 3 == 0 { "ACTIVE" } else { "IDLE" };
            s.data.operation = if i % 3 == 0 { "BACKUP" } else { "NOACTION" };
            s.data.bytes_processed = u64::from(i) << 20;
            s.data.data_path = Some(format!("/srv/data/vol{i}"));
        });
        held.push(reg);
    }
    let state = Arc::new(RestState {
        registry,
        accounts: ndmpd::rest::accounts::Accounts::admins(vec![Credentials {
            name: "ndmp".into(),
            password: b"pw".to_vec(),
        }]),
        identity: Identity::load(dir.path(), "bench-node", None),
        throttle: Default::default(),
        settings: Arc::new(ndmpd::settings::Settings::in_memory()),
        auth_methods: Vec::new(),
        library: None,
        catalog: None,
        npm: None,
    });
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(ndmpd::rest::serve(l, state, CancellationToken::new()));
        addr
    });
    let path = "/api/protocols/ndmp/sessions?tape_device=vtape1&fields=*";
    let (status, body) = get(addr, path);
    assert!(status.contains("200"), "{status}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["num_records"], SESSIONS / 4, "{body:.200}");
    let mut ms: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let (status, body) = get(addr, path);
            let took = t.elapsed().as_secs_f64() * 1e3;
            assert!(status.contains("200") && body.len() > 1000);
            took
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    println!(
        "REST list of {SESSIONS} sessions, filter tape_device=vtape1 ({} match), fields=*: \
         median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {rounds} requests ({} body bytes)",
        SESSIONS / 4,
        p(0.5),
        p(0.95),
        ms[ms.len() - 1],
        body.len()
    );
    drop(held);
}
