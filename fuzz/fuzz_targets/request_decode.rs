//! Fuzzes request decoding, record batch validation and the rewrite of a batch in a topic's
//! compression.type: none may panic or abort on any input.
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run request_decode` from the repo root.
//! The corpus in `fuzz/corpus/request_decode/` is replayed by `cargo test -p sluice-wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: sluice_wire::alloc::GuardedAlloc = sluice_wire::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    sluice_wire::fuzzing::decode_untrusted(data);
});
