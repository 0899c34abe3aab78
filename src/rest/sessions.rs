//! One registry entry as an ONTAP `ndmp_session` record: ONTAP's field names and enum values
//! ("connected", "end_of_media", "tcp", tape_mode "write"), and the schema queries are checked against.

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
    "tape_open_mode",
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
    "extensions",
];

/// The fields ndmpd adds to ONTAP's `ndmp_session`; openapi.json marks them as extensions.
pub const EXTENSIONS: &[&str] = &[
    "user",
    "auth_type",
    "start_time",
    "tape_open_mode",
    "mover.record_size",
    "extensions",
];

/// What a record shows without `fields=`: what identifies it (the owner's UUID, the session
/// id, the node), as ONTAP does.
pub const SCHEMA: Schema<'static> = Schema {
    fields: FIELDS,
    default_fields: &["id", "uuid", "node"],
};

/// What `GET /api/cluster/nodes/{uuid}` and `/api/svm/svms/{uuid}` may project.
pub const OWNER_SCHEMA: Schema<'static> = Schema {
    fields: &["name", "uuid"],
    default_fields: &["name", "uuid"],
};

/// The leaves of [`SCHEMA`]: the names a filter may use, for openapi.json.
pub fn filter_names() -> Vec<&'static str> {
    leaves(FIELDS)
}

/// The names in `fields` that no other name lies under.
pub(super) fn leaves(fields: &[&'static str]) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|f| {
            let under = format!("{f}.");
            !fields.iter().any(|g| g.starts_with(&under))
        })
        .collect()
}

/// ONTAP's `_links.self` of this node (`/api/cluster/nodes/{uuid}`), served by the view.
pub fn node_href(me: &Identity) -> String {
    format!("/api/cluster/nodes/{}", me.node_uuid)
}

/// ONTAP's `_links.self` of this SVM (`/api/svm/svms/{uuid}`), served by the view.
pub fn svm_href(me: &Identity) -> String {
    format!("/api/svm/svms/{}", me.svm_uuid)
}

/// The `node` object of records, and the body of `GET /api/cluster/nodes/{uuid}`.
pub fn node(me: &Identity) -> Value {
    json!({
        "name": me.node_name,
        "uuid": me.node_uuid,
        "_links": {"self": {"href": node_href(me)}},
    })
}

/// The `svm` object of records, and the body of `GET /api/svm/svms/{uuid}`.
pub fn svm(me: &Identity) -> Value {
    json!({
        "name": me.svm_name,
        "uuid": me.svm_uuid,
        "_links": {"self": {"href": svm_href(me)}},
    })
}

