//! The REST view against the ONTAP reference it follows (9.11.1 /protocols/ndmp/sessions, 9.7
//! /cluster/jobs), on a real `ndmpd serve`: every query parameter the reference lists, every
//! error code it names that ndmpd can meet, and status, message, `arguments`, content type and
//! `_links` of each answer, read off the wire with a plain HTTP/1.1 client.

mod common;

use common::openapi::violations;
use common::served::{base64, unchunk};
use ndmpd::client::Client;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::Request;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The query parameters the 9.11.1 reference lists for GET /protocols/ndmp/sessions.
const SESSION_FILTERS: &[&str] = &[
    "tape_device",
    "source_address",
    "svm.uuid",
    "svm.name",
    "scsi.host_adapter",
    "scsi.target_id",
    "scsi.lun_id",
    "scsi.device_id",
    "data.state",
    "data.operation",
    "data.connection.type",
    "data.connection.address",
    "data.connection.port",
    "data.bytes_processed",
    "data.reason",
    "data_path",
    "uuid",
    "tape_mode",
    "id",
    "client_address",
    "mover.connection.type",
    "mover.connection.address",
    "mover.connection.port",
    "mover.bytes_moved",
    "mover.reason",
    "mover.state",
    "mover.mode",
    "client_port",
    "backup_engine",
    "node.uuid",
    "node.name",
];

/// The query parameters the 9.7 reference lists for GET /cluster/jobs.
const JOB_FILTERS: &[&str] = &[
    "start_time",
    "state",
    "description",
    "message",
    "end_time",
    "uuid",
    "code",
];

const SESSIONS: &str = "/api/protocols/ndmp/sessions";
const HAL: &str = "application/hal+json";

/// One HTTP answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Value,
    raw: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Asserts an ONTAP error: status, code, message, target and the `arguments` messages.
    #[track_caller]
    fn assert_error(
        &self,
        status: u16,
        code: &str,
        message: &str,
        target: Option<&str>,
        args: &[&str],
    ) {
        assert_eq!(self.status, status, "{}", self.raw);
        assert_eq!(self.content_type(), HAL, "{}", self.raw);
        let e = &self.body["error"];
        assert_eq!(e["code"], code, "{}", self.raw);
        assert_eq!(e["message"], message, "{}", self.raw);
        assert_eq!(e["target"].as_str(), target, "{}", self.raw);
        let want: Vec<Value> = args
            .iter()
            .map(|a| json!({"code": code, "message": a}))
            .collect();
        assert_eq!(e["arguments"], Value::Array(want), "{}", self.raw);
    }
}

/// The REST view of one daemon, and who logs in.
struct View {
    addr: SocketAddr,
    auth: Option<String>,
    accept: Option<&'static str>,
}

impl View {
    fn of(d: &common::daemon::Daemon) -> View {
        View {
            addr: d.rest.expect("the daemon serves its REST view"),
            auth: Some(format!("ndmp:{}", d.password)),
            accept: None,
        }
    }

    /// One request on its own connection.
    fn call(&self, method: &str, path: &str) -> Answer {
        tokio::task::block_in_place(|| {
            let mut s = TcpStream::connect(self.addr).unwrap();
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
                self.addr
            );
            if let Some(a) = &self.auth {
                req.push_str(&format!(
                    "Authorization: Basic {}\r\n",
                    base64(a.as_bytes())
                ));
            }
            if let Some(a) = self.accept {
                req.push_str(&format!("Accept: {a}\r\n"));
            }
            req.push_str("Content-Length: 0\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
            let mut lines = head.lines();
            let status = lines
                .next()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let chunked = headers
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
            let body = if chunked {
                unchunk(body)
            } else {
                body.to_string()
            };
            Answer {
                status,
                headers,
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
                raw,
            }
        })
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path)
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value at a dotted path.
fn at<'v>(r: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(r, |v, k| &v[k])
}

