//! The npm.backup 2.0 part of `/api/openapi.json`: the seed's resource schemas with ndmpd's
//! fields marked `x-ndmpd-extension`, and the paths under `/api/npm.backup/2.0/`.

use super::npm::PREFIX;
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
fn b() -> Value {
    json!({"type": "boolean"})
}
fn arr(items: Value) -> Value {
    json!({"type": "array", "items": items})
}
fn obj(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
fn d(mut v: Value, what: &str) -> Value {
    v["description"] = json!(what);
    v
}
/// ndmpd's own field, absent from the seed.
fn ext(mut v: Value, what: &str) -> Value {
    v["x-ndmpd-extension"] = json!(true);
    v["description"] = json!(format!("ndmpd extension (not in npm.backup 2.0): {what}"));
    v
}

fn status() -> Value {
    json!({"type": "string", "enum": ["started", "completed", "failed", "aborted"],
           "description": "Status description (started: still running)"})
}

fn content_info() -> Value {
    obj(json!({
        "config_only": d(b(), "Always false: ndmpd backs up the server's path"),
        "modules": arr(obj(json!({
            "module": d(s(), "Module short_name: dump or tar"),
            "options": arr(obj(json!({"name": s(), "value": s()}))),
        }))),
    }))
}

fn recurrence_rule() -> Value {
    let ints = || arr(i());
    d(
        obj(json!({
            "freq": {"type": "string", "enum": ["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]},
            "interval": i(),
            "byday": arr(s()),
            "byhour": ints(),
            "byminute": ints(),
            "bysecond": ints(),
            "bymonth": ints(),
            "bymonthday": ints(),
            "bysetpos": ints(),
            "byyearday": ints(),
            "byweekno": ints(),
            "count": i(),
            "until": s(),
            "dtstart": d(i(), "Seconds since the Unix epoch"),
            "timezone": s(),
            "wkst": s(),
        })),
        "RFC 5545 recurrence rule as an object; POST and PATCH also take the RFC 5545 text (FREQ=DAILY;BYHOUR=1)",
    )
}

fn server() -> Value {
    obj(json!({
        "id": d(i(), "ID (read-only)"),
        "name": s(),
        "desc": s(),
        "host": d(s(), "Host name or address of the NDMP server"),
        "port": d(i(), "NDMP port (1-65535)"),
        "path": d(s(), "Absolute path backed up on the server"),
        "user": d(s(), "NDMP login"),
        "butype": ext(json!({"type": "string", "enum": ["dump", "tar"]}), "the NDMP backup type"),
        "password": ext(s(), "write-only: the NDMP password, stored in a file (mode 0600) under the data directory; never returned"),
        "password_file": ext(sn(), "a file holding the NDMP password"),
        "source": ext(json!({"type": "string", "enum": ["config", "rest"]}), "config: defined in the config file (PATCH and DELETE answer 409); rest: created over REST"),
    }))
}

fn schedule() -> Value {
    obj(json!({
        "id": d(s(), "ID (uuid, read-only)"),
        "name": s(),
        "desc": s(),
        "active": b(),
        "retention": d(i(), "Completed backups kept, 1-9999; older ones are expired"),
        "retry_attempts": d(i(), "0-9999"),
        "retry_delay": d(i(), "Minutes between retries, 0-9999"),
        "rrule": r("recurrence_rule"),
        "rrule_text": ext(s(), "the rule as RFC 5545 text"),
        "last_backup": d(i(), "Seconds since the epoch (absent before the first run)"),
        "next_backup": d(i(), "Seconds since the epoch (absent when inactive or the rule has ended)"),
        "server_id": i(),
        "contents": r("content_info"),
        "level": ext(i(), "dump level 0-9"),
        "source": ext(json!({"type": "string", "enum": ["config", "rest"]}), "config: defined in the config file (PATCH and DELETE answer 409)"),
    }))
}

fn completed_backup() -> Value {
    obj(json!({
        "id": d(s(), "The backup's uuid"),
        "name": s(),
        "desc": s(),
        "server_id": inn(),
        "status": status(),
        "hostname": sn(),
        "sw_version": sn(),
        "model": s(),
        "serial": d(s(), "This ndmpd's system_id"),
        "created_on": d(i(), "Start, seconds since the epoch"),
        "contents": r("content_info"),
        "size": d(i(), "Bytes of the image"),
        "sid": d(s(), "The scheduled backup it came from (absent for a CLI backup)"),
        "level": ext(i(), "dump level"),
        "butype": ext(s(), "dump or tar"),
        "path": ext(s(), "the path backed up"),
        "dump_date": ext(sn(), "DUMP_DATE the DATA server reported"),
        "ended_on": ext(inn(), "end, seconds since the epoch"),
        "message": ext(sn(), "why it failed, in words"),
        "media": ext(arr(obj(json!({"cartridge": sn(), "file": i(), "offset": i()}))), "the cartridges and tape files of the image, in stream order"),
        "files": ext(i(), "entries in its file history"),
    }))
}

fn operation_info() -> Value {
    obj(json!({
        "operation_type": {"type": "string", "enum": ["backup", "restore", "reset-factory"]},
        "start_time": i(),
        "status": status(),
        "status_message": s(),
        "name": s(),
        "server_name": s(),
        "backup_id": s(),
        "sbu_id": sn(),
        "destination": ext(s(), "where a restore wrote"),
        "job_uuid": ext(s(), "the /api/cluster/jobs job running it"),
    }))
}

fn device_status() -> Value {
    let module = obj(json!({
        "short_name": s(), "group": s(), "desc": s(), "group_type": s(),
        "supported_options": arr(s()),
    }));
    obj(json!({
        "available_backup_modules": arr(module.clone()),
        "available_restore_modules": arr(module),
        "current_operation": obj(json!({
            "info": r("operation_info"),
            "progress": obj(json!({"completed": d(i(), "bytes so far"), "total": d(i(), "bytes expected (the estimate; 0 when unknown)"), "status_message": s()})),
            "backup_details": obj(json!({
                "size_estimate": obj(json!({"total_size": i(), "data_size": arr(obj(json!({"module": s(), "size": i()})))})),
                "contents": r("content_info"),
            })),
            "restore_details": obj(json!({"size": i()})),
        })),
        "latest_backup": r("operation_info"),
        "latest_restore": r("operation_info"),
        "system_id": s(),
    }))
}

fn file_entry() -> Value {
    obj(json!({
        "path": s(),
        "type": d(s(), "file, dir, symlink, ..."),
        "size": i(),
        "mtime": d(i(), "seconds since the epoch"),
        "fh_info": d(inn(), "the position the DATA server gave for direct access"),
        "backup_id": s(),
        "server_id": inn(),
        "created_on": i(),
    }))
}

/// Adds the npm.backup schemas and paths to `doc`, the OpenAPI document.
pub fn extend(doc: &mut Value) {
    let schemas = json!({
        "npm_server": server(),
        "npm_servers": obj(json!({"items": arr(r("npm_server"))})),
        "npm_scheduled_backup": schedule(),
        "npm_scheduled_backups": obj(json!({"items": arr(r("npm_scheduled_backup"))})),
        "recurrence_rule": recurrence_rule(),
        "content_info": content_info(),
        "completed_backup": completed_backup(),
        "npm_backups": obj(json!({"server_id": i(), "completed": arr(r("completed_backup"))})),
        "npm_contents": ext(obj(json!({"backup_id": s(), "server_id": inn(), "num_records": i(), "offset": i(), "items": arr(r("npm_file"))})), "a backup's file history"),
        "npm_file": file_entry(),
        "npm_files": ext(obj(json!({"num_records": i(), "items": arr(r("npm_file"))})), "file search results"),
        "operation_info": operation_info(),
        "device_status": device_status(),
        "npm_restore": obj(json!({"paths": d(arr(s()), "paths in the backup (as its contents name them); empty or absent: all of it"), "destination": d(s(), "absolute directory on the backup's server")})),
    });
    let ok = |schema: &str| {
        let c = json!({"schema": r(schema)});
        json!({
            "200": {"description": "OK", "content": {"application/hal+json": c, "application/json": c}},
            "default": {"description": "Error: ONTAP's error body (400 invalid value 262197 or unexpected argument 262179, 404 code 4, 409 code 1, 503 without a scheduler)",
                        "content": {"application/hal+json": {"schema": r("error_response")}, "application/json": {"schema": r("error_response")}}},
        })
    };
    let with = |code: &str, schema: &str, what: &str| {
        let mut v = ok(schema);
        if let Some(m) = v.as_object_mut() {
            let ok200 = m.remove("200").unwrap_or_default();
            let mut x = ok200;
            x["description"] = json!(what);
            m.insert(code.into(), x);
        }
        v
    };
    let p = |n: &str, what: &str| json!({"name": n, "in": "path", "required": true, "schema": s(), "description": what});
    let q = |n: &str, what: &str| json!({"name": n, "in": "query", "required": false, "schema": s(), "description": what});
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": r(schema)}}});
    let admin = "Admin role (readonly accounts get 403). ";
    let paths = json!({
        format!("{PREFIX}/servers"): {
            "get": {"summary": "Backup servers (filers)", "responses": ok("npm_servers")},
            "post": {"summary": format!("{admin}Add a backup server; 201 with it"), "requestBody": body("npm_server"), "responses": with("201", "npm_server", "Created")},
        },
        format!("{PREFIX}/servers/items/{{id}}"): {
            "get": {"summary": "A backup server", "parameters": [p("id", "Server ID")], "responses": ok("npm_server")},
            "patch": {"summary": format!("{admin}Change a backup server (409 for one from the config file)"), "parameters": [p("id", "Server ID")], "requestBody": body("npm_server"), "responses": ok("npm_server")},
            "delete": {"summary": format!("{admin}Remove a backup server (409 while a schedule uses it, or from the config file)"), "parameters": [p("id", "Server ID")], "responses": ok("empty")},
        },
        format!("{PREFIX}/scheduled_backups"): {
            "get": {"summary": "Scheduled backups", "responses": ok("npm_scheduled_backups")},
            "post": {"summary": format!("{admin}Add a scheduled backup; rrule as the object or RFC 5545 text; 201 with it"), "requestBody": body("npm_scheduled_backup"), "responses": with("201", "npm_scheduled_backup", "Created")},
        },
        format!("{PREFIX}/scheduled_backups/items/{{id}}"): {
            "get": {"summary": "A scheduled backup", "parameters": [p("id", "Schedule uuid")], "responses": ok("npm_scheduled_backup")},
            "patch": {"summary": format!("{admin}Change a scheduled backup (409 for one from the config file)"), "parameters": [p("id", "Schedule uuid")], "requestBody": body("npm_scheduled_backup"), "responses": ok("npm_scheduled_backup")},
            "delete": {"summary": format!("{admin}Remove a scheduled backup (409 for one from the config file)"), "parameters": [p("id", "Schedule uuid")], "responses": ok("empty")},
        },
        format!("{PREFIX}/scheduled_backups/items/{{id}}/run"): {
            "x-ndmpd-extension": true,
            "post": {"summary": format!("ndmpd extension. {admin}Run the scheduled backup now, as a job: 202 with the job's link"), "parameters": [p("id", "Schedule uuid")], "responses": with("202", "job_link", "Accepted: the job runs the backup")},
        },
        format!("{PREFIX}/backups/server/{{server_id}}"): {
            "get": {"summary": "The kept (not expired) backups of a server, oldest first", "parameters": [p("server_id", "Server ID")], "responses": ok("npm_backups")},
        },
        format!("{PREFIX}/completed_backups/server/{{server_id}}/items/{{id}}"): {
            "get": {"summary": "A backup", "parameters": [p("server_id", "Server ID"), p("id", "Backup uuid")], "responses": ok("completed_backup")},
            "delete": {"summary": format!("{admin}Expire the backup (its cartridges are recycled once all their images are expired)"), "parameters": [p("server_id", "Server ID"), p("id", "Backup uuid")], "responses": ok("empty")},
        },
        format!("{PREFIX}/completed_backups/server/{{server_id}}/items/{{id}}/contents"): {
            "x-ndmpd-extension": true,
            "get": {"summary": "ndmpd extension: the backup's file history", "parameters": [p("server_id", "Server ID"), p("id", "Backup uuid"),
                    q("path", "A glob (* ? [..]) or a prefix the paths must match"), q("limit", "At most this many (default 1000)"), q("offset", "Skip this many")],
                    "responses": ok("npm_contents")},
        },
        format!("{PREFIX}/completed_backups/server/{{server_id}}/items/{{id}}/restore"): {
            "post": {"summary": format!("{admin}Restore the backup (whole, or the paths named) into destination on its server, as a job: 202 with the job's link (see /api/cluster/jobs)"),
                     "parameters": [p("server_id", "Server ID"), p("id", "Backup uuid")], "requestBody": body("npm_restore"),
                     "responses": with("202", "job_link", "Accepted: the job runs the restore")},
        },
        format!("{PREFIX}/device_status"): {
            "get": {"summary": "Backup and restore status: modules, the running operation with its progress, the latest backup and restore", "responses": ok("device_status")},
        },
        format!("{PREFIX}/files"): {
            "x-ndmpd-extension": true,
            "get": {"summary": "ndmpd extension: files of kept backups whose path holds name", "parameters": [q("name", "Part of a file name (required)"), q("limit", "At most this many (default 1000)")], "responses": ok("npm_files")},
        },
    });
    if let (Some(dst), Some(src)) = (
        doc["components"]["schemas"].as_object_mut(),
        schemas.as_object(),
    ) {
        dst.extend(src.clone());
    }
    if let (Some(dst), Some(src)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        dst.extend(src.clone());
    }
}
