//! The ONTAP-shaped REST view, driven with `curl`: sessions listed and fetched with their
//! states, ONTAP's errors, basic authentication, and DELETE killing a backup that Amanda's
//! ndmjob is running through ndmpd (the DMA sees the halts, the cartridge keeps what was
//! written, the drive opens again at once).

mod common;

use common::openapi::violations;
use ndmpd::client::Client;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::*;
use ndmpd::wire::Request;
use serde_json::Value;
use std::process::Command;

const PW: &[u8] = b"rest-pw";

/// `curl` against the test server's REST view: (HTTP status, JSON body).
fn curl(t: &common::TestServer, method: &str, path: &str, auth: Option<&str>) -> (u16, Value) {
    let url = format!("http://{}{}", t.rest.unwrap(), path);
    let mut c = Command::new("curl");
    c.args(["-s", "-g", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(a) = auth {
        c.args(["-u", a]);
    }
    let out = c.arg(&url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let v = serde_json::from_str(body).unwrap_or(Value::Null);
    (code.trim().parse().unwrap_or(0), v)
}

fn get(t: &common::TestServer, path: &str) -> (u16, Value) {
    curl(t, "GET", path, Some("ndmp:rest-pw"))
}

/// TAPE_OPEN that must succeed.
async fn open_tape(c: &mut Client, device: &str, mode: TapeOpenMode) {
    let device = device.into();
    let r = Request::TapeOpen(TapeOpenRequest { device, mode });
    c.call_ok(r).await.unwrap();
}

async fn logged_in(t: &common::TestServer) -> Client {
    let mut c = Client::connect(t.addr).await.unwrap();
    c.auth_md5("ndmp", PW).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_listed_and_fetched_with_ontap_fields() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let mut c = logged_in(&t).await;
    open_tape(&mut c, "vtape0", TapeOpenMode::RDWR).await;
    let (code, v) =
        tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions?fields=*"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["num_records"], 1, "{v}");
    let r = &v["records"][0];
    assert_eq!(r["tape_device"], "vtape0", "{r}");
    // ONTAP's tape_mode has the mover's modes; the NDMP open mode is an extension
    assert_eq!(r["tape_mode"], "write");
    assert_eq!(r["tape_open_mode"], "read_write");
    assert_eq!(r["data"]["state"], "idle");
    assert_eq!(r["mover"]["state"], "idle");
    assert_eq!(r["client_address"], "127.0.0.1");
    assert_eq!(r["user"], "ndmp");
    let node = r["node"]["uuid"].as_str().unwrap().to_string();
    let href = r["_links"]["self"]["href"].as_str().unwrap().to_string();
    assert_eq!(
        href,
        format!(
            "/api/protocols/ndmp/sessions/{node}/{}",
            r["id"].as_str().unwrap()
        )
    );

    // one record by its link
    let (code, one) = tokio::task::block_in_place(|| get(&t, &href));
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["id"], r["id"]);

    // ONTAP's errors
    let (code, e) = tokio::task::block_in_place(|| {
        get(&t, &format!("/api/protocols/ndmp/sessions/{node}/999999"))
    });
    assert_eq!((code, e["error"]["code"].as_str()), (404, Some("4")), "{e}");
    assert_eq!(e["error"]["message"], "entry doesn't exist");
    let (code, e) =
        tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions/not-a-uuid/1"));
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (400, Some("68812802")),
        "{e}"
    );
    let (code, e) =
        tokio::task::block_in_place(|| curl(&t, "GET", "/api/protocols/ndmp/sessions", None));
    assert_eq!(code, 401, "{e}");
    assert!(e["error"]["message"].is_string(), "{e}");
    let (code, _) = tokio::task::block_in_place(|| {
        curl(
            &t,
            "GET",
            "/api/protocols/ndmp/sessions",
            Some("ndmp:wrong"),
        )
    });
    assert_eq!(code, 401);
    let (code, e) = tokio::task::block_in_place(|| get(&t, "/api/nothing/here"));
    assert_eq!(code, 404, "{e}");
    drop(c);
}

/// A big enough tree that ndmjob's backup runs for a few seconds.
fn big_tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("d")).unwrap();
    for n in 0..4 {
        common::fulltree::noise_file(&root.join(format!("d/f{n}")), 200, n);
    }
}

