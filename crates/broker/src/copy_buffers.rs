//! Buffers a Fetch's record bytes are copied through on their way to the socket.
//!
//! A fetched slice of a segment file can reach the socket two ways: `sendfile`, which hands
//! the page cache's pages to the socket without copying them, or a read into a buffer and a
//! write. Measured, the copy is the cheaper: sendfile's work per 4 KiB page (looking the
//! page up, a pipe buffer, a reference, a fragment appended to the socket's buffer) costs
//! the broker more CPU per MiB than a read and a write of 1 MiB at a time, and one
//! connection's answers are written by one thread, so that thread's cost per MiB bounds a
//! consumer's rate (`docs/benchmarks.md`, "Fetch copies through a buffer": 1.3x).
//!
//! Each response being sent holds a buffer while its records go out. At most
//! [`FETCH_COPY_BUFFERS`](crate::limits::FETCH_COPY_BUFFERS) exist, allocated when first
//! needed and kept for reuse; a response that finds none free sends with `sendfile`, so
//! memory stays bounded however many consumers fetch at once.
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The broker's pool of copy buffers.
#[derive(Debug)]
pub(crate) struct CopyBuffers {
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

impl CopyBuffers {
    /// A pool of at most `count` buffers of `bytes` each (`count` 0: always `sendfile`).
    pub(crate) fn new(count: usize, bytes: usize) -> CopyBuffers {
        let bytes = bytes.max(1);
        CopyBuffers { pool: Mutex::new(Pool { free: Vec::new(), unallocated: count }), bytes }
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
    pub(crate) fn take(self: &Arc<Self>) -> Option<CopyBuffer> {
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
        Some(CopyBuffer { buffer: Some(buffer), pool: Arc::clone(self) })
    }
}

/// A buffer taken from [`CopyBuffers`]; back in the pool when dropped.
#[derive(Debug)]
pub(crate) struct CopyBuffer {
    buffer: Option<Box<[u8]>>,
    pool: Arc<CopyBuffers>,
}

impl CopyBuffer {
    /// The buffer's bytes.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        self.buffer.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for CopyBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.pool().free.push(buffer);
        }
    }
}

/// `(free, not yet allocated)`: what the pool holds, for tests.
#[cfg(test)]
impl CopyBuffers {
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
        let buffers = Arc::new(CopyBuffers::new(2, 16));
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
        let buffers = Arc::new(CopyBuffers::new(0, 16));
        assert!(buffers.take().is_none());
    }
}
