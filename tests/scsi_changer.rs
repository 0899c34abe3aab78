//! The virtual SMC-3 media changer `changer0` as a DMA sees it over NDMP. Every answer is
//! decoded with this file's own decoders, written from the SMC-3 and SPC-3/4 byte layouts
//! (nothing from `ndmpd::scsi`), so a layout slip in the server cannot hide behind the same
//! slip in a shared decoder.

mod common;

use bytes::Bytes;
use ndmpd::client::Client;
use ndmpd::wire::messages::*;
use ndmpd::wire::types::scsi_flags::{DATA_IN, DATA_OUT};
use ndmpd::wire::types::*;
use ndmpd::wire::{NdmpError as E, Opaque, Reply, Request};
use std::time::Duration;

const PW: &[u8] = b"smc-pw";
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const ILLEGAL_REQUEST: u8 = 0x05;
/// SMC-3 element type codes.
const MT: u8 = 1;
const ST: u8 = 2;
const IE: u8 = 3;
const DT: u8 = 4;

type T = common::TestServer;

async fn start() -> T {
    common::start("ndmp", PW, |_| {}).await
}

async fn client(t: &T) -> Client {
    t.client().await
}

async fn err(c: &mut Client, r: Request) -> E {
    common::ndmp_err(c, r).await
}

/// A request that must succeed at the NDMP level.
async fn ok(c: &mut Client, r: Request) {
    assert_eq!(err(c, r).await, E::NO_ERR);
}

fn scsi_open(dev: &str) -> Request {
    Request::ScsiOpen(ScsiOpenRequest { device: dev.into() })
}

fn tape_open(device: &str, mode: TapeOpenMode) -> Request {
    let device = device.into();
    Request::TapeOpen(TapeOpenRequest { device, mode })
}

fn mtio(tape_op: MtioOp) -> Request {
    Request::TapeMtio(TapeMtioRequest { tape_op, count: 1 })
}

/// A client authenticated and holding `changer0` open.
async fn changer(t: &T) -> Client {
    let mut c = client(t).await;
    ok(&mut c, scsi_open("changer0")).await;
    c
}

/// A second session holding `drive` open for reading.
async fn tape_session(t: &T, drive: &str) -> Client {
    let mut tc = client(t).await;
    ok(&mut tc, tape_open(drive, TapeOpenMode::READ)).await;
    tc
}

// ---- CDB builders (SMC-3 / SPC-3 layouts)

/// READ ELEMENT STATUS (B8h): VolTag 0x10 of byte 1 with the type code, bytes 2-3 start,
/// 4-5 count, byte 6 bit 0 DVCID, bytes 7-9 allocation length.
fn res(voltag: bool, typ: u8, start: u16, n: u16, dvcid: bool, alloc: u32) -> Vec<u8> {
    let b1 = if voltag { 0x10 | typ } else { typ };
    let (s, k, a) = (start.to_be_bytes(), n.to_be_bytes(), alloc.to_be_bytes());
    [&[0xB8, b1][..], &s, &k, &[dvcid as u8], &a[1..], &[0, 0]].concat()
}

/// READ ELEMENT STATUS of every element of `typ` from `start` with a large allocation.
fn res_all(voltag: bool, typ: u8, start: u16, dvcid: bool) -> Vec<u8> {
    res(voltag, typ, start, 0xffff, dvcid, 0xffff)
}

/// MOVE MEDIUM (A5h): bytes 2-3 transport, 4-5 source, 6-7 destination, byte 10 bit 0 INVERT.
fn move_medium(mt: u16, src: u16, dst: u16, invert: bool) -> Vec<u8> {
    let (m, s, d) = (mt.to_be_bytes(), src.to_be_bytes(), dst.to_be_bytes());
    [&[0xA5, 0][..], &m, &s, &d, &[0, 0, invert as u8, 0]].concat()
}

/// INQUIRY (12h): byte 1 bit 0 EVPD, byte 2 page code, bytes 3-4 allocation length (SPC-3).
fn inquiry(evpd: bool, page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, evpd as u8, page, a[0], a[1], 0]
}

/// MODE SENSE(6) (1Ah) with DBD (byte 1 bit 3), current values, allocation length byte 4.
fn mode_sense6(page: u8, alloc: u8) -> Vec<u8> {
    vec![0x1A, 0x08, page, 0, alloc, 0]
}

/// MODE SENSE(10) (5Ah) with DBD, allocation length bytes 7-8.
fn mode_sense10(page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x5A, 0x08, page, 0, 0, 0, 0, a[0], a[1], 0]
}

// ---- running CDBs

/// One SCSI_EXECUTE_CDB (TAPE_EXECUTE_CDB with `tape`), data-in when `datain_len` > 0.
/// Also checks the one NDMP rule every answer obeys: no more data than `datain_len`.
async fn exec(c: &mut Client, tape: bool, cdb: &[u8], datain_len: u32) -> ExecuteCdbReply {
    let body = ExecuteCdbRequest {
        flags: if datain_len > 0 { DATA_IN } else { 0 },
        timeout: 10_000,
        datain_len,
        cdb: Opaque(Bytes::copy_from_slice(cdb)),
        dataout: Opaque(Bytes::new()),
    };
    let req = match tape {
        true => Request::TapeExecuteCdb(body),
        false => Request::ScsiExecuteCdb(body),
    };
    match c.call(req).await.unwrap() {
        Reply::ScsiExecuteCdb(r) | Reply::TapeExecuteCdb(r) => {
            let n = r.datain.0.len();
            assert!(n <= datain_len as usize, "{n} bytes > datain_len");
            r
        }
        other => panic!("{other:?}"),
    }
}

