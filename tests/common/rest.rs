//! One REST request per connection as a given login, and waiting for the job a 202 links to:
//! what the tests that drive the real binary's REST view share.

use super::served::{base64, unchunk};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP answer: status, JSON body (Null when none) and the raw text.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

/// `method path` with an optional JSON body, basic auth as `who` (user, password).
pub fn call_as(
    rest: SocketAddr,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let body = body.map(Value::to_string);
    request(rest, Some(who), method, path, body.as_deref())
}

/// `method path` with an optional body (sent as JSON), with basic auth as `who` or none.
pub fn request(
    rest: SocketAddr,
    who: Option<(&str, &str)>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Answer {
    let mut c = TcpStream::connect(rest).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {rest}\r\nConnection: close\r\n");
    if let Some((user, password)) = who {
        let cred = base64(format!("{user}:{password}").as_bytes());
        req.push_str(&format!("Authorization: Basic {cred}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    c.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a whole answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        raw,
    }
}

/// Waits (up to `limit`) for the job a 202's body links to to leave running/queued; its record.
pub fn job_end(rest: SocketAddr, who: (&str, &str), link: &Value, limit: Duration) -> Value {
    let href = link["job"]["_links"]["self"]["href"]
        .as_str()
        .unwrap_or_else(|| panic!("no job link in {link}"));
    let deadline = Instant::now() + limit;
    loop {
        let a = call_as(rest, who, "GET", &format!("{href}?fields=*"), None);
        assert_eq!(a.status, 200, "{}", a.raw);
        if a.body["state"] != "running" && a.body["state"] != "queued" {
            return a.body;
        }
        assert!(Instant::now() < deadline, "the job did not end: {}", a.raw);
        std::thread::sleep(Duration::from_millis(50));
    }
}