/// DELETE of a session running an ndmjob backup: the DMA's DATA and MOVER halt, the session
/// is gone when DELETE returns 200, the cartridge holds whole records and a filemark, and
/// the drive opens again at once.
#[tokio::test(flavor = "multi_thread")]
async fn delete_kills_a_running_backup() {
    let t = common::start("ndmp", PW, |c| c.library.cartridge_capacity = 2 << 30).await;
    let tree = t.dir.path().join("tree");
    big_tree(&tree);
    let agent = format!("127.0.0.1:{}/4t,ndmp,rest-pw", t.addr.port());
    let tree_s = tree.to_str().unwrap().to_string();
    let dma = std::thread::spawn(move || {
        common::ndmjob(&[
            "-c", "-v", "-D", &agent, "-B", "dump", "-f", "vtape0", "-C", &tree_s, "-b", "20",
        ])
    });
    // wait for the backup to be under way, with bytes growing
    let (mut seen, mut victim) = (0u64, None);
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 60 {
        let (_, v) =
            tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions?fields=*"));
        let active = v["records"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["data"]["state"] == "active" && r["data"]["operation"] == "backup");
        if let Some(r) = active {
            let b = r["data"]["bytes_processed"].as_u64().unwrap();
            assert_eq!(r["backup_engine"], "dump");
            assert_eq!(r["data"]["connection"]["type"], "local");
            assert_eq!(r["mover"]["mode"], "read");
            if seen > 0 && b > seen {
                victim = Some(r["_links"]["self"]["href"].as_str().unwrap().to_string());
                break;
            }
            seen = b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let victim = victim.expect("never saw the backup's bytes grow");
    let (code, v) =
        tokio::task::block_in_place(|| curl(&t, "DELETE", &victim, Some("ndmp:rest-pw")));
    assert_eq!(code, 200, "{v}");
    // gone at once
    let (code, _) = tokio::task::block_in_place(|| get(&t, &victim));
    assert_eq!(code, 404);
    let text = dma.join().unwrap();
    assert!(!text.contains("Operation ended OKAY"), "{text}");
    // the drive is free again and the cartridge ends its data with a filemark
    let mut c = logged_in(&t).await;
    open_tape(&mut c, "vtape0", TapeOpenMode::READ).await;
    let mut records = 0u64;
    loop {
        let reply = c
            .call(Request::TapeRead(TapeReadRequest { count: 10240 }))
            .await
            .unwrap();
        let ndmpd::wire::Reply::TapeRead(r) = reply else {
            panic!("{reply:?}")
        };
        if r.error != ndmpd::wire::NdmpError::NO_ERR {
            assert_eq!(
                r.error,
                ndmpd::wire::NdmpError::EOF_ERR,
                "a filemark ends the data"
            );
            break;
        }
        assert_eq!(r.data_in.0.len(), 10240, "whole records only");
        records += 1;
    }
    assert!(
        records * 10240 >= seen,
        "{records} records, {seen} bytes seen"
    );
}

/// ONTAP's query language over HTTP: filters with operators, fields, order_by, paging by
/// following `_links.next`, return_records=false, and 400s naming the bad argument.
#[tokio::test(flavor = "multi_thread")]
async fn queries_filter_order_page_and_refuse_unknown_fields() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut c = logged_in(&t).await;
        if n == 0 || n == 2 {
            open_tape(
                &mut c,
                if n == 0 { "vtape0" } else { "vtape1" },
                TapeOpenMode::READ,
            )
            .await;
        }
        clients.push(c);
    }
    let q = |path: &str| tokio::task::block_in_place(|| get(&t, path));
    let base = "/api/protocols/ndmp/sessions";
    let ids = |v: &Value| -> Vec<String> {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, all) = q(base);
    assert_eq!((code, all["num_records"].as_u64()), (200, Some(5)), "{all}");
    // default fields: what identifies a record, and its link
    let first = &all["records"][0];
    assert!(first["node"]["uuid"].is_string() && first["_links"]["self"].is_object());
    assert!(first.get("data").is_none(), "{first}");

    let (_, v) = q(&format!("{base}?tape_device=vtape*&fields=tape_device"));
    assert_eq!(v["num_records"], 2, "{v}");
    assert!(v["records"][0]["tape_device"].is_string());
    let (_, v) = q(&format!("{base}?tape_device=null"));
    assert_eq!(v["num_records"], 3, "{v}");
    let (_, v) = q(&format!("{base}?tape_device=!null&tape_mode=read"));
    assert_eq!(v["num_records"], 2, "{v}");
    let (_, v) = q(&format!("{base}?tape_device=vtape0|vtape1"));
    assert_eq!(v["num_records"], 2, "{v}");
    let (_, v) = q(&format!("{base}?data.state=IDLE&mover.state=!active"));
    assert_eq!(v["num_records"], 5, "{v}");
    let (_, v) = q(&format!(
        "{base}?data.bytes_processed=%3C1&client_port=%3E0"
    ));
    assert_eq!(v["num_records"], 5, "{v}");

    // order_by several fields, descending
    let (_, v) = q(&format!(
        "{base}?order_by=tape_device+desc,id+asc&fields=tape_device"
    ));
    assert_eq!(v["records"][0]["tape_device"], "vtape1", "{v}");
    let (_, asc) = q(&format!("{base}?order_by=client_port"));
    let (_, desc) = q(&format!("{base}?order_by=client_port%20desc"));
    let mut rev = ids(&desc);
    rev.reverse();
    assert_eq!(ids(&asc), rev);

    // paging: two per page, following the next links, every record once
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}?max_records=2"));
    let mut pages = 0;
    while let Some(href) = next {
        let (code, page) = q(&href);
        assert_eq!(code, 200, "{page}");
        assert!(page["num_records"].as_u64().unwrap() <= 2);
        seen.extend(ids(&page));
        next = page["_links"]["next"]["href"].as_str().map(String::from);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids(&all));

    let (_, v) = q(&format!("{base}?return_records=false"));
    assert_eq!(v["num_records"], 5, "{v}");
    assert!(v.get("records").is_none(), "{v}");
    let (code, _) = q(&format!("{base}?return_timeout=15"));
    assert_eq!(code, 200);

    for (path, target) in [
        (format!("{base}?no_such_field=1"), "no_such_field"),
        (format!("{base}?fields=id,bogus"), "fields"),
        (format!("{base}?order_by=bogus"), "order_by"),
        (format!("{base}?max_records=0"), "max_records"),
        (format!("{base}?return_records=maybe"), "return_records"),
    ] {
        let (code, e) = q(&path);
        assert_eq!(code, 400, "{path}: {e}");
        assert_eq!(e["error"]["target"], target, "{path}: {e}");
    }
    let (code, e) = q(&format!("{base}?no_such_field=1"));
    assert_eq!((code, e["error"]["code"].as_str()), (400, Some("262179")));
    drop(clients);
}