/// The filter operand that selects `v` exactly.
fn operand(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {v}"))
        .iter()
        .map(|r| r["id"].as_str().or(r["uuid"].as_str()).unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn logged_in(d: &common::daemon::Daemon) -> Client {
    let mut c = Client::connect(d.addr).await.unwrap();
    c.auth_md5("ndmp", d.password.as_bytes()).await.unwrap();
    c
}

async fn open_tape(c: &mut Client, device: &str, mode: TapeOpenMode) {
    let r = Request::TapeOpen(TapeOpenRequest {
        device: device.into(),
        mode,
    });
    c.call_ok(r).await.unwrap();
}

/// Mover listening LOCAL for a backup onto the open tape, and the DATA server connected to it:
/// nothing has started, so both are ONTAP's "connected".
async fn connect_data_to_mover(c: &mut Client) {
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: 64 * 1024,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverSetWindow(MoverRangeRequest {
        offset: 0,
        length: u64::MAX,
    }))
    .await
    .unwrap();
    c.call_ok(Request::MoverListen(MoverListenRequest {
        mode: MoverMode::READ,
        addr_type: AddrType::LOCAL,
    }))
    .await
    .unwrap();
    c.call_ok(Request::DataConnect(DataConnectRequest {
        addr: Addr::Local,
    }))
    .await
    .unwrap();
}

/// Three sessions: one reading vtape0, one with its DATA connected to its mover on vtape1,
/// one idle. Returns them with the records of all (fields=*), keyed by id.
async fn three_sessions(d: &common::daemon::Daemon) -> (Vec<Client>, Value, Value, Value) {
    let mut reader = logged_in(d).await;
    open_tape(&mut reader, "vtape0", TapeOpenMode::READ).await;
    let mut connected = logged_in(d).await;
    open_tape(&mut connected, "vtape1", TapeOpenMode::RDWR).await;
    connect_data_to_mover(&mut connected).await;
    let idle = logged_in(d).await;
    // the mover takes the LOCAL connection on its own task after DATA_CONNECT's reply: wait
    // (bounded) until the view shows it, so the records below are of the state asked for
    let mut v = View::of(d).get(&format!("{SESSIONS}?fields=*"));
    for _ in 0..100 {
        let settled = v.body["records"].as_array().is_some_and(|rs| {
            rs.iter().any(|r| {
                r["client_port"] == connected.local_addr().port()
                    && r["mover"]["state"] == "connected"
            })
        });
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        v = View::of(d).get(&format!("{SESSIONS}?fields=*"));
    }
    assert_eq!(
        (v.status, v.body["num_records"].as_u64()),
        (200, Some(3)),
        "{}",
        v.raw
    );
    let by_port = |c: &Client| {
        v.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["client_port"] == c.local_addr().port())
            .cloned()
            .unwrap()
    };
    let (r, c, i) = (by_port(&reader), by_port(&connected), by_port(&idle));
    (vec![reader, connected, idle], r, c, i)
}

