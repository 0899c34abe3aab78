//! Golden bytes for NDMP v3: the Rust codec of a v3 session (`wire::v3`) against C encoders that
//! rpcgen builds from `xdr/ndmp3.x`. For every v3 message body, random values encoded by Rust
//! must decode in C and re-encode to the very same bytes, and Rust must decode C's output back
//! to the original value; the v3-only layouts are pinned byte for byte as well.

use bytes::{Bytes, BytesMut};
use ndmpd::wire::header::Header;
use ndmpd::wire::sample::{Gen, Sample};
use ndmpd::wire::v3;
use ndmpd::wire::xdr::{hex, Xdr, XdrReader};
use ndmpd::wire::MessageCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// One row of the message table at the top of xdr/ndmp3.x.
struct Row {
    code: u32,
    name: String,
    request: Option<String>,
    reply: Option<String>,
    post: Option<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn message_table() -> Vec<Row> {
    let text = std::fs::read_to_string(repo().join("xdr/ndmp3.x")).unwrap();
    let start = text
        .find("/* BEGIN MESSAGE TABLE")
        .expect("message table in ndmp3.x");
    let end = text.find("END MESSAGE TABLE */").unwrap();
    let mut rows = Vec::new();
    for line in text[start..end].lines().skip(1) {
        let mut words = line.split_whitespace();
        let (Some(code), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let code = u32::from_str_radix(code.trim_start_matches("0x"), 16).unwrap();
        let mut row = Row {
            code,
            name: name.to_string(),
            request: None,
            reply: None,
            post: None,
        };
        for w in words {
            let (k, v) = w.split_once('=').unwrap();
            let v = (v != "void").then(|| v.to_string());
            match k {
                "request" => row.request = v,
                "reply" => row.reply = v,
                "post" => row.post = v,
                other => panic!("unknown column {other}"),
            }
        }
        rows.push(row);
    }
    rows
}

fn require(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is required for the golden-byte tests: apt-get install rpcgen libtirpc-dev gcc \
         (scripts/test.sh installs them)"
    );
}

/// Builds the C oracle: rpcgen's encoders plus a filter that reads `TYPE HEX` lines, decodes
/// HEX as TYPE, re-encodes it and prints the hex (or DECODE_FAIL / TRAILING n).
fn build_oracle(dir: &Path, types: &[String]) -> PathBuf {
    require("rpcgen");
    require("gcc");
    let xdr = repo().join("xdr");
    // rpcgen puts the input path into the #include line, so run it next to the .x file.
    for (flag, out) in [("-h", "ndmp3.h"), ("-c", "ndmp3_xdr.c")] {
        let st = Command::new("rpcgen")
            .current_dir(&xdr)
            .args([flag, "ndmp3.x", "-o"])
            .arg(dir.join(out))
            .status()
            .unwrap();
        assert!(st.success(), "rpcgen {flag} failed");
    }
    let mut table = String::new();
    for t in types {
        table.push_str(&format!(
            "  {{\"{t}\", (xdrproc_t)xdr_{t}, sizeof({t})}},\n"
        ));
    }
    let harness = format!(
        r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rpc/rpc.h>
#include "ndmp3.h"
struct entry {{ const char *name; xdrproc_t proc; size_t size; }};
static struct entry types[] = {{
{table}  {{0, 0, 0}}
}};
static int unhex(int c) {{ return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }}
int main(void) {{
  static char line[1 << 22];
  static unsigned char in[1 << 21], out[1 << 22];
  while (fgets(line, sizeof line, stdin)) {{
    char *sp = strchr(line, ' ');
    if (!sp) return 2;
    *sp = 0;
    char *hx = sp + 1;
    size_t n = 0;
    while (hx[2 * n] && hx[2 * n] != '\n') {{ in[n] = unhex(hx[2 * n]) << 4 | unhex(hx[2 * n + 1]); n++; }}
    struct entry *e = types;
    while (e->name && strcmp(e->name, line)) e++;
    if (!e->name) {{ printf("NO_TYPE\n"); fflush(stdout); continue; }}
    void *obj = calloc(1, e->size);
    XDR x;
    xdrmem_create(&x, (char *)in, n, XDR_DECODE);
    if (!e->proc(&x, obj)) {{ printf("DECODE_FAIL\n"); fflush(stdout); continue; }}
    unsigned pos = xdr_getpos(&x);
    if (pos != n) {{ printf("TRAILING %zu\n", n - pos); fflush(stdout); continue; }}
    XDR y;
    xdrmem_create(&y, (char *)out, sizeof out, XDR_ENCODE);
    if (!e->proc(&y, obj)) {{ printf("ENCODE_FAIL\n"); fflush(stdout); continue; }}
    unsigned m = xdr_getpos(&y);
    for (unsigned i = 0; i < m; i++) printf("%02x", out[i]);
    printf("\n");
    fflush(stdout);
    xdr_free(e->proc, obj);
    free(obj);
  }}
  return 0;
}}
"#
    );
    std::fs::write(dir.join("harness.c"), harness).unwrap();
    let exe = dir.join("harness");
    let out = Command::new("gcc")
        .current_dir(dir)
        .args([
            "-O1",
            "-w",
            "-I/usr/include/tirpc",
            "harness.c",
            "ndmp3_xdr.c",
            "-o",
        ])
        .arg(&exe)
        .arg("-ltirpc")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the C oracle failed (is libtirpc-dev installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

struct Oracle {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start(exe: &Path) -> Oracle {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Oracle {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// C decodes `bytes` as `ctype` and re-encodes it; returns C's bytes or its complaint.
    fn roundtrip(&mut self, ctype: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
        writeln!(self.stdin, "{ctype} {}", hex(bytes)).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim();
        // anything but hex (an empty line is an empty encoding) is the harness complaining
        if !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(line.to_string());
        }
        Ok((0..line.len() / 2)
            .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap())
            .collect())
    }
}

fn encode<T: Xdr>(v: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out.to_vec()
}

#[test]
fn rust_and_c_agree_on_every_message_body() {
    let rows = message_table();
    assert_eq!(rows.len(), 54, "message table has {} rows", rows.len());
    // every code of the table is known to the Rust side by the same name
    for row in &rows {
        assert_eq!(
            v3::code_name(MessageCode(row.code)),
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
    types.push("ndmp3_header".into());
    types.sort();
    types.dedup();

    let dir = tempfile::tempdir().unwrap();
    let exe = build_oracle(dir.path(), &types);
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
                    .roundtrip("ndmp3_header", &bytes)
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
                            let v = v3::sample_reply(code, &mut g)
                                .unwrap_or_else(|| panic!("no Rust reply body for {}", row.name));
                            let mut out = BytesMut::new();
                            v.encode(&mut out);
                            let c = oracle
                                .borrow_mut()
                                .roundtrip(ctype, &out)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: C says {e}")))?;
                            let mut r = XdrReader::new(Bytes::from(c.clone()));
                            let back = v3::decode_reply(code, &mut r)
                                .map(|d| d == v)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: {e}")))?;
                            (out.to_vec() == c, back)
                        } else {
                            let v = v3::sample_request(code, &mut g)
                                .unwrap_or_else(|| panic!("no Rust request body for {}", row.name));
                            let mut out = BytesMut::new();
                            v.encode(&mut out);
                            let c = oracle
                                .borrow_mut()
                                .roundtrip(ctype, &out)
                                .map_err(|e| TestCaseError::fail(format!("{ctype}: C says {e}")))?;
                            let mut r = XdrReader::new(Bytes::from(c.clone()));
                            let back = v3::decode_request(code, &mut r)
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
    assert!(checked > 24 * 8 * 50, "only {checked} bodies checked");
}

#[test]
fn void_bodies_encode_to_nothing() {
    for row in message_table() {
        let code = MessageCode(row.code);
        let mut g = Gen::new(1);
        if row.request.is_none() && row.post.is_none() {
            if let Some(v) = v3::sample_request(code, &mut g) {
                let mut out = BytesMut::new();
                v.encode(&mut out);
                assert!(out.is_empty(), "{} request should be empty", row.name);
            }
        }
        if row.reply.is_none() && row.post.is_none() {
            assert!(
                v3::sample_reply(code, &mut g).is_none(),
                "{} has no reply in the spec",
                row.name
            );
        }
    }
}

/// The bodies a v3 session sends, built from the v4 values the servers use, pinned byte for
/// byte: MOVER_GET_STATE without a mode, TAPE_GET_STATE with PARTITION invalid and a
/// partition, NOTIFY_MOVER_HALTED with v3's reason and words, LOG_MESSAGE without the
/// associated-message fields.
#[test]
fn v3_bodies_of_v4_values_are_pinned() {
    use ndmpd::wire::header::{Body, Message};
    use ndmpd::wire::messages::*;
    use ndmpd::wire::types::*;
    use ndmpd::wire::{Reply, Request};
    fn body(m: Message) -> Vec<u8> {
        let mut out = BytesMut::new();
        v3::downgrade(m).body.encode(&mut out);
        out.to_vec()
    }
    let be = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|w| w.to_be_bytes()).collect() };

    let mover = Reply::MoverGetState(MoverGetStateReply {
        mode: MoverMode::READ,
        state: MoverState::PAUSED,
        pause_reason: MoverPauseReason::EOM,
        record_size: 10240,
        record_num: 3,
        bytes_moved: 30720,
        window_length: u64::MAX,
        data_connection_addr: Addr::Tcp {
            tcp_addr: vec![TcpAddr {
                ip_addr: 0x7f00_0001,
                port: 4000,
                addr_env: vec![],
            }],
        },
        ..Default::default()
    });
    let want = be(&[
        0,
        3,
        1,
        0,
        10240,
        3,
        0,
        30720,
        0,
        0,
        0,
        0,
        0,
        0,
        !0,
        !0,
        1,
        0x7f00_0001,
        4000,
    ]);
    assert_eq!(body(Message::reply(1, 0, 1, mover)), want);

    let tape = Reply::TapeGetState(TapeGetStateReply {
        unsupported: 0x3,
        file_num: 2,
        block_size: 512,
        ..Default::default()
    });
    let want = be(&[0x43, 0, 0, 2, 0, 512, 0, 0, 0, 0, 0, 0]);
    assert_eq!(body(Message::reply(1, 0, 1, tape)), want);

    let halted = Request::NotifyMoverHalted(NotifyMoverHaltedPost {
        reason: MoverHaltReason::MEDIA_ERROR,
    });
    let mut want = be(&[3, 16]);
    want.extend_from_slice(b"tape media error");
    assert_eq!(body(Message::request(1, 0, halted)), want);

    let log = Request::LogMessage(LogMessagePost {
        log_type: LogType::WARNING,
        message_id: 9,
        entry: "ab".into(),
        associated_message_valid: HasAssociatedMessage::HAS_ASSOCIATED_MESSAGE,
        associated_message_sequence: 4,
    });
    let mut want = be(&[3, 9, 2]);
    want.extend_from_slice(b"ab\0\0");
    assert_eq!(body(Message::request(1, 0, log)), want);

    // and the header of a v3 refusal never carries a v4-only code
    let m = Message::reply(
        1,
        0,
        1,
        Reply::with_error(MessageCode::MOVER_LISTEN, NdmpError::PRECONDITION_ERR).unwrap(),
    );
    let m = v3::downgrade(m);
    assert!(
        matches!(m.body, Body::Reply(ref r) if r.error() == Some(NdmpError::ILLEGAL_STATE_ERR))
    );
}
