//! Fuzzes request decoding and record batch validation: neither may panic or abort on any
//! input. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run request_decode` from the repo root.
//! The corpus in `fuzz/corpus/request_decode/` is replayed by `cargo test -p sluice-wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: sluice_wire::alloc::GuardedAlloc = sluice_wire::alloc::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_wire::request::decode(bytes::Bytes::copy_from_slice(data));
    let _ = sluice_wire::batch::validate_all(data, 1 << 20);
    // The same bytes as one batch, its length and CRC made to match, so validation reaches
    // the records' walk.
    if data.len() >= 61 {
        let mut fixed = data.to_vec();
        let length = (fixed.len() - 12) as i32;
        fixed[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&fixed[21..]);
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = sluice_wire::batch::validate_all(&fixed, 1 << 20);
    }
    if let Some(rest) = data.get(8..) {
        let _ = sluice_wire::batch::first_record_at_or_after(rest, 0);
    }
});
