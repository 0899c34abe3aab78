//! One registry entry as an ONTAP `ndmp_session` record: ONTAP's field names and lowercase
//! spellings ("active", "end_of_media", "tcp"), and the schema its queries are checked against.

use super::identity::Identity;
use super::query::Schema;
use crate::registry::SessionInfo;
use serde_json::{json, Value};

/// Every field of a session record, as the query language names them.
const FIELDS: &[&str] = &[
    "id",
    "uuid",
    "node",
    "node.name",
    "node.uuid",
    "svm",
    "svm.name",
    "svm.uuid",
    "client_address",
    "client_port",
    "source_address",
    "user",
    "auth_type",
    "start_time",
    "backup_engine",
    "data_path",
    "tape_device",
    "tape_mode",
    "data",
    "data.state",
    "data.operation",
    "data.reason",
    "data.bytes_processed",
    "data.connection",
    "data.connection.type",
    "data.connection.address",
    "data.connection.port",
    "mover",
    "mover.state",
    "mover.mode",
    "mover.reason",
    "mover.bytes_moved",
    "mover.record_size",
    "mover.connection",
    "mover.connection.type",
    "mover.connection.address",
    "mover.connection.port",
    "scsi",
    "scsi.device_id",
    "scsi.host_adapter",
    "scsi.target_id",
    "scsi.lun_id",
];

/// What a record shows without `fields=`: what identifies it, as ONTAP does.
pub const SCHEMA: Schema<'static> = Schema {
    fields: FIELDS,
    default_fields: &["id", "node"],
};

/// "TCP 10.0.0.5:40312" / "LOCAL" as ONTAP's connection object.
fn connection(text: &Option<String>) -> Value {
    match text.as_deref() {
        Some("LOCAL") => json!({"type": "local"}),
        Some(t) => {
            let addr = t.strip_prefix("TCP ").unwrap_or(t);
            match addr.rsplit_once(':') {
                Some((ip, port)) => json!({
                    "type": "tcp",
                    "address": ip,
                    "port": port.parse::<u64>().ok(),
                }),
                None => json!({"type": "tcp", "address": addr}),
            }
        }
        None => Value::Null,
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// ONTAP's mover reasons: the pause reason while paused, the halt reason once halted.
fn mover_reason(i: &SessionInfo) -> String {
    let m = &i.mover;
    let r = match m.state {
        "PAUSED" => m.pause_reason,
        "HALTED" => m.halt_reason,
        _ => "NA",
    };
    match r {
        "EOM" => "end_of_media".into(),
        "EOF" => "end_of_file".into(),
        "EOW" => "end_of_window".into(),
        other => lower(other),
    }
}

fn data_operation(op: &str) -> &'static str {
    match op {
        "BACKUP" => "backup",
        "RECOVER" => "restore",
        "RECOVER_FILEHIST" => "restore_filehistory",
        _ => "noaction",
    }
}

/// The record of one session; `_links.self` names it under the node's UUID.
pub fn record(i: &SessionInfo, me: &Identity) -> Value {
    let id = i.id.to_string();
    let data_reason = if i.data.state == "HALTED" {
        lower(i.data.halt_reason)
    } else {
        "na".into()
    };
    json!({
        "id": id,
        "uuid": format!("{}-{}", me.node_uuid, i.id),
        "node": {
            "name": me.node_name,
            "uuid": me.node_uuid,
        },
        "svm": {
            "name": me.svm_name,
            "uuid": me.svm_uuid,
        },
        "client_address": i.client_address.ip().to_string(),
        "client_port": i.client_address.port(),
        "source_address": i.local_address.ip().to_string(),
        "user": i.user,
        "auth_type": i.auth_method,
        "start_time": i.start_time,
        "backup_engine": i.data.backup_engine,
        "data_path": i.data.data_path,
        "tape_device": i.tape.device,
        "tape_mode": i.tape.mode,
        "data": {
            "state": lower(i.data.state),
            "operation": data_operation(i.data.operation),
            "reason": data_reason,
            "bytes_processed": i.data.bytes_processed,
            "connection": connection(&i.data.connection),
        },
        "mover": {
            "state": lower(i.mover.state),
            "mode": lower(i.mover.mode),
            "reason": mover_reason(i),
            "bytes_moved": i.mover.bytes_moved,
            "record_size": i.mover.record_size,
            "connection": connection(&i.mover.connection),
        },
        "scsi": {
            "device_id": i.scsi.device,
            "host_adapter": i.scsi.host_adapter,
            "target_id": i.scsi.target_id,
            "lun_id": i.scsi.lun_id,
        },
        "_links": {
            "self": {"href": format!("/api/protocols/ndmp/sessions/{}/{}", me.node_uuid, i.id)}
        },
    })
}
