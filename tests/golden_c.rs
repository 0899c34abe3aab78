//! Golden bytes: the Rust codec against C encoders that rpcgen builds from `xdr/ndmp4.x`.
//! For every message body, random values encoded by Rust must decode in C and re-encode to the
//! very same bytes, and Rust must decode C's output back to the original value.

use bytes::{Bytes, BytesMut};
use ndmpd::wire::header::Header;
use ndmpd::wire::sample::{Gen, Sample};
use ndmpd::wire::xdr::{hex, Xdr, XdrReader};
use ndmpd::wire::{MessageCode, Reply, Request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// One row of the message table at the top of xdr/ndmp4.x.
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
    let text = std::fs::read_to_string(repo().join("xdr/ndmp4.x")).unwrap();
    let start = text
        .find("/* BEGIN MESSAGE TABLE")
        .expect("message table in ndmp4.x");
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
    for (flag, out) in [("-h", "ndmp4.h"), ("-c", "ndmp4_xdr.c")] {
        let st = Command::new("rpcgen")
            .current_dir(&xdr)
            .args([flag, "ndmp4.x", "-o"])
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
#include "ndmp4.h"
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
            "ndmp4_xdr.c",
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
    for row in message_table() {
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
