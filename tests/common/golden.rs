//! The C oracle of the golden-byte tests (golden_c.rs for v4, golden_v3.rs for v3): rpcgen's
//! encoders for `xdr/<stem>.x` behind a filter that decodes and re-encodes hex lines.

use ndmpd::wire::xdr::hex;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// One row of the message table at the top of xdr/ndmpN.x.
pub struct Row {
    /// The message code.
    pub code: u32,
    /// The message name.
    pub name: String,
    /// The request body type, if any.
    pub request: Option<String>,
    /// The reply body type, if any.
    pub reply: Option<String>,
    /// The post body type, if any.
    pub post: Option<String>,
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The message table of `xdr/<stem>.x` (`ndmp3`, `ndmp4`).
pub fn message_table(stem: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(repo().join(format!("xdr/{stem}.x"))).unwrap();
    let start = text
        .find("/* BEGIN MESSAGE TABLE")
        .unwrap_or_else(|| panic!("message table in {stem}.x"));
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
pub fn build_oracle(dir: &Path, stem: &str, types: &[String]) -> PathBuf {
    require("rpcgen");
    require("gcc");
    let xdr = repo().join("xdr");
    // rpcgen puts the input path into the #include line, so run it next to the .x file.
    for (flag, out) in [("-h", format!("{stem}.h")), ("-c", format!("{stem}_xdr.c"))] {
        let st = Command::new("rpcgen")
            .current_dir(&xdr)
            .args([flag, &format!("{stem}.x"), "-o"])
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
#include "{stem}.h"
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
            &format!("{stem}_xdr.c"),
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

/// The C oracle process.
pub struct Oracle {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    /// Starts the oracle built by [`build_oracle`].
    pub fn start(exe: &Path) -> Oracle {
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
    pub fn roundtrip(&mut self, ctype: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
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

/// A random body encoded by Rust, and the check that bytes C gives back decode to the same
/// value (`Ok(true)`), to another (`Ok(false)`), or not at all (the error).
pub type Body = (
    Vec<u8>,
    Box<dyn FnOnce(bytes::Bytes) -> Result<bool, String>>,
);

/// The property both versions' golden tests check: over 24 × 8 random seeds, every header and
/// every non-void body of `rows` that Rust encodes, C (rpcgen's code for `xdr/<stem>.x`)
/// decodes and re-encodes to the same bytes, and Rust decodes those back to the same value.
/// `body(code, reply, gen)` makes a request/post (`reply` false) or reply body. Returns how
/// many bodies were checked.
pub fn rust_and_c_agree(
    stem: &str,
    rows: &[Row],
    body: &dyn Fn(ndmpd::wire::MessageCode, bool, &mut ndmpd::wire::sample::Gen) -> Option<Body>,
) -> usize {
    use ndmpd::wire::header::Header;
    use ndmpd::wire::sample::{Gen, Sample};
    use ndmpd::wire::xdr::Xdr;
    use ndmpd::wire::MessageCode;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let header_type = format!("{stem}_header");
    let mut types: Vec<String> = rows
        .iter()
        .flat_map(|r| [&r.request, &r.reply, &r.post])
        .flatten()
        .cloned()
        .collect();
    types.push(header_type.clone());
    types.sort();
    types.dedup();

    let dir = tempfile::tempdir().unwrap();
    let exe = build_oracle(dir.path(), stem, &types);
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
                let mut bytes = bytes::BytesMut::new();
                Header::sample(&mut g).encode(&mut bytes);
                let c = oracle.borrow_mut().roundtrip(&header_type, &bytes).unwrap();
                prop_assert_eq!(&c[..], &bytes[..], "header seed {}", seed);

                for row in rows {
                    let code = MessageCode(row.code);
                    for (ctype, is_reply) in [
                        (&row.request, false),
                        (&row.post, false),
                        (&row.reply, true),
                    ] {
                        let Some(ctype) = ctype else { continue };
                        let what = if is_reply { "reply" } else { "request" };
                        let (out, check) = body(code, is_reply, &mut g)
                            .unwrap_or_else(|| panic!("no Rust {what} body for {}", row.name));
                        let c = oracle
                            .borrow_mut()
                            .roundtrip(ctype, &out)
                            .map_err(|e| TestCaseError::fail(format!("{ctype}: C says {e}")))?;
                        let same_bytes = out == c;
                        let back = check(bytes::Bytes::from(c))
                            .map_err(|e| TestCaseError::fail(format!("{ctype}: {e}")))?;
                        prop_assert!(
                            same_bytes,
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
    checked.get()
}