fn uuid_file(d: &common::daemon::Daemon, name: &str) -> String {
    std::fs::read_to_string(d.dir.path().join("data").join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// Records carry ONTAP's enum values, `uuid` is the node's, and `node` and `svm` have
/// `_links.self` that the view serves; answers are application/hal+json unless the client
/// asks for application/json.
#[tokio::test(flavor = "multi_thread")]
async fn records_use_ontap_values_and_links() {
    let d = common::daemon::spawn(&[]);
    let (_clients, reader, connected, idle) = three_sessions(&d).await;
    let (node, svm) = (uuid_file(&d, "node-uuid"), uuid_file(&d, "svm-uuid"));
    let view = View::of(&d);

    for r in [&reader, &connected, &idle] {
        assert_eq!(r["uuid"], node.as_str(), "{r}");
        assert_eq!(r["node"]["uuid"], node.as_str());
        assert_eq!(r["svm"]["uuid"], svm.as_str());
        let id = r["id"].as_str().unwrap();
        assert_eq!(
            r["_links"]["self"]["href"],
            format!("{SESSIONS}/{node}/{id}").as_str()
        );
        assert_eq!(
            r["node"]["_links"]["self"]["href"],
            format!("/api/cluster/nodes/{node}").as_str()
        );
        assert_eq!(
            r["svm"]["_links"]["self"]["href"],
            format!("/api/svm/svms/{svm}").as_str()
        );
    }
    assert_eq!(
        (
            reader["tape_mode"].as_str(),
            reader["tape_open_mode"].as_str()
        ),
        (Some("read"), Some("read"))
    );
    assert_eq!(
        (
            connected["tape_mode"].as_str(),
            connected["tape_open_mode"].as_str()
        ),
        (Some("write"), Some("read_write"))
    );
    assert_eq!(connected["mover"]["state"], "connected", "{connected}");
    assert_eq!(connected["data"]["state"], "connected", "{connected}");
    assert_eq!(connected["mover"]["mode"], "read");
    assert_eq!(connected["mover"]["connection"]["type"], "local");
    assert_eq!(connected["data"]["connection"]["type"], "local");
    assert_eq!(idle["mover"]["state"], "idle");
    assert_eq!(idle["tape_mode"], Value::Null);

    // the links lead somewhere
    let n = view.get(reader["node"]["_links"]["self"]["href"].as_str().unwrap());
    assert_eq!((n.status, n.content_type()), (200, HAL), "{}", n.raw);
    assert_eq!(n.body, reader["node"]);
    let s = view.get(reader["svm"]["_links"]["self"]["href"].as_str().unwrap());
    assert_eq!((s.status, &s.body), (200, &reader["svm"]), "{}", s.raw);
    view.get(&format!("/api/cluster/nodes/{svm}")).assert_error(
        404,
        "4",
        "entry doesn't exist",
        Some("uuid"),
        &[&svm],
    );

    // a session by its link, and by its SVM-scope id A:B under the SVM's UUID
    let id = connected["id"].as_str().unwrap();
    let one = view.get(connected["_links"]["self"]["href"].as_str().unwrap());
    assert_eq!((one.status, one.content_type()), (200, HAL), "{}", one.raw);
    assert_eq!(one.body["mover"]["state"], "connected");
    for alias in [format!("{id}:{id}"), id.to_string()] {
        let a = view.get(&format!("{SESSIONS}/{svm}/{alias}"));
        assert_eq!(a.status, 200, "{}", a.raw);
        assert_eq!(a.body["id"], id);
        assert_eq!(a.body["client_port"], one.body["client_port"]);
    }

    // default fields: the owner UUID, the id, the node, the link
    let list = view.get(SESSIONS);
    let mut keys: Vec<&str> = list.body["records"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["_links", "id", "node", "uuid"], "{}", list.raw);

    // application/json when asked for, for answers and errors alike
    let plain = View {
        accept: Some("application/json"),
        ..View::of(&d)
    };
    let a = plain.get(SESSIONS);
    assert_eq!((a.status, a.content_type()), (200, "application/json"));
    let e = plain.get(&format!("{SESSIONS}?bogus=1"));
    assert_eq!((e.status, e.content_type()), (400, "application/json"));
    let hal = View {
        accept: Some("application/hal+json, application/json;q=0.5"),
        ..View::of(&d)
    };
    assert_eq!(hal.get(SESSIONS).content_type(), HAL);
}

/// Every query parameter the sessions reference lists selects exactly the records whose field
/// holds the value, and `fields=` shows it; the collection controls work as documented.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_session_parameter_filters_and_projects() {
    let d = common::daemon::spawn(&[]);
    let (_clients, reader, connected, idle) = three_sessions(&d).await;
    let view = View::of(&d);
    let all = [&reader, &connected, &idle];
    for name in SESSION_FILTERS {
        for target in all {
            let value = at(target, name);
            let want: Vec<String> = {
                let mut w: Vec<String> = all
                    .iter()
                    .filter(|r| operand(at(r, name)).eq_ignore_ascii_case(&operand(value)))
                    .map(|r| r["id"].as_str().unwrap().to_string())
                    .collect();
                w.sort();
                w
            };
            let path = format!("{SESSIONS}?{name}={}&fields={name}", enc(&operand(value)));
            let a = view.get(&path);
            assert_eq!(a.status, 200, "{path}: {}", a.raw);
            assert_eq!(ids(&a.body), want, "{path}: {}", a.raw);
            let shown = a.body["records"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == target["id"])
                .unwrap();
            assert_eq!(at(shown, name), value, "{path}");
        }
    }
    // the SVM's UUID is not the node's: no record is owned by it in node scope
    let svm = reader["svm"]["uuid"].as_str().unwrap();
    let a = view.get(&format!("{SESSIONS}?uuid={svm}"));
    assert_eq!(a.body["num_records"], 0, "{}", a.raw);
    let a = view.get(&format!("{SESSIONS}?mover.state=connected|listen"));
    assert_eq!(ids(&a.body), [connected["id"].as_str().unwrap()]);

    // fields, max_records, return_records, return_timeout, order_by
    let a = view.get(&format!("{SESSIONS}?fields=tape_mode,mover.state"));
    for r in a.body["records"].as_array().unwrap() {
        assert!(
            r.get("tape_mode").is_some() && r["mover"].get("state").is_some(),
            "{r}"
        );
        assert!(
            r.get("data").is_none() && r["mover"].get("mode").is_none(),
            "{r}"
        );
    }
    let a = view.get(&format!("{SESSIONS}?max_records=1"));
    assert_eq!(a.body["num_records"], 1, "{}", a.raw);
    let next = a.body["_links"]["next"]["href"].as_str().unwrap();
    assert_eq!(view.get(next).body["num_records"], 1);
    let a = view.get(&format!("{SESSIONS}?return_records=false"));
    assert_eq!(a.body["num_records"], 3, "{}", a.raw);
    assert!(a.body.get("records").is_none(), "{}", a.raw);
    assert_eq!(
        view.get(&format!("{SESSIONS}?return_timeout=120")).status,
        200
    );
    view.get(&format!("{SESSIONS}?return_timeout=121"))
        .assert_error(
            400,
            "262197",
            "Invalid value \"121\" for return_timeout: expected an integer from 0 to 120.",
            Some("return_timeout"),
            &["121", "return_timeout"],
        );
    let a = view.get(&format!(
        "{SESSIONS}?order_by=client_port+desc&fields=client_port"
    ));
    let ports: Vec<u64> = a.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client_port"].as_u64().unwrap())
        .collect();
    let mut sorted = ports.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!((ports.len(), &ports), (3, &sorted));
    // a single record takes fields= only
    let href = reader["_links"]["self"]["href"].as_str().unwrap();
    let a = view.get(&format!("{href}?fields=tape_device"));
    assert_eq!(a.body["tape_device"], "vtape0", "{}", a.raw);
    assert!(a.body.get("mover").is_none(), "{}", a.raw);
}

/// The sessions reference's error codes, each in the situation it names, and ONTAP's errors for
/// unknown arguments, unknown paths, methods and credentials, all as JSON error bodies.
#[tokio::test(flavor = "multi_thread")]
async fn session_errors_are_ontaps() {
    let d = common::daemon::spawn(&[]);
    let (clients, reader, connected, idle) = three_sessions(&d).await;
    let (node, svm) = (uuid_file(&d, "node-uuid"), uuid_file(&d, "svm-uuid"));
    let other = "0f1e2d3c-4b5a-4697-8877-665544332211";
    let view = View::of(&d);

    view.get(&format!("{SESSIONS}?bogus=1")).assert_error(
        400,
        "262179",
        "Unexpected argument \"bogus\".",
        Some("bogus"),
        &["bogus"],
    );
    let href = reader["_links"]["self"]["href"].as_str().unwrap();
    view.get(&format!("{href}?data.state=idle")).assert_error(
        400,
        "262179",
        "Unexpected argument \"data.state\".",
        Some("data.state"),
        &["data.state"],
    );
    view.get(&format!("{SESSIONS}?fields=id,bogus"))
        .assert_error(
            400,
            "262197",
            "The value \"bogus\" is invalid for field \"fields\".",
            Some("fields"),
            &["bogus", "fields"],
        );
    view.get(&format!("{SESSIONS}?order_by=bogus"))
        .assert_error(
            400,
            "262197",
            "The value \"bogus\" is invalid for field \"order_by\".",
            Some("order_by"),
            &["bogus", "order_by"],
        );

    // 68812802: the UUID is not valid (GET and DELETE)
    for method in ["GET", "DELETE"] {
        view.call(method, &format!("{SESSIONS}/not-a-uuid/1"))
            .assert_error(
                400,
                "68812802",
                "The UUID is not valid.",
                Some("owner.uuid"),
                &["not-a-uuid"],
            );
    }
    // 68812804 / 68812803: DELETE under a UUID that is neither this node's nor this SVM's
    view.call("DELETE", &format!("{SESSIONS}/{other}/5"))
        .assert_error(
            400,
            "68812804",
            "Failed to get the node name from the specified node UUID.",
            Some("owner.uuid"),
            &[other],
        );
    view.call("DELETE", &format!("{SESSIONS}/{other}/5:5"))
        .assert_error(
            400,
            "68812803",
            "Failed to get the SVM name from the specified SVM UUID.",
            Some("owner.uuid"),
            &[other],
        );
    // 68812806: the owner UUID or the session id missing
    for path in [
        format!("{SESSIONS}/{node}"),
        format!("{SESSIONS}/{node}/"),
        format!("{SESSIONS}//5"),
        format!("{SESSIONS}/"),
    ] {
        view.call("DELETE", &path).assert_error(
            400,
            "68812806",
            "UUID and Session ID are required.",
            Some("session.id"),
            &[],
        );
    }
    // GET names no such codes: an unknown owner or session is ONTAP's 404
    view.get(&format!("{SESSIONS}/{other}/5")).assert_error(
        404,
        "4",
        "entry doesn't exist",
        Some("owner.uuid"),
        &[other],
    );
    view.get(&format!("{SESSIONS}/{node}/999999")).assert_error(
        404,
        "4",
        "entry doesn't exist",
        Some("session.id"),
        &[&node, "999999"],
    );
    let id = idle["id"].as_str().unwrap();
    view.get(&format!("{SESSIONS}/{svm}/{id}:0")).assert_error(
        404,
        "4",
        "entry doesn't exist",
        Some("session.id"),
        &[&svm, &format!("{id}:0")],
    );

    // unknown paths, methods, credentials: JSON bodies too
    view.get("/api/nothing/here").assert_error(
        404,
        "3",
        "API not found",
        None,
        &["/api/nothing/here"],
    );
    let a = view.call("POST", SESSIONS);
    a.assert_error(
        405,
        "3",
        &format!("The method \"POST\" is not allowed on \"{SESSIONS}\"."),
        None,
        &["POST", SESSIONS],
    );
    assert_eq!(a.header("allow"), Some("GET,HEAD"), "{}", a.raw);
    let a = view.call("PATCH", href);
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (405, Some("3")),
        "{}",
        a.raw
    );
    let anonymous = View {
        auth: None,
        ..View::of(&d)
    };
    let a = anonymous.get(SESSIONS);
    a.assert_error(401, "6", "not authorized for that operation", None, &[]);
    assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"ndmpd\""));
    let wrong = View {
        auth: Some("ndmp:wrong".into()),
        ..View::of(&d)
    };
    wrong
        .get(SESSIONS)
        .assert_error(401, "6", "not authorized for that operation", None, &[]);

    // DELETE by the SVM-scope id and by the node-scope link: 200, and the session is gone
    let a = view.call("DELETE", &format!("{SESSIONS}/{svm}/{id}:{id}"));
    assert_eq!((a.status, a.content_type()), (200, HAL), "{}", a.raw);
    let a = view.call(
        "DELETE",
        connected["_links"]["self"]["href"].as_str().unwrap(),
    );
    assert_eq!(a.status, 200, "{}", a.raw);
    let left = view.get(SESSIONS);
    assert_eq!(
        ids(&left.body),
        [reader["id"].as_str().unwrap()],
        "{}",
        left.raw
    );
    drop(clients);
}

