//! Sorted runs of fixed-width entries in anonymous temporary files: what `SeenIds` and the
//! coupon ledger keep of themselves beyond their memory budget.
//!
//! An entry is a 128-bit key followed by `V` bytes of value. A run is written once, in key
//! order, and keeps in memory only a Bloom filter of its keys (about 10 bits a key), the
//! first key of each 4 KiB page of its file and its length: a key that is not in a run
//! costs about one filter check, and one that is (or that the filter lets through) one
//! positioned read of one page. Runs are merged two by two so that each is less than half
//! the size of the one before it: about log2(entries / spill size) runs, each entry written
//! O(log) times. A newer run shadows an older one: lookups go newest first, and a merge
//! keeps the newer entry of a key. The merges a spill makes due run on a helper thread;
//! meanwhile lookups read the runs being merged, which stay as they were.
//!
//! Nothing is ever approximate: a filter only spares reads; when a file cannot be written
//! the caller keeps its entries in memory; when a page cannot be read, the lookup says so.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

use fastbloom::BloomFilter;

/// Bytes of a key, in memory or in a run's file.
const KEY: usize = 16;
/// The most bytes of a page of a run's file: the unit of one lookup's read.
const PAGE: usize = 4096;
/// Bits of a run's Bloom filter per key (about 1% false positives).
const FILTER_BITS_PER_KEY: usize = 10;
/// The buffer of each file streamed while spilling or merging.
const STREAM_BUFFER: usize = 64 << 10;

/// Makes the file of a new run (`tempfile::tempfile`, or a failing stand-in in tests).
pub(super) type MakeFile = fn() -> io::Result<File>;

/// Runs of entries with `V`-byte values, oldest first.
pub(super) struct Runs<const V: usize> {
    runs: Vec<Arc<Run<V>>>,
    /// The merges due after the last spill, running on a helper thread: lookups read the
    /// runs they merge until the next spill (or `finish_merges`) puts the result in their
    /// place.
    merging: Option<JoinHandle<Merged<V>>>,
    pub(super) make_file: MakeFile,
    /// What the entries are, for warnings.
    what: &'static str,
    /// The first time a file could not be written or merged: said once, at the end of a
    /// run (`State::storage_warnings`), not per failure.
    warning: Option<String>,
}

/// Writes `entries` (`len` of them, in increasing key order) as a run in a new file of
/// `make_file`'s, to be taken by `Runs::add`.
pub(super) fn write_run<const V: usize>(
    make_file: MakeFile,
    entries: impl IntoIterator<Item = (u128, [u8; V])>,
    len: usize,
) -> io::Result<Run<V>> {
    let mut w = RunWriter::new(make_file()?, len);
    for (key, value) in entries {
        w.push(key, &value)?;
    }
    w.finish()
}

/// Sorted entries in a temporary file.
pub(super) struct Run<const V: usize> {
    file: File,
    /// Holds every key of the run (and about 1% of the others).
    filter: BloomFilter,
    /// The first key of each page of the file.
    index: Vec<u128>,
    /// Entries in the file.
    len: usize,
}

/// What the merges of a spill made: the run that replaces every run from `at` on, if any
/// merge was done, and the error that stopped them, if one did.
struct Merged<const V: usize> {
    at: usize,
    run: Option<Arc<Run<V>>>,
    error: Option<io::Error>,
}

/// What a run's filter is given for a key: its high half. Keys are uniform hashes already,
/// and in-memory tables index by the low bits.
fn filter_hash(key: u128) -> u64 {
    (key >> 64) as u64
}