/// Runs a CDB that must end with GOOD status; returns the data-in bytes.
async fn good_on(c: &mut Client, tape: bool, cdb: &[u8], datain_len: u32) -> Vec<u8> {
    let r = exec(c, tape, cdb, datain_len).await;
    assert_eq!(r.error, E::NO_ERR, "cdb {cdb:02x?}");
    let sense = &r.ext_sense.0;
    assert_eq!(r.status, GOOD, "cdb {cdb:02x?} sense {sense:02x?}");
    r.datain.0.to_vec()
}

async fn good(c: &mut Client, cdb: &[u8]) -> Vec<u8> {
    good_on(c, false, cdb, 0xffff).await
}

/// Runs a changer CDB that must end in CHECK CONDITION with autosense; decodes the sense.
async fn check(c: &mut Client, cdb: &[u8]) -> Sense {
    let r = exec(c, false, cdb, 0xffff).await;
    assert_eq!(r.error, E::NO_ERR, "cdb {cdb:02x?}");
    assert_eq!(r.status, CHECK_CONDITION, "cdb {cdb:02x?}");
    assert_eq!(r.ext_sense.0.len(), 18, "fixed sense is 18 bytes");
    sense(&r.ext_sense.0)
}

async fn mv(c: &mut Client, src: u16, dst: u16) {
    good_on(c, false, &move_medium(0, src, dst, false), 0).await;
}

// ---- decoders

/// Fixed-format sense data (SPC-3 4.5.3): (sense key of byte 2, ASC byte 12, ASCQ byte 13,
/// field pointer of bytes 15-17 when SKSV is set: (C/D, bit pointer when BPV, field)).
#[derive(Debug, PartialEq)]
struct Sense(u8, u8, u8, Option<(bool, Option<u8>, u16)>);

fn sense(b: &[u8]) -> Sense {
    assert!(b.len() >= 18, "short sense {b:02x?}");
    assert_eq!(b[0] & 0x7f, 0x70, "response code, sense {b:02x?}");
    assert_eq!(b[7], 10, "additional sense length, sense {b:02x?}");
    let sks = (b[15] & 0x80 != 0).then(|| {
        let bit = (b[15] & 0x08 != 0).then_some(b[15] & 7);
        (b[15] & 0x40 != 0, bit, u16::from_be_bytes([b[16], b[17]]))
    });
    Sense(b[2] & 0x0f, b[12], b[13], sks)
}

/// Expected sense; `field` is a CDB field pointer (C/D=1, no bit pointer).
fn want(key: u8, asc: u8, ascq: u8, field: Option<u16>) -> Sense {
    Sense(key, asc, ascq, field.map(|f| (true, None, f)))
}

/// One element descriptor (SMC-3 6.11.x).
#[derive(Debug, Clone, PartialEq)]
struct Elem {
    typ: u8,
    addr: u16,
    /// Byte 2: FULL 0x01, IMPEXP 0x02, EXCEPT 0x04, ACCESS 0x08, EXENAB 0x10, INENAB 0x20.
    flags: u8,
    svalid: bool,
    medium: u8,
    source: u16,
    voltag: Option<Vec<u8>>,
    /// Device identifier: code set, identifier type, identifier.
    id: (u8, u8, Vec<u8>),
}

/// A whole READ ELEMENT STATUS answer: header fields, (type, PVolTag, descriptor length) of
/// each element status page, and the descriptors in order.
#[derive(Debug)]
struct Status {
    first: u16,
    count: u16,
    pages: Vec<(u8, bool, usize)>,
    elems: Vec<Elem>,
}

impl Status {
    fn at(&self, addr: u16) -> &Elem {
        let e = self.elems.iter().find(|e| e.addr == addr);
        e.unwrap_or_else(|| panic!("element {addr} not reported"))
    }
    fn addrs(&self) -> Vec<u16> {
        self.elems.iter().map(|e| e.addr).collect()
    }
}