/// Every backup is a job in `/api/cluster/jobs`: running with growing progress, then success;
/// `PATCH ?action=cancel` aborts a running one (the DMA sees DATA halt), which ends as a
/// failure with the message "Canceled"; ONTAP's errors for bad requests.
#[tokio::test(flavor = "multi_thread")]
async fn backups_are_jobs_and_cancel_aborts_one() {
    let t = common::start("ndmp", PW, |c| c.library.cartridge_capacity = 2 << 30).await;
    let tree = t.dir.path().join("tree");
    big_tree(&tree);
    let small = t.dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("a"), b"hello").unwrap();
    let agent = format!("127.0.0.1:{}/4t,ndmp,rest-pw", t.addr.port());
    let q = |path: &str| tokio::task::block_in_place(|| get(&t, path));

    // a small backup that finishes: one job, success
    let (a, s) = (agent.clone(), small.to_str().unwrap().to_string());
    let text = tokio::task::block_in_place(|| {
        common::ndmjob(&["-c", "-v", "-D", &a, "-B", "tar", "-f", "vtape1", "-C", &s])
    });
    assert!(text.contains("Operation ended OKAY"), "{text}");
    let (code, v) = q("/api/cluster/jobs?fields=*");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["num_records"], 1, "{v}");
    let done = &v["records"][0];
    assert_eq!(done["state"], "success", "{done}");
    assert_eq!(done["code"], 0);
    assert!(
        done["description"].as_str().unwrap().contains("backup of"),
        "{done}"
    );
    assert!(done["end_time"].as_str().unwrap().ends_with('Z'), "{done}");
    assert!(
        done["progress"]["bytes"].as_u64().unwrap() >= 10240,
        "{done}"
    );
    let done_uuid = done["uuid"].as_str().unwrap().to_string();

    // a big one, canceled while it runs
    let tree_s = tree.to_str().unwrap().to_string();
    let dma = std::thread::spawn(move || {
        common::ndmjob(&[
            "-c", "-v", "-D", &agent, "-B", "dump", "-f", "vtape0", "-C", &tree_s,
        ])
    });
    let (mut seen, mut running) = (0u64, None);
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 60 {
        let (_, v) = q("/api/cluster/jobs?state=running&fields=*");
        if let Some(r) = v["records"].as_array().and_then(|a| a.first()) {
            let b = r["progress"]["bytes"].as_u64().unwrap();
            if seen > 0 && b > seen {
                running = Some(r["uuid"].as_str().unwrap().to_string());
                break;
            }
            seen = b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let uuid = running.expect("never saw the job's bytes grow");
    let path = format!("/api/cluster/jobs/{uuid}?action=cancel");
    let (code, v) = tokio::task::block_in_place(|| curl(&t, "PATCH", &path, Some("ndmp:rest-pw")));
    assert_eq!(code, 200, "{v}");
    let (_, j) = q(&format!("/api/cluster/jobs/{uuid}"));
    assert_eq!(
        (j["state"].as_str(), j["message"].as_str()),
        (Some("failure"), Some("Canceled")),
        "{j}"
    );
    let text = dma.join().unwrap();
    assert!(!text.contains("Operation ended OKAY"), "{text}");

    // errors
    let (code, e) = tokio::task::block_in_place(|| {
        curl(
            &t,
            "PATCH",
            &format!("/api/cluster/jobs/{done_uuid}?action=cancel"),
            Some("ndmp:rest-pw"),
        )
    });
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("458762")),
        "{e}"
    );
    let (code, e) = tokio::task::block_in_place(|| {
        curl(
            &t,
            "PATCH",
            &format!("/api/cluster/jobs/{done_uuid}?action=pause"),
            Some("ndmp:rest-pw"),
        )
    });
    assert_eq!(
        (code, e["error"]["target"].as_str()),
        (400, Some("action")),
        "{e}"
    );
    let (code, e) = q("/api/cluster/jobs/not-a-uuid");
    assert_eq!((code, e["error"]["code"].as_str()), (404, Some("4")), "{e}");
    let (code, e) = q("/api/cluster/jobs/00000000-0000-4000-8000-000000000000");
    assert_eq!((code, e["error"]["code"].as_str()), (404, Some("4")), "{e}");
    let (code, v) = q("/api/cluster/jobs?state=success|failure&order_by=start_time");
    assert_eq!((code, v["num_records"].as_u64()), (200, Some(2)), "{v}");
}

