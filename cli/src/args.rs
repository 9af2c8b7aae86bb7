//! The command line, as `../shared/CLI.md` fixes it (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "strata", version, about = "The strata embedded storage engine, from a terminal.", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build a realistic agent-memory database and show what strata does with it.
    Demo(DemoArgs),
    /// Store a record (creates DIR if missing).
    Put(PutArgs),
    /// Print a record's content (or `--json` the whole record); exit 1 if the key is missing.
    Get(GetArgs),
    /// Delete a key (deleting a missing key is fine).
    Delete(DeleteArgs),
    /// List live records in key order.
    Scan(ScanArgs),
    /// Exact nearest-neighbour search over every tier.
    Search(SearchArgs),
    /// Record counts, bytes and amplification per tier.
    Stats(ReadArgs),
    /// Re-read every file and check every checksum.
    Verify(ReadArgs),
    /// Salvage every intact record into a database that opens and verifies.
    Repair(ReadArgs),
    /// Seal, move everything to the cold tier, merge, drop stale versions.
    Compact(DirArgs),
    /// Write a consistent copy of the database to DEST (which must not exist).
    Checkpoint(CheckpointArgs),
    /// Per file: kind, format version, tier, records, bytes, key range.
    Inspect(ReadArgs),
    /// Load records from JSON Lines, Parquet or Arrow IPC.
    Import(ImportArgs),
    /// Write every live record as JSON Lines, Parquet or Arrow IPC.
    Export(ExportArgs),
    /// SQL over a consistent snapshot (table `records`), through Apache DataFusion.
    Sql(SqlArgs),
    /// Quick versions of the benchmark workloads, with this machine's limits beside them.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where to build the database (default: a new temporary directory, kept and printed).
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
}

#[derive(Args)]
pub struct PutArgs {
    pub dir: PathBuf,
    pub key: String,
    /// The content, as UTF-8 text.
    #[arg(long, conflicts_with = "content_file", required_unless_present = "content_file")]
    pub content: Option<String>,
    /// Read the content (any bytes) from this file.
    #[arg(long)]
    pub content_file: Option<PathBuf>,
    /// The embedding as a JSON array of numbers, e.g. `[0.1, 0.2, 0.3]`.
    #[arg(long)]
    pub embedding: Option<String>,
    /// Expire the record this many seconds from now.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// The embedding dimension of a new database (an existing one must match).
    #[arg(long)]
    pub dim: Option<usize>,
}

#[derive(Args)]
pub struct GetArgs {
    pub dir: PathBuf,
    pub key: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    pub dir: PathBuf,
    pub key: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TierArg {
    Hot,
    Warm,
    Cold,
}

#[derive(Args)]
pub struct ScanArgs {
    pub dir: PathBuf,
    #[arg(long)]
    pub prefix: Option<String>,
    /// First key (inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// Last key (exclusive).
    #[arg(long)]
    pub end: Option<String>,
    #[arg(long)]
    pub reverse: bool,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only records stored in this tier.
    #[arg(long, value_enum)]
    pub tier: Option<TierArg>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MetricArg {
    Cosine,
    Dot,
    L2,
}

#[derive(Args)]
pub struct SearchArgs {
    pub dir: PathBuf,
    /// The query vector as a JSON array.
    #[arg(long, conflicts_with = "like", required_unless_present = "like")]
    pub vector: Option<String>,
    /// Use this record's embedding as the query.
    #[arg(long)]
    pub like: Option<String>,
    #[arg(short = 'k', default_value_t = 10)]
    pub k: usize,
    #[arg(long, value_enum, default_value = "cosine")]
    pub metric: MetricArg,
    #[arg(long)]
    pub min_score: Option<f32>,
    #[arg(long)]
    pub prefix: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReadArgs {
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DirArgs {
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct CheckpointArgs {
    pub dir: PathBuf,
    pub dest: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    Jsonl,
    Parquet,
    Arrow,
}

#[derive(Args)]
pub struct ImportArgs {
    pub dir: PathBuf,
    pub file: PathBuf,
    /// Default: from the file's extension (`.jsonl`/`.json`, `.parquet`, `.arrow`/`.ipc`/`.feather`).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long)]
    pub dim: Option<usize>,
}

#[derive(Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    pub file: PathBuf,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(Args)]
pub struct SqlArgs {
    pub dir: PathBuf,
    pub query: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 20_000)]
    pub records: usize,
    #[arg(long)]
    pub json: bool,
}