/// Decodes an untruncated READ ELEMENT STATUS answer, checking every length it carries.
fn decode_status(b: &[u8]) -> Status {
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be24 = |i: usize| (b[i] as usize) << 16 | (b[i + 1] as usize) << 8 | b[i + 2] as usize;
    assert!(b.len() >= 8, "short answer {b:02x?}");
    assert_eq!(be24(5), b.len() - 8, "header byte count of report");
    let (first, count) = (be16(0), be16(2));
    let (mut pages, mut elems) = (vec![], vec![]);
    let mut p = 8;
    while p < b.len() {
        let (typ, pvoltag) = (b[p], b[p + 1] & 0x80 != 0);
        let (dlen, bytes) = (be16(p + 2) as usize, be24(p + 5));
        assert!(dlen > 0 && bytes % dlen == 0, "page at {p}");
        let run = pages.last().is_none_or(|l: &(u8, bool, usize)| l.0 != typ);
        assert!(run, "two pages in a row for type {typ}");
        pages.push((typ, pvoltag, dlen));
        let end = p + 8 + bytes;
        assert!(end <= b.len(), "page at {p} runs past the answer");
        for d in (p + 8..end).step_by(dlen) {
            let q = if pvoltag { d + 48 } else { d + 12 };
            let idlen = b[q + 3] as usize;
            let id = b[q + 4..q + 4 + idlen].to_vec();
            assert_eq!(dlen, q + 4 + idlen - d, "descriptor length at {d}");
            elems.push(Elem {
                typ,
                addr: be16(d),
                flags: b[d + 2],
                svalid: b[d + 9] & 0x80 != 0,
                medium: b[d + 9] & 7,
                source: be16(d + 10),
                voltag: pvoltag.then(|| b[d + 12..d + 48].to_vec()),
                id: (b[q] & 0x0f, b[q + 1] & 0x0f, id),
            });
        }
        p = end;
    }
    let st = Status {
        first,
        count,
        pages,
        elems,
    };
    assert_eq!(st.count as usize, st.elems.len(), "number of elements");
    if let Some(e) = st.elems.first() {
        assert_eq!(st.first, e.addr, "first element address reported");
    }
    let a = st.addrs();
    assert!(a.windows(2).all(|w| w[0] < w[1]), "order {a:?}");
    st
}

/// READ ELEMENT STATUS of `typ` from `start`, all elements, answer decoded.
async fn status(c: &mut Client, voltag: bool, typ: u8, start: u16, dvcid: bool) -> Status {
    decode_status(&good(c, &res_all(voltag, typ, start, dvcid)).await)
}

/// Checks an element holds `label` (None: empty) — FULL, medium type and the 32-byte volume
/// identifier (label space padded, zeros when empty) — and with `src`, SVALID and the source.
fn holds(e: &Elem, label: Option<&str>, src: Option<u16>) {
    assert_eq!(e.flags & 1 != 0, label.is_some(), "FULL of {e:?}");
    assert_eq!(e.medium, label.is_some() as u8, "medium type of {e:?}");
    if let Some(v) = &e.voltag {
        let tag = label.map_or(vec![0; 32], |l| format!("{l:<32}").into_bytes());
        assert_eq!(v[..32], tag, "volume tag of {}", e.addr);
    }
    if let Some(s) = src {
        assert!(e.svalid, "SVALID of {e:?}");
        assert_eq!(e.source, s, "source of {}", e.addr);
    }
}

/// A fresh library: VT0001/VT0002 loaded from 1001/1002, VT0003/VT0004 in their slots.
fn assert_fresh(st: &Status) {
    holds(st.at(1), Some("VT0001"), Some(1001));
    holds(st.at(2), Some("VT0002"), Some(1002));
    for a in 1001..=1008 {
        let label = [(1003, "VT0003"), (1004, "VT0004")]
            .iter()
            .find(|x| x.0 == a);
        holds(st.at(a), label.map(|x| x.1), None);
    }
}

/// Standard INQUIRY data (SPC-3 6.4.2): (peripheral byte, RMB, vendor, product).
fn inquiry_ids(b: &[u8]) -> (u8, bool, String, String) {
    assert!(b.len() >= 36, "short INQUIRY {b:02x?}");
    assert_eq!(b[4] as usize, b.len() - 5, "additional length");
    assert_eq!(b[3] & 0x0f, 2, "response data format");
    let s = |r: std::ops::Range<usize>| String::from_utf8(b[r].to_vec()).unwrap();
    (b[0], b[1] & 0x80 != 0, s(8..16), s(16..32))
}

/// A VPD page's payload (SPC-3 7.6): byte 1 page code, bytes 2-3 page length.
fn vpd(b: &[u8], page: u8) -> &[u8] {
    assert!(b.len() >= 4 && b[1] == page, "VPD {page:02x}: {b:02x?}");
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    assert_eq!(len, b.len() - 4, "page length");
    &b[4..]
}

/// Mode pages after a mode parameter header of `hdr` bytes: (page code, whole page).
fn mode_pages(b: &[u8], hdr: usize) -> Vec<(u8, Vec<u8>)> {
    let (mut out, mut p) = (vec![], hdr);
    while p < b.len() {
        let end = p + 2 + b[p + 1] as usize;
        assert!(end <= b.len(), "mode page at {p} runs past {b:02x?}");
        out.push((b[p] & 0x3f, b[p..end].to_vec()));
        p = end;
    }
    out
}

// ---- NDMP rules

