//! Codec benchmarks: a small message, a 100-entry FH_ADD_FILE and a 256 KiB TAPE_WRITE, each
//! encoded (with record marking) and decoded (record marking + header + body).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ndmpd::wire::header::Message;
use ndmpd::wire::messages::{ConnectOpenRequest, FhAddFilePost, TapeWriteRequest};
use ndmpd::wire::record::RecordCodec;
use ndmpd::wire::types::{File, FileName, FileStat, FileType, FsType};
use ndmpd::wire::{Opaque, Request};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

fn fh_batch(n: usize) -> Request {
    let files = (0..n)
        .map(|i| File {
            name: vec![FileName::unix(&format!(
                "/home/user/projects/src/file-{i:05}.rs"
            ))],
            stat: vec![FileStat {
                unsupported: 0,
                fs_type: FsType::UNIX,
                ftype: FileType::REG,
                mtime: 1_790_000_000,
                atime: 1_790_000_000,
                ctime: 1_790_000_000,
                owner: 1000,
                group: 1000,
                fattr: 0o644,
                size: 4096 + i as u64,
                links: 1,
            }],
            node: 1000 + i as u64,
            fh_info: 512 * i as u64,
        })
        .collect();
    Request::FhAddFile(FhAddFilePost { files })
}

fn wire_of(m: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    RecordCodec::default().encode(m, &mut out).unwrap();
    out
}

fn bench_message(c: &mut Criterion, name: &str, m: Message) {
    let wire = wire_of(&m);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    let mut out = BytesMut::with_capacity(wire.len() * 2);
    g.bench_function("encode", |b| {
        let mut codec = RecordCodec::default();
        b.iter(|| {
            out.clear();
            codec.encode(black_box(&m), &mut out).unwrap();
        })
    });
    g.bench_function("decode", |b| {
        let mut codec = RecordCodec::default();
        // copying the input buffer is setup, not decoding: keep it out of the timing
        b.iter_batched(
            || wire.clone(),
            |mut buf| {
                let rec = codec.decode(&mut buf).unwrap().unwrap();
                black_box(Message::decode(rec).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    bench_message(
        c,
        "connect_open",
        Message::request(
            1,
            1_790_000_000,
            Request::ConnectOpen(ConnectOpenRequest {
                protocol_version: 4,
            }),
        ),
    );
    bench_message(
        c,
        "fh_add_file_100",
        Message::request(2, 1_790_000_000, fh_batch(100)),
    );
    let data = Bytes::from(vec![0xa5u8; 256 << 10]);
    bench_message(
        c,
        "tape_write_256k",
        Message::request(
            3,
            1_790_000_000,
            Request::TapeWrite(TapeWriteRequest {
                data_out: Opaque(data),
            }),
        ),
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
