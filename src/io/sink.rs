//! Output sinks that can make what was written durable and say how much that was: the
//! decisions and rejects files of a run that keeps state commit their length with the state.

use std::fs::File;
use std::io::{self, BufWriter, Write};

/// A writer that can flush to durable storage and report the bytes written through it.
pub trait Sink: Write {
    /// Flushes (and for files, syncs to disk); returns the total bytes written so far,
    /// including any the sink started with.
    fn sync(&mut self) -> io::Result<u64>;
}

impl Sink for Vec<u8> {
    fn sync(&mut self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn sync(&mut self) -> io::Result<u64> {
        (**self).sync()
    }
}

/// A buffered file that counts its bytes and syncs to disk.
pub struct FileSink {
    inner: BufWriter<File>,
    written: u64,
}

impl FileSink {
    /// Writes to `file`, which already holds `written` bytes (positioned at its end).
    pub fn new(file: File, written: u64) -> Self {
        FileSink {
            inner: BufWriter::with_capacity(1 << 16, file),
            written,
        }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Sink for FileSink {
    fn sync(&mut self) -> io::Result<u64> {
        self.inner.flush()?;
        self.inner.get_ref().sync_data()?;
        Ok(self.written)
    }
}

/// Standard output or error: flushed, never synced; counts its bytes.
pub struct StreamSink<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> StreamSink<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> Self {
        StreamSink { inner, written: 0 }
    }
}

impl<W: Write> Write for StreamSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Sink for StreamSink<W> {
    fn sync(&mut self) -> io::Result<u64> {
        self.inner.flush()?;
        Ok(self.written)
    }
}
