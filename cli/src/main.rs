//! `strata`, the command-line tool: every command of `../shared/CLI.md` (demo, put, get,
//! delete, scan, search, stats, verify, repair, compact, checkpoint, inspect, import,
//! export, sql, bench). Errors are one line on stderr (`strata: error: ...`) and exit 1;
//! bad usage exits 2 (clap); nothing panics on purpose, and a panic hook turns a bug into
//! one line and exit 1 as a last guard.
#![forbid(unsafe_code)]

mod args;
mod bench;
mod commands;
mod demo;
mod failure;
mod machine;
mod output;
mod sql;
mod transfer;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("strata: error: internal error (a bug in strata, please report it): {message}{at}");
        std::process::exit(1);
    }));
    // clap prints usage errors and exits 2 itself (`--help` and `--version` exit 0).
    let cli = Cli::parse();
    if let Err(failure) = run(cli.command) {
        eprintln!("strata: error: {failure}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Demo(a) => demo::run(a),
        Command::Put(a) => commands::put(a),
        Command::Get(a) => commands::get(a),
        Command::Delete(a) => commands::delete(a),
        Command::Scan(a) => commands::scan(a),
        Command::Search(a) => commands::search(a),
        Command::Stats(a) => commands::stats(a),
        Command::Verify(a) => commands::verify(a),
        Command::Repair(a) => commands::repair(a),
        Command::Compact(a) => commands::compact(a),
        Command::Checkpoint(a) => commands::checkpoint(a),
        Command::Inspect(a) => commands::inspect(a),
        Command::Import(a) => transfer::import(a),
        Command::Export(a) => transfer::export(a),
        Command::Sql(a) => sql::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
