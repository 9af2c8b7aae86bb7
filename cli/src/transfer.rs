//! `import` and `export`: JSON Lines, Parquet and Arrow IPC files with one row per live record
//! and the columns of `ColdSegment::to_record_batch` (`key`, `content`, `embedding`, `seq`,
//! `expires_at_ms`). Export reads one snapshot and streams it in bounded batches; import
//! writes bounded `Batch`es and keeps each record's expiry time exactly.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, LargeBinaryArray, RecordBatch, UInt64Array};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::Engine as _;
use serde::Deserialize;
use strata::{Batch, Record};

use crate::args::{ExportArgs, Format, ImportArgs};
use crate::commands::{exists, open_read, open_write};
use crate::failure::{Failure, IoContext};
use crate::output::{self, record_json, BASE64};

/// Rows per Arrow batch, and the content bytes at which a batch is cut early: memory holds
/// one batch, whatever the size of the database.
const BATCH_ROWS: usize = 4096;
const BATCH_BYTES: usize = 16 << 20;
/// Records per import commit (and the bytes at which one is cut early).
const IMPORT_BATCH_RECORDS: usize = 2048;
const IMPORT_BATCH_BYTES: usize = 8 << 20;

fn format_of(path: &Path, given: Option<Format>) -> Format {
    given.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some("parquet" | "pq") => Format::Parquet,
        Some("arrow" | "ipc" | "feather" | "arrows") => Format::Arrow,
        _ => Format::Jsonl,
    })
}

/// The export schema: CLI.md's columns, `embedding` only for a database with a dimension.
pub fn schema(dim: usize) -> Result<SchemaRef, Failure> {
    let mut fields = vec![Field::new("key", DataType::LargeBinary, false), Field::new("content", DataType::LargeBinary, false)];
    if dim > 0 {
        let size = i32::try_from(dim).map_err(|_| Failure::new(format!("embedding dimension {dim} exceeds i32")))?;
        fields.push(Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, false)), size),
            true,
        ));
    }
    fields.push(Field::new("seq", DataType::UInt64, false));
    fields.push(Field::new("expires_at_ms", DataType::UInt64, false));
    Ok(Arc::new(Schema::new(fields)))
}

/// One Arrow batch of `records` (copies of their bytes), in `schema`.
pub fn records_batch(schema: &SchemaRef, dim: usize, records: &[Record]) -> Result<RecordBatch, Failure> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(LargeBinaryArray::from_iter_values(records.iter().map(Record::key))),
        Arc::new(LargeBinaryArray::from_iter_values(records.iter().map(Record::content))),
    ];
    if dim > 0 {
        let mut values = Vec::with_capacity(records.len() * dim);
        let mut valid = Vec::with_capacity(records.len());
        for record in records {
            match record.embedding() {
                Some(e) => values.extend_from_slice(e),
                None => values.resize(values.len() + dim, 0.0),
            }
            valid.push(record.embedding().is_some());
        }
        let item = Arc::new(Field::new_list_field(DataType::Float32, false));
        let nulls = NullBuffer::new(BooleanBuffer::from(valid));
        let size = i32::try_from(dim).map_err(|_| Failure::new("embedding dimension exceeds i32"))?;
        columns.push(Arc::new(FixedSizeListArray::try_new(item, size, Arc::new(Float32Array::from(values)), Some(nulls))?));
    }
    columns.push(Arc::new(UInt64Array::from_iter_values(records.iter().map(Record::seq))));
    columns.push(Arc::new(UInt64Array::from_iter_values(records.iter().map(Record::expires_at_ms))));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Where export batches go.
enum Sink {
    Jsonl(BufWriter<File>),
    Parquet(Box<parquet::arrow::ArrowWriter<File>>),
    Arrow(Box<arrow_ipc::writer::FileWriter<BufWriter<File>>>),
}

pub fn export(args: ExportArgs) -> Result<(), Failure> {
    let db = open_read(&args.dir)?;
    let snapshot = db.snapshot();
    let dim = db.embedding_dim();
    let schema = schema(dim)?;
    let format = format_of(&args.file, args.format);
    let file = File::create(&args.file).at("create", &args.file)?;
    let mut sink = match format {
        Format::Jsonl => Sink::Jsonl(BufWriter::with_capacity(1 << 20, file)),
        Format::Parquet => Sink::Parquet(Box::new(parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?)),
        Format::Arrow => Sink::Arrow(Box::new(arrow_ipc::writer::FileWriter::try_new_buffered(file, &schema)?)),
    };
    let bar = output::progress(db.stats().live_records, "exporting");
    let records = match &args.prefix {
        Some(prefix) => snapshot.prefix(prefix.as_bytes()),
        None => snapshot.iter(),
    };
    let mut pending: Vec<Record> = Vec::with_capacity(BATCH_ROWS);
    let mut pending_bytes = 0;
    let mut count = 0u64;
    for record in records {
        let record = record?;
        count += 1;
        if let Sink::Jsonl(out) = &mut sink {
            writeln!(out, "{}", record_json(&record)).at("write", &args.file)?;
            if count.is_multiple_of(1024) {
                bar.set_position(count);
            }
            continue;
        }
        pending_bytes += record.content().len() + record.key().len();
        pending.push(record);
        if pending.len() == BATCH_ROWS || pending_bytes >= BATCH_BYTES {
            write_batch(&mut sink, &records_batch(&schema, dim, &pending)?)?;
            pending.clear();
            pending_bytes = 0;
            bar.set_position(count);
        }
    }
    if !pending.is_empty() {
        write_batch(&mut sink, &records_batch(&schema, dim, &pending)?)?;
    }
    match sink {
        Sink::Jsonl(mut out) => out.flush().at("write", &args.file)?,
        Sink::Parquet(writer) => {
            writer.close()?;
        }
        Sink::Arrow(mut writer) => writer.finish()?,
    }
    bar.finish_and_clear();
    eprintln!("exported {count} records to {} ({format:?})", args.file.display());
    Ok(())
}

