//! Checksums of everything the store writes, verified on every read. SQLite checks the
//! structure of its pages (`PRAGMA quick_check`), not the values in them: a flipped bit in
//! a value or a blob was read as another state (a min spend of 51 read as
//! 36028797018964019). So every row carries a CRC-32 of its table and values in a `sum`
//! column, and every blob one of its table, batch number and bytes in its first 4 bytes.
//! SQLite's own checksum VFS (`cksumvfs`) is C outside the bundled build, registered
//! through `unsafe` code, which the crate forbids.

/// A CRC-32 of a table's name and one row's values, each value framed (a tag, and a length
/// for text) so that no two rows encode alike.
pub struct Sum(crc32fast::Hasher);

impl Sum {
    pub fn new(table: &str) -> Sum {
        let mut h = crc32fast::Hasher::new();
        h.update(table.as_bytes());
        h.update(&[0]);
        Sum(h)
    }

    pub fn int(mut self, v: i64) -> Sum {
        self.0.update(&[1]);
        self.0.update(&v.to_le_bytes());
        self
    }

    pub fn text(mut self, v: &str) -> Sum {
        self.0.update(&[2]);
        self.0.update(&(v.len() as u64).to_le_bytes());
        self.0.update(v.as_bytes());
        self
    }

    pub fn opt_text(mut self, v: Option<&str>) -> Sum {
        match v {
            Some(v) => self.text(v),
            None => {
                self.0.update(&[3]);
                self
            }
        }
    }

    /// The sum as the `sum` column holds it.
    pub fn finish(self) -> i64 {
        i64::from(self.0.finalize())
    }
}

/// Where blobs are sealed as stored: the CRC-32 of their table, batch and payload (little
/// endian), then the payload. The batch is summed too: the log is applied in batch order.
/// The buffer is kept from one blob to the next: taking fresh memory for each of a
/// commit's blobs had the writing thread wait on page faults.
#[derive(Debug, Default)]
pub struct SealBuffer(Vec<u8>);

impl SealBuffer {
    /// The blob of `payload` in `table` under `batch`.
    pub fn seal(&mut self, table: &str, batch: i64, payload: &[u8]) -> &[u8] {
        self.open().extend_from_slice(payload);
        self.close(table, batch)
    }

    /// Starts a blob whose payload is appended to the vector returned.
    pub fn open(&mut self) -> &mut Vec<u8> {
        self.0.clear();
        self.0.extend_from_slice(&[0; 4]);
        &mut self.0
    }

    /// The blob started with `open`, sealed.
    pub fn close(&mut self, table: &str, batch: i64) -> &[u8] {
        if let Some((sum, payload)) = self.0.split_first_chunk_mut::<4>() {
            *sum = blob_sum(table, batch, payload).to_le_bytes();
        }
        &self.0
    }
}

/// The payload of a stored blob, if its checksum matches.
pub fn unseal<'b>(table: &str, batch: i64, blob: &'b [u8]) -> Option<&'b [u8]> {
    let (sum, payload) = blob.split_first_chunk::<4>()?;
    (u32::from_le_bytes(*sum) == blob_sum(table, batch, payload)).then_some(payload)
}

fn blob_sum(table: &str, batch: i64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(table.as_bytes());
    h.update(&[0]);
    h.update(&batch.to_le_bytes());
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_blob_opens_only_unchanged_and_under_its_own_batch_and_table() {
        let mut buffer = SealBuffer::default();
        buffer.seal("seen", 9, b"a longer payload, sealed before");
        let blob = buffer.seal("changes", 7, b"payload").to_vec();
        assert_eq!(unseal("changes", 7, &blob), Some(&b"payload"[..]));
        assert_eq!(unseal("changes", 8, &blob), None);
        assert_eq!(unseal("seen", 7, &blob), None);
        for bit in 0..blob.len() * 8 {
            let mut flipped = blob.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(unseal("changes", 7, &flipped), None, "bit {bit}");
        }
        assert_eq!(unseal("changes", 7, &blob[..3]), None);
    }

    #[test]
    fn values_are_framed_so_that_moved_bytes_change_the_sum() {
        let a = Sum::new("t").text("ab").text("c").finish();
        let b = Sum::new("t").text("a").text("bc").finish();
        assert_ne!(a, b);
        assert_ne!(
            Sum::new("t").opt_text(None).finish(),
            Sum::new("t").opt_text(Some("")).finish()
        );
        assert_ne!(Sum::new("t").int(1).finish(), Sum::new("u").int(1).finish());
    }
}
