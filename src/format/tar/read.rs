//! The archive side of reading: turns a byte stream into members (ustar, pax, GNU and v7
//! headers folded into one description each) and streams their data, bounded and in sync.

use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};

use super::header::{self, Block, Flavour, BLOCK, MAX_PAX, MAX_SPARSE_ENTRIES};
use crate::format::recover::RecoverError;

/// Largest read of member data.
pub const CHUNK: usize = 1 << 20;

/// Where member data goes: called with each file offset and the bytes there.
pub type Sink<'a> = &'a mut dyn FnMut(u64, &[u8]);

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDev,
    BlockDev,
    Dir,
    Fifo,
    /// A type flag this reader does not restore.
    Unknown(u8),
}

/// Where a member's sparse map is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sparse {
    No,
    /// GNU sparse 1.0: the map starts the data area.
    InData,
    /// GNU sparse 0.x or old GNU 'S': the map came with the headers.
    Map(Vec<(u64, u64)>),
}

/// One member, every header that describes it folded in.
#[derive(Debug, Clone)]
pub struct Member {
    /// Offset of its first header (a pax or GNU long-name header when there is one).
    pub offset: u64,
    /// The name as stored (not normalised).
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub atime: Option<(i64, u32)>,
    pub ctime: Option<(i64, u32)>,
    pub rdev: (u32, u32),
    /// Bytes in the data area (not counting the padding to a whole block).
    pub size: u64,
    /// Size of the file the data area describes (differs from `size` when sparse).
    pub realsize: u64,
    pub sparse: Sparse,
    /// SCHILY.xattr.* attributes, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// SCHILY.acl.access and SCHILY.acl.default, the text form.
    pub acl_text: [Option<Vec<u8>>; 2],
    /// The headers are known to be incomplete or contradictory: the member must not be
    /// restored (its data is still skipped in step).
    pub damage: Option<String>,
}

/// What comes next in the archive.
pub enum Next {
    Member(Box<Member>),
    /// A damaged header was skipped: the member it started, if its name is known.
    Lost(Option<Vec<u8>>),
    /// The end-of-archive marker.
    End,
}

/// Where the bytes come from.
enum Src<'r> {
    /// Read exactly as asked (no read-ahead of its own: DAR reads one member and stops).
    Read(&'r mut dyn Read),
    /// Buffered input whose buffers member data is written straight from (the DATA
    /// server's connection lends the mover's record buffers).
    Buf(&'r mut dyn BufRead),
}

/// The byte stream, with its offset.
pub struct Input<'r> {
    r: Src<'r>,
    pub offset: u64,
}

impl<'r> Input<'r> {
    pub fn new(r: &'r mut dyn Read) -> Self {
        Input {
            r: Src::Read(r),
            offset: 0,
        }
    }

    /// Input from a `BufRead`: `run` hands out its buffers, no copy.
    pub fn buffered(r: &'r mut dyn BufRead) -> Self {
        Input {
            r: Src::Buf(r),
            offset: 0,
        }
    }

    /// One read of at most `buf.len()` bytes.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.r {
            Src::Read(r) => r.read(buf),
            Src::Buf(r) => {
                let got = r.fill_buf()?;
                let k = got.len().min(buf.len());
                buf[..k].copy_from_slice(&got[..k]);
                r.consume(k);
                Ok(k)
            }
        }
    }

    /// Exactly `len` bytes, handed to `out` in the pieces the input holds them in
    /// (buffered input), or through `scratch` (plain input); `Truncated` if it ends first.
    fn run(
        &mut self,
        mut len: usize,
        scratch: &mut [u8],
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<(), RecoverError> {
        while len > 0 {
            let k = match &mut self.r {
                Src::Buf(r) => {
                    let got = match r.fill_buf() {
                        Ok(b) => b,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(RecoverError::Input(e)),
                    };
                    let k = got.len().min(len);
                    out(&got[..k]);
                    r.consume(k);
                    k
                }
                Src::Read(_) => {
                    let k = len.min(scratch.len());
                    self.exact(&mut scratch[..k])?;
                    out(&scratch[..k]);
                    len -= k;
                    continue;
                }
            };
            if k == 0 {
                return Err(RecoverError::Truncated {
                    offset: self.offset,
                });
            }
            self.offset += k as u64;
            len -= k;
        }
        Ok(())
    }

    /// Fills `buf`; returns fewer bytes only at end of input.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, RecoverError> {
        let mut n = 0;
        while n < buf.len() {
            match self.read_some(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.offset += n as u64;
                    return Err(RecoverError::Input(e));
                }
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// One block: Ok(false) at end of input on a block boundary, `Truncated` inside one.
    fn block(&mut self, b: &mut Block) -> Result<bool, RecoverError> {
        let at = self.offset;
        match self.fill(b)? {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(RecoverError::Truncated { offset: at }),
        }
    }

    /// Exactly `buf.len()` bytes, or `Truncated`.
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), RecoverError> {
        if self.fill(buf)? < buf.len() {
            return Err(RecoverError::Truncated {
                offset: self.offset,
            });
        }
        Ok(())
    }
}

fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// Headers read before the one that describes a member.
#[derive(Default)]
struct Ext {
    offset: Option<u64>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    damage: Option<String>,
}

impl Ext {
    fn name(&self) -> Option<Vec<u8>> {
        let pax = self
            .records
            .iter()
            .rev()
            .find(|(k, _)| k == b"GNU.sparse.name" || k == b"path")
            .map(|(_, v)| v.clone());
        pax.or_else(|| self.long_name.clone())
    }
}

/// What one header block did.
enum Step {
    /// A member is complete.
    Member(Box<Member>),
    /// An extended or label header: more headers follow.
    More,
    /// The header cannot be used (its size is unreadable): handled like a bad checksum.
    Bad(&'static str),
}

/// Sparse records of the pax headers (GNU formats 0.0, 0.1 and 1.0).
#[derive(Default)]
struct SparseRecs {
    major: Option<u64>,
    minor: Option<u64>,
    name: Option<Vec<u8>>,
    realsize: Option<u64>,
    map: Vec<(u64, u64)>,
    pending_offset: Option<u64>,
    bad: Option<String>,
}

pub struct Archive<'r> {
    pub input: Input<'r>,
    /// Unread bytes (data and padding) of the member last returned.
    left: u64,
    started: bool,
    /// DAR: one member only; never look past its headers.
    single: bool,
    /// A valid header found while skipping damage, to be read next.
    pushback: Option<(u64, Block)>,
    /// The extended header of the next member was damaged.
    damaged_ext: Option<String>,
    global: Vec<(Vec<u8>, Vec<u8>)>,
    buf: Vec<u8>,
}

impl<'r> Archive<'r> {
    pub fn new(r: &'r mut dyn Read, single: bool) -> Self {
        Self::with(Input::new(r), single)
    }

    /// An archive over buffered input: member data goes to its sink straight from the
    /// input's buffers.
    pub fn buffered(r: &'r mut dyn BufRead) -> Self {
        Self::with(Input::buffered(r), false)
    }

    fn with(input: Input<'r>, single: bool) -> Self {
        Archive {
            input,
            left: 0,
            started: false,
            single,
            pushback: None,
            damaged_ext: None,
            global: Vec::new(),
            buf: Vec::new(),
        }
    }

    pub fn offset(&self) -> u64 {
        self.input.offset
    }

    /// Reads and drops what is left of the current member's data area.
    pub fn skip_rest(&mut self, abort: &AtomicBool) -> Result<(), RecoverError> {
        if self.left > 0 && self.buf.len() < CHUNK {
            self.buf.resize(CHUNK, 0);
        }
        while self.left > 0 {
            if abort.load(Ordering::Relaxed) {
                return Err(RecoverError::Aborted);
            }
            let n = self.left.min(CHUNK as u64) as usize;
            self.left -= n as u64;
            self.input.run(n, &mut self.buf, &mut |_| {})?;
        }
        Ok(())
    }

    /// Reads a small data area whole (its size already checked against `MAX_PAX`).
    fn small_data(&mut self, size: u64) -> Result<Vec<u8>, RecoverError> {
        let mut v = vec![0u8; padded(size) as usize];
        self.input.exact(&mut v)?;
        v.truncate(size as usize);
        Ok(v)
    }

