//! Golden bytes: the Rust codec against C encoders that rpcgen builds from `xdr/ndmp4.x`.
//! For every message body, random values encoded by Rust must decode in C and re-encode to the
//! very same bytes, and Rust must decode C's output back to the original value.

use bytes::BytesMut;
use ndmpd::wire::sample::Gen;
use ndmpd::wire::xdr::XdrReader;
use ndmpd::wire::{MessageCode, Reply, Request};

mod common;

use common::golden::{message_table, rust_and_c_agree, Body};

/// A random body of `code` as the ndmp4 codec makes it, and its decode check.
fn body(code: MessageCode, reply: bool, g: &mut Gen) -> Option<Body> {
    let decoded = |r: Result<bool, _>| r.map_err(|e: ndmpd::wire::xdr::XdrError| e.to_string());
    if reply {
        let v = Reply::sample(code, g)?;
        let mut out = BytesMut::new();
        v.encode(&mut out);
        let check = move |b| decoded(Reply::decode(code, &mut XdrReader::new(b)).map(|d| d == v));
        Some((out.to_vec(), Box::new(check)))
    } else {
        let v = Request::sample(code, g)?;
        let mut out = BytesMut::new();
        v.encode(&mut out);
        let check = move |b| decoded(Request::decode(code, &mut XdrReader::new(b)).map(|d| d == v));
        Some((out.to_vec(), Box::new(check)))
    }
}

#[test]
fn rust_and_c_agree_on_every_message_body() {
    let rows = message_table("ndmp4");
    assert!(rows.len() >= 57, "message table has {} rows", rows.len());
    // every code of the table is known to the Rust side by the same name
    for row in &rows {
        assert_eq!(
            MessageCode(row.code).name(),
            Some(row.name.as_str()),
            "code {:#x}",
            row.code
        );
    }
    let checked = rust_and_c_agree("ndmp4", &rows, &body);
    // 24 cases x 8 seeds x (every non-void body)
    assert!(checked > 24 * 8 * 60, "only {checked} bodies checked");
}

#[test]
fn void_bodies_encode_to_nothing() {
    for row in message_table("ndmp4") {
        let code = MessageCode(row.code);
        let mut g = Gen::new(1);
        if row.request.is_none() && row.post.is_none() {
            if let Some(v) = Request::sample(code, &mut g) {
                let mut out = BytesMut::new();
                v.encode(&mut out);
                assert!(out.is_empty(), "{} request should be empty", row.name);
            }
        }
        if row.reply.is_none() && row.post.is_none() {
            assert!(
                Reply::sample(code, &mut g).is_none(),
                "{} has no reply in the spec",
                row.name
            );
        }
    }
}