impl<const V: usize> Runs<V> {
    /// No runs yet; `what` names the entries in warnings.
    pub(super) fn new(what: &'static str) -> Self {
        Runs {
            runs: Vec::new(),
            merging: None,
            make_file: tempfile::tempfile,
            what,
            warning: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// What went wrong first with the files, if anything did (no entry was lost).
    pub(super) fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Entries in all runs (a key in two runs counts twice, until they merge: see
    /// `finish_merges`).
    pub(super) fn len(&self) -> usize {
        self.runs.iter().map(|r| r.len).sum()
    }

    /// The lengths of the runs, oldest first (merges still running not yet counted).
    pub(super) fn lens(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.len).collect()
    }

    /// Waits for the merges still running, if any, and puts their result in place of the
    /// runs they merged.
    pub(super) fn finish_merges(&mut self) {
        let Some(merging) = self.merging.take() else {
            return;
        };
        let merged = merging.join().unwrap_or_else(|_| Merged {
            at: self.runs.len(),
            run: None,
            error: Some(io::Error::other("the thread merging them stopped")),
        });
        self.apply(merged);
    }

    /// Puts what merges made in place of the runs they merged.
    fn apply(&mut self, merged: Merged<V>) {
        if let Some(run) = merged.run {
            self.runs.truncate(merged.at);
            self.runs.push(run);
        }
        if let Some(e) = merged.error {
            self.warning.get_or_insert_with(|| {
                format!("cannot merge temporary files of {} ({e})", self.what)
            });
        }
    }

    /// Whether a run may hold `key`: false means none does, without reading a file.
    pub(super) fn may_hold(&self, key: u128) -> bool {
        let probe = filter_hash(key);
        self.runs.iter().any(|r| r.filter.contains_hash(probe))
    }

    /// The value of `key` in the newest run holding it. An error means a page could not be
    /// read, so whether a run holds it is unknown.
    pub(super) fn find(&self, key: u128) -> io::Result<Option<[u8; V]>> {
        let probe = filter_hash(key);
        for run in self.runs.iter().rev() {
            if run.filter.contains_hash(probe) {
                if let Some(value) = run.find(key)? {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    /// Writes `entries` (`len` of them, in increasing key order) as the newest run, then
    /// merges runs as due. False when the run could not be written (warning once): the
    /// caller keeps the entries.
    pub(super) fn spill(
        &mut self,
        entries: impl IntoIterator<Item = (u128, [u8; V])>,
        len: usize,
    ) -> bool {
        self.finish_merges();
        let written = write_run(self.make_file, entries, len);
        self.add(written)
    }

    /// Takes a run written by `write_run` (on another thread, say) as the newest, then
    /// merges runs as due. False when it could not be written (warning once): the caller
    /// keeps its entries.
    pub(super) fn add(&mut self, written: io::Result<Run<V>>) -> bool {
        self.finish_merges();
        match written {
            Ok(run) => {
                self.runs.push(Arc::new(run));
                self.merge_runs();
                true
            }
            Err(e) => {
                self.warning.get_or_insert_with(|| {
                    format!(
                        "cannot write {} to a temporary file ({e}): kept them in memory, past \
                         the budget",
                        self.what
                    )
                });
                false
            }
        }
    }

    /// Starts the merges now due (`cascade`) on a helper thread, or runs them here
    /// without one.
    fn merge_runs(&mut self) {
        if !merge_due(&self.runs) {
            return;
        }
        let (runs, make_file) = (self.runs.clone(), self.make_file);
        let helper = std::thread::Builder::new()
            .name("promo-merge".into())
            .spawn(move || cascade(runs, make_file));
        match helper {
            Ok(merging) => self.merging = Some(merging),
            Err(_) => self.apply(cascade(self.runs.clone(), self.make_file)),
        }
    }
}

/// Whether the newest run is at least half the size of the one before it.
fn merge_due<const V: usize>(runs: &[Arc<Run<V>>]) -> bool {
    matches!(runs, [.., older, newer] if newer.len * 2 >= older.len)
}

/// Merges the two newest of `runs` while they are due (`merge_due`), so that each run is
/// less than half the size of the one before it. A merge that fails keeps both runs.
fn cascade<const V: usize>(mut runs: Vec<Arc<Run<V>>>, make_file: MakeFile) -> Merged<V> {
    let mut merged = Merged {
        at: runs.len(),
        run: None,
        error: None,
    };
    while merge_due(&runs) {
        let [.., older, newer] = runs.as_slice() else {
            break;
        };
        match make_file().and_then(|file| merge(file, older, newer)) {
            Ok(run) => {
                runs.truncate(runs.len() - 2);
                let run = Arc::new(run);
                runs.push(run.clone());
                merged.at = runs.len() - 1;
                merged.run = Some(run);
            }
            Err(e) => {
                merged.error = Some(e);
                break;
            }
        }
    }
    merged
}

impl<const V: usize> Run<V> {
    /// Bytes of an entry.
    const ENTRY: usize = KEY + V;
    /// Entries in a full page.
    const PER_PAGE: usize = PAGE / Self::ENTRY;

    /// The value of `key` in the file: one read of the one page that may hold it.
    fn find(&self, key: u128) -> io::Result<Option<[u8; V]>> {
        let Some(page) = self
            .index
            .partition_point(|&first| first <= key)
            .checked_sub(1)
        else {
            return Ok(None);
        };
        let start = page * Self::PER_PAGE;
        let entries = self.len.saturating_sub(start).min(Self::PER_PAGE);
        let mut buf = [0u8; PAGE];
        let Some(bytes) = buf.get_mut(..entries * Self::ENTRY) else {
            return Ok(None);
        };
        read_at(&self.file, bytes, (start * Self::ENTRY) as u64)?;
        Ok(search(bytes, Self::ENTRY, key).and_then(|entry| entry.get(KEY..)?.try_into().ok()))
    }
}

/// The key of an entry (its first 16 bytes).
fn key_of(entry: &[u8]) -> Option<u128> {
    Some(u128::from_le_bytes(entry.get(..KEY)?.try_into().ok()?))
}

/// The entry of `key` among `bytes`, entries of `width` bytes in increasing key order.
fn search(bytes: &[u8], width: usize, key: u128) -> Option<&[u8]> {
    let (mut low, mut high) = (0, bytes.len() / width);
    while low < high {
        let mid = low + (high - low) / 2;
        let entry = bytes.get(mid * width..(mid + 1) * width)?;
        match key_of(entry)?.cmp(&key) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Greater => high = mid,
            std::cmp::Ordering::Equal => return Some(entry),
        }
    }
    None
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.seek(io::SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Writes entries in key order to a run's file, building its filter and index on the way.
struct RunWriter<const V: usize> {
    out: BufWriter<File>,
    filter: BloomFilter,
    index: Vec<u128>,
    len: usize,
}

impl<const V: usize> RunWriter<V> {
    /// A writer of at most `expected` entries.
    fn new(file: File, expected: usize) -> Self {
        let bits = expected.saturating_mul(FILTER_BITS_PER_KEY).max(64);
        RunWriter {
            out: BufWriter::with_capacity(STREAM_BUFFER, file),
            filter: BloomFilter::with_num_bits(bits).expected_items(expected.max(1)),
            index: Vec::with_capacity(expected.div_ceil(Run::<V>::PER_PAGE)),
            len: 0,
        }
    }

    /// Appends `key`, greater than every key before it, with its value.
    fn push(&mut self, key: u128, value: &[u8; V]) -> io::Result<()> {
        if self.len.is_multiple_of(Run::<V>::PER_PAGE) {
            self.index.push(key);
        }
        self.filter.insert_hash(filter_hash(key));
        self.out.write_all(&key.to_le_bytes())?;
        self.out.write_all(value)?;
        self.len += 1;
        Ok(())
    }

    fn finish(self) -> io::Result<Run<V>> {
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok(Run {
            file,
            filter: self.filter,
            index: self.index,
            len: self.len,
        })
    }
}

/// Reads a run's entries in order from the start of its file.
struct RunReader<'f, const V: usize> {
    input: BufReader<&'f File>,
    left: usize,
}

impl<'f, const V: usize> RunReader<'f, V> {
    fn new(run: &'f Run<V>) -> io::Result<Self> {
        let mut file = &run.file;
        file.rewind()?;
        Ok(RunReader {
            input: BufReader::with_capacity(STREAM_BUFFER, file),
            left: run.len,
        })
    }

    fn next(&mut self) -> io::Result<Option<(u128, [u8; V])>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut key = [0u8; KEY];
        let mut value = [0u8; V];
        self.input.read_exact(&mut key)?;
        self.input.read_exact(&mut value)?;
        self.left -= 1;
        Ok(Some((u128::from_le_bytes(key), value)))
    }
}

/// Streams the entries of two runs, in order and each key once (the newer's entry where
/// both hold it), into a new run in `file`.
fn merge<const V: usize>(file: File, older: &Run<V>, newer: &Run<V>) -> io::Result<Run<V>> {
    let mut w = RunWriter::new(file, older.len + newer.len);
    let mut ro = RunReader::new(older)?;
    let mut rn = RunReader::new(newer)?;
    let (mut o, mut n) = (ro.next()?, rn.next()?);
    loop {
        match (&o, &n) {
            (Some((p, value)), Some((q, _))) if p < q => {
                w.push(*p, value)?;
                o = ro.next()?;
            }
            (Some((p, _)), Some((q, value))) => {
                w.push(*q, value)?;
                if p == q {
                    o = ro.next()?;
                }
                n = rn.next()?;
            }
            (Some((p, value)), None) => {
                w.push(*p, value)?;
                o = ro.next()?;
            }
            (None, Some((q, value))) => {
                w.push(*q, value)?;
                n = rn.next()?;
            }
            (None, None) => break,
        }
    }
    w.finish()
}

/// Stand-ins for `tempfile::tempfile` that fail, for the tests of the users of runs.
#[cfg(test)]
pub(super) mod failing {
    use std::fs::File;
    use std::io;

    /// No file can be made: spills fail.
    pub fn no_room() -> io::Result<File> {
        Err(io::Error::other("no room"))
    }

    /// A file that takes writes and fails every read: lookups in its run fail.
    #[cfg(unix)]
    pub fn write_only() -> io::Result<File> {
        std::fs::OpenOptions::new().write(true).open("/dev/null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entries(keys: impl IntoIterator<Item = u128>, tag: u8) -> Vec<(u128, [u8; 2])> {
        keys.into_iter().map(|k| (k, [k as u8, tag])).collect()
    }

    #[test]
    fn a_merge_keeps_the_newer_entry_of_a_key() {
        let mut runs = Runs::<2>::new("test entries");
        assert!(runs.spill(entries(0..100, 1), 100));
        assert!(runs.spill(entries(50..150, 2), 100));
        // The same answers while the merge may still be running, and once it is in place.
        for settled in [false, true] {
            if settled {
                runs.finish_merges();
                assert_eq!(runs.lens(), [150], "merged, each key once");
            }
            assert_eq!(runs.find(49).unwrap(), Some([49, 1]));
            assert_eq!(runs.find(50).unwrap(), Some([50, 2]));
            assert_eq!(runs.find(149).unwrap(), Some([149, 2]));
            assert_eq!(runs.find(150).unwrap(), None);
        }
    }

    #[test]
    fn newer_runs_shadow_older_ones_through_merges() {
        let mut runs = Runs::<2>::new("test entries");
        let mut model = BTreeMap::new();
        // Keys spread over the whole range, so the filter and the index both matter; each
        // spill rewrites every third key of the one before.
        let key = |n: u128| n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        for tag in 0..40u8 {
            let mut spill: Vec<(u128, [u8; 2])> = entries(
                (u128::from(tag) * 300..u128::from(tag) * 300 + 500)
                    .step_by(if tag % 2 == 0 { 1 } else { 3 })
                    .map(key),
                tag,
            );
            spill.sort_unstable_by_key(|e| e.0);
            model.extend(spill.iter().copied());
            assert!(runs.spill(spill.iter().copied(), spill.len()));
            // Lookups read the runs a merge still running is merging.
            for (&k, v) in model.iter().step_by(7) {
                assert_eq!(runs.find(k).unwrap(), Some(*v), "{k:x}");
            }
        }
        runs.finish_merges();
        let lens = runs.lens();
        for pair in lens.windows(2) {
            assert!(pair[1] * 2 < pair[0], "runs not merged: {lens:?}");
        }
        assert!(lens.len() < 8, "{lens:?}");
        for (&k, v) in &model {
            assert_eq!(runs.find(k).unwrap(), Some(*v), "{k:x}");
        }
        for n in 40 * 300 + 500..40 * 300 + 600 {
            assert_eq!(runs.find(key(n)).unwrap(), None);
        }
    }
}