/// `/api/openapi.json` describes what the server really returns: sessions (all fields),
/// one session, jobs, one job and error bodies all conform to it.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_real_responses() {
    let t = common::start("ndmp", PW, |_| {}).await;
    let small = t.dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("a"), b"hello").unwrap();
    let agent = format!("127.0.0.1:{}/4t,ndmp,rest-pw", t.addr.port());
    let s = small.to_str().unwrap().to_string();
    let text = tokio::task::block_in_place(|| {
        common::ndmjob(&[
            "-c", "-v", "-D", &agent, "-B", "dump", "-f", "vtape1", "-C", &s,
        ])
    });
    assert!(text.contains("Operation ended OKAY"), "{text}");
    let mut c = logged_in(&t).await;
    open_tape(&mut c, "vtape0", TapeOpenMode::READ).await;
    let q = |path: &str| tokio::task::block_in_place(|| get(&t, path));
    let (code, doc) = q("/api/openapi.json");
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let schema = |name: &str| json_ref(name);
    let (_, sessions) = q("/api/protocols/ndmp/sessions?fields=*");
    let (_, jobs) = q("/api/cluster/jobs?fields=*");
    let session_href = sessions["records"][0]["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let job_href = jobs["records"][0]["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, one_session) = q(&session_href);
    let (_, one_job) = q(&job_href);
    let (_, error) = q("/api/protocols/ndmp/sessions?bogus=1");
    assert_eq!(sessions["num_records"], 1, "{sessions}");
    assert_eq!(jobs["num_records"], 1, "{jobs}");
    // every path the server answers is in the document
    for p in [
        "/api/protocols/ndmp/sessions",
        "/api/protocols/ndmp/sessions/{owner.uuid}/{session.id}",
        "/api/cluster/jobs",
        "/api/cluster/jobs/{uuid}",
        "/api/cluster/nodes/{uuid}",
        "/api/svm/svms/{uuid}",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let mut bad = Vec::new();
    for (v, s, at) in [
        (&sessions, schema("ndmp_session_response"), "sessions"),
        (&one_session, schema("ndmp_session"), "session"),
        (&jobs, schema("job_response"), "jobs"),
        (&one_job, schema("job"), "job"),
        (&error, schema("error_response"), "error"),
    ] {
        violations(v, &s, &doc, at, &mut bad);
    }
    assert!(bad.is_empty(), "{bad:#?}");
    // and the checker does catch a departure
    let mut wrong = one_session.clone();
    wrong["data"]["state"] = Value::from("sleeping");
    wrong["extra"] = Value::from(1);
    let mut found = Vec::new();
    violations(&wrong, &schema("ndmp_session"), &doc, "x", &mut found);
    assert_eq!(found.len(), 2, "{found:?}");
    drop(c);
}