#[tokio::test]
async fn ndmp_open_busy_and_argument_rules() {
    let t = start().await;
    let mut a = client(&t).await;
    assert_eq!(err(&mut a, scsi_open("nochanger")).await, E::NO_DEVICE_ERR);
    let r = exec(&mut a, false, &[0; 6], 0).await;
    assert_eq!(r.error, E::DEV_NOT_OPEN_ERR);
    ok(&mut a, scsi_open("changer0")).await;
    ok(&mut a, Request::ScsiGetState(Void)).await;
    let again = err(&mut a, scsi_open("changer0")).await;
    assert_eq!(again, E::DEVICE_OPENED_ERR);
    let r = tape_open("vtape0", TapeOpenMode::READ);
    assert_eq!(err(&mut a, r).await, E::DEVICE_OPENED_ERR);
    let mut b = client(&t).await;
    assert_eq!(err(&mut b, scsi_open("changer0")).await, E::DEVICE_BUSY_ERR);

    let both = Request::ScsiExecuteCdb(ExecuteCdbRequest {
        flags: DATA_IN | DATA_OUT,
        timeout: 1000,
        datain_len: 36,
        cdb: Opaque(Bytes::from(inquiry(false, 0, 36))),
        dataout: Opaque(Bytes::from_static(&[0; 4])),
    });
    assert_eq!(err(&mut a, both).await, E::ILLEGAL_ARGS_ERR);
    // data-in never exceeds datain_len, whatever the allocation length says (exec checks)
    exec(&mut a, false, &res_all(true, 0, 0, true), 20).await;
    exec(&mut a, false, &inquiry(false, 0, 255), 10).await;

    ok(&mut a, Request::ScsiClose(Void)).await;
    ok(&mut b, scsi_open("changer0")).await;
}

// ---- SPC: INQUIRY, VPD, TEST UNIT READY, REQUEST SENSE, reset

#[tokio::test]
async fn inquiry_standard_data() {
    let t = start().await;
    let mut c = changer(&t).await;
    let full = good(&mut c, &inquiry(false, 0, 255)).await;
    assert_eq!(full.len(), 36);
    let (pdt, _, vendor, product) = inquiry_ids(&full);
    assert_eq!(pdt, 0x08, "qualifier 0, medium changer");
    assert_eq!(vendor + &product, "NDMPD   VIRTUAL CHANGER ");
    for alloc in [5u16, 20] {
        let part = good(&mut c, &inquiry(false, 0, alloc)).await;
        assert_eq!(part, full[..alloc as usize], "truncated to {alloc}");
    }
    // EVPD=0 with a page code is an invalid field in the CDB
    let s = check(&mut c, &inquiry(false, 0x80, 255)).await;
    assert_eq!((s.0, s.1, s.2), (ILLEGAL_REQUEST, 0x24, 0x00));
}

#[tokio::test]
async fn inquiry_vpd_pages() {
    let t = start().await;
    let mut c = changer(&t).await;
    let p0 = good(&mut c, &inquiry(true, 0x00, 255)).await;
    assert_eq!(p0[0], 0x08);
    assert_eq!(vpd(&p0, 0x00), [0x00, 0x80, 0x83]);

    let p80 = good(&mut c, &inquiry(true, 0x80, 255)).await;
    let serial = vpd(&p80, 0x80);
    assert_eq!(serial.len(), 10, "serial {serial:02x?}");
    assert!(serial.iter().all(|b| b.is_ascii_graphic()), "{serial:02x?}");

    let p83 = good(&mut c, &inquiry(true, 0x83, 255)).await;
    // (code set, association, designator type, designator)
    let mut ids = vec![];
    let mut d = vpd(&p83, 0x83);
    while !d.is_empty() {
        let n = 4 + d[3] as usize;
        assert!(n <= d.len(), "designator runs past the page");
        ids.push((d[0] & 0x0f, (d[1] >> 4) & 3, d[1] & 0x0f, d[4..n].to_vec()));
        d = &d[n..];
    }
    assert!(ids.len() >= 2, "{ids:02x?}");
    let (code_set, assoc, typ, t10) = &ids[0];
    assert_eq!((*code_set, *assoc, *typ), (2, 0, 1), "T10 vendor ID");
    assert_eq!(&t10[..8], b"NDMPD   ");
    let (code_set, _, typ, naa) = &ids[1];
    assert_eq!((*code_set, *typ, naa.len()), (1, 3, 8), "NAA {naa:02x?}");
    assert_eq!(naa[0] >> 4, 3, "NAA locally assigned");
}

#[tokio::test]
async fn unit_ready_reset_request_sense_and_simple_commands() {
    let t = start().await;
    let mut c = changer(&t).await;
    let tur = [0u8; 6];
    good(&mut c, &tur).await;
    let rs = good(&mut c, &[0x03, 0, 0, 0, 18, 0]).await;
    assert_eq!(rs.len(), 18);
    assert_eq!(sense(&rs), want(0, 0, 0, None), "NO SENSE");

    ok(&mut c, Request::ScsiResetDevice(Void)).await;
    assert_eq!(check(&mut c, &tur).await, want(0x06, 0x29, 0x00, None));
    good(&mut c, &tur).await;

    let s = check(&mut c, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]).await;
    assert_eq!((s.0, s.1, s.2), (ILLEGAL_REQUEST, 0x20, 0x00)); // invalid opcode
    good(&mut c, &[0x1E, 0, 0, 0, 1, 0]).await; // prevent medium removal
    good(&mut c, &[0x1E, 0, 0, 0, 0, 0]).await; // allow
    good(&mut c, &[0x07, 0, 0, 0, 0, 0]).await; // INITIALIZE ELEMENT STATUS
    assert_fresh(&status(&mut c, true, 0, 0, false).await);
}

