//! Checks a JSON answer against a schema of `/api/openapi.json`, for the REST tests: one
//! checker, so every test judges conformance the same way.

use serde_json::Value;

/// Where `v` breaks `schema` (resolving `$ref` in `doc`): undeclared keys, wrong types,
/// values outside an enum, null where not nullable.
pub fn violations(v: &Value, schema: &Value, doc: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return violations(v, &doc["components"]["schemas"][name], doc, at, out);
    }
    if v.is_null() {
        if schema["nullable"] != true {
            out.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("string") => v.is_string(),
        Some("integer") => v.is_u64() || v.is_i64(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        other => {
            out.push(format!("{at}: schema without a type: {other:?}"));
            return;
        }
    };
    if !ok {
        out.push(format!("{at}: {v} is not {}", schema["type"]));
        return;
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            out.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (n, x) in a.iter().enumerate() {
            violations(x, items, doc, &format!("{at}[{n}]"), out);
        }
    }
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            match schema["properties"].get(k) {
                Some(p) => violations(x, p, doc, &format!("{at}.{k}"), out),
                None => out.push(format!("{at}.{k}: not in the document")),
            }
        }
    }
}