fn json_ref(name: &str) -> Value {
    serde_json::json!({"$ref": format!("#/components/schemas/{name}")})
}

/// One LOCAL backup of `tree` on an open control session: mover listening on the open tape,
/// DATA connected to it, DATA_START_BACKUP. Returns once the backup has started.
async fn start_local_backup(c: &mut Client, tree: &std::path::Path) {
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
    c.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: "dump".into(),
        env: vec![
            Pval::new("FILESYSTEM", tree.to_str().unwrap()),
            Pval::new("HIST", "n"),
        ],
    }))
    .await
    .unwrap();
}

/// DATA_GET_STATE and MOVER_GET_STATE until both halted: (bytes processed, bytes moved).
async fn wait_halted(c: &mut Client) -> (u64, u64) {
    for _ in 0..6000 {
        let d = c.call_ok(Request::DataGetState(Void)).await.unwrap();
        let m = c.call_ok(Request::MoverGetState(Void)).await.unwrap();
        if let (ndmpd::wire::Reply::DataGetState(d), ndmpd::wire::Reply::MoverGetState(m)) = (d, m)
        {
            if d.state == DataState::HALTED && m.state == MoverState::HALTED {
                assert_eq!(d.halt_reason, DataHaltReason::SUCCESSFUL);
                return (d.bytes_processed, m.bytes_moved);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the backup did not halt within a minute");
}

/// The REST view of a second backup in the same control session follows that backup: the
/// counters are reset in place at DATA_STOP and MOVER_STOP, so the registry keeps reading
/// them (replaced counters froze the view at the first backup's figures).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_backup_in_one_session_shows_its_own_bytes() {
    let t = common::start("ndmp", PW, |c| c.library.cartridge_capacity = 2 << 30).await;
    let (first, second) = (t.dir.path().join("first"), t.dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    common::fulltree::noise_file(&first.join("a"), 64, 1);
    common::fulltree::noise_file(&second.join("b"), 160, 2);
    common::fulltree::noise_file(&second.join("c"), 160, 3);
    let mut c = logged_in(&t).await;
    c.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: 64 * 1024,
    }))
    .await
    .unwrap();
    open_tape(&mut c, "vtape0", TapeOpenMode::RDWR).await;

    start_local_backup(&mut c, &first).await;
    let (data1, moved1) = wait_halted(&mut c).await;
    assert!(data1 > 64 << 20 && moved1 >= data1, "{data1} {moved1}");
    c.call_ok(Request::DataStop(Void)).await.unwrap();
    c.call_ok(Request::MoverStop(Void)).await.unwrap();
    let (_, v) = tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions?fields=*"));
    let r = &v["records"][0];
    assert_eq!(r["data"]["bytes_processed"], 0, "DATA_STOP resets: {r}");
    assert_eq!(r["mover"]["bytes_moved"], 0, "MOVER_STOP resets: {r}");

    start_local_backup(&mut c, &second).await;
    // while it runs, the REST view's counters grow
    let (mut data_seen, mut mover_seen) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 60 {
        let (_, v) =
            tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions?fields=*"));
        let r = &v["records"][0];
        if r["data"]["state"] != "active" {
            break;
        }
        data_seen.push(r["data"]["bytes_processed"].as_u64().unwrap());
        mover_seen.push(r["mover"]["bytes_moved"].as_u64().unwrap());
    }
    let grew = |s: &[u64]| s.windows(2).any(|w| w[1] > w[0]);
    assert!(
        grew(&data_seen),
        "data.bytes_processed during the second backup: {data_seen:?}"
    );
    assert!(
        grew(&mover_seen),
        "mover.bytes_moved during the second backup: {mover_seen:?}"
    );
    let (data2, moved2) = wait_halted(&mut c).await;
    assert!(data2 > 320 << 20, "{data2}");
    let (_, v) = tokio::task::block_in_place(|| get(&t, "/api/protocols/ndmp/sessions?fields=*"));
    let r = &v["records"][0];
    assert_eq!(r["data"]["bytes_processed"], data2, "{r}");
    assert_eq!(r["mover"]["bytes_moved"], moved2, "{r}");
    assert_ne!(data2, data1);
}
