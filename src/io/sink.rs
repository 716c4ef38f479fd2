//! Output sinks that say how much was written through them and give a handle to make it
//! durable: the decisions and rejects files of a run that keeps state commit their length
//! with the state, once synced.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

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

/// A file that counts its bytes, written by a thread of its own: the caller fills one
/// buffer while the last is written, so the system call and the kernel's copy into its
/// page cache overlap with deciding instead of stalling it. The writing thread starts
/// with the first full buffer; a failed write is told at the next write or flush.
pub struct FileSink {
    buf: Vec<u8>,
    written: u64,
    file: File,
    writer: Option<Writer>,
    /// Why an earlier write failed: the file's contents past what was flushed are unknown.
    failed: Option<(io::ErrorKind, String)>,
}

/// Bytes handed to the writing thread at a time.
const BUFFER: usize = 1 << 18;
/// Buffers handed over and not yet written back, at most.
const IN_FLIGHT: usize = 2;

/// The writing thread: full buffers go to it, and come back emptied (or with the error).
struct Writer {
    /// `None` once dropping: closing the channel ends the thread.
    full: Option<mpsc::Sender<Vec<u8>>>,
    emptied: mpsc::Receiver<io::Result<Vec<u8>>>,
    in_flight: usize,
    spare: Vec<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> io::Error {
    io::Error::other("the thread writing the file stopped")
}

impl Writer {
    fn start(file: File) -> io::Result<Writer> {
        let (full, to_write) = mpsc::channel::<Vec<u8>>();
        let (give_back, emptied) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("promo-write".into())
            .spawn(move || {
                let mut file = file;
                for mut buf in to_write {
                    let wrote = file.write_all(&buf).map(|()| {
                        buf.clear();
                        buf
                    });
                    if give_back.send(wrote).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer {
            full: Some(full),
            emptied,
            in_flight: 0,
            spare: Vec::new(),
            thread: Some(thread),
        })
    }

    /// Waits for one buffer to be written.
    fn wait_one(&mut self) -> io::Result<()> {
        let back = self.emptied.recv().map_err(|_| stopped())?;
        self.in_flight -= 1;
        self.spare.push(back?);
        Ok(())
    }

    /// Hands `buf` over and returns an empty one to fill next.
    fn hand_over(&mut self, buf: Vec<u8>) -> io::Result<Vec<u8>> {
        while self.in_flight >= IN_FLIGHT {
            self.wait_one()?;
        }
        self.full
            .as_ref()
            .and_then(|full| full.send(buf).ok())
            .ok_or_else(stopped)?;
        self.in_flight += 1;
        Ok(self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER)))
    }

    /// Waits until every buffer handed over is written.
    fn drain(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it holds.
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl FileSink {
    /// Writes to `file`, which already holds `written` bytes (positioned at its end).
    pub fn new(file: File, written: u64) -> Self {
        FileSink {
            buf: Vec::with_capacity(BUFFER),
            written,
            file,
            writer: None,
            failed: None,
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, why)) => Err(io::Error::new(*kind, why.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a failed write, so that every later one fails too.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = Some((e.kind(), e.to_string()));
        e
    }

    /// Hands the filled buffer to the writing thread, starting it if need be.
    fn hand_over(&mut self) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(Writer::start(self.file.try_clone()?)?),
        };
        let full = std::mem::take(&mut self.buf);
        match writer.hand_over(full) {
            Ok(next) => {
                self.buf = next;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.check()?;
        if self.buf.len() + buf.len() > BUFFER && !self.buf.is_empty() {
            self.hand_over()?;
        }
        self.buf.extend_from_slice(buf);
        self.written += buf.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        if !self.buf.is_empty() {
            self.hand_over()?;
        }
        let drained = self.writer.as_mut().map_or(Ok(()), Writer::drain);
        drained.map_err(|e| self.fail(e))
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // As `BufWriter` does: what is buffered is written, errors unheard.
        let _ = self.flush();
    }
}

impl Sink for FileSink {
    fn flush_len(&mut self) -> io::Result<u64> {
        self.flush()?;
        Ok(self.written)
    }

    fn sync_handle(&self) -> io::Result<Option<File>> {
        self.file.try_clone().map(Some)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of varied lengths, several buffers' worth.
    fn lines() -> Vec<Vec<u8>> {
        (0..40_000)
            .map(|i| format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 37)).into_bytes())
            .collect()
    }

    #[test]
    fn a_file_sink_writes_every_byte_in_order_and_counts_from_where_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"kept\n").unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut sink = FileSink::new(file, 5);
        let mut expected = b"kept\n".to_vec();
        for (n, line) in lines().iter().enumerate() {
            sink.write_all(line).unwrap();
            expected.extend_from_slice(line);
            if n == 20_000 {
                // Flushed part way: everything so far is in the file.
                assert_eq!(sink.flush_len().unwrap(), expected.len() as u64);
                assert_eq!(std::fs::read(&path).unwrap(), expected);
            }
        }
        assert!(expected.len() > 4 * BUFFER);
        assert_eq!(sink.flush_len().unwrap(), expected.len() as u64);
        sink.write_all(b"tail\n").unwrap();
        expected.extend_from_slice(b"tail\n");
        // Dropping writes what is buffered, as a `BufWriter` does.
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn a_failed_write_is_told_at_the_flush_and_every_write_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        let file = File::open(&path).unwrap();
        let mut sink = FileSink::new(file, 0);
        let mut failed = None;
        for line in lines() {
            if let Err(e) = sink.write_all(&line) {
                failed = Some(e);
                break;
            }
        }
        let failed = failed.or_else(|| sink.flush().err());
        assert!(failed.is_some(), "writing to a read-only file succeeded");
        assert!(sink.write_all(b"more\n").is_err());
        assert!(sink.flush_len().is_err());
    }
}
