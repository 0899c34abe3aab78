//! The OpenAPI 3 document of the REST view (`/api/openapi.json`): paths, parameters and the
//! record schemas, kept next to the code that produces the records (tests check them).

use serde_json::{json, Value};

fn s() -> Value {
    json!({"type": "string"})
}
fn sn() -> Value {
    json!({"type": "string", "nullable": true})
}
fn i() -> Value {
    json!({"type": "integer"})
}
fn inn() -> Value {
    json!({"type": "integer", "nullable": true})
}
fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}
fn link() -> Value {
    obj(json!({"self": obj(json!({"href": s()}))}))
}
fn connection() -> Value {
    let mut c = obj(json!({
        "type": {"type": "string", "enum": ["local", "tcp", "ipc"], "description": "The different NDMP connection types."},
        "address": s(),
        "port": inn(),
    }));
    c["nullable"] = json!(true);
    c
}

/// Marks a schema as ndmpd's own, absent from ONTAP's.
fn ext(mut v: Value, what: &str) -> Value {
    v["x-ndmpd-extension"] = json!(true);
    v["description"] = json!(format!("ndmpd extension (not in ONTAP): {what}"));
    v
}

/// ONTAP's state enum, shared by `data.state` and `mover.state` ("The various states of the
/// NDMP state machine during a backup or restore workflow").
const STATES: [&str; 6] = ["idle", "listen", "connected", "active", "paused", "halted"];

fn owner(what: &str) -> Value {
    described(
        obj(json!({
            "name": s(),
            "uuid": s(),
            "_links": link(),
        })),
        what,
    )
}

/// `v` with `what` as its description.
fn described(mut v: Value, what: &str) -> Value {
    v["description"] = json!(what);
    v
}

fn session() -> Value {
    obj(json!({
        "id": described(s(), "NDMP session identifier: the session number (node scope)."),
        "uuid": described(s(), "The NDMP node UUID: ndmpd runs in node scope. Sessions can also be addressed under the SVM UUID with ids A:B."),
        "node": owner("This node; _links.self is /api/cluster/nodes/{uuid}."),
        "svm": owner("This SVM; _links.self is /api/svm/svms/{uuid}."),
        "client_address": s(),
        "client_port": i(),
        "source_address": s(),
        "user": ext(sn(), "the DMA user the session authenticated as"),
        "auth_type": ext(json!({"type": "string", "enum": ["md5", "text", "none"], "nullable": true}), "how the session authenticated"),
        "start_time": ext(i(), "when the control connection was accepted, seconds since the Unix epoch"),
        "backup_engine": {"type": "string", "enum": ["dump", "tar"], "nullable": true},
        "data_path": sn(),
        "tape_device": sn(),
        "tape_mode": {"type": "string", "enum": ["read", "write"], "nullable": true,
                      "description": "The modes of a NDMP mover instance: read for a tape opened read-only, write for read-write and raw opens."},
        "tape_open_mode": ext(json!({"type": "string", "enum": ["read", "read_write", "raw"], "nullable": true}), "the NDMP TAPE_OPEN mode"),
        "data": obj(json!({
            "state": {"type": "string", "enum": ["idle", "listen", "connected", "active", "halted"]},
            "operation": {"type": "string", "enum": ["noaction", "backup", "restore", "restore_filehistory"]},
            "reason": {"type": "string", "enum": ["na", "successful", "aborted", "internal_error", "connect_error"]},
            "bytes_processed": i(),
            "connection": connection(),
            "snapshot": ext(sn(), "the snapshot the running or last backup reads instead of the live tree (see /api/protocols/ndmp/snapshots); null for the live tree"),
        })),
        "mover": obj(json!({
            "state": {"type": "string", "enum": STATES,
                      "description": "connected: the data connection is up and the local DATA server has not started (NDMP's MOVER ACTIVE with DATA CONNECTED)."},
            "mode": {"type": "string", "enum": ["noaction", "read", "write"]},
            "reason": {"type": "string", "enum": ["na", "connect_closed", "aborted", "internal_error", "connect_error", "media_error", "end_of_media", "end_of_file", "end_of_window", "seek"]},
            "bytes_moved": i(),
            "record_size": ext(i(), "the record size MOVER_SET_RECORD_SIZE set, 0 before"),
            "connection": connection(),
        })),
        "scsi": obj(json!({"device_id": sn(), "host_adapter": inn(), "target_id": inn(), "lun_id": inn()})),
        "extensions": ext(json!({"type": "array", "items": obj(json!({
            "class": described(s(), "the NDMP extension class, e.g. 0x2051"),
            "name": {"type": "string", "enum": ["snapshot_management", "connection_address", "cluster_aware_backup"], "nullable": true},
            "version": i(),
            "negotiated": described(json!({"type": "boolean"}), "true when CONFIG_SET_EXT_LIST selected it; false when the DMA used it without"),
        }))}), "the NDMP extension classes in effect in the session"),
        "_links": link(),
    }))
}

