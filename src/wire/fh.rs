//! File-history post bodies (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE) written entry by entry
//! straight into their XDR bytes: the same bytes as the generic encoder, without owned entries.

use super::messages::MessageCode;
use super::types::FileStat;
use super::xdr::put_opaque;
use bytes::{BufMut, Bytes, BytesMut};

/// Which of the three posts a [`FhBody`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhKind {
    /// FH_ADD_FILE: path history.
    File,
    /// FH_ADD_DIR: directory entries of node history.
    Dir,
    /// FH_ADD_NODE: inodes of node history.
    Node,
}

impl FhKind {
    /// The post's message code.
    pub fn code(self) -> MessageCode {
        match self {
            FhKind::File => MessageCode::FH_ADD_FILE,
            FhKind::Dir => MessageCode::FH_ADD_DIR,
            FhKind::Node => MessageCode::FH_ADD_NODE,
        }
    }
}

/// The body of one FH post being filled: the entry count (patched when taken) and the
/// entries, each with one UNIX name and one stat, as the batcher posts them.
#[derive(Debug)]
pub struct FhBody {
    kind: FhKind,
    buf: BytesMut,
    count: u32,
}

/// `fs_type` UNIX, the discriminant of a UNIX name and of UNIX attributes.
const UNIX: u32 = 0;

impl FhBody {
    /// An empty body of `kind`.
    pub fn new(kind: FhKind) -> Self {
        let mut buf = BytesMut::new();
        buf.put_u32(0);
        FhBody {
            kind,
            buf,
            count: 0,
        }
    }

    /// Which post this is.
    pub fn kind(&self) -> FhKind {
        self.kind
    }

    /// Entries so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no entry was added since the last [`FhBody::take`].
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded bytes so far, the count included.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    fn name(&mut self, name: &[u8]) {
        // name<1>: one UNIX name
        self.buf.put_u32(1);
        self.buf.put_u32(UNIX);
        put_opaque(&mut self.buf, name);
    }

    fn stat(&mut self, s: &FileStat) {
        let b = &mut self.buf;
        b.reserve(4 + 52);
        b.put_u32(1);
        b.put_u32(s.unsupported);
        b.put_u32(s.fs_type.0);
        b.put_u32(s.ftype.0);
        b.put_u32(s.mtime);
        b.put_u32(s.atime);
        b.put_u32(s.ctime);
        b.put_u32(s.owner);
        b.put_u32(s.group);
        b.put_u32(s.fattr);
        b.put_u64(s.size);
        b.put_u32(s.links);
    }

    /// Adds an `ndmp4_file` (FH_ADD_FILE): `path`, its attributes, node and fh_info.
    pub fn push_file(&mut self, path: &[u8], stat: &FileStat, node: u64, fh_info: u64) {
        debug_assert_eq!(self.kind, FhKind::File);
        self.name(path);
        self.stat(stat);
        self.buf.put_u64(node);
        self.buf.put_u64(fh_info);
        self.count += 1;
    }

    /// Adds an `ndmp4_dir` (FH_ADD_DIR): `name` in directory `parent` is `node`.
    pub fn push_dir(&mut self, name: &[u8], node: u64, parent: u64) {
        debug_assert_eq!(self.kind, FhKind::Dir);
        self.name(name);
        self.buf.put_u64(node);
        self.buf.put_u64(parent);
        self.count += 1;
    }

    /// Adds an `ndmp4_node` (FH_ADD_NODE): the attributes of `node`.
    pub fn push_node(&mut self, stat: &FileStat, node: u64, fh_info: u64) {
        debug_assert_eq!(self.kind, FhKind::Node);
        self.stat(stat);
        self.buf.put_u64(node);
        self.buf.put_u64(fh_info);
        self.count += 1;
    }

