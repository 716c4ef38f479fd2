//! Output sinks that say how much was written through them and give a handle to make it
//! durable: the decisions and rejects files of a run that keeps state commit their length
//! with the state, once synced.

use std::fs::File;
use std::io::{self, BufWriter, Write};

/// A writer that reports the bytes written through it and, for files, a handle to sync.
pub trait Sink: Write {
    /// Flushes to the operating system; returns the total bytes written so far, including
    /// any the sink started with.
    fn flush_len(&mut self) -> io::Result<u64>;

    /// A handle to the file written, to sync what was flushed to disk (from any thread);
    /// `None` for what cannot be synced (a pipe, memory).
    fn sync_handle(&self) -> io::Result<Option<File>> {
        Ok(None)
    }
}

impl Sink for Vec<u8> {
    fn flush_len(&mut self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn flush_len(&mut self) -> io::Result<u64> {
        (**self).flush_len()
    }

    fn sync_handle(&self) -> io::Result<Option<File>> {
        (**self).sync_handle()
    }
}

/// A buffered file that counts its bytes.
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
    fn flush_len(&mut self) -> io::Result<u64> {
        self.inner.flush()?;
        Ok(self.written)
    }

    fn sync_handle(&self) -> io::Result<Option<File>> {
        self.inner.get_ref().try_clone().map(Some)
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
    fn flush_len(&mut self) -> io::Result<u64> {
        self.inner.flush()?;
        Ok(self.written)
    }
}