fn job() -> Value {
    obj(json!({
        "uuid": s(),
        "description": s(),
        "state": {"type": "string", "enum": ["queued", "running", "paused", "success", "failure"]},
        "message": s(),
        "code": i(),
        "start_time": {"type": "string", "format": "date-time"},
        "end_time": {"type": "string", "format": "date-time", "nullable": true},
        "session": ext(obj(json!({"id": s()})), "the NDMP session running the operation"),
        "progress": ext(obj(json!({"bytes": i(), "estimated_total": inn(), "rate": i()})), "bytes so far, the estimate, bytes per second"),
        "snapshot": ext(sn(), "the file-system snapshot the backup reads, when it reads one"),
        "_links": link(),
    }))
}

fn snapshot() -> Value {
    ext(
        obj(json!({
            "name": described(s(), "The operator's name, or <session>-<n> for a backup's snapshot."),
            "export": described(s(), "The configured export it is a snapshot of."),
            "path": described(s(), "Where the read-only snapshot is; a backup whose FILESYSTEM is inside it reads it as it is."),
            "created": described(json!({"type": "string", "format": "date-time"}), "When it was taken; absent when the file system does not say."),
            "held_by": described(s(), "\"operator\"; \"backup <session>\" for the snapshot a running backup reads; \"incremental base of <FILESYSTEM> level <n>\" for one an UPDATE=Y backup kept (DELETE frees its space; the next incremental then walks the tree)."),
        })),
        "a file-system snapshot ndmpd holds",
    )
}

fn auth_types() -> Value {
    json!({"type": "array", "items": {"type": "string", "enum": ["plaintext", "challenge"]},
           "description": "NDMP authentication types offered: plaintext is NDMP's TEXT, challenge its MD5. ONTAP's plaintext_sso is not supported."})
}

fn ndmp_mode() -> Value {
    obj(json!({
        "mode": {"type": "string", "enum": ["node", "svm"],
                 "description": "Indicates whether NDMP is in node-scoped or SVM-scoped mode. ndmpd is one node serving one SVM: the mode is recorded and reported, and sessions answer under both UUIDs in either mode."},
        "_links": link(),
    }))
}

fn node_settings() -> Value {
    obj(json!({
        "node": owner("This node"),
        "enabled": described(json!({"type": "boolean"}), "Whether new NDMP connections are accepted; false refuses them at once (NOTIFY_CONNECTION_STATUS REFUSED with the reason) while running sessions go on."),
        "authentication_types": auth_types(),
        "user": described(sn(), "The NDMP user set through this endpoint (a DMA login); null when none is."),
        "password": described(s(), "Set-only: the password of user; never returned."),
        "_links": link(),
    }))
}

fn svm_settings() -> Value {
    obj(json!({
        "svm": owner("This SVM"),
        "enabled": json!({"type": "boolean"}),
        "authentication_types": auth_types(),
        "_links": link(),
    }))
}

fn job_link() -> Value {
    obj(json!({"job": obj(json!({"uuid": s(), "_links": link()}))}))
}

fn collection(item: &str) -> Value {
    obj(json!({
        "records": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        "num_records": i(),
        "_links": obj(json!({"self": obj(json!({"href": s()})), "next": obj(json!({"href": s()}))})),
    }))
}

fn error_response() -> Value {
    obj(json!({"error": obj(json!({
        "message": described(s(), "Error message"),
        "code": described(s(), "Error code"),
        "target": described(s(), "The target parameter that caused the error."),
        "arguments": {"type": "array", "description": "Message arguments: the values the message names, each with the error's code.",
                      "items": obj(json!({"code": s(), "message": s()}))},
    }))}))
}

