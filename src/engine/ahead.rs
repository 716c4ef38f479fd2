//! Memory made resident ahead of need by a helper thread. A page written for the first time
//! costs a fault, and on some machines (virtual ones above all) faulting in fresh memory
//! takes longer than filling it: a table that grows in big steps (a chunk of counters, an
//! index twice the size) would stall its one deciding thread on every page. A helper
//! thread, started well before the memory is needed, takes those faults on the other core.

use std::mem::MaybeUninit;
use std::thread::JoinHandle;

/// Bytes of the smallest page whose fault a write pays.
const PAGE: usize = 4096;

/// One vector being made ready by a helper thread, known by its length.
#[derive(Debug)]
pub struct Ahead<T> {
    pending: Option<(usize, JoinHandle<Vec<T>>)>,
}

impl<T> Default for Ahead<T> {
    fn default() -> Self {
        Ahead { pending: None }
    }
}

impl<T: Send + 'static> Ahead<T> {
    /// Whether a vector is being made ready.
    #[cfg(test)]
    pub fn is_started(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts making ready `make(len)` (`filled` or `room`), unless one is already on its
    /// way. Without a thread, nothing is started and `take` will say so.
    pub fn start(&mut self, len: usize, make: fn(usize) -> Vec<T>) {
        if self.pending.is_some() {
            return;
        }
        let helper = std::thread::Builder::new()
            .name("promo-ahead".into())
            .spawn(move || make(len));
        if let Ok(handle) = helper {
            self.pending = Some((len, handle));
        }
    }

    /// The vector made ready for `len`, waiting for it if need be; `None` if none was
    /// started, or one for another length (which is dropped).
    pub fn take(&mut self, len: usize) -> Option<Vec<T>> {
        let (made_for, handle) = self.pending.take()?;
        let made = handle.join().ok()?;
        (made_for == len).then_some(made)
    }
}

impl<T: Clone + Default + Send + 'static> Ahead<T> {
    /// For an open-addressed index of `slots` slots (a default one empty) holding `len`
    /// keys, which doubles once 3/4 full: once a large one (`index_ahead`) is 5/8 full,
    /// starts making the doubled index ready, early enough for its pages to be written when
    /// it is due, late enough that an index reserved for what is expected holds no spare.
    pub fn ready_index(&mut self, len: usize, slots: usize) {
        if len * 8 > slots * 5 && slots >= index_ahead::<T>() {
            self.start(slots * 2, filled);
        }
    }
}

/// Frees `value` on a helper thread: a table of tens of megabytes took milliseconds to
/// unmap, on the deciding thread of the service. If no thread can start, the closure, and
/// `value` with it, is dropped here.
pub fn drop_aside<T: Send + 'static>(value: T) {
    let helper = std::thread::Builder::new().name("promo-free".into());
    let _detached = helper.spawn(move || drop(value));
}

/// Bytes of an index from which its next one is made ready ahead (`ready_index`).
pub const LARGE: usize = 4 << 20;

/// Slots of `T` from which an index is large (`ready_index`): `LARGE` bytes of them, a
/// power of two as an index's length is.
pub const fn index_ahead<T>() -> usize {
    let size = std::mem::size_of::<T>();
    (LARGE / if size == 0 { 1 } else { size }).next_power_of_two()
}

/// Values of `T` in a page.
fn per_page<T>() -> usize {
    (PAGE / std::mem::size_of::<T>().max(1)).max(1)
}

/// `len` default values, every page written.
pub fn filled<T: Clone + Default>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    touch(&mut v);
    v
}

/// An empty vector with room for `len` values, every page of the room written.
pub fn room<T>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    touch_room(&mut v);
    v
}

/// Writes to every page of `values`, so that the kernel provides them now.
pub fn touch<T: Clone>(values: &mut [T]) {
    for x in values.iter_mut().step_by(per_page::<T>()) {
        // Written back through `black_box`: a store the compiler cannot drop.
        *x = std::hint::black_box(x.clone());
    }
}

/// Writes to every page of the room past `v`'s length.
pub fn touch_room<T>(v: &mut Vec<T>) {
    for x in v.spare_capacity_mut().iter_mut().step_by(per_page::<T>()) {
        // Past the length: never read, only there to fault its page in.
        *x = std::hint::black_box(MaybeUninit::zeroed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes resident in the mapping of this process that holds `addr`, by
    /// `/proc/self/smaps`.
    #[cfg(target_os = "linux")]
    fn resident_bytes_at(addr: usize) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let range = line.split_whitespace().next()?;
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            if (start..end).contains(&addr) {
                let rss = lines.find(|l| l.starts_with("Rss:"))?;
                let kib: usize = rss.split_whitespace().nth(1)?.parse().ok()?;
                return Some(kib * 1024);
            }
        }
        None
    }

    /// What a helper thread makes ready is resident when taken: its pages were written,
    /// so the deciding thread takes no fault for them.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_room_made_ready_is_resident() {
        const BYTES: usize = 64 << 20;
        let len = BYTES / std::mem::size_of::<u64>();
        let mut next: Ahead<u64> = Ahead::default();
        next.start(len, room);
        let ready = next.take(len).unwrap();
        let resident = resident_bytes_at(ready.as_ptr() as usize).unwrap();
        assert!(resident >= BYTES, "{resident} bytes resident");
    }

    #[test]
    fn gives_the_shape_asked_for_once_and_only_for_its_length() {
        let mut values: Ahead<u64> = Ahead::default();
        assert!(values.take(8).is_none());
        values.start(10_000, filled);
        assert!(values.is_started());
        // A second start while one is on its way changes nothing.
        values.start(3, room);
        assert_eq!(values.take(10_000), Some(vec![0u64; 10_000]));
        assert!(!values.is_started());
        assert!(values.take(10_000).is_none());

        let mut spare: Ahead<(u32, u64)> = Ahead::default();
        spare.start(5_000, room);
        let v = spare.take(5_000).unwrap_or_default();
        assert!(v.is_empty() && v.capacity() >= 5_000);

        // Made for another length: dropped, not given.
        spare.start(16, filled);
        assert!(spare.take(32).is_none());
        assert!(!spare.is_started());
    }
}
