//! The delivery crate's integration tests: the fuzz corpus of `delivery_record` replayed as
//! an ordinary test. End-to-end delivery (a broker, a stream, objects) is tested through the
//! binary in `crates/cli/tests/it/delivery*.rs` and `tests/e2e/python/test_delivery.py`.
use std::io::Read;
use std::sync::Arc;

use sluice_delivery::compression::{Compression, Encoder};
use sluice_delivery::conversion::{ColumnType, Rows, Schema};
use sluice_delivery::query::Query;
use sluice_delivery::template::{PrefixKind, Template};

/// What the `delivery_record` fuzz target does with one input: any record bytes go through
/// Parquet conversion, dynamic partitioning and gzip, and any text through the prefix and
/// query parsers, without a panic; gzip round-trips.
fn check(data: &[u8]) {
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
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/delivery_record");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus folder") {
        check(&std::fs::read(entry.expect("an entry").path()).expect("a corpus file"));
        count += 1;
    }
    assert!(count >= 8, "the corpus has {count} files; seeds are checked in");
}