/// Whether `name` (a filter) is one of ndmpd's extensions or lies under one.
fn is_extension(name: &str, extensions: &[&str]) -> bool {
    extensions
        .iter()
        .any(|e| name == *e || name.starts_with(&format!("{e}.")))
}

/// The query parameters of a collection GET: one filter per field, then the controls.
fn query_params(filters: &[&str], extensions: &[&str]) -> Value {
    let mut out: Vec<Value> = filters
        .iter()
        .map(|f| {
            let p = json!({"name": f, "in": "query", "required": false, "schema": s(),
                           "description": format!("Filter by {f} (ONTAP's query language: !, |, *, <, >, <=, >=, lo..hi, null)")});
            if is_extension(f, extensions) {
                ext(p, &format!("filter by {f}"))
            } else {
                p
            }
        })
        .collect();
    out.extend(
        json!([
            {"name": "fields", "in": "query", "schema": s(), "description": "Specify the fields to return: a comma list of fields, * or **."},
            {"name": "max_records", "in": "query", "schema": i(), "description": "Limit the number of records returned."},
            {"name": "return_records", "in": "query", "schema": {"type": "boolean"}, "description": "The default is true for GET calls. When set to false, only the number of records is returned."},
            {"name": "return_timeout", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 120}, "description": "Accepted and checked (0 to 120); records are answered at once."},
            {"name": "order_by", "in": "query", "schema": s(), "description": "Order results by specified fields and optional [asc|desc] direction."},
            {"name": "start.offset", "in": "query", "schema": i(), "description": "set by _links.next"},
        ])
        .as_array()
        .cloned()
        .unwrap_or_default(),
    );
    Value::Array(out)
}

/// Both media types ONTAP serves: HAL by default, plain JSON when Accept asks for it.
fn content(schema: &str) -> Value {
    let r = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
    json!({"application/hal+json": r, "application/json": r})
}

/// The 200 answer and the error answers; `codes` are the ONTAP error codes the operation
/// gives, with their messages.
fn responses(schema: &str, codes: &[(&str, &str)]) -> Value {
    let mut listed = serde_json::Map::new();
    for (c, m) in codes {
        listed.insert((*c).to_string(), json!(m));
    }
    json!({
        "200": {"description": "OK", "content": content(schema)},
        "default": {"description": "Error: the error body; codes below, plus 262179 (unexpected argument), 262197 (invalid value), 4 (entry doesn't exist, 404), 6 (401, no valid credentials), 3 (404 unknown path, 405 method not allowed).",
                    "x-ontap-error-codes": listed,
                    "content": content("error_response")},
    })
}

