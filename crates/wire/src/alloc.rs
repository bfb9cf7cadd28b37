//! A global allocator that keeps hostile length prefixes from aborting the process.
//!
//! The message decoders size a `Vec` from the array length a request states before reading
//! its elements (`Vec::with_capacity(n)`). A frame of a few bytes can state 2^31 elements,
//! asking for hundreds of GiB; the system allocator refuses, and Rust aborts on a refused
//! allocation. That would let one bad frame take the broker down.
//!
//! [`GuardedAlloc`] serves any allocation of [`HUGE_BYTES`] or more with an anonymous
//! `MAP_NORESERVE` mapping instead: address space only, no memory is committed until
//! touched. The decoder then fails on the short buffer after touching at most the bytes it
//! really read, drops the `Vec`, and the mapping is returned. No legitimate allocation in
//! sluice is that large (frames are capped at `socket.request.max.bytes`), so the path is
//! taken only for hostile input. Binaries opt in with `#[global_allocator]`.
use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily (1 GiB: ten times the default frame
/// limit, far above any buffer sluice sizes from trusted data).
pub const HUGE_BYTES: usize = 1 << 30;

/// The page size `mmap` aligns to; larger alignments go to the system allocator.
const PAGE_BYTES: usize = 4096;

/// See the module docs.
pub struct GuardedAlloc;

fn lazy(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn reserve(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

// SAFETY: every pointer is released by the same path that produced it: `lazy(layout)`
// depends only on the layout, which Rust passes unchanged to `dealloc`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if lazy(&layout) {
            unsafe { reserve(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if lazy(&layout) {
            // Anonymous mappings read as zeros.
            unsafe { reserve(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(&layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !lazy(&layout) && !lazy(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            let keep = layout.size().min(new_size);
            unsafe { std::ptr::copy_nonoverlapping(ptr, new_ptr, keep) };
            unsafe { self.dealloc(ptr, layout) };
        }
        new_ptr
    }
}
