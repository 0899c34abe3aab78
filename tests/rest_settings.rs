//! ONTAP's NDMP settings endpoints on a real `ndmpd serve`, driven with `curl`: switching the
//! NDMP service off and on under a running session, narrowing the authentication types, adding
//! a DMA login, the settings surviving a restart, ONTAP-style 400s, and the OpenAPI document.

mod common;

use common::daemon::{spawn, spawn_in, Daemon};
use common::openapi::violations;
use ndmpd::client::{Client, ClientError};
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError, Reply, Request};
use serde_json::Value;
use std::process::Command;

/// `curl` against the daemon's REST view (plain HTTP on loopback) as the generated admin:
/// (HTTP status, JSON body).
fn curl(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-g",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "--max-time",
        "20",
    ]);
    c.arg("-u").arg(format!("ndmp:{}", d.password));
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let url = format!("http://{}{path}", d.rest.expect("the REST view listens"));
    let out = c.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn node_uuid(d: &Daemon) -> String {
    let (code, v) = curl(d, "GET", "/api/protocols/ndmp/nodes", None);
    assert_eq!(code, 200, "{v}");
    v["records"][0]["node"]["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The daemon stopped and started again on the same data directory.
fn restart(mut d: Daemon) -> Daemon {
    let _ = d.child.kill();
    let _ = d.child.wait();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    spawn_in(dir, &[])
}

/// An answer from a logged-in session: CONFIG_GET_HOST_INFO.
async fn host_info_works(c: &mut Client) {
    let r = c
        .call_ok(Request::ConfigGetHostInfo(Default::default()))
        .await
        .unwrap();
    assert!(matches!(r, Reply::ConfigGetHostInfo(_)), "{r:?}");
}

/// `enabled=false` refuses the next NDMP connection at once, in words, while a session that
/// was already open goes on; `enabled=true` accepts again.
#[tokio::test(flavor = "multi_thread")]
async fn disabling_refuses_new_connections_and_spares_running_ones() {
    let d = spawn(&[]);
    let node = tokio::task::block_in_place(|| node_uuid(&d));
    let mut open = Client::connect(d.addr).await.unwrap();
    open.auth_text("ndmp", d.password.as_bytes()).await.unwrap();

    let path = format!("/api/protocols/ndmp/nodes/{node}");
    let (code, v) =
        tokio::task::block_in_place(|| curl(&d, "PATCH", &path, Some(r#"{"enabled": false}"#)));
    assert_eq!(code, 200, "{v}");
    let (_, v) = tokio::task::block_in_place(|| curl(&d, "GET", &path, None));
    assert_eq!(v["enabled"], false, "{v}");

    match Client::connect(d.addr).await {
        Err(ClientError::Refused(s)) => {
            assert_eq!(s.reason, ConnectionStatusReason::REFUSED);
            assert!(
                s.text_reason
                    .to_string()
                    .contains("the NDMP service is disabled"),
                "{}",
                s.text_reason
            );
        }
        Err(e) => panic!("refused otherwise: {e}"),
        Ok(_) => panic!("a new connection was accepted while disabled"),
    }
    host_info_works(&mut open).await;

    let (code, v) = tokio::task::block_in_place(|| {
        curl(
            &d,
            "PATCH",
            "/api/protocols/ndmp/nodes",
            Some(r#"{"enabled": true}"#),
        )
    });
    assert_eq!(code, 200, "{v}");
    let mut again = Client::connect(d.addr).await.unwrap();
    again
        .auth_text("ndmp", d.password.as_bytes())
        .await
        .unwrap();
    host_info_works(&mut again).await;
    host_info_works(&mut open).await;
}

/// `authentication_types ["challenge"]` applies to the next session: CONFIG_GET_SERVER_INFO
/// offers MD5 alone and a plaintext CONNECT_CLIENT_AUTH fails NOT_AUTHORIZED, MD5 works; a
/// user and password set through the endpoint log in; all of it survives a restart, in a
/// private file.
#[tokio::test(flavor = "multi_thread")]
async fn authentication_types_and_login_apply_and_survive_a_restart() {
    let d = spawn(&[]);
    let node = tokio::task::block_in_place(|| node_uuid(&d));
    let path = format!("/api/protocols/ndmp/nodes/{node}");
    let body = r#"{"authentication_types": ["challenge"], "user": "ops", "password": "ops-pw"}"#;
    let (code, v) = tokio::task::block_in_place(|| curl(&d, "PATCH", &path, Some(body)));
    assert_eq!(code, 200, "{v}");

    let check = |d: &Daemon| {
        let d_addr = d.addr;
        let password = d.password.clone();
        async move {
            let mut c = Client::connect(d_addr).await.unwrap();
            let info = c
                .call_ok(Request::ConfigGetServerInfo(Default::default()))
                .await
                .unwrap();
            let Reply::ConfigGetServerInfo(info) = info else {
                panic!("{info:?}")
            };
            assert_eq!(info.auth_type, vec![AuthType::MD5]);
            let err = c.auth_text("ndmp", password.as_bytes()).await.unwrap_err();
            assert_eq!(
                err.ndmp_error(),
                Some(NdmpError::NOT_AUTHORIZED_ERR),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains("authentication method TEXT is switched off on this server"),
                "{err}"
            );
            c.auth_md5("ndmp", password.as_bytes()).await.unwrap();
            let mut ops = Client::connect(d_addr).await.unwrap();
            ops.auth_md5("ops", b"ops-pw").await.unwrap();
            host_info_works(&mut ops).await;
        }
    };
    check(&d).await;
    let (_, v) = tokio::task::block_in_place(|| curl(&d, "GET", &path, None));
    assert_eq!(v["authentication_types"], serde_json::json!(["challenge"]));
    assert_eq!(v["user"], "ops");
    assert!(
        v.get("password").is_none(),
        "the password is never returned: {v}"
    );

    let file = d.dir.path().join("data/ndmp-settings.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let d = restart(d);
    check(&d).await;
    let (_, v) = tokio::task::block_in_place(|| curl(&d, "GET", &path, None));
    assert_eq!(
        v["authentication_types"],
        serde_json::json!(["challenge"]),
        "{v}"
    );
    assert_eq!(v["enabled"], true);

    // and back: both types again, plaintext logs in
    let (code, _) = tokio::task::block_in_place(|| {
        curl(
            &d,
            "PATCH",
            &path,
            Some(r#"{"authentication_types": ["plaintext", "challenge"]}"#),
        )
    });
    assert_eq!(code, 200);
    let mut c = Client::connect(d.addr).await.unwrap();
    c.auth_text("ops", b"ops-pw").await.unwrap();
}

/// The mode is recorded, reported and kept across a restart; the sessions view answers in
/// either mode.
#[test]
fn the_mode_is_recorded_and_kept() {
    let d = spawn(&[]);
    let (code, v) = curl(&d, "GET", "/api/protocols/ndmp", None);
    assert_eq!((code, &v["mode"]), (200, &Value::from("node")), "{v}");
    assert_eq!(v["_links"]["self"]["href"], "/api/protocols/ndmp");
    let (code, v) = curl(
        &d,
        "PATCH",
        "/api/protocols/ndmp",
        Some(r#"{"mode": "svm"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let d = restart(d);
    let (_, v) = curl(&d, "GET", "/api/protocols/ndmp", None);
    assert_eq!(v["mode"], "svm");
    let (code, _) = curl(&d, "GET", "/api/protocols/ndmp/sessions", None);
    assert_eq!(code, 200);
}

/// Bad bodies and paths give ONTAP-style 400s (and 404s) naming the field, and change nothing.
#[test]
fn bad_bodies_are_refused_with_the_field_named() {
    let d = spawn(&[]);
    let node = node_uuid(&d);
    let path = format!("/api/protocols/ndmp/nodes/{node}");
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("PATCH", &path, r#"{"enabled": "yes"}"#, "262197", "enabled"),
        (
            "PATCH",
            &path,
            r#"{"authentication_types": []}"#,
            "262197",
            "authentication_types",
        ),
        (
            "PATCH",
            &path,
            r#"{"authentication_types": ["plaintext_sso"]}"#,
            "262197",
            "authentication_types",
        ),
        (
            "PATCH",
            &path,
            r#"{"authentication_types": "challenge"}"#,
            "262197",
            "authentication_types",
        ),
        ("PATCH", &path, r#"{"user": "bob"}"#, "262197", "password"),
        ("PATCH", &path, r#"{"password": "x"}"#, "262197", "user"),
        ("PATCH", &path, r#"{"colour": "blue"}"#, "262179", "colour"),
        ("PATCH", &path, "not json", "262197", "body"),
        (
            "PATCH",
            "/api/protocols/ndmp",
            r#"{"mode": "cluster"}"#,
            "262197",
            "mode",
        ),
        (
            "PATCH",
            "/api/protocols/ndmp/nodes/not-a-uuid",
            r#"{"enabled": false}"#,
            "68812802",
            "node.uuid",
        ),
        (
            "PATCH",
            "/api/protocols/ndmp/nodes/00000000-0000-4000-8000-000000000000",
            r#"{"enabled": false}"#,
            "68812804",
            "node.uuid",
        ),
    ];
    for (method, p, body, code, target) in cases {
        let (status, v) = curl(&d, method, p, Some(body));
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], *code, "{body}: {v}");
        assert_eq!(v["error"]["target"], *target, "{body}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, v) = curl(&d, "PATCH", &path, Some(r#"{"enabled": "yes"}"#));
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["message"],
        "The value \"yes\" is invalid for field \"enabled\"."
    );
    let (status, _) = curl(
        &d,
        "GET",
        "/api/protocols/ndmp/svms/00000000-0000-4000-8000-000000000000",
        None,
    );
    assert_eq!(status, 404);
    // nothing changed
    let (_, v) = curl(&d, "GET", &path, None);
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(
        v["authentication_types"],
        serde_json::json!(["challenge", "plaintext"])
    );
    assert!(!d.dir.path().join("data/ndmp-settings.json").exists());
}

/// Every settings answer (collections, records, errors) fits the OpenAPI document, which
/// lists every settings path.
#[test]
fn settings_answers_match_the_openapi_document() {
    let d = spawn(&[]);
    let node = node_uuid(&d);
    let (_, doc) = curl(&d, "GET", "/api/openapi.json", None);
    for p in [
        "/api/protocols/ndmp",
        "/api/protocols/ndmp/nodes",
        "/api/protocols/ndmp/nodes/{node.uuid}",
        "/api/protocols/ndmp/svms",
        "/api/protocols/ndmp/svms/{svm.uuid}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing");
    }
    let (_, nodes) = curl(&d, "GET", "/api/protocols/ndmp/nodes?fields=*", None);
    let (_, svms) = curl(&d, "GET", "/api/protocols/ndmp/svms?fields=*", None);
    let svm = svms["records"][0]["svm"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, one_node) = curl(
        &d,
        "GET",
        &format!("/api/protocols/ndmp/nodes/{node}"),
        None,
    );
    let (_, one_svm) = curl(&d, "GET", &format!("/api/protocols/ndmp/svms/{svm}"), None);
    let (_, mode) = curl(&d, "GET", "/api/protocols/ndmp", None);
    let (_, err) = curl(&d, "PATCH", "/api/protocols/ndmp", Some(r#"{"mode": 1}"#));
    let (_, empty) = curl(
        &d,
        "PATCH",
        "/api/protocols/ndmp",
        Some(r#"{"mode": "node"}"#),
    );
    assert_eq!(nodes["num_records"], 1, "{nodes}");
    assert_eq!(one_node["node"]["uuid"], node.as_str());
    assert_eq!(one_svm["svm"]["uuid"], svm.as_str());
    let schema = |n: &str| serde_json::json!({"$ref": format!("#/components/schemas/{n}")});
    let mut bad = Vec::new();
    for (v, s, at) in [
        (&nodes, "ndmp_node_response", "nodes"),
        (&svms, "ndmp_svm_response", "svms"),
        (&one_node, "ndmp_node", "node"),
        (&one_svm, "ndmp_svm", "svm"),
        (&mode, "cluster_ndmp_properties", "mode"),
        (&err, "error_response", "error"),
        (&empty, "empty", "empty"),
    ] {
        violations(v, &schema(s), &doc, at, &mut bad);
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
