//! `strata sql DIR QUERY`: SQL over one consistent snapshot through Apache DataFusion (the
//! library's `strata::SnapshotTable`, registered as table `records`; feature `datafusion`).
//! Results print as a table, or one JSON object per row with `--json`. Binary columns
//! (`key`, `content`) show as text when every value is UTF-8, else as base64 under the name
//! `<column>_b64`, the way `export` writes JSON Lines.

use crate::args::SqlArgs;
use crate::failure::Failure;

#[cfg(not(feature = "datafusion"))]
pub fn run(_args: SqlArgs) -> Result<(), Failure> {
    Err(Failure::new(
        "this strata binary was built without the `datafusion` feature, so it has no SQL; \
         rebuild it with `cargo build --release -p strata-cli --features datafusion`",
    ))
}

#[cfg(feature = "datafusion")]
pub fn run(args: SqlArgs) -> Result<(), Failure> {
    let db = crate::commands::open_read(&args.dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| Failure::new(format!("tokio runtime: {e}")))?;
    let batches = runtime.block_on(with_datafusion::query(&db, &args.query)).map_err(|e| Failure::new(format!("SQL: {e}")))?;
    let text = with_datafusion::render(&batches, args.json).map_err(|e| Failure::new(format!("SQL result: {e}")))?;
    print!("{text}");
    Ok(())
}

#[cfg(feature = "datafusion")]
pub mod with_datafusion {
    use std::sync::Arc;

    use base64::Engine as _;
    use strata::datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
    use strata::datafusion::arrow::datatypes::{DataType, Field, Schema};
    use strata::datafusion::arrow::error::ArrowError;
    use strata::datafusion::error::Result;
    use strata::datafusion::prelude::SessionContext;
    use strata::{Db, SnapshotTable};

    /// Runs `query` against a snapshot of `db` taken now, as table `records`.
    pub async fn query(db: &Db, query: &str) -> Result<Vec<RecordBatch>> {
        let context = SessionContext::new();
        context.register_table("records", Arc::new(SnapshotTable::new(db)))?;
        context.sql(query).await?.collect().await
    }

    /// The batches as a table, or as JSON Lines.
    pub fn render(batches: &[RecordBatch], json: bool) -> Result<String, ArrowError> {
        let batches = text_columns(batches)?;
        if json {
            let mut writer = strata::datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
            for batch in &batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            return String::from_utf8(writer.into_inner()).map_err(|e| ArrowError::ExternalError(Box::new(e)));
        }
        Ok(format!("{}\n", strata::datafusion::arrow::util::pretty::pretty_format_batches(&batches)?))
    }

    fn binary_values(array: &dyn Array) -> Option<Vec<Option<&[u8]>>> {
        use strata::datafusion::arrow::array::AsArray;
        let values = match array.data_type() {
            DataType::Binary => array.as_binary::<i32>().iter().collect(),
            DataType::LargeBinary => array.as_binary::<i64>().iter().collect(),
            DataType::BinaryView => array.as_binary_view().iter().collect(),
            _ => return None,
        };
        Some(values)
    }

    /// Binary columns as UTF-8 text (all values valid) or base64 (`<name>_b64`).
    fn text_columns(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
        let Some(first) = batches.first() else { return Ok(Vec::new()) };
        let schema = first.schema();
        let mut utf8 = vec![true; schema.fields().len()];
        for batch in batches {
            for (i, column) in batch.columns().iter().enumerate() {
                if let Some(values) = binary_values(column.as_ref()) {
                    utf8[i] &= values.iter().flatten().all(|v| std::str::from_utf8(v).is_ok());
                }
            }
        }
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match f.data_type() {
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    let name = if utf8[i] { f.name().clone() } else { format!("{}_b64", f.name()) };
                    Field::new(name, DataType::Utf8, f.is_nullable())
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        batches
            .iter()
            .map(|batch| {
                let columns: Vec<ArrayRef> = batch
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| match binary_values(column.as_ref()) {
                        None => column.clone(),
                        Some(values) => {
                            let text = values.into_iter().map(|v| {
                                v.map(|v| match std::str::from_utf8(v) {
                                    Ok(s) if utf8[i] => s.to_string(),
                                    _ => base64::engine::general_purpose::STANDARD.encode(v),
                                })
                            });
                            Arc::new(text.collect::<StringArray>()) as ArrayRef
                        }
                    })
                    .collect();
                RecordBatch::try_new(schema.clone(), columns)
            })
            .collect()
    }
}
