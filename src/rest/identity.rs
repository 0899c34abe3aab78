//! Who this server is in ONTAP's terms (node and SVM names and UUIDs, the UUIDs kept across
//! restarts), for the REST handlers and the session records they build.

// A leaf apart from mod.rs so that sessions.rs can take Identity without importing the
// module that routes to it.

/// Who this server is in ONTAP's terms: a node, and the SVM its sessions belong to.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node's name, reported as a session's `node.name`.
    pub node_name: String,
    /// The node's UUID, kept across restarts; `node.uuid`, and the prefix of session UUIDs.
    pub node_uuid: String,
    /// The SVM's name (the node's when none is configured), reported as `svm.name`.
    pub svm_name: String,
    /// The SVM's UUID, kept across restarts; `svm.uuid`.
    pub svm_uuid: String,
}

impl Identity {
    /// The node's UUID is made once and kept in `data_dir/node-uuid`, so it survives
    /// restarts; the SVM's likewise in `svm-uuid`.
    pub fn load(data_dir: &std::path::Path, node_name: &str, svm_name: Option<&str>) -> Identity {
        Identity {
            node_name: node_name.to_string(),
            node_uuid: stored_uuid(&data_dir.join("node-uuid")),
            svm_name: svm_name.unwrap_or(node_name).to_string(),
            svm_uuid: stored_uuid(&data_dir.join("svm-uuid")),
        }
    }
}

fn stored_uuid(path: &std::path::Path) -> String {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim();
        if is_uuid(s) {
            return s.to_string();
        }
    }
    let u = crate::registry::new_uuid();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(path, &u);
    u
}

/// 8-4-4-4-12 hexadecimal digits.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("0f1e2d3c-4b5a-4697-8877-665544332211"));
        assert!(!is_uuid("0f1e2d3c-4b5a-4697-8877-66554433221"));
        assert!(!is_uuid("not-a-uuid"));
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load(dir.path(), "n1", None);
        let b = Identity::load(dir.path(), "n1", Some("svm1"));
        assert!(is_uuid(&a.node_uuid) && is_uuid(&a.svm_uuid));
        assert_eq!(a.node_uuid, b.node_uuid, "stable across restarts");
        assert_ne!(a.node_uuid, a.svm_uuid);
        assert_eq!((a.svm_name.as_str(), b.svm_name.as_str()), ("n1", "svm1"));
    }
}