/// A small LOCAL backup to the end, in one session: one finished job.
async fn finished_job(d: &common::daemon::Daemon) -> Client {
    let tree = d.dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a"), b"hello").unwrap();
    let mut c = logged_in(d).await;
    open_tape(&mut c, "vtape0", TapeOpenMode::RDWR).await;
    connect_data_to_mover(&mut c).await;
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![
            Pval::new("FILESYSTEM", tree.to_str().unwrap()),
            Pval::new("HIST", "n"),
        ],
    }))
    .await
    .unwrap();
    for _ in 0..6000 {
        let r = c.call_ok(Request::DataGetState(Void)).await.unwrap();
        if let ndmpd::wire::Reply::DataGetState(s) = r {
            if s.state == DataState::HALTED {
                assert_eq!(s.halt_reason, DataHaltReason::SUCCESSFUL);
                return c;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the backup did not halt within a minute");
}

/// Every query parameter of the jobs reference, and PATCH as ONTAP answers it: without
/// `action` nothing changes, pause and resume are not supported (458783), cancelling a
/// finished job is 458762, other values and arguments are ONTAP's 262197 and 262179.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_parameters_and_patch_answers() {
    let d = common::daemon::spawn(&[]);
    let _c = finished_job(&d).await;
    let view = View::of(&d);
    let list = view.get("/api/cluster/jobs?fields=*");
    assert_eq!(
        (list.status, list.content_type()),
        (200, HAL),
        "{}",
        list.raw
    );
    assert_eq!(list.body["num_records"], 1, "{}", list.raw);
    let job = list.body["records"][0].clone();
    let uuid = job["uuid"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "success", "{job}");
    let href = format!("/api/cluster/jobs/{uuid}");
    assert_eq!(job["_links"]["self"]["href"], href.as_str());

    for name in JOB_FILTERS {
        let value = at(&job, name);
        let path = format!(
            "/api/cluster/jobs?{name}={}&fields={name}",
            enc(&operand(value))
        );
        let a = view.get(&path);
        assert_eq!(
            (a.status, a.body["num_records"].as_u64()),
            (200, Some(1)),
            "{path}: {}",
            a.raw
        );
        assert_eq!(at(&a.body["records"][0], name), value, "{path}");
    }
    for (name, miss) in [("state", "running"), ("code", "1"), ("end_time", "null")] {
        let a = view.get(&format!("/api/cluster/jobs?{name}={miss}"));
        assert_eq!(a.body["num_records"], 0, "{name}={miss}: {}", a.raw);
    }
    let a = view.get(
        "/api/cluster/jobs?return_records=false&max_records=1&order_by=start_time&return_timeout=1",
    );
    assert_eq!(
        (a.status, a.body["num_records"].as_u64()),
        (200, Some(1)),
        "{}",
        a.raw
    );
    view.get("/api/cluster/jobs?bogus=1").assert_error(
        400,
        "262179",
        "Unexpected argument \"bogus\".",
        Some("bogus"),
        &["bogus"],
    );
    let a = view.get(&format!("{href}?fields=state"));
    assert_eq!(a.body["state"], "success", "{}", a.raw);
    assert!(a.body.get("message").is_none(), "{}", a.raw);

    // PATCH
    let a = view.call("PATCH", &href);
    assert_eq!((a.status, &a.body), (200, &json!({})), "{}", a.raw);
    assert_eq!(view.get(&href).body["state"], "success", "nothing changed");
    for action in ["pause", "resume"] {
        view.call("PATCH", &format!("{href}?action={action}"))
            .assert_error(
                400,
                "458783",
                &format!("This job does not support {action}."),
                Some("action"),
                &[action],
            );
    }
    view.call("PATCH", &format!("{href}?action=cancel"))
        .assert_error(
            409,
            "458762",
            "Job is already in a terminal state.",
            Some("uuid"),
            &[&uuid],
        );
    view.call("PATCH", &format!("{href}?action=stop"))
        .assert_error(
            400,
            "262197",
            "The value \"stop\" is invalid for field \"action\".",
            Some("action"),
            &["stop", "action"],
        );
    view.call("PATCH", &format!("{href}?action=cancel&force=true"))
        .assert_error(
            400,
            "262179",
            "Unexpected argument \"force\".",
            Some("force"),
            &["force"],
        );
    let nobody = "00000000-0000-4000-8000-000000000000";
    for method in ["GET", "PATCH"] {
        view.call(method, &format!("/api/cluster/jobs/{nobody}"))
            .assert_error(404, "4", "entry doesn't exist", Some("uuid"), &[nobody]);
    }
    view.get("/api/cluster/jobs/not-a-uuid").assert_error(
        404,
        "4",
        "entry doesn't exist",
        Some("uuid"),
        &["not-a-uuid"],
    );
    let a = view.call("DELETE", &href);
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (405, Some("3")),
        "{}",
        a.raw
    );
}

