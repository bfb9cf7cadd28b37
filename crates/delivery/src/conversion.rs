//! Record format conversion: JSON records to Apache Parquet, with the columns declared in
//! the stream's config (Firehose reads them from a Glue table; here they are written out).
//!
//! Each record must be a JSON object. A column takes the field of its name: a missing field
//! or `null` is a null; a value of the wrong type fails the whole record, which goes to the
//! error prefix as `format-conversion-failed` while the stream keeps going, as Firehose
//! does. Column types use Glue/Hive names: `string`, `int`, `bigint`, `float`, `double`,
//! `boolean` and `timestamp` (epoch milliseconds, or RFC 3339 text), stored as Parquet's
//! BYTE_ARRAY (STRING), INT32, INT64, FLOAT, DOUBLE, BOOLEAN and INT64 (TIMESTAMP(MILLIS,
//! UTC)). An object is one Parquet file with one row group, compressed with Snappy by
//! default (Firehose's ParquetSerDe default), or GZIP, or uncompressed.
use std::sync::Arc;

use parquet::basic::{Compression as ParquetCompression, LogicalType, Repetition, TimeUnit, Type};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type as SchemaType;
use serde_json::Value;

/// A column's type, by its Glue/Hive name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `string`.
    String,
    /// `int`.
    Int,
    /// `bigint`.
    BigInt,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `boolean`.
    Boolean,
    /// `timestamp`.
    Timestamp,
}

impl ColumnType {
    /// Parses a Glue/Hive type name.
    pub fn parse(name: &str) -> Option<ColumnType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "string" => ColumnType::String,
            "int" => ColumnType::Int,
            "bigint" => ColumnType::BigInt,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

/// The Parquet output's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Columns in order; names are unique.
    pub columns: Vec<(String, ColumnType)>,
    /// `SNAPPY` (default), `GZIP` or `UNCOMPRESSED`.
    pub compression: ParquetCompression,
}

/// One column's values so far, with a definition level per row (0 is null).
enum Values {
    Bytes(Vec<ByteArray>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Boolean(Vec<bool>),
}

/// One converted cell.
enum Cell {
    Null,
    Bytes(ByteArray),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    Boolean(bool),
}

/// Rows of a Parquet object being gathered.
pub struct Rows {
    schema: Arc<Schema>,
    columns: Vec<(Values, Vec<i16>)>,
    count: usize,
}

impl Rows {
    /// No rows yet.
    pub fn new(schema: Arc<Schema>) -> Rows {
        let columns = schema
            .columns
            .iter()
            .map(|(_, kind)| {
                let values = match kind {
                    ColumnType::String => Values::Bytes(Vec::new()),
                    ColumnType::Int => Values::Int32(Vec::new()),
                    ColumnType::BigInt | ColumnType::Timestamp => Values::Int64(Vec::new()),
                    ColumnType::Float => Values::Float(Vec::new()),
                    ColumnType::Double => Values::Double(Vec::new()),
                    ColumnType::Boolean => Values::Boolean(Vec::new()),
                };
                (values, Vec::new())
            })
            .collect();
        Rows { schema, columns, count: 0 }
    }

