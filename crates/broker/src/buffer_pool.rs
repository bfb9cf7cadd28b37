//! Buffers of a fixed size, reused instead of allocated per use: the broker keeps two pools.
//!
//! **Fetch copy buffers** (`State::copy_buffers`). A fetched slice of a segment file can
//! reach the socket two ways: `sendfile`, which hands the page cache's pages to the socket
//! without copying them, or a read into a buffer and a write. Measured, the copy is the
//! cheaper: sendfile's work per 4 KiB page (looking the page up, a pipe buffer, a reference,
//! a fragment appended to the socket's buffer) costs the broker more CPU per MiB than a read
//! and a write of 1 MiB at a time, and one connection's answers are written by one thread,
//! so that thread's cost per MiB bounds a consumer's rate (`docs/benchmarks.md`, "Fetch
//! copies through a buffer": 1.3x). Each response being sent holds a buffer while its
//! records go out; a response that finds none free sends with `sendfile`.
//!
//! **Produce request buffers** (`State::request_buffers`, `server::read_frame`). A Produce
//! body read into fresh memory costs the kernel a page fault and a cleared page per 4 KiB,
//! and the allocator hands the memory back when it is freed, so the next body pays again:
//! 11% of the broker's CPU under produce load. A body read into a pooled buffer pays that
//! once per buffer. The buffer goes back when the last `Bytes` of its request is dropped.
//!
//! Either way at most a fixed number of buffers exist (`crate::limits`), allocated when
//! first needed and kept; a use that finds none free goes without, so memory stays bounded
//! however many clients there are.
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A pool of buffers of one size.
#[derive(Debug)]
pub(crate) struct BufferPool {
    pool: Mutex<Pool>,
    /// Bytes of each buffer.
    bytes: usize,
}

#[derive(Debug)]
struct Pool {
    free: Vec<Box<[u8]>>,
    /// Buffers that may still be allocated.
    unallocated: usize,
}

impl BufferPool {
    /// A pool of at most `count` buffers of `bytes` each (`count` 0: always none).
    pub(crate) fn new(count: usize, bytes: usize) -> BufferPool {
        let bytes = bytes.max(1);
        BufferPool { pool: Mutex::new(Pool { free: Vec::new(), unallocated: count }), bytes }
    }

    /// Bytes of each buffer.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.bytes
    }

    /// The pool, whatever a panic elsewhere left: a push or a pop cannot be left half done.
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free buffer, allocated now if none is but the limit allows; `None` when all are in
    /// use.
    pub(crate) fn take(self: &Arc<Self>) -> Option<PooledBuffer> {
        let mut pool = self.pool();
        let buffer = match pool.free.pop() {
            Some(buffer) => buffer,
            None if pool.unallocated > 0 => {
                pool.unallocated -= 1;
                drop(pool);
                // Zeroed pages are mapped lazily: the allocation itself writes nothing.
                vec![0u8; self.bytes].into_boxed_slice()
            }
            None => return None,
        };
        debug_assert_eq!(buffer.len(), self.bytes);
        Some(PooledBuffer { buffer: Some(buffer), pool: Arc::clone(self) })
    }
}

/// A buffer taken from [`BufferPool`]; back in the pool when dropped.
#[derive(Debug)]
pub(crate) struct PooledBuffer {
    buffer: Option<Box<[u8]>>,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    /// The buffer's bytes.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        self.buffer.as_deref_mut().unwrap_or_default()
    }

    /// The buffer's bytes, to read.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buffer.as_deref().unwrap_or_default()
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.pool().free.push(buffer);
        }
    }
}

/// `(free, not yet allocated)`: what the pool holds, for tests.
#[cfg(test)]
impl BufferPool {
    pub(crate) fn counts(&self) -> (usize, usize) {
        let pool = self.pool();
        (pool.free.len(), pool.unallocated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_count_buffers_are_out_and_a_returned_one_is_reused() {
        let buffers = Arc::new(BufferPool::new(2, 16));
        let mut first = buffers.take().unwrap();
        let second = buffers.take().unwrap();
        assert!(buffers.take().is_none(), "a third is refused");
        assert_eq!(first.bytes().len(), 16);
        first.bytes()[0] = 7;
        drop(first);
        let mut again = buffers.take().unwrap();
        assert_eq!(again.bytes()[0], 7, "the returned buffer is reused, not a new one");
        drop(second);
        drop(again);
        assert_eq!(buffers.counts(), (2, 0));
    }

    #[test]
    fn a_pool_of_none_always_refuses() {
        let buffers = Arc::new(BufferPool::new(0, 16));
        assert!(buffers.take().is_none());
    }
}