/// The whole document.
pub fn document() -> Value {
    use super::codes;
    use super::{jobs, query, sessions, snapshots};
    let owner_p = json!({"name": "owner.uuid", "in": "path", "required": true, "schema": s(),
                         "description": "The NDMP node or SVM UUID based on whether NDMP is operating in node-scope or SVM-scope mode (either works)."});
    let sid = json!({"name": "session.id", "in": "path", "required": true, "schema": s(),
                     "description": "NDMP session identifier: \"7\" under the node UUID; \"7\" or \"7:7\" under the SVM UUID."});
    let juuid = json!({"name": "uuid", "in": "path", "required": true, "schema": s(), "description": "Job UUID"});
    let ouuid = json!({"name": "uuid", "in": "path", "required": true, "schema": s()});
    let fields = json!({"name": "fields", "in": "query", "schema": s(), "description": "Specify the fields to return."});
    let action = json!({"name": "action", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": ["pause", "resume", "cancel"]},
                        "description": "cancel aborts the job's operation; pause and resume are refused (458783); without action nothing changes."});
    let sessions_filters = sessions::filter_names();
    let jobs_filters = jobs::filter_names();
    let no_mode = [codes::NO_MODE];
    let snapshot_filters = snapshots::filter_names();
    let snap_codes = [
        (query::CODE_INVALID_VALUE, "A name that is not letters, digits, '-', '_', '.' (at most 64), an export that is not configured, a body without export or name (400)."),
        (codes::SNAPSHOT_CONFLICT, "The name is taken, the export has no snapshot provider, or a backup reads the snapshot (409)."),
    ];
    let snap_name = json!({"name": "name", "in": "path", "required": true, "schema": s(), "description": "The operator snapshot's name"});
    use super::settings as st;
    let node_uuid = json!({"name": "node.uuid", "in": "path", "required": true, "schema": s(), "description": "This node's UUID"});
    let svm_uuid = json!({"name": "svm.uuid", "in": "path", "required": true, "schema": s(), "description": "This SVM's UUID"});
    let node_body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ndmp_node"}}}});
    let admin = "Admin role only (a readonly account gets 403, code 6). ";
    let node_codes = [st::BAD_NODE_UUID, st::NO_NODE];
    let mut post_responses = responses("job_link", &snap_codes);
    if let Some(r) = post_responses.as_object_mut() {
        r.remove("200");
        r.insert("202".into(), json!({"description": "Accepted: the snapshot is taken by the job linked", "content": content("job_link")}));
    }
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "ndmpd REST view", "version": env!("CARGO_PKG_VERSION"),
                 "description": "ONTAP-shaped NDMP sessions and jobs (ONTAP 9.11.1 /protocols/ndmp/sessions, 9.7 /cluster/jobs). Responses are application/hal+json unless Accept asks for application/json. Fields and parameters marked x-ndmpd-extension are ndmpd's own. 68812805 is never answered: the NDMP mode is always known."},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "ndmp_session": session(),
                "ndmp_session_response": collection("ndmp_session"),
                "job": job(),
                "job_response": collection("job"),
                "node": owner("A node"),
                "svm": owner("An SVM"),
                "empty": obj(json!({})),
                "error_response": error_response(),
                "ndmp_snapshot": snapshot(),
                "ndmp_snapshot_response": collection("ndmp_snapshot"),
                "job_link": job_link(),
                "cluster_ndmp_properties": ndmp_mode(),
                "ndmp_node": node_settings(),
                "ndmp_node_response": collection("ndmp_node"),
                "ndmp_svm": svm_settings(),
                "ndmp_svm_response": collection("ndmp_svm"),
                "ndmpd_library": super::library::schema(),
                "ndmpd_whoami": ext(obj(json!({
                    "user": s(),
                    "role": {"type": "string", "enum": ["admin", "readonly"]},
                })), "who the request is logged in as"),
            }
        },
        "security": [{"basic": []}],
        "paths": {
            "/api/protocols/ndmp/sessions": {"get": {"summary": "Retrieve NDMP sessions", "parameters": query_params(&sessions_filters, sessions::EXTENSIONS), "responses": responses("ndmp_session_response", &no_mode)}},
            "/api/protocols/ndmp/sessions/{owner.uuid}/{session.id}": {
                "get": {"summary": "Retrieve NDMP session details", "parameters": [owner_p, sid, fields], "responses": responses("ndmp_session", &[codes::INVALID_UUID])},
                "delete": {"summary": "Delete an NDMP session: the session is killed (DATA and MOVER halt ABORTED); 200 once it is gone",
                           "parameters": [owner_p, sid],
                           "responses": responses("empty", &[codes::INVALID_UUID, codes::NO_SVM, codes::NO_NODE, codes::NO_MODE, codes::MISSING_IDS])},
            },
            "/api/protocols/ndmp/snapshots": {
                "x-ndmpd-extension": true,
                "get": {"summary": "ndmpd extension: every snapshot ndmpd holds (the operator's and those running backups read)", "parameters": query_params(&snapshot_filters, &[]), "responses": responses("ndmp_snapshot_response", &[])},
                "post": {"summary": "ndmpd extension: take a named read-only snapshot of an export's subvolume, as a job (admin role)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": obj(json!({"export": s(), "name": s()}))}}},
                         "responses": post_responses},
            },
            "/api/protocols/ndmp/snapshots/{name}": {
                "x-ndmpd-extension": true,
                "delete": {"summary": "ndmpd extension: remove an operator snapshot (409 while a backup reads it)", "parameters": [snap_name], "responses": responses("empty", &snap_codes)},
            },
            "/api/cluster/jobs": {"get": {"summary": "Retrieve recent asynchronous jobs (every NDMP backup and recover)", "parameters": query_params(&jobs_filters, jobs::EXTENSIONS), "responses": responses("job_response", &[])}},
            "/api/cluster/jobs/{uuid}": {
                "get": {"summary": "Retrieve details of an asynchronous job", "parameters": [juuid, fields], "responses": responses("job", &[])},
                "patch": {"summary": "Update the state of an asynchronous job", "parameters": [juuid, action],
                          "responses": responses("empty", &[codes::JOB_TERMINAL, (codes::JOB_NO_PAUSE, "This job does not support pause. (or resume.)"), (codes::JOB_FAILED, "Command execution failed with custom error from the program. (the job did not stop in time)")])},
            },
            "/api/protocols/ndmp": {
                "get": {"summary": "Retrieve the NDMP mode", "parameters": [fields], "responses": responses("cluster_ndmp_properties", &[])},
                "patch": {"summary": format!("{admin}Update the NDMP mode (recorded and reported; persists in the data directory)"),
                          "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/cluster_ndmp_properties"}}}},
                          "responses": responses("empty", &[])},
            },
            "/api/protocols/ndmp/nodes": {
                "get": {"summary": "Retrieve the NDMP settings of the nodes (this one)", "parameters": query_params(&["node.name", "node.uuid", "enabled", "user"], &[]), "responses": responses("ndmp_node_response", &[])},
                "patch": {"summary": format!("{admin}Update the NDMP settings of every node (this one)"), "requestBody": node_body, "responses": responses("empty", &[])},
            },
            "/api/protocols/ndmp/nodes/{node.uuid}": {
                "get": {"summary": "Retrieve the NDMP settings of a node", "parameters": [node_uuid, fields], "responses": responses("ndmp_node", &node_codes)},
                "patch": {"summary": format!("{admin}Update the NDMP settings of a node: enabled applies to the next connection, authentication_types to the next authentication, user and password add or replace a DMA login; persists in the data directory"),
                          "parameters": [node_uuid], "requestBody": node_body, "responses": responses("empty", &node_codes)},
            },
            "/api/protocols/ndmp/svms": {"get": {"summary": "Retrieve the NDMP settings of the SVMs (this one)", "parameters": query_params(&["svm.name", "svm.uuid", "enabled"], &[]), "responses": responses("ndmp_svm_response", &[])}},
            "/api/protocols/ndmp/svms/{svm.uuid}": {"get": {"summary": "Retrieve the NDMP settings of an SVM", "parameters": [svm_uuid, fields], "responses": responses("ndmp_svm", &[])}},
            "/api/cluster/nodes/{uuid}": {"get": {"summary": "This node (the target of node._links)", "parameters": [ouuid, fields], "responses": responses("node", &[])}},
            "/api/svm/svms/{uuid}": {"get": {"summary": "This SVM (the target of svm._links)", "parameters": [ouuid, fields], "responses": responses("svm", &[])}},
            "/api/ndmpd/library": {"x-ndmpd-extension": true, "get": {"summary": "ndmpd extension: the virtual tape library — drives (loaded cartridge, state), storage and import/export slots, each cartridge's volume tag, bytes used, full/blank, and the catalog's backups on it (tape files)", "responses": responses("ndmpd_library", &[])}},
            "/api/ndmpd/whoami": {"x-ndmpd-extension": true, "get": {"summary": "ndmpd extension: the login and role of the request (the web page disables its buttons for a readonly account)", "responses": responses("ndmpd_whoami", &[])}},
            "/": {"x-ndmpd-extension": true, "get": {"summary": "ndmpd extension: the operator's web page (HTML; its script and style sheet are /web/app.js and /web/style.css); basic auth like every path", "responses": {"200": {"description": "OK", "content": {"text/html": {"schema": s()}}}, "default": {"description": "Error: the error body (401 and code 6 without valid credentials)", "content": content("error_response")}}}},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
            "/metrics": {"x-ndmpd-extension": true, "get": {"summary": "ndmpd extension: Prometheus metrics in the text exposition format 0.0.4 (NetApp Harvest's ndmp_session_* series and ndmpd_* server series); basic auth like every path", "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": s()}}}, "default": {"description": "Error: the error body (401 and code 6 without valid credentials)", "content": content("error_response")}}}},
        }
    });
    super::npm_schema::extend(&mut doc);
    doc
}