    /// Reads everything after the end marker so a sender is never left blocked; returns
    /// the bytes of non-zero blocks found there.
    pub fn drain(&mut self) -> u64 {
        let mut buf = vec![0u8; 64 * 1024];
        let mut other = 0u64;
        // A read error ends the input just as well.
        while let Ok(n) = self.input.fill(&mut buf) {
            if n == 0 {
                break;
            }
            other += buf[..n]
                .chunks(BLOCK)
                .filter(|c| c.iter().any(|&x| x != 0))
                .map(|c| c.len() as u64)
                .sum::<u64>();
        }
        other
    }

    /// The next member, the end marker, or a report of a damaged header (reading has
    /// then moved on to the next valid header). Unread data of the previous member is
    /// skipped first. The first block of the input must be a header.
    pub fn next(
        &mut self,
        warn: &mut dyn FnMut(String),
        abort: &AtomicBool,
    ) -> Result<Next, RecoverError> {
        self.skip_rest(abort)?;
        let mut ext = Ext::default();
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(RecoverError::Aborted);
            }
            let (at, b) = match self.pushback.take() {
                Some(x) => x,
                None => {
                    let at = self.input.offset;
                    let mut b: Block = [0; BLOCK];
                    if !self.input.block(&mut b)? {
                        return Err(RecoverError::Truncated { offset: at });
                    }
                    (at, b)
                }
            };
            if header::is_zero(&b) {
                if self.single {
                    return Err(RecoverError::NotTar { offset: at });
                }
                // The end is two zero blocks, or one at the very end of the input.
                let at2 = self.input.offset;
                let mut b2: Block = [0; BLOCK];
                if !self.input.block(&mut b2)? || header::is_zero(&b2) {
                    if let Some(o) = ext.offset {
                        warn(format!("extended headers at byte {o} describe no member"));
                    }
                    return Ok(Next::End);
                }
                warn(format!("a lone zero block at byte {at} ignored"));
                self.pushback = Some((at2, b2));
                continue;
            }
            let step = if header::is_header(&b) {
                self.header(at, &b, &mut ext, warn, abort)?
            } else {
                Step::Bad("bad checksum or magic")
            };
            if !matches!(step, Step::Bad(_)) {
                self.started = true;
            }
            match step {
                Step::Member(m) => return Ok(Next::Member(m)),
                Step::More => {}
                Step::Bad(why) => {
                    if !self.started || self.single {
                        return Err(RecoverError::NotTar { offset: at });
                    }
                    warn(format!(
                        "bad header at byte {at} ({why}); skipping to the next valid header"
                    ));
                    // The member it started: named by its extended headers, or by its own
                    // name field when the block still looks like a ustar header. A damaged
                    // extended header taints the member found next instead, which must not
                    // be restored with half its attributes.
                    let plausible = header::flavour(&b) != Flavour::V7;
                    let lost = if plausible && matches!(b[header::TYPEFLAG], b'x' | b'L' | b'K') {
                        self.damaged_ext =
                            Some(format!("its extended header at byte {at} is damaged"));
                        None
                    } else {
                        ext.name()
                            .or_else(|| plausible.then(|| ustar_name(&b)).filter(|n| !n.is_empty()))
                    };
                    ext = Ext::default();
                    if !self.resync(warn, abort)? {
                        return Ok(Next::End);
                    }
                    if lost.is_some() {
                        return Ok(Next::Lost(lost));
                    }
                }
            }
        }
    }

    /// Reads on block by block to the next valid header, left in `pushback`; false when
    /// the input ended after zero blocks (the end marker and padding).
    fn resync(
        &mut self,
        warn: &mut dyn FnMut(String),
        abort: &AtomicBool,
    ) -> Result<bool, RecoverError> {
        let from = self.input.offset;
        let mut zeros = 0u32;
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(RecoverError::Aborted);
            }
            let here = self.input.offset;
            let mut b: Block = [0; BLOCK];
            if !self.input.block(&mut b)? {
                if zeros > 0 {
                    return Ok(false);
                }
                return Err(RecoverError::Truncated { offset: here });
            }
            if header::is_zero(&b) {
                zeros += 1;
                continue;
            }
            zeros = 0;
            if header::is_header(&b) {
                warn(format!(
                    "reading resumes at byte {here}, {} bytes skipped",
                    here - from
                ));
                self.pushback = Some((here, b));
                return Ok(true);
            }
        }
    }

    /// Handles one valid header block at `at`.
    fn header(
        &mut self,
        at: u64,
        b: &Block,
        ext: &mut Ext,
        warn: &mut dyn FnMut(String),
        abort: &AtomicBool,
    ) -> Result<Step, RecoverError> {
        let Some(size) =
            header::get_num(header::field(b, header::SIZE)).and_then(|s| u64::try_from(s).ok())
        else {
            return Ok(Step::Bad("unreadable size"));
        };
        let tf = b[header::TYPEFLAG];
        match tf {
            b'x' | b'g' | b'L' | b'K' => {
                let member_bound = tf != b'g';
                if member_bound {
                    ext.offset.get_or_insert(at);
                }
                let total = if member_bound { ext.bytes as u64 } else { 0 };
                if size.saturating_add(total) > MAX_PAX as u64 {
                    warn(format!(
                        "extended header of {size} bytes at byte {at} is larger than the \
                         {MAX_PAX} accepted; the member it describes is not restored"
                    ));
                    ext.damage = Some(format!("its extended header at byte {at} is too large"));
                    self.left = padded(size);
                    self.skip_rest(abort)?;
                    return Ok(Step::More);
                }
                let data = self.small_data(size)?;
                match tf {
                    b'L' => ext.long_name = Some(header::cstr(&data).to_vec()),
                    b'K' => ext.long_link = Some(header::cstr(&data).to_vec()),
                    _ => {
                        let mut recs = Vec::new();
                        if let Err(e) =
                            header::parse_pax(&data, |k, v| recs.push((k.to_vec(), v.to_vec())))
                        {
                            warn(format!(
                                "pax header at byte {at}: {e}; the rest of it is ignored"
                            ));
                        }
                        if member_bound {
                            ext.bytes += data.len();
                            ext.records.extend(recs);
                        } else {
                            // Global records apply to every later member; an empty value
                            // removes one. Their total stays within one header's bound.
                            for (k, v) in recs {
                                self.global.retain(|(gk, _)| *gk != k);
                                let held: usize =
                                    self.global.iter().map(|(k, v)| k.len() + v.len()).sum();
                                if !v.is_empty() && held + k.len() + v.len() <= MAX_PAX {
                                    self.global.push((k, v));
                                }
                            }
                        }
                    }
                }
                Ok(Step::More)
            }
            b'V' => {
                // A volume label describes no file.
                self.left = padded(size);
                self.skip_rest(abort)?;
                Ok(Step::More)
            }
            _ => {
                ext.offset.get_or_insert(at);
                self.member(at, b, size, std::mem::take(ext), warn)
                    .map(|m| Step::Member(Box::new(m)))
            }
        }
    }

    fn member(
        &mut self,
        at: u64,
        b: &Block,
        size: u64,
        mut ext: Ext,
        warn: &mut dyn FnMut(String),
    ) -> Result<Member, RecoverError> {
        let tf = b[header::TYPEFLAG];
        let fl = header::flavour(b);
        let mut bad_field = |f: (usize, usize), what: &str| -> u64 {
            match header::get_num(header::field(b, f)).and_then(|v| u64::try_from(v).ok()) {
                Some(v) => v,
                None => {
                    warn(format!("header at byte {at}: unreadable {what} field"));
                    0
                }
            }
        };
        let mode = bad_field(header::MODE, "mode") as u32 & 0o7777;
        let uid = u32::try_from(bad_field(header::UID, "uid")).unwrap_or(0);
        let gid = u32::try_from(bad_field(header::GID, "gid")).unwrap_or(0);
        let rdev = if fl == Flavour::V7 {
            (0, 0)
        } else {
            (
                u32::try_from(bad_field(header::DEVMAJOR, "devmajor")).unwrap_or(0),
                u32::try_from(bad_field(header::DEVMINOR, "devminor")).unwrap_or(0),
            )
        };
        let mtime = header::get_num(header::field(b, header::MTIME)).unwrap_or_else(|| {
            warn(format!("header at byte {at}: unreadable mtime field"));
            0
        });
        let name = ext.long_name.take().unwrap_or_else(|| ustar_name(b));
        let kind = match tf {
            b'0' | 0 | b'7' if name.ends_with(b"/") => Kind::Dir,
            b'0' | 0 | b'7' | b'S' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDev,
            b'4' => Kind::BlockDev,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Unknown(other),
        };
        let mut m = Member {
            offset: ext.offset.unwrap_or(at),
            name,
            link: ext
                .long_link
                .take()
                .unwrap_or_else(|| header::cstr(header::field(b, header::LINKNAME)).to_vec()),
            kind,
            mode,
            uid,
            gid,
            mtime: (mtime, 0),
            atime: None,
            ctime: None,
            rdev,
            size,
            realsize: size,
            sparse: Sparse::No,
            xattrs: Vec::new(),
            acl_text: [None, None],
            damage: ext.damage.take().or(self.damaged_ext.take()),
        };
        self.damaged_ext = None;
        let mut sp = SparseRecs::default();
        let global = std::mem::take(&mut self.global);
        for (k, v) in global.iter().chain(ext.records.iter()) {
            apply(&mut m, &mut sp, k, v, at, warn);
        }
        self.global = global;
        if tf == b'S' {
            self.old_gnu_sparse(b, &mut m)?;
        } else if sp.major.is_some() || sp.minor.is_some() || !sp.map.is_empty() || sp.bad.is_some()
        {
            if let Some(why) = sp.bad.take() {
                m.damage.get_or_insert(why);
            }
            if let Some(n) = sp.name.take() {
                m.name = n;
            }
            match sp.realsize {
                Some(r) => m.realsize = r,
                None => {
                    m.damage
                        .get_or_insert("sparse member without its real size".into());
                }
            }
            m.sparse = match (sp.major, sp.minor) {
                (Some(1), Some(0) | None) => Sparse::InData,
                (None | Some(0), _) => Sparse::Map(std::mem::take(&mut sp.map)),
                (Some(maj), min) => {
                    m.damage.get_or_insert(format!(
                        "unsupported sparse format {maj}.{}",
                        min.unwrap_or(0)
                    ));
                    Sparse::No
                }
            };
        }
        self.left = padded(m.size);
        Ok(m)
    }

    /// The map of an old GNU sparse member ('S'): four entries in the header, then
    /// extension blocks of 21 while the "extended" flag is set.
    fn old_gnu_sparse(&mut self, b: &Block, m: &mut Member) -> Result<(), RecoverError> {
        let mut map = Vec::new();
        let mut bad = gnu_entries(
            &b[header::GNU_SPARSE..],
            header::GNU_SPARSE_ENTRIES,
            &mut map,
        );
        let mut extended = b[header::GNU_ISEXTENDED] != 0;
        while extended && bad.is_none() {
            let at = self.input.offset;
            let mut e: Block = [0; BLOCK];
            if !self.input.block(&mut e)? {
                return Err(RecoverError::Truncated { offset: at });
            }
            bad = gnu_entries(&e, header::GNU_EXT_ENTRIES, &mut map);
            extended = e[header::GNU_EXT_ISEXTENDED] != 0;
        }
        match header::get_num(header::field(b, header::GNU_REALSIZE))
            .and_then(|v| u64::try_from(v).ok())
        {
            Some(r) => m.realsize = r,
            None => bad = bad.or(Some("unreadable real size")),
        }
        if let Some(why) = bad {
            m.damage.get_or_insert(why.into());
        }
        m.sparse = Sparse::Map(map);
        Ok(())
    }

    /// Streams the data of `m` (just returned by `next`) to `sink(file_offset, bytes)`,
    /// each sparse region at its offset; None reads it into nothing. Ok(Err(why)) when the
    /// data contradicts its headers (a sparse map that lies): what is left is skipped by
    /// the next call to `next` or `skip_rest`, so reading stays in step.
    pub fn data(
        &mut self,
        m: &Member,
        mut sink: Option<Sink<'_>>,
        abort: &AtomicBool,
    ) -> Result<Result<(), String>, RecoverError> {
        let mut avail = m.size;
        let from_data;
        let regions: &[(u64, u64)] = match &m.sparse {
            Sparse::No => {
                from_data = [(0, m.size)];
                &from_data
            }
            Sparse::Map(v) => v,
            Sparse::InData => {
                let parsed = match self.sparse_map(&mut avail, abort)? {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                return self.regions(m, &parsed, avail, &mut sink, abort);
            }
        };
        self.regions(m, regions, avail, &mut sink, abort)
    }

    fn regions(
        &mut self,
        m: &Member,
        regions: &[(u64, u64)],
        avail: u64,
        sink: &mut Option<Sink<'_>>,
        abort: &AtomicBool,
    ) -> Result<Result<(), String>, RecoverError> {
        let (mut end, mut total) = (0u64, 0u64);
        for &(off, len) in regions {
            let Some(e) = off.checked_add(len) else {
                return Ok(Err("a sparse region overflows".into()));
            };
            if off < end {
                return Ok(Err("sparse regions overlap or are out of order".into()));
            }
            if e > m.realsize {
                return Ok(Err(format!(
                    "a sparse region ends at {e}, beyond the file's {} bytes",
                    m.realsize
                )));
            }
            end = e;
            total = total.saturating_add(len);
        }
        if total > avail {
            return Ok(Err(format!(
                "the sparse map promises {total} bytes of data, the member holds {avail}"
            )));
        }
        if self.buf.len() < CHUNK {
            self.buf.resize(CHUNK, 0);
        }
        for &(off, len) in regions {
            let mut done = 0u64;
            while done < len {
                if abort.load(Ordering::Relaxed) {
                    return Err(RecoverError::Aborted);
                }
                let n = (len - done).min(CHUNK as u64) as usize;
                self.left = self.left.saturating_sub(n as u64);
                let mut at = off + done;
                self.input.run(n, &mut self.buf, &mut |piece| {
                    if let Some(s) = sink.as_mut() {
                        s(at, piece);
                    }
                    at += piece.len() as u64;
                })?;
                done += n as u64;
            }
        }
        Ok(Ok(()))
    }

    /// Reads the sparse 1.0 map at the start of the data area: a count, then an offset
    /// and a length per entry, one decimal per line, in whole blocks.
    fn sparse_map(
        &mut self,
        avail: &mut u64,
        abort: &AtomicBool,
    ) -> Result<Result<Vec<(u64, u64)>, String>, RecoverError> {
        let mut count: Option<u64> = None;
        let mut nums: Vec<u64> = Vec::new();
        let mut token: Vec<u8> = Vec::with_capacity(20);
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(RecoverError::Aborted);
            }
            if *avail == 0 {
                return Ok(Err("the sparse map runs past the member's data".into()));
            }
            let n = (*avail).min(BLOCK as u64) as usize;
            let mut blk: Block = [0; BLOCK];
            *avail -= n as u64;
            self.left = self.left.saturating_sub(n as u64);
            self.input.exact(&mut blk[..n])?;
            for &c in &blk[..n] {
                if c.is_ascii_digit() {
                    if token.len() >= 20 {
                        return Ok(Err("a sparse map number is too long".into()));
                    }
                    token.push(c);
                    continue;
                }
                if c != b'\n' {
                    return Ok(Err("the sparse map has a bad character".into()));
                }
                let Some(v) = header::parse_decimal(&token) else {
                    return Ok(Err("the sparse map has an empty line".into()));
                };
                token.clear();
                match count {
                    None => {
                        if v > MAX_SPARSE_ENTRIES as u64 {
                            return Ok(Err(format!(
                                "a sparse map of {v} entries (at most {MAX_SPARSE_ENTRIES} accepted)"
                            )));
                        }
                        count = Some(v);
                        nums.reserve(v.min(4096) as usize * 2);
                    }
                    Some(_) => nums.push(v),
                }
                if count.is_some_and(|k| nums.len() as u64 == 2 * k) {
                    return Ok(Ok(nums.chunks_exact(2).map(|p| (p[0], p[1])).collect()));
                }
            }
        }
    }
}

