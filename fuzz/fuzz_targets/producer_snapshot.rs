//! Fuzzes the producer state snapshot decoder (files a crash or a bad disk may corrupt) and
//! the transaction marker reader: neither may panic on any input, and whatever decodes must
//! encode back to the same bytes. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run producer_snapshot`
//! from the repo root. The corpus in `fuzz/corpus/producer_snapshot/` is replayed by
//! `cargo test -p sluice-log`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(states) = sluice_log::ProducerStates::decode(data) {
        assert_eq!(states.encode(), data, "a decoded snapshot re-encodes to its bytes");
    }
    let _ = sluice_wire::batch::control_type(data);
});