// ---- SMC: MODE SENSE

#[tokio::test]
async fn mode_sense_address_assignment_and_errors() {
    let t = start().await;
    let mut c = changer(&t).await;
    // element address assignment: MT 0 x1, ST 1001 x8, IE 101 x1, DT 1 x2
    let eaa: [u8; 20] = [
        0x1d, 0x12, 0, 0, 0, 1, 3, 0xe9, 0, 8, 0, 101, 0, 1, 0, 1, 0, 2, 0, 0,
    ];
    let m6 = good(&mut c, &mode_sense6(0x1d, 255)).await;
    assert_eq!(m6.len(), 24, "{m6:02x?}");
    assert_eq!((m6[0] as usize, m6[3]), (23, 0), "header {m6:02x?}");
    assert_eq!(mode_pages(&m6, 4), [(0x1d, m6[4..].to_vec())]);
    assert_eq!(m6[4] & 0x3f, 0x1d);
    assert_eq!(m6[5..], eaa[1..]);
    let part = good(&mut c, &mode_sense6(0x1d, 10)).await;
    assert_eq!(part, m6[..10], "truncated to the allocation length");

    let m10 = good(&mut c, &mode_sense10(0x1d, 255)).await;
    assert_eq!(u16::from_be_bytes([m10[0], m10[1]]) as usize, m10.len() - 2);
    assert_eq!(m10[6..8], [0, 0], "block descriptor length");
    assert_eq!(mode_pages(&m10, 8), [(0x1d, m6[4..].to_vec())]);

    let tg = mode_pages(&good(&mut c, &mode_sense6(0x1e, 255)).await, 4);
    assert_eq!((tg.len(), tg[0].0, tg[0].1.len()), (1, 0x1e, 4)); // one MT

    let s = check(&mut c, &mode_sense6(0x15, 255)).await;
    assert_eq!((s.0, s.1, s.2), (ILLEGAL_REQUEST, 0x24, 0x00));
    let (cd, _, field) = s.3.expect("SKSV");
    assert_eq!((cd, field), (true, 2), "points at the page code in the CDB");
}

/// Device capabilities (1Fh, SMC-3: page length 12h, 20 bytes) alone and inside "all pages".
#[tokio::test]
async fn mode_sense_device_capabilities_and_all_pages() {
    let t = start().await;
    let mut c = changer(&t).await;
    let m6 = good(&mut c, &mode_sense6(0x1f, 255)).await;
    assert_eq!(m6[0] as usize, m6.len() - 1, "mode data length");
    let dc = mode_pages(&m6, 4);
    assert_eq!((dc.len(), dc[0].0, dc[0].1.len()), (1, 0x1f, 20));
    let caps = &dc[0].1;
    assert!(caps[2] & 0x02 != 0, "StorST {caps:02x?}");
    assert!(caps[5] & 0x08 != 0, "ST->DT moves {caps:02x?}");
    assert!(caps[7] & 0x02 != 0, "DT->ST moves {caps:02x?}");

    let all = good(&mut c, &mode_sense10(0x3f, 0xffff)).await;
    assert_eq!(u16::from_be_bytes([all[0], all[1]]) as usize, all.len() - 2);
    let codes: Vec<u8> = mode_pages(&all, 8).iter().map(|p| p.0).collect();
    assert_eq!(codes, [0x1d, 0x1e, 0x1f], "all pages, ascending");
}

// ---- SMC: READ ELEMENT STATUS

#[tokio::test]
async fn read_element_status_fresh_library() {
    let t = start().await;
    let mut c = changer(&t).await;
    let raw = good(&mut c, &res_all(true, 0, 0, false)).await;
    let st = decode_status(&raw);
    let mut addrs: Vec<u16> = vec![0, 1, 2, 101];
    addrs.extend(1001..=1008);
    assert_eq!(st.addrs(), addrs);
    assert_eq!((st.first, st.count), (0, 12));
    let pages = [MT, DT, IE, ST].map(|t| (t, true, 52));
    assert_eq!(st.pages, pages, "one page per run, voltag descriptors");
    assert_eq!(raw.len(), 8 + 4 * 8 + 12 * 52);
    for e in &st.elems {
        assert_eq!(e.flags & 0x04, 0, "EXCEPT of {e:?}");
        if e.typ != IE {
            assert_eq!(e.flags & 0x02, 0, "IMPEXP only for I/E: {e:?}");
        }
        if e.typ != MT {
            assert!(e.flags & 0x08 != 0, "ACCESS of {e:?}");
        }
        assert_eq!((e.id.1, e.id.2.len()), (0, 0), "no DVCID, no identifier");
    }
    holds(st.at(0), None, None);
    holds(st.at(101), None, None);
    let mail = st.at(101).flags;
    assert_eq!(mail & 0x30, 0x30, "INENAB+EXENAB of the mail slot");
    assert_fresh(&st);

    // truncation keeps the bytes the full answer had
    for alloc in [8u32, 30, 100] {
        let part = good(&mut c, &res(true, 0, 0, 0xffff, false, alloc)).await;
        assert_eq!(part, raw[..alloc as usize], "truncated to {alloc}");
    }
}