    /// The finished body, and an empty one in its place with room for as many bytes.
    pub fn take(&mut self) -> Bytes {
        self.buf[..4].copy_from_slice(&self.count.to_be_bytes());
        let room = self.buf.len();
        let mut fresh = BytesMut::with_capacity(room);
        fresh.put_u32(0);
        self.count = 0;
        std::mem::replace(&mut self.buf, fresh).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{FhAddDirPost, FhAddFilePost, FhAddNodePost};
    use crate::wire::types::{Dir, File, FileName, FileType, FsType, Node};
    use crate::wire::{Request, XdrReader};

    fn stat(i: u32) -> FileStat {
        FileStat {
            unsupported: i % 3,
            fs_type: FsType::UNIX,
            ftype: [FileType::REG, FileType::DIR, FileType::SLINK][i as usize % 3],
            mtime: 0x8000_0000 + i,
            atime: i.wrapping_mul(7),
            ctime: u32::MAX - i,
            owner: 1000 + i,
            group: 100,
            fattr: 0o4755,
            size: (1u64 << 40) + u64::from(i),
            links: i + 1,
        }
    }

    /// Names of every length modulo 4, empty, unicode (multi-byte, odd lengths), invalid
    /// UTF-8 and a NUL.
    fn names() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"abcd".to_vec(),
            "été".as_bytes().to_vec(),
            "日本語のファイル".as_bytes().to_vec(),
            "🦀x".as_bytes().to_vec(),
            vec![0xff, 0xfe, b'z'],
            b"nul\0in".to_vec(),
            b"/dir/sub/file name with spaces.txt".to_vec(),
        ];
        v.push(vec![b'y'; 255]);
        v
    }

    fn unix(n: &[u8]) -> Vec<FileName> {
        vec![FileName::Unix {
            unix_name: crate::wire::NdmpString(Bytes::copy_from_slice(n)),
        }]
    }

    fn generic(r: &Request) -> Bytes {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        out.freeze()
    }

    #[test]
    fn bodies_are_the_generic_encoders_bytes_and_decode_back() {
        let (mut f, mut d, mut n) = (
            FhBody::new(FhKind::File),
            FhBody::new(FhKind::Dir),
            FhBody::new(FhKind::Node),
        );
        let (mut files, mut dirs, mut nodes) = (vec![], vec![], vec![]);
        for (i, name) in names().iter().enumerate() {
            let i = i as u32;
            let (node, other) = (u64::from(i) << 33 | 5, u64::MAX - u64::from(i));
            f.push_file(name, &stat(i), node, other);
            files.push(File {
                name: unix(name),
                stat: vec![stat(i)],
                node,
                fh_info: other,
            });
            d.push_dir(name, node, other);
            dirs.push(Dir {
                name: unix(name),
                node,
                parent: other,
            });
            n.push_node(&stat(i), node, other);
            nodes.push(Node {
                stats: vec![stat(i)],
                node,
                fh_info: other,
            });
        }
        let want = [
            Request::FhAddFile(FhAddFilePost { files }),
            Request::FhAddDir(FhAddDirPost { dirs }),
            Request::FhAddNode(FhAddNodePost { nodes }),
        ];
        for (body, want) in [&mut f, &mut d, &mut n].into_iter().zip(want) {
            assert_eq!(body.len(), names().len());
            let code = body.kind().code();
            let got = body.take();
            assert_eq!(got, generic(&want), "{code:?}");
            assert_eq!(got.len() % 4, 0);
            let back = Request::decode(code, &mut XdrReader::new(got)).unwrap();
            assert_eq!(back, want);
            // taken: the next body starts empty
            assert!(body.is_empty());
            assert_eq!(body.take(), generic(&empty(code)));
        }
    }

    fn empty(code: MessageCode) -> Request {
        match code {
            MessageCode::FH_ADD_FILE => Request::FhAddFile(FhAddFilePost { files: vec![] }),
            MessageCode::FH_ADD_DIR => Request::FhAddDir(FhAddDirPost { dirs: vec![] }),
            _ => Request::FhAddNode(FhAddNodePost { nodes: vec![] }),
        }
    }

    #[test]
    fn a_framed_body_is_the_framed_message() {
        use crate::wire::record::{Encoded, RecordCodec};
        use crate::wire::Message;
        use tokio_util::codec::Encoder;
        let mut d = FhBody::new(FhKind::Dir);
        for (i, name) in names().iter().enumerate() {
            d.push_dir(name, i as u64, 2);
        }
        let body = d.take();
        let req = Request::decode(MessageCode::FH_ADD_DIR, &mut XdrReader::new(body.clone()));
        let msg = Message::request(7, 1234, req.unwrap());
        // one fragment, and several
        for max in [1 << 20, 64] {
            let mut codec = RecordCodec::default().with_max_fragment(max);
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            codec.encode(&msg, &mut a).unwrap();
            let e = Encoded {
                header: &msg.header,
                body: &body,
            };
            codec.encode(e, &mut b).unwrap();
            assert_eq!(a, b, "fragments of {max}");
        }
    }
}