/// openapi.json lists every documented parameter of each endpoint, marks ndmpd's own fields as
/// extensions, names the ONTAP codes each operation answers, and the real answers of this
/// file (connected movers, node and SVM records, 401/404/405 bodies) conform to it.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_lists_the_reference_and_matches_the_answers() {
    let d = common::daemon::spawn(&[]);
    let (clients, reader, connected, _) = three_sessions(&d).await;
    let view = View::of(&d);
    let doc = view.get("/api/openapi.json").body;
    let params = |path: &str, op: &str| -> Vec<String> {
        doc["paths"][path][op]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{op} {path}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let controls = [
        "fields",
        "max_records",
        "return_records",
        "return_timeout",
        "order_by",
    ];
    let listed = params(SESSIONS, "get");
    for p in SESSION_FILTERS.iter().chain(controls.iter()) {
        assert!(listed.iter().any(|l| l == p), "sessions: {p} missing");
    }
    let listed = params("/api/cluster/jobs", "get");
    for p in JOB_FILTERS.iter().chain(controls.iter()) {
        assert!(listed.iter().any(|l| l == p), "jobs: {p} missing");
    }
    assert!(params("/api/cluster/jobs/{uuid}", "patch").contains(&"action".to_string()));
    let codes = |path: &str, op: &str| {
        doc["paths"][path][op]["responses"]["default"]["x-ontap-error-codes"].clone()
    };
    let one = "/api/protocols/ndmp/sessions/{owner.uuid}/{session.id}";
    for c in ["68812802", "68812803", "68812804", "68812805", "68812806"] {
        assert!(codes(one, "delete")[c].is_string(), "DELETE lacks {c}");
    }
    assert!(codes(one, "get")["68812802"].is_string());
    for c in ["458762", "458783"] {
        assert!(
            codes("/api/cluster/jobs/{uuid}", "patch")[c].is_string(),
            "PATCH lacks {c}"
        );
    }
    // extensions are marked, ONTAP's fields are not
    let session = &doc["components"]["schemas"]["ndmp_session"]["properties"];
    for e in ["user", "auth_type", "start_time", "tape_open_mode"] {
        assert_eq!(session[e]["x-ndmpd-extension"], true, "{e}");
    }
    assert_eq!(
        session["mover"]["properties"]["record_size"]["x-ndmpd-extension"],
        true
    );
    for f in ["tape_mode", "uuid", "node", "mover"] {
        assert!(session[f].get("x-ndmpd-extension").is_none(), "{f}");
    }
    let job = &doc["components"]["schemas"]["job"]["properties"];
    assert_eq!(job["progress"]["x-ndmpd-extension"], true);
    assert!(job["state"].get("x-ndmpd-extension").is_none());

    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let anonymous = View {
        auth: None,
        ..View::of(&d)
    };
    let answers = [
        (
            view.get(&format!("{SESSIONS}?fields=*")).body,
            "ndmp_session_response",
        ),
        (
            view.get(connected["_links"]["self"]["href"].as_str().unwrap())
                .body,
            "ndmp_session",
        ),
        (
            view.get(reader["node"]["_links"]["self"]["href"].as_str().unwrap())
                .body,
            "node",
        ),
        (
            view.get(reader["svm"]["_links"]["self"]["href"].as_str().unwrap())
                .body,
            "svm",
        ),
        (view.get("/api/nowhere").body, "error_response"),
        (view.call("PUT", SESSIONS).body, "error_response"),
        (anonymous.get(SESSIONS).body, "error_response"),
        (view.get(&format!("{SESSIONS}?x=1")).body, "error_response"),
    ];
    let mut bad = Vec::new();
    for (n, (v, s)) in answers.iter().enumerate() {
        assert!(v.is_object(), "answer {n} is not JSON");
        violations(v, &schema(s), &doc, &format!("{n}:{s}"), &mut bad);
    }
    assert!(bad.is_empty(), "{bad:#?}");
    drop(clients);
}