#[tokio::test]
async fn read_element_status_types_ranges_and_errors() {
    let t = start().await;
    let mut c = changer(&t).await;
    let st = status(&mut c, false, ST, 0, false).await;
    assert_eq!(st.pages, [(ST, false, 16)]);
    assert_eq!(st.addrs(), (1001..=1008).collect::<Vec<_>>());
    holds(st.at(1003), Some("VT0003"), None);
    holds(st.at(1001), None, None);

    let st = decode_status(&good(&mut c, &res(true, ST, 1003, 3, false, 0xffff)).await);
    assert_eq!((st.first, st.addrs()), (1003, vec![1003, 1004, 1005]));
    holds(st.at(1004), Some("VT0004"), None);

    let st = status(&mut c, true, MT, 0, false).await;
    assert_eq!(
        (st.pages.clone(), st.addrs()),
        (vec![(MT, true, 52)], vec![0])
    );
    let st = status(&mut c, true, IE, 0, false).await;
    assert_eq!(
        (st.pages.clone(), st.addrs()),
        (vec![(IE, true, 52)], vec![101])
    );
    let st = status(&mut c, false, DT, 2, false).await;
    assert_eq!(
        (st.pages.clone(), st.addrs()),
        (vec![(DT, false, 16)], vec![2])
    );
    assert!(st.at(2).flags & 1 != 0);

    // all types from an address inside a gap: the next element on is the I/E slot
    let st = status(&mut c, false, 0, 3, false).await;
    assert_eq!(st.first, 101);
    assert_eq!(st.pages.iter().map(|p| p.0).collect::<Vec<_>>(), [IE, ST]);

    for (typ, start) in [(ST, 1009), (DT, 3), (0, 2000), (IE, 102)] {
        let s = check(&mut c, &res(true, typ, start, 10, false, 0xffff)).await;
        assert_eq!((typ, start, s.0, s.1, s.2), (typ, start, 5, 0x21, 1));
    }
}

// ---- drive identifiers: changer DVCID vs the drives' own VPD 80h

#[tokio::test]
async fn drive_identifiers_match_drive_serials() {
    let t = start().await;
    let mut c = changer(&t).await;
    let st = status(&mut c, true, DT, 0, true).await;
    assert_eq!(st.pages, [(DT, true, 86)]);
    let mut serials = vec![];
    for (addr, drive) in [(1u16, "vtape0"), (2, "vtape1")] {
        let (code_set, id_type, ident) = &st.at(addr).id;
        assert_eq!((*code_set, *id_type, ident.len()), (2, 1, 34), "{ident:?}");
        assert_eq!(ident[..24], *b"NDMPD   VIRTUAL TAPE    ");
        let mut tc = tape_session(&t, drive).await;
        let std = good_on(&mut tc, true, &inquiry(false, 0, 255), 255).await;
        let (pdt, rmb, vendor, product) = inquiry_ids(&std);
        assert_eq!((pdt, rmb), (0x01, true), "sequential access, removable");
        assert_eq!(format!("{vendor}{product}").as_bytes(), &ident[..24]);
        let p80 = good_on(&mut tc, true, &inquiry(true, 0x80, 255), 255).await;
        let serial = String::from_utf8_lossy(vpd(&p80, 0x80)).into_owned();
        let paired = String::from_utf8_lossy(&ident[24..]);
        assert_eq!(paired, serial, "element {addr} vs {drive} VPD 80h");
        serials.push(serial);
    }
    assert_ne!(serials[0], serials[1], "one serial per drive");
    // storage elements carry no identifier even with DVCID
    let st = status(&mut c, true, ST, 0, true).await;
    assert_eq!(st.pages, [(ST, true, 52)]);
}

// ---- SMC: MOVE MEDIUM

#[tokio::test]
async fn move_medium_errors_change_nothing() {
    let t = start().await;
    let mut c = changer(&t).await;
    // (transport, source, destination, expected sense)
    let cases = [
        (0, 1001, 1005, want(5, 0x3b, 0x0e, None)), // source empty
        (0, 1003, 1004, want(5, 0x3b, 0x0d, None)), // destination full
        (0, 1003, 1, want(5, 0x3b, 0x0d, None)),    // drive full
        (0, 999, 1005, want(5, 0x21, 0x01, Some(4))),
        (0, 3, 1005, want(5, 0x21, 0x01, Some(4))),
        (0, 1003, 5000, want(5, 0x21, 0x01, Some(6))),
        (0, 1003, 1009, want(5, 0x21, 0x01, Some(6))),
        (7, 1003, 1005, want(5, 0x21, 0x01, Some(2))),
    ];
    for (mt, src, dst, expected) in cases {
        let mut got = check(&mut c, &move_medium(mt, src, dst, false)).await;
        if expected.3.is_none() {
            got.3 = None; // no pointer asked where the fault is the medium, not a field
        }
        assert_eq!(got, expected, "MOVE MEDIUM {mt} {src} -> {dst}");
    }
    let got = check(&mut c, &move_medium(0, 1003, 1005, true)).await;
    let invert = Sense(5, 0x24, 0, Some((true, Some(0), 10)));
    assert_eq!(got, invert, "INVERT: byte 10 bit 0");
    let st = status(&mut c, true, 0, 0, false).await;
    assert_fresh(&st);
    holds(st.at(101), None, None);
}

