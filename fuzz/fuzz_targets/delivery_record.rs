//! Fuzzes what a delivery stream does with untrusted record bytes (Parquet conversion,
//! dynamic partitioning's query, compression) and with prefix and query text: nothing may
//! panic, and gzip must round-trip. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run delivery_record`
//! from the repo root. The corpus in `fuzz/corpus/delivery_record/` is replayed by
//! `cargo test -p sluice-delivery`.
#![no_main]

use std::io::Read;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_delivery::compression::{Compression, Encoder};
use sluice_delivery::conversion::{ColumnType, Rows, Schema};
use sluice_delivery::query::Query;
use sluice_delivery::template::{PrefixKind, Template};

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(Schema {
        columns: vec![
            ("id".into(), ColumnType::BigInt),
            ("name".into(), ColumnType::String),
            ("at".into(), ColumnType::Timestamp),
            ("ok".into(), ColumnType::Boolean),
            ("x".into(), ColumnType::Double),
            ("i".into(), ColumnType::Int),
            ("f".into(), ColumnType::Float),
        ],
        compression: parquet::basic::Compression::SNAPPY,
    });
    let mut rows = Rows::new(schema);
    let _ = rows.push(data);
    rows.finish().expect("rows that converted always write");
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let query = Query::parse("{a: .a, b: .b[0].c, q: .\"q r\"}").expect("a valid query");
        let _ = query.extract(&value);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Template::parse(text, PrefixKind::Data);
        let _ = Template::parse(text, PrefixKind::Error);
        let _ = Query::parse(text);
    }
    let mut encoder = Encoder::new(Compression::Gzip, "x").expect("gzip starts");
    encoder.write(data).expect("gzip into memory");
    let bytes = encoder.finish().expect("gzip ends");
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut back).expect("gunzip");
    assert_eq!(back, data, "gzip round-trips");
});
