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
        "type": {"type": "string", "enum": ["local", "tcp"]},
        "address": s(),
        "port": inn(),
    }));
    c["nullable"] = json!(true);
    c
}

fn session() -> Value {
    obj(json!({
        "id": s(),
        "uuid": s(),
        "node": obj(json!({"name": s(), "uuid": s()})),
        "svm": obj(json!({"name": s(), "uuid": s()})),
        "client_address": s(),
        "client_port": i(),
        "source_address": s(),
        "user": sn(),
        "auth_type": sn(),
        "start_time": i(),
        "backup_engine": {"type": "string", "enum": ["dump", "tar"], "nullable": true},
        "data_path": sn(),
        "tape_device": sn(),
        "tape_mode": {"type": "string", "enum": ["read", "read_write", "raw"], "nullable": true},
        "data": obj(json!({
            "state": {"type": "string", "enum": ["idle", "listen", "connected", "active", "halted"]},
            "operation": {"type": "string", "enum": ["noaction", "backup", "restore", "restore_filehistory"]},
            "reason": {"type": "string", "enum": ["na", "successful", "aborted", "internal_error", "connect_error"]},
            "bytes_processed": i(),
            "connection": connection(),
        })),
        "mover": obj(json!({
            "state": {"type": "string", "enum": ["idle", "listen", "active", "paused", "halted"]},
            "mode": {"type": "string", "enum": ["noaction", "read", "write"]},
            "reason": {"type": "string", "enum": ["na", "connect_closed", "aborted", "internal_error", "connect_error", "media_error", "end_of_media", "end_of_file", "end_of_window", "seek"]},
            "bytes_moved": i(),
            "record_size": i(),
            "connection": connection(),
        })),
        "scsi": obj(json!({"device_id": sn(), "host_adapter": inn(), "target_id": inn(), "lun_id": inn()})),
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
        "session": obj(json!({"id": s()})),
        "progress": obj(json!({"bytes": i(), "estimated_total": inn(), "rate": i()})),
        "snapshot": sn(),
        "_links": link(),
    }))
}

fn collection(item: &str) -> Value {
    obj(json!({
        "records": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        "num_records": i(),
        "_links": obj(json!({"self": obj(json!({"href": s()})), "next": obj(json!({"href": s()}))})),
    }))
}

fn query_params() -> Value {
    json!([
        {"name": "fields", "in": "query", "schema": s(), "description": "comma list of fields, * or **"},
        {"name": "order_by", "in": "query", "schema": s(), "description": "field [asc|desc], ..."},
        {"name": "max_records", "in": "query", "schema": i()},
        {"name": "return_records", "in": "query", "schema": {"type": "boolean"}},
        {"name": "return_timeout", "in": "query", "schema": i()},
        {"name": "start.offset", "in": "query", "schema": i(), "description": "set by _links.next"},
    ])
}

fn ok(schema: &str) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
           "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error_response"}}}}})
}

/// The whole document.
pub fn document() -> Value {
    let owner = json!({"name": "owner.uuid", "in": "path", "required": true, "schema": s()});
    let sid = json!({"name": "session.id", "in": "path", "required": true, "schema": s()});
    let juuid = json!({"name": "uuid", "in": "path", "required": true, "schema": s()});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "ndmpd REST view", "version": env!("CARGO_PKG_VERSION"),
                 "description": "ONTAP-shaped NDMP sessions and jobs. Any record field may be given as a query filter (field=expr with !, |, *, <, >, <=, >=, lo..hi, null)."},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "ndmp_session": session(),
                "ndmp_session_response": collection("ndmp_session"),
                "job": job(),
                "job_response": collection("job"),
                "empty": obj(json!({})),
                "error_response": obj(json!({"error": obj(json!({"message": s(), "code": s(), "target": s()}))})),
            }
        },
        "security": [{"basic": []}],
        "paths": {
            "/api/protocols/ndmp/sessions": {"get": {"summary": "List NDMP sessions", "parameters": query_params(), "responses": ok("ndmp_session_response")}},
            "/api/protocols/ndmp/sessions/{owner.uuid}/{session.id}": {
                "get": {"summary": "One NDMP session", "parameters": [owner, sid, {"name": "fields", "in": "query", "schema": s()}], "responses": ok("ndmp_session")},
                "delete": {"summary": "Kill an NDMP session", "parameters": [owner, sid], "responses": ok("empty")},
            },
            "/api/cluster/jobs": {"get": {"summary": "List backup and recover jobs", "parameters": query_params(), "responses": ok("job_response")}},
            "/api/cluster/jobs/{uuid}": {
                "get": {"summary": "One job", "parameters": [juuid, {"name": "fields", "in": "query", "schema": s()}], "responses": ok("job")},
                "patch": {"summary": "Cancel a job", "parameters": [juuid, {"name": "action", "in": "query", "required": true, "schema": {"type": "string", "enum": ["cancel"]}}], "responses": ok("empty")},
            },
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        }
    })
}