#[tokio::test]
async fn move_refused_while_a_session_holds_the_cartridge() {
    let t = start().await;
    let mut c = changer(&t).await;
    let not_ejected = want(5, 0x3b, 0x90, None);

    // vtape0: released by TAPE_MTIO OFF
    let mut tc = tape_session(&t, "vtape0").await;
    let mut s = check(&mut c, &move_medium(0, 1, 1001, false)).await;
    s.3 = None;
    assert_eq!(s, not_ejected, "drive 1 is open in another session");
    ok(&mut tc, mtio(MtioOp::OFF)).await;
    mv(&mut c, 1, 1001).await;

    // vtape1: released by TAPE_CLOSE
    let mut tc2 = tape_session(&t, "vtape1").await;
    let mut s = check(&mut c, &move_medium(0, 2, 1005, false)).await;
    s.3 = None;
    assert_eq!(s, not_ejected, "drive 2 is open in another session");
    ok(&mut tc2, Request::TapeClose(Void)).await;
    mv(&mut c, 2, 1005).await;

    let st = status(&mut c, true, 0, 0, false).await;
    holds(st.at(1), None, None);
    holds(st.at(2), None, None);
    holds(st.at(1001), Some("VT0001"), Some(1));
    holds(st.at(1005), Some("VT0002"), Some(2));
    holds(st.at(1002), None, None);
}

/// Writes a marker record at the start of the cartridge in `drive` and closes it.
async fn write_marker(t: &T, drive: &str, marker: &[u8]) {
    let mut tc = client(t).await;
    ok(&mut tc, tape_open(drive, TapeOpenMode::RDWR)).await;
    let data_out = Opaque(Bytes::copy_from_slice(marker));
    ok(&mut tc, Request::TapeWrite(TapeWriteRequest { data_out })).await;
    ok(&mut tc, Request::TapeClose(Void)).await;
}

/// Opens `drive`, rewinds, reads the first record; `None` when the read fails.
async fn first_record(t: &T, drive: &str) -> Option<Vec<u8>> {
    let mut tc = tape_session(t, drive).await;
    ok(&mut tc, mtio(MtioOp::REW)).await;
    let read = Request::TapeRead(TapeReadRequest { count: 4096 });
    let out = match tc.call(read).await.unwrap() {
        Reply::TapeRead(r) if r.error == E::NO_ERR => Some(r.data_in.0.to_vec()),
        Reply::TapeRead(_) => None,
        other => panic!("{other:?}"),
    };
    ok(&mut tc, Request::TapeClose(Void)).await;
    out
}

#[tokio::test]
async fn moves_between_drive_and_slots_reload_the_drive() {
    let t = start().await;
    let marker = [0x5au8; 1024];
    write_marker(&t, "vtape0", &marker).await;
    let mut c = changer(&t).await;

    // unload VT0001 into a slot other than its home: the drive is empty for TAPE_OPEN
    mv(&mut c, 1, 1006).await;
    let st = status(&mut c, true, 0, 0, false).await;
    holds(st.at(1), None, None);
    holds(st.at(1006), Some("VT0001"), Some(1));
    let mut tc = client(&t).await;
    let r = tape_open("vtape0", TapeOpenMode::READ);
    assert_eq!(err(&mut tc, r).await, E::NO_TAPE_LOADED_ERR);
    drop(tc);

    // load VT0003 (blank): the drive now opens it, not VT0001
    mv(&mut c, 1003, 1).await;
    let st = status(&mut c, true, DT, 0, false).await;
    holds(st.at(1), Some("VT0003"), Some(1003));
    let first = first_record(&t, "vtape0").await;
    assert_ne!(first.as_deref(), Some(&marker[..]), "VT0001 read in VT0003");

    // and back: VT0003 home, VT0001 into the drive again, its marker readable
    mv(&mut c, 1, 1003).await;
    mv(&mut c, 1006, 1).await;
    let st = status(&mut c, true, 0, 0, false).await;
    holds(st.at(1), Some("VT0001"), Some(1006));
    holds(st.at(1003), Some("VT0003"), Some(1));
    holds(st.at(1006), None, None);
    let first = first_record(&t, "vtape0").await;
    assert_eq!(first.as_deref(), Some(&marker[..]), "VT0001 back in place");

    // slot to slot through the mail slot
    mv(&mut c, 1004, 101).await;
    mv(&mut c, 101, 1008).await;
    let st = status(&mut c, true, 0, 0, false).await;
    holds(st.at(101), None, None);
    holds(st.at(1004), None, None);
    holds(st.at(1008), Some("VT0004"), Some(101));
}

