//! Golden bytes: the Rust codec against C encoders that rpcgen builds from `xdr/ndmp4.x`.
//! For every message body, random values encoded by Rust must decode in C and re-encode to the
//! very same bytes, and Rust must decode C's output back to the original value.

use bytes::{Bytes, BytesMut};
use ndmpd::wire::header::Header;
use ndmpd::wire::sample::{Gen, Sample};
use ndmpd::wire::xdr::{Xdr, XdrReader};
use ndmpd::wire::{MessageCode, Reply, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

mod common;

use common::golden::{build_oracle, message_table, Oracle};

fn encode<T: Xdr>(v: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out.to_vec()
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
    let mut types: Vec<String> = rows
        .iter()
        .flat_map(|r| [&r.request, &r.reply, &r.post])
        .flatten()
        .cloned()
        .collect();
    types.push("ndmp4_header".into());
    types.sort();
    types.dedup();

    let dir = tempfile::tempdir().unwrap();
    let exe = build_oracle(dir.path(), "ndmp4", &types);
    let oracle = std::cell::RefCell::new(Oracle::start(&exe));

    let checked = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u64>(), 8), |seeds| {
            for seed in &seeds {
                let mut g = Gen::new(*seed);
                let header = Header::sample(&mut g);
                let bytes = encode(&header);
                let c = oracle
                    .borrow_mut()
                    .roundtrip("ndmp4_header", &bytes)
                    .unwrap();
                prop_assert_eq!(&c, &bytes, "header seed {}", seed);

                for row in &rows {
                    let code = MessageCode(row.code);
                    for (ctype, is_reply) in [
                        (&row.request, false),
                        (&row.post, false),
                        (&row.reply, true),
                    ] {
                        let Some(ctype) = ctype else { continue };
                        let (bytes, back) = if is_reply {
                            let v = Reply::sample(code, &mut g)
                                .unwrap_or_else(|| panic!("no Rust reply body for {}", row.name));
                            let mut out = BytesMut::new();
                            v.encode(&mut out);
                            let c = oracle
                                .borrow_mut()
                                .roundtrip(ctype, &out)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: C says {e}")))?;
                            let mut r = XdrReader::new(Bytes::from(c.clone()));
                            let back = Reply::decode(code, &mut r)
                                .map(|d| d == v)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: {e}")))?;
                            (out.to_vec() == c, back)
                        } else {
                            let v = Request::sample(code, &mut g)
                                .unwrap_or_else(|| panic!("no Rust request body for {}", row.name));
                            let mut out = BytesMut::new();
                            v.encode(&mut out);
                            let c = oracle
                                .borrow_mut()
                                .roundtrip(ctype, &out)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: C says {e}")))?;
                            let mut r = XdrReader::new(Bytes::from(c.clone()));
                            let back = Request::decode(code, &mut r)
                                .map(|d| d == v)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: {e}")))?;
                            (out.to_vec() == c, back)
                        };
                        prop_assert!(
                            bytes,
                            "{} ({}) seed {}: C re-encoded different bytes",
                            ctype,
                            row.name,
                            seed
                        );
                        prop_assert!(
                            back,
                            "{} ({}) seed {}: Rust decoded C's bytes to another value",
                            ctype,
                            row.name,
                            seed
                        );
                        checked.set(checked.get() + 1);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // 24 cases x 8 seeds x (every non-void body)
    let checked = checked.get();
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