/// Appends the (offset, length) entries of an old GNU sparse table of `n` 24-byte slots
/// (an all-zero slot ends it); returns what is wrong, if anything.
fn gnu_entries(table: &[u8], n: usize, map: &mut Vec<(u64, u64)>) -> Option<&'static str> {
    for e in table.chunks_exact(24).take(n) {
        if e.iter().all(|&c| c == 0) {
            break;
        }
        let off = header::get_num(&e[..12]).and_then(|v| u64::try_from(v).ok());
        let len = header::get_num(&e[12..]).and_then(|v| u64::try_from(v).ok());
        match (off, len) {
            (Some(o), Some(l)) if map.len() < MAX_SPARSE_ENTRIES => map.push((o, l)),
            (Some(_), Some(_)) => return Some("more sparse entries than accepted"),
            _ => return Some("unreadable sparse entry"),
        }
    }
    None
}

/// Applies one pax record to a member being built.
fn apply(
    m: &mut Member,
    sp: &mut SparseRecs,
    k: &[u8],
    v: &[u8],
    at: u64,
    warn: &mut dyn FnMut(String),
) {
    let num = |v: &[u8]| header::parse_decimal(v);
    let mut bad = |what: &str| {
        warn(format!(
            "pax header before byte {at}: bad {what} record {:?}",
            String::from_utf8_lossy(&v[..v.len().min(40)])
        ))
    };
    match k {
        b"path" if !v.is_empty() => m.name = v.to_vec(),
        b"linkpath" if !v.is_empty() => m.link = v.to_vec(),
        b"size" => match num(v).filter(|&s| s <= i64::MAX as u64) {
            Some(s) => {
                m.size = s;
                m.realsize = s;
            }
            None => {
                bad("size");
                m.damage.get_or_insert("unreadable size record".into());
            }
        },
        b"uid" | b"gid" => match num(v).and_then(|n| u32::try_from(n).ok()) {
            Some(n) if k == b"uid" => m.uid = n,
            Some(n) => m.gid = n,
            None => bad("id"),
        },
        b"mtime" | b"atime" | b"ctime" => match header::parse_time(v) {
            Some(t) if k == b"mtime" => m.mtime = t,
            Some(t) if k == b"atime" => m.atime = Some(t),
            Some(t) => m.ctime = Some(t),
            None => bad("time"),
        },
        b"SCHILY.devmajor" | b"SCHILY.devminor" => match num(v).and_then(|n| u32::try_from(n).ok())
        {
            Some(n) if k == b"SCHILY.devmajor" => m.rdev.0 = n,
            Some(n) => m.rdev.1 = n,
            None => bad("device"),
        },
        b"SCHILY.acl.access" => m.acl_text[0] = Some(v.to_vec()),
        b"SCHILY.acl.default" => m.acl_text[1] = Some(v.to_vec()),
        b"GNU.sparse.major" => sp.major = num(v),
        b"GNU.sparse.minor" => sp.minor = num(v),
        b"GNU.sparse.name" if !v.is_empty() => sp.name = Some(v.to_vec()),
        b"GNU.sparse.realsize" | b"GNU.sparse.size" => match num(v) {
            Some(n) => sp.realsize = Some(n),
            None => sp.bad = Some("unreadable sparse size".into()),
        },
        b"GNU.sparse.offset" => sp.pending_offset = num(v),
        b"GNU.sparse.numbytes" => match (sp.pending_offset.take(), num(v)) {
            (Some(o), Some(n)) if sp.map.len() < MAX_SPARSE_ENTRIES => sp.map.push((o, n)),
            _ => sp.bad = Some("bad sparse offset/numbytes records".into()),
        },
        b"GNU.sparse.map" => {
            let nums: Option<Vec<u64>> = v
                .split(|&c| c == b',')
                .filter(|s| !s.is_empty())
                .map(num)
                .collect();
            match nums {
                Some(n) if n.len() % 2 == 0 && n.len() / 2 <= MAX_SPARSE_ENTRIES => {
                    sp.map = n.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    // A map with no entries is still a (wholly hole) sparse file.
                    sp.major.get_or_insert(0);
                }
                _ => sp.bad = Some("bad sparse map record".into()),
            }
        }
        _ => {
            if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                if !name.is_empty() {
                    m.xattrs.push((name.to_vec(), v.to_vec()));
                }
            }
        }
    }
}

/// The name of a ustar (or GNU, or v7) header: prefix and name joined for ustar.
fn ustar_name(b: &Block) -> Vec<u8> {
    let name = header::cstr(header::field(b, header::NAME));
    if header::flavour(b) == Flavour::Ustar {
        let prefix = header::cstr(header::field(b, header::PREFIX));
        if !prefix.is_empty() {
            let mut v = prefix.to_vec();
            v.push(b'/');
            v.extend_from_slice(name);
            return v;
        }
    }
    name.to_vec()
}
