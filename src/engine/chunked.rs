//! A vector in chunks of a fixed number of values that never move: growing adds a chunk
//! rather than copying every value into a room twice the size, which on the service's
//! deciding thread took milliseconds per million values, every request waiting. With
//! `grow_ahead`, each next chunk is made ready on a helper thread once the last one is half
//! full (`Ahead`).

use super::ahead::{self, Ahead};

/// Values by index, in chunks of `1 << bits`.
#[derive(Debug)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
    bits: u32,
    /// Chunks made ready before they are needed (`reserve_touched`), in the order needed.
    spare: Vec<Vec<T>>,
    /// With `grow_ahead`, the next chunk.
    next: Option<Ahead<T>>,
}

impl<T> Chunked<T> {
    /// Empty, in chunks of `1 << bits` values.
    pub fn with_chunk_bits(bits: u32) -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
            bits,
            spare: Vec::new(),
            next: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per chunk.
    pub fn per_chunk(&self) -> usize {
        1 << self.bits
    }

    /// The chunk of index `i`, and its place there.
    pub fn at(&self, i: usize) -> (usize, usize) {
        (i >> self.bits, i & (self.per_chunk() - 1))
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        let (c, j) = self.at(i);
        self.chunks.get(c)?.get(j)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let (c, j) = self.at(i);
        self.chunks.get_mut(c)?.get_mut(j)
    }

    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Room for values in the chunks made, spare ones included.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.chunks
            .iter()
            .chain(&self.spare)
            .map(Vec::capacity)
            .sum()
    }

    /// Keeps the first `len` values; the chunks left empty are freed.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let chunks = len.div_ceil(self.per_chunk());
        self.chunks.truncate(chunks);
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len - ((chunks - 1) << self.bits));
        }
        self.len = len;
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    /// The value of index `i`; panics past the end, as a vector does.
    fn index(&self, i: usize) -> &T {
        let (c, j) = self.at(i);
        &self.chunks[c][j]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        let (c, j) = self.at(i);
        &mut self.chunks[c][j]
    }
}

impl<T: Send + 'static> Chunked<T> {
    /// Makes each next chunk ready on a helper thread.
    pub fn grow_ahead(&mut self) {
        self.next.get_or_insert_with(Ahead::default);
    }

    /// Adds `value` after the others; returns its index.
    pub fn push(&mut self, value: T) -> usize {
        let (c, j) = self.at(self.len);
        if c == self.chunks.len() {
            let chunk = self.new_chunk();
            self.chunks.push(chunk);
        } else if j == self.per_chunk() / 2 && self.spare.is_empty() {
            let per_chunk = self.per_chunk();
            if let Some(next) = &mut self.next {
                next.start(per_chunk, ahead::room);
            }
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(value);
        }
        self.len += 1;
        self.len - 1
    }

    /// The room of the next chunk: a spare one, the one made ready ahead, or a fresh one.
    fn new_chunk(&mut self) -> Vec<T> {
        let per_chunk = self.per_chunk();
        if let Some(chunk) = self.spare.pop() {
            return chunk;
        }
        let ready = self.next.as_mut().and_then(|next| next.take(per_chunk));
        ready.unwrap_or_else(|| Vec::with_capacity(per_chunk))
    }

    /// Makes room for `n` more values (room never written costs no memory).
    pub fn reserve(&mut self, n: usize) {
        self.spare_for(n, Vec::with_capacity);
    }

    /// Makes room for `n` more values, every page of it written (so that the kernel
    /// provides the pages now, not one fault at a time as values land on them).
    pub fn reserve_touched(&mut self, n: usize) {
        if let Some(last) = self.chunks.last_mut() {
            ahead::touch_room(last);
        }
        self.spare_for(n, ahead::room);
    }

    /// Makes spare chunks, by `make`, for the `n` more values the chunks made do not hold.
    fn spare_for(&mut self, n: usize, make: fn(usize) -> Vec<T>) {
        let room = self.chunks.len() * self.per_chunk() - self.len;
        let chunks = n.saturating_sub(room).div_ceil(self.per_chunk());
        while self.spare.len() < chunks {
            self.spare.push(make(self.per_chunk()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_across_chunks() {
        let mut v = Chunked::with_chunk_bits(3);
        for n in 0..100u32 {
            assert_eq!(v.push(n), n as usize);
        }
        assert_eq!((v.len(), v.chunks.len()), (100, 13));
        assert!((0..100u32).all(|n| v.get(n as usize) == Some(&n)));
        assert_eq!(v.get(100), None);
        if let Some(x) = v.get_mut(42) {
            *x = 7;
        }
        assert_eq!(v.get(42), Some(&7));
        assert_eq!(v.iter().count(), 100);
        assert_eq!(v.iter().nth(43), Some(&43));
    }

    /// What the chunks are for: adding values never moves those held.
    #[test]
    fn a_value_held_never_moves() {
        let mut v = Chunked::with_chunk_bits(4);
        v.push(0u64);
        let first: *const u64 = v.get(0).map_or(std::ptr::null(), |x| x);
        for n in 1..10_000 {
            v.push(n);
        }
        assert_eq!(v.get(0).map_or(std::ptr::null(), |x| x), first);
    }

    #[test]
    fn chunks_reserved_and_made_ahead_are_whole_and_used_in_order() {
        let mut v = Chunked::with_chunk_bits(5);
        v.grow_ahead();
        v.push(0u32);
        v.reserve_touched(100);
        // The first chunk has 31 more; 69 more take three spare chunks.
        assert_eq!(v.spare.len(), 3);
        for n in 1..1_000u32 {
            v.push(n);
        }
        assert!(v.spare.is_empty());
        assert!(v.chunks.iter().all(|c| c.capacity() == 32));
        assert!((0..1_000u32).all(|n| v.get(n as usize) == Some(&n)));
    }
}