/// "TCP 10.0.0.5:40312" / "LOCAL" / "IPC" as ONTAP's connection object.
fn connection(text: &Option<String>) -> Value {
    match text.as_deref() {
        Some("LOCAL") => json!({"type": "local"}),
        Some("IPC") => json!({"type": "ipc"}),
        Some(t) => {
            let addr = t.strip_prefix("TCP ").unwrap_or(t);
            match addr.rsplit_once(':') {
                Some((ip, port)) => json!({
                    "type": "tcp",
                    // an IPv6 peer (CAE) is written [addr]:port
                    "address": ip.trim_start_matches('[').trim_end_matches(']'),
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

/// ONTAP's mover state. NDMP has no CONNECTED mover state: its mover is ACTIVE from the moment
/// the data connection exists. While the local DATA server is CONNECTED to it and no operation
/// has started, nothing moves yet, which is ONTAP's "connected"; otherwise the NDMP name.
fn mover_state(i: &SessionInfo) -> String {
    if i.mover.state == "ACTIVE" && i.data.state == "CONNECTED" {
        "connected".into()
    } else {
        lower(i.mover.state)
    }
}

/// ONTAP's tape_mode has the mover's modes: a tape opened read-only is "read"; read-write and
/// raw opens may write, "write". The NDMP open mode stays in the `tape_open_mode` extension.
fn tape_mode(open_mode: Option<&str>) -> Option<&'static str> {
    open_mode.map(|m| if m == "read" { "read" } else { "write" })
}

/// The record of one session, in node scope: `uuid` is the node's UUID (ONTAP's "node or SVM
/// UUID"), and `_links.self` names the session under it.
pub fn record(i: &SessionInfo, me: &Identity) -> Value {
    let id = i.id.to_string();
    let data_reason = if i.data.state == "HALTED" {
        lower(i.data.halt_reason)
    } else {
        "na".into()
    };
    json!({
        "id": id,
        "uuid": me.node_uuid,
        "node": node(me),
        "svm": svm(me),
        "client_address": i.client_address.ip().to_string(),
        "client_port": i.client_address.port(),
        "source_address": i.local_address.ip().to_string(),
        "user": i.user,
        "auth_type": i.auth_method,
        "start_time": i.start_time,
        "backup_engine": i.data.backup_engine,
        "data_path": i.data.data_path,
        "tape_device": i.tape.device,
        "tape_mode": tape_mode(i.tape.mode),
        "tape_open_mode": i.tape.mode,
        "data": {
            "state": lower(i.data.state),
            "operation": data_operation(i.data.operation),
            "reason": data_reason,
            "bytes_processed": i.data.bytes_processed,
            "connection": connection(&i.data.connection),
        },
        "mover": {
            "state": mover_state(i),
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
        "extensions": i.extensions.iter().map(|e| json!({
            "class": format!("{:#06x}", e.class),
            "name": crate::wire::netapp::class_name(e.class),
            "version": e.version,
            "negotiated": e.negotiated,
        })).collect::<Vec<_>>(),
        "_links": {
            "self": {"href": format!("/api/protocols/ndmp/sessions/{}/{}", me.node_uuid, i.id)}
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use std::sync::Arc;

    fn me() -> Identity {
        Identity {
            node_name: "n1".into(),
            node_uuid: "11111111-1111-4111-8111-111111111111".into(),
            svm_name: "svm1".into(),
            svm_uuid: "22222222-2222-4222-8222-222222222222".into(),
        }
    }

    #[test]
    fn ndmp_states_map_onto_ontaps_values() {
        let reg = Arc::new(Registry::new());
        let peer = "127.0.0.1:4000".parse().unwrap();
        let r = reg.register(peer, peer, tokio_util::sync::CancellationToken::new());
        let id = r.entry().id;
        let rec = || record(&reg.get(id).unwrap(), &me());
        let v = rec();
        assert_eq!(v["uuid"], me().node_uuid);
        assert_eq!(v["mover"]["state"], "idle");
        assert_eq!(v["tape_mode"], Value::Null);
        assert_eq!(
            v["node"]["_links"]["self"]["href"],
            "/api/cluster/nodes/11111111-1111-4111-8111-111111111111"
        );
        assert_eq!(
            v["svm"]["_links"]["self"]["href"],
            "/api/svm/svms/22222222-2222-4222-8222-222222222222"
        );
        for (open, ontap) in [("read", "read"), ("read_write", "write"), ("raw", "write")] {
            r.entry().update(|i| i.tape.mode = Some(open));
            assert_eq!(
                (rec()["tape_mode"].clone(), rec()["tape_open_mode"].clone()),
                (json!(ontap), json!(open))
            );
        }
        // MOVER ACTIVE with the local DATA connected and not started: ONTAP's "connected"
        r.entry().update(|i| {
            i.mover.state = "ACTIVE";
            i.data.state = "CONNECTED";
            i.mover.connection = Some("IPC".into());
        });
        assert_eq!(rec()["mover"]["state"], "connected");
        assert_eq!(rec()["data"]["state"], "connected");
        assert_eq!(rec()["mover"]["connection"], json!({"type": "ipc"}));
        r.entry().update(|i| i.data.state = "ACTIVE");
        assert_eq!(rec()["mover"]["state"], "active");
        r.entry().update(|i| i.data.state = "IDLE");
        assert_eq!(
            rec()["mover"]["state"],
            "active",
            "a mover serving a remote DATA"
        );
    }

    #[test]
    fn leaves_are_the_filterable_names() {
        let l = leaves(&["a", "a.b", "a.c", "d"]);
        assert_eq!(l, ["a.b", "a.c", "d"]);
        assert!(filter_names().contains(&"mover.connection.port"));
        assert!(!filter_names().contains(&"mover"));
    }
}
