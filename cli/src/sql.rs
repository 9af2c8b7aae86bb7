//! `strata sql DIR QUERY`: SQL over one consistent snapshot through Apache DataFusion
//! (the library's `strata::sql::SnapshotTable`, feature `datafusion`).

use crate::args::SqlArgs;
use crate::failure::Failure;

#[cfg(not(feature = "datafusion"))]
pub fn run(_args: SqlArgs) -> Result<(), Failure> {
    Err(Failure::new(
        "this strata binary was built without the `datafusion` feature; rebuild with `cargo build --release -p strata-cli --features datafusion`",
    ))
}

#[cfg(feature = "datafusion")]
pub fn run(args: SqlArgs) -> Result<(), Failure> {
    let db = crate::commands::open_read(&args.dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| Failure::new(format!("tokio runtime: {e}")))?;
    let output = runtime.block_on(strata::sql::query(&db.snapshot(), db.embedding_dim(), &args.query, args.json));
    let text = output.map_err(|e| Failure::new(format!("SQL: {e}")))?;
    print!("{text}");
    Ok(())
}