#[tokio::test]
async fn moves_survive_a_restart() {
    let t1 = start().await;
    {
        let mut c = changer(&t1).await;
        mv(&mut c, 1003, 1006).await;
        mv(&mut c, 2, 1007).await;
        ok(&mut c, Request::ScsiClose(Void)).await;
    }
    // keep the first server's directory (its data dir) alive past its shutdown
    let (stop, done, cfg, _keep) = (t1.stop, t1.done, t1.cfg, t1.dir);
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(30), done).await;
    ended.expect("server stops").unwrap().unwrap();

    let data_dir = cfg.data_dir.clone();
    let t2 = common::start("ndmp", PW, move |c| c.data_dir = data_dir).await;
    let mut c = changer(&t2).await;
    let st = status(&mut c, true, 0, 0, false).await;
    holds(st.at(1003), None, None);
    holds(st.at(1006), Some("VT0003"), Some(1003));
    holds(st.at(2), None, None);
    holds(st.at(1007), Some("VT0002"), Some(2));
    holds(st.at(1), Some("VT0001"), Some(1001));
    holds(st.at(1004), Some("VT0004"), None);
}

#[tokio::test]
async fn prevent_locks_the_mail_slot_until_the_changer_is_closed() {
    let t = start().await;
    let lib = ndmpd::tape::library::Library::new(&t.cfg);
    let mut c = changer(&t).await;
    // the registry (and so the REST view) shows which changer the session holds
    let held = t
        .registry
        .list()
        .into_iter()
        .find(|s| s.scsi.device.is_some());
    let held = held.expect("a session with a SCSI device");
    assert_eq!(held.scsi.device.as_deref(), Some("changer0"));
    assert_eq!(held.scsi.lun_id, Some(0));

    good_on(&mut c, false, &[0x1e, 0, 0, 0, 1, 0], 0).await;
    mv(&mut c, 1003, 101).await;
    assert!(lib.export(None).is_err(), "PREVENT keeps operators out");
    assert!(lib.contents().prevent_removal);
    good_on(&mut c, false, &[0x1e, 0, 0, 0, 0, 0], 0).await;
    assert_eq!(lib.export(None).unwrap(), ["VT0003"]);
    // the operator's change is reported once, as UNIT ATTENTION 28h/01h
    assert_eq!(
        check(&mut c, &[0, 0, 0, 0, 0, 0]).await,
        want(6, 0x28, 0x01, None)
    );
    good(&mut c, &[0, 0, 0, 0, 0, 0]).await;
    assert_eq!(check(&mut c, &[0x1e, 0, 0, 0, 3, 0]).await.1, 0x24);

    // prevention ends with the changer's session, however it ends
    good_on(&mut c, false, &[0x1e, 0, 0, 0, 1, 0], 0).await;
    lib.import("VT0003").unwrap_err();
    drop(c);
    for _ in 0..100 {
        if !lib.contents().prevent_removal {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        lib.import("VT0003").unwrap(),
        ndmpd::tape::library::Place::Port(1)
    );
}

#[tokio::test]
async fn a_device_changer_must_be_a_scsi_generic_node() {
    let t = common::start("ndmp", PW, |cfg| {
        cfg.changers.push(ndmpd::config::ChangerConfig {
            name: "robot0".into(),
            kind: ndmpd::config::DeviceKind::Device,
            path: Some("/dev/null".into()),
        });
    })
    .await;
    let mut c = client(&t).await;
    assert_eq!(err(&mut c, scsi_open("robot0")).await, E::NO_DEVICE_ERR);
    // a path is never a device name
    assert_eq!(err(&mut c, scsi_open("/dev/null")).await, E::NO_DEVICE_ERR);
    assert_eq!(
        err(&mut c, scsi_open("../changer0")).await,
        E::NO_DEVICE_ERR
    );
    ok(&mut c, scsi_open("changer0")).await;
}

#[tokio::test]
async fn an_empty_drive_opened_as_a_scsi_device_still_tells_its_serial() {
    let t = start().await;
    let mut c = changer(&t).await;
    mv(&mut c, 2, 1002).await; // vtape1 is now empty
    let st = status(&mut c, false, DT, 0, true).await;
    let ident = st.at(2).id.2.clone();

    let mut d = client(&t).await;
    ok(&mut d, scsi_open("vtape1")).await;
    let p80 = good(&mut d, &inquiry(true, 0x80, 255)).await;
    assert_eq!(
        vpd(&p80, 0x80),
        &ident[24..],
        "the changer's identifier for element 2"
    );
    let (pdt, ..) = inquiry_ids(&good(&mut d, &inquiry(false, 0, 255)).await);
    assert_eq!(pdt, 0x01);
    assert_eq!(
        check(&mut d, &[0, 0, 0, 0, 0, 0]).await,
        want(2, 0x3a, 0x00, None),
        "TEST UNIT READY: medium not present"
    );
    // one SCSI opener per drive, while TAPE_OPEN of it goes on as usual
    let mut other = client(&t).await;
    assert_eq!(
        err(&mut other, scsi_open("vtape1")).await,
        E::DEVICE_BUSY_ERR
    );
    mv(&mut c, 1002, 2).await;
    ok(&mut other, tape_open("vtape1", TapeOpenMode::READ)).await;
    good(&mut d, &[0, 0, 0, 0, 0, 0]).await;
    ok(&mut d, Request::ScsiClose(Void)).await;
}