    /// Rows so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Converts one JSON record into a row, or says why it does not convert (and adds
    /// nothing).
    pub fn push(&mut self, record: &[u8]) -> Result<(), String> {
        let value: Value =
            serde_json::from_slice(record).map_err(|e| format!("the record is not JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err(format!("the record is a JSON {}, not an object", kind_of(&value)));
        };
        let mut cells = Vec::with_capacity(self.schema.columns.len());
        for (name, kind) in &self.schema.columns {
            let cell = match fields.get(name) {
                None | Some(Value::Null) => Cell::Null,
                Some(value) => convert(*kind, value)
                    .ok_or_else(|| format!("column {name} ({kind:?}) cannot hold {value}"))?,
            };
            cells.push(cell);
        }
        for ((values, levels), cell) in self.columns.iter_mut().zip(cells) {
            levels.push(i16::from(!matches!(cell, Cell::Null)));
            match (values, cell) {
                (_, Cell::Null) => {}
                (Values::Bytes(v), Cell::Bytes(x)) => v.push(x),
                (Values::Int32(v), Cell::Int32(x)) => v.push(x),
                (Values::Int64(v), Cell::Int64(x)) => v.push(x),
                (Values::Float(v), Cell::Float(x)) => v.push(x),
                (Values::Double(v), Cell::Double(x)) => v.push(x),
                (Values::Boolean(v), Cell::Boolean(x)) => v.push(x),
                _ => unreachable!("convert() returns the column's cell type"),
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Writes the rows as one Parquet file.
    pub fn finish(self) -> parquet::errors::Result<Vec<u8>> {
        let props = WriterProperties::builder().set_compression(self.schema.compression).build();
        let mut writer =
            SerializedFileWriter::new(Vec::new(), parquet_schema(&self.schema)?, Arc::new(props))?;
        let mut group = writer.next_row_group()?;
        let mut columns = self.columns.into_iter();
        while let Some(mut column) = group.next_column()? {
            let (values, levels) = columns.next().ok_or_else(|| {
                parquet::errors::ParquetError::General("more columns than the schema".into())
            })?;
            let levels = Some(levels.as_slice());
            match (column.untyped(), values) {
                (ColumnWriter::ByteArrayColumnWriter(w), Values::Bytes(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                (ColumnWriter::Int32ColumnWriter(w), Values::Int32(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                (ColumnWriter::Int64ColumnWriter(w), Values::Int64(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                (ColumnWriter::FloatColumnWriter(w), Values::Float(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                (ColumnWriter::DoubleColumnWriter(w), Values::Double(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                (ColumnWriter::BoolColumnWriter(w), Values::Boolean(v)) => {
                    w.write_batch(&v, levels, None)?
                }
                _ => unreachable!("parquet_schema() maps each column type to its writer"),
            };
            column.close()?;
        }
        group.close()?;
        writer.into_inner()
    }
}

fn parquet_schema(schema: &Schema) -> parquet::errors::Result<Arc<SchemaType>> {
    let mut fields = Vec::with_capacity(schema.columns.len());
    for (name, kind) in &schema.columns {
        let (physical, logical) = match kind {
            ColumnType::String => (Type::BYTE_ARRAY, Some(LogicalType::String)),
            ColumnType::Int => (Type::INT32, None),
            ColumnType::BigInt => (Type::INT64, None),
            ColumnType::Float => (Type::FLOAT, None),
            ColumnType::Double => (Type::DOUBLE, None),
            ColumnType::Boolean => (Type::BOOLEAN, None),
            ColumnType::Timestamp => {
                (Type::INT64, Some(LogicalType::timestamp(true, TimeUnit::MILLIS)))
            }
        };
        let field = SchemaType::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()?;
        fields.push(Arc::new(field));
    }
    Ok(Arc::new(SchemaType::group_type_builder("schema").with_fields(fields).build()?))
}

fn convert(kind: ColumnType, value: &Value) -> Option<Cell> {
    Some(match (kind, value) {
        (ColumnType::String, Value::String(text)) => Cell::Bytes(ByteArray::from(text.as_str())),
        // As Firehose's OpenX JSON SerDe: scalars become their JSON text in a string column.
        (ColumnType::String, Value::Number(_) | Value::Bool(_)) => {
            Cell::Bytes(ByteArray::from(value.to_string().as_str()))
        }
        (ColumnType::Int, Value::Number(n)) => Cell::Int32(i32::try_from(n.as_i64()?).ok()?),
        (ColumnType::BigInt, Value::Number(n)) => Cell::Int64(n.as_i64()?),
        (ColumnType::Float, Value::Number(n)) => Cell::Float(n.as_f64()? as f32),
        (ColumnType::Double, Value::Number(n)) => Cell::Double(n.as_f64()?),
        (ColumnType::Boolean, Value::Bool(flag)) => Cell::Boolean(*flag),
        (ColumnType::Timestamp, Value::Number(n)) => Cell::Int64(n.as_i64()?),
        (ColumnType::Timestamp, Value::String(text)) => {
            Cell::Int64(chrono::DateTime::parse_from_rfc3339(text).ok()?.timestamp_millis())
        }
        _ => return None,
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema {
            columns: vec![
                ("id".into(), ColumnType::BigInt),
                ("name".into(), ColumnType::String),
                ("ok".into(), ColumnType::Boolean),
                ("at".into(), ColumnType::Timestamp),
                ("score".into(), ColumnType::Double),
            ],
            compression: ParquetCompression::SNAPPY,
        })
    }

    #[test]
    fn converts_rows_and_reads_back() {
        let mut rows = Rows::new(schema());
        rows.push(
            br#"{"id": 1, "name": "a", "ok": true, "at": "2026-01-01T00:00:00Z", "score": 1.5}"#,
        )
        .unwrap();
        rows.push(br#"{"id": 2, "extra": [1]}"#).unwrap();
        assert_eq!(rows.count(), 2);
        let bytes = rows.finish().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let text: Vec<String> =
            reader.get_row_iter(None).unwrap().map(|row| row.unwrap().to_string()).collect();
        assert!(text[0].contains("id: 1") && text[0].contains("name: \"a\""), "{text:?}");
        assert!(text[1].contains("name: null"), "{text:?}");
    }

    #[test]
    fn records_that_do_not_convert_add_nothing() {
        let mut rows = Rows::new(schema());
        assert!(rows.push(b"{not json").unwrap_err().contains("not JSON"));
        assert!(rows.push(b"[1]").unwrap_err().contains("array"));
        assert!(rows.push(br#"{"id": "x"}"#).unwrap_err().contains("column id"));
        assert!(rows.push(br#"{"id": 1, "ok": "yes"}"#).unwrap_err().contains("column ok"));
        assert_eq!(rows.count(), 0);
        rows.push(br#"{"id": 1}"#).unwrap();
        assert_eq!(rows.count(), 1);
        assert!(rows.finish().is_ok());
    }
}
