//! Where a writer's image goes: a byte stream sized to its sink, filled in place, so file
//! data is read straight into the buffer the mover (LOCAL) or the socket (TCP) takes.

use std::io::{self, Write};

/// A plain stream (file, pipe) is fed in writes of this size: a write larger than a pipe's
/// 64 KiB waits on the reader for every 64 KiB, so both ends stall in turns; at 16 KiB they
/// run side by side and the buffer stays in the CPU cache (`benches/tar.rs`: 2.5-2.7 GiB/s
/// against 0.35-0.97 at 64 KiB and 1 MiB, through a pipe).
pub const STREAM_CHUNK: usize = 16 * 1024;

/// The sink of a backup image.
pub trait ImageOut: Write {
    /// The size of the buffers the writer fills and hands over whole.
    fn chunk(&self) -> usize;

    /// Takes all of `buf` (`chunk()` bytes) as the next bytes of the image, and leaves in
    /// `buf` a buffer of `chunk()` bytes (any contents) to fill next. A sink that can keep
    /// the buffer itself does so rather than copying it.
    fn hand_over(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.write_all(buf)
    }
}

impl<T: ImageOut + ?Sized> ImageOut for &mut T {
    fn chunk(&self) -> usize {
        (**self).chunk()
    }

    fn hand_over(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        (**self).hand_over(buf)
    }
}

/// Any `Write` as an image sink, in writes of [`STREAM_CHUNK`].
pub struct Stream<'w>(pub &'w mut dyn Write);

impl Write for Stream<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl ImageOut for Stream<'_> {
    fn chunk(&self) -> usize {
        STREAM_CHUNK
    }
}

/// The writers' output buffer: bytes are put in (or read straight into [`Out::room`]) and
/// the buffer goes to the sink whole when full. `off` counts every byte of the image.
pub struct Out<'o> {
    sink: &'o mut dyn ImageOut,
    buf: Vec<u8>,
    len: usize,
    /// Bytes of the image so far, handed over or not.
    pub off: u64,
}

impl<'o> Out<'o> {
    /// An empty buffer of the sink's chunk size (at least 1 KiB, so a record always fits
    /// in a fresh buffer).
    pub fn new(sink: &'o mut dyn ImageOut) -> Self {
        let size = sink.chunk().max(1024);
        Out {
            sink,
            buf: vec![0; size],
            len: 0,
            off: 0,
        }
    }

    /// Appends `b`, handing buffers over as they fill.
    pub fn put(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            let room = self.room()?;
            let n = room.len().min(b.len());
            room[..n].copy_from_slice(&b[..n]);
            self.advance(n);
            b = &b[n..];
        }
        Ok(())
    }

    /// The free end of the buffer, never empty: a full buffer is handed over first.
    pub fn room(&mut self) -> io::Result<&mut [u8]> {
        if self.len == self.buf.len() {
            self.hand_over()?;
        }
        Ok(&mut self.buf[self.len..])
    }

    /// Counts `n` bytes written into [`Out::room`] as part of the image.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.buf.len());
        self.len += n;
        self.off += n as u64;
    }

    fn hand_over(&mut self) -> io::Result<()> {
        let size = self.buf.len();
        self.sink.hand_over(&mut self.buf)?;
        // a sink may give back a shorter buffer (a fresh one, or a short last record's)
        if self.buf.len() != size {
            self.buf.resize(size, 0);
        }
        self.len = 0;
        Ok(())
    }

    /// Writes what is buffered (a part buffer goes as plain bytes) and flushes the sink.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.len == self.buf.len() {
            self.hand_over()?;
        } else {
            self.sink.write_all(&self.buf[..self.len])?;
            self.len = 0;
        }
        self.sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every handed-over buffer and gives back a used one of another length, as the
    /// LOCAL connection may.
    struct Keeper {
        chunk: usize,
        whole: Vec<Vec<u8>>,
        bytes: Vec<u8>,
    }

    impl Write for Keeper {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl ImageOut for Keeper {
        fn chunk(&self) -> usize {
            self.chunk
        }
        fn hand_over(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
            let full = std::mem::replace(buf, vec![0xee; 3]);
            self.bytes.extend_from_slice(&full);
            self.whole.push(full);
            Ok(())
        }
    }

    #[test]
    fn buffers_go_whole_and_the_stream_is_unchanged() {
        let mut k = Keeper {
            chunk: 4096,
            whole: Vec::new(),
            bytes: Vec::new(),
        };
        let want: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        {
            let mut out = Out::new(&mut k);
            out.put(&want[..100]).unwrap();
            // read "straight into" the buffer across a hand-over
            let mut at = 100;
            while at < 9_000 {
                let room = out.room().unwrap();
                let n = room.len().min(9_000 - at).min(1500);
                room[..n].copy_from_slice(&want[at..at + n]);
                out.advance(n);
                at += n;
            }
            out.put(&want[9_000..]).unwrap();
            assert_eq!(out.off, 10_000);
            out.finish().unwrap();
        }
        assert_eq!(k.bytes, want);
        assert_eq!(k.whole.len(), 2, "two whole buffers, then the part");
        assert!(k.whole.iter().all(|b| b.len() == 4096));
    }

    #[test]
    fn a_plain_stream_takes_copies_in_its_chunk() {
        let mut v = Vec::new();
        let mut s = Stream(&mut v);
        {
            let mut out = Out::new(&mut s);
            out.put(&[5u8; STREAM_CHUNK * 2 + 3]).unwrap();
            out.finish().unwrap();
        }
        assert_eq!(v, vec![5u8; STREAM_CHUNK * 2 + 3]);
    }
}