fn write_batch(sink: &mut Sink, batch: &RecordBatch) -> Result<(), Failure> {
    match sink {
        Sink::Jsonl(_) => unreachable!("JSON Lines are written record by record"),
        Sink::Parquet(writer) => writer.write(batch)?,
        Sink::Arrow(writer) => writer.write(batch)?,
    }
    Ok(())
}

/// One record to import, whatever the file format.
struct Row {
    key: Vec<u8>,
    content: Vec<u8>,
    embedding: Option<Vec<f32>>,
    expires_at_ms: u64,
}

/// Collects rows into bounded commits.
struct Importer {
    db: strata::Db,
    batch: Batch,
    batch_bytes: usize,
    now_ms: u64,
    imported: u64,
    expired: u64,
}

impl Importer {
    fn add(&mut self, row: Row) -> Result<(), Failure> {
        if row.expires_at_ms != 0 && row.expires_at_ms <= self.now_ms {
            self.expired += 1;
            return Ok(());
        }
        self.batch_bytes += row.key.len() + row.content.len() + row.embedding.as_ref().map_or(0, |e| e.len() * 4);
        self.batch.put_expiring_at(&row.key, &row.content, row.embedding.as_deref(), row.expires_at_ms);
        self.imported += 1;
        if self.batch.len() >= IMPORT_BATCH_RECORDS || self.batch_bytes >= IMPORT_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Failure> {
        if !self.batch.is_empty() {
            self.db.write(std::mem::take(&mut self.batch))?;
            self.batch_bytes = 0;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn import(args: ImportArgs) -> Result<(), Failure> {
    let format = format_of(&args.file, args.format);
    if !args.file.exists() {
        return Err(Failure::new(format!("no such file: {}", args.file.display())));
    }
    let dim = match args.dim {
        Some(dim) => Some(dim),
        None if !exists(&args.dir) => file_dim(&args.file, format)?,
        None => None,
    };
    let db = open_write(&args.dir, dim)?;
    let mut importer = Importer { db, batch: Batch::new(), batch_bytes: 0, now_ms: now_ms(), imported: 0, expired: 0 };
    match format {
        Format::Jsonl => import_jsonl(&args.file, &mut importer)?,
        Format::Parquet => {
            let file = File::open(&args.file).at("open", &args.file)?;
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(1024);
            let bar = output::progress(u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0), "importing");
            for batch in builder.build()? {
                import_batch(&batch?, &mut importer)?;
                bar.set_position(importer.imported + importer.expired);
            }
            bar.finish_and_clear();
        }
        Format::Arrow => {
            let file = File::open(&args.file).at("open", &args.file)?;
            let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None)?;
            let bar = output::progress(reader.num_batches() as u64, "importing");
            for batch in reader {
                import_batch(&batch?, &mut importer)?;
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
    }
    importer.flush()?;
    let Importer { db, imported, expired, .. } = importer;
    db.close()?;
    let skipped = if expired > 0 { format!(" ({expired} already expired, skipped)") } else { String::new() };
    eprintln!("imported {imported} records from {}{skipped}", args.file.display());
    Ok(())
}

/// The embedding dimension a file's records carry, for a database it creates: the
/// `embedding` column's list size, or the first JSON line with an embedding.
fn file_dim(path: &Path, format: Format) -> Result<Option<usize>, Failure> {
    let schema = match format {
        Format::Jsonl => {
            let reader = BufReader::new(File::open(path).at("open", path)?);
            for line in reader.lines() {
                let line = line.at("read", path)?;
                if let Ok(row) = serde_json::from_str::<JsonRow>(&line) {
                    if let Some(raw) = row.embedding.filter(|r| r.get() != "null") {
                        return Ok(Some(output::parse_vector(raw.get(), "embedding")?.len()));
                    }
                }
            }
            return Ok(None);
        }
        Format::Parquet => {
            let file = File::open(path).at("open", path)?;
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.schema().clone()
        }
        Format::Arrow => arrow_ipc::reader::FileReader::try_new(File::open(path).at("open", path)?, None)?.schema(),
    };
    Ok(match schema.field_with_name("embedding").map(|f| f.data_type().clone()) {
        Ok(DataType::FixedSizeList(_, size)) => usize::try_from(size).ok(),
        _ => None,
    })
}

/// One JSON line as CLI.md writes it (`seq` is read and ignored).
#[derive(Deserialize)]
struct JsonRow {
    key: Option<String>,
    key_b64: Option<String>,
    content: Option<String>,
    content_b64: Option<String>,
    embedding: Option<Box<serde_json::value::RawValue>>,
    #[allow(dead_code)]
    seq: Option<u64>,
    expires_at_ms: Option<u64>,
}

fn text_or_b64(text: Option<String>, b64: Option<String>, name: &str) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(b64)) => BASE64.decode(b64.as_bytes()).map_err(|e| format!("`{name}_b64` is not valid base64: {e}")),
        (Some(_), Some(_)) => Err(format!("both `{name}` and `{name}_b64`")),
        (None, None) => Err(format!("no `{name}` (or `{name}_b64`)")),
    }
}

fn json_row(line: &str) -> Result<Row, String> {
    let row: JsonRow = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let embedding = match row.embedding.as_deref().map(|r| r.get().trim()) {
        None | Some("null") => None,
        Some(text) => Some(output::parse_vector(text, "`embedding`").map_err(|f| f.0)?),
    };
    Ok(Row {
        key: text_or_b64(row.key, row.key_b64, "key")?,
        content: text_or_b64(row.content, row.content_b64, "content")?,
        embedding,
        expires_at_ms: row.expires_at_ms.unwrap_or(0),
    })
}

fn import_jsonl(path: &Path, importer: &mut Importer) -> Result<(), Failure> {
    let file = File::open(path).at("open", path)?;
    let bar = output::progress(file.metadata().map_or(0, |m| m.len()), "importing");
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut number = 0u64;
    let mut read = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| Failure::new(format!("{}:{}: {e}", path.display(), number + 1)))?;
        if n == 0 {
            break;
        }
        number += 1;
        read += n as u64;
        if line.trim().is_empty() {
            continue;
        }
        let row = json_row(&line).map_err(|e| Failure::new(format!("{}:{number}: {e}", path.display())))?;
        importer.add(row).map_err(|f| Failure::new(format!("{}:{number}: {f}", path.display())))?;
        if number.is_multiple_of(1024) {
            bar.set_position(read);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Row `i`'s bytes of one column.
type BytesAt<'a> = Box<dyn Fn(usize) -> &'a [u8] + 'a>;

/// A binary-like column of an imported batch: the types other tools write for bytes and text.
fn bytes_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<BytesAt<'a>, Failure> {
    let column = batch.column_by_name(name).ok_or_else(|| Failure::new(format!("the file has no `{name}` column")))?;
    if column.null_count() > 0 {
        return Err(Failure::new(format!("the `{name}` column has nulls")));
    }
    use arrow_array::cast::AsArray;
    Ok(match column.data_type() {
        DataType::LargeBinary => Box::new(move |i| column.as_binary::<i64>().value(i)),
        DataType::Binary => Box::new(move |i| column.as_binary::<i32>().value(i)),
        DataType::Utf8 => Box::new(move |i| column.as_string::<i32>().value(i).as_bytes()),
        DataType::LargeUtf8 => Box::new(move |i| column.as_string::<i64>().value(i).as_bytes()),
        other => return Err(Failure::new(format!("the `{name}` column is {other}, not LargeBinary, Binary or Utf8"))),
    })
}

fn import_batch(batch: &RecordBatch, importer: &mut Importer) -> Result<(), Failure> {
    use arrow_array::cast::AsArray;
    let key = bytes_column(batch, "key")?;
    let content = bytes_column(batch, "content")?;
    let embedding = match batch.column_by_name("embedding") {
        None => None,
        Some(column) => match column.data_type() {
            DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32 => Some(column.as_fixed_size_list()),
            other => return Err(Failure::new(format!("the `embedding` column is {other}, not FixedSizeList<Float32>"))),
        },
    };
    let expires = match batch.column_by_name("expires_at_ms") {
        None => None,
        Some(column) => Some(
            column
                .as_primitive_opt::<arrow_array::types::UInt64Type>()
                .ok_or_else(|| Failure::new(format!("the `expires_at_ms` column is {}, not UInt64", column.data_type())))?,
        ),
    };
    for i in 0..batch.num_rows() {
        let embedding = match embedding {
            Some(list) if list.is_valid(i) => {
                let values = list.value(i);
                let values = values.as_primitive::<arrow_array::types::Float32Type>();
                if values.null_count() > 0 {
                    return Err(Failure::new(format!("row {i}: the embedding holds nulls")));
                }
                Some(values.values().to_vec())
            }
            _ => None,
        };
        let expires_at_ms = expires.map_or(0, |e| if e.is_valid(i) { e.value(i) } else { 0 });
        importer.add(Row { key: key(i).to_vec(), content: content(i).to_vec(), embedding, expires_at_ms })?;
    }
    Ok(())
}
