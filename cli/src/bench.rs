//! `strata bench`: quick versions of the benchmark workloads.

use crate::args::BenchArgs;
use crate::failure::Failure;

pub fn run(_args: BenchArgs) -> Result<(), Failure> {
    Err(Failure::new("bench is not built yet"))
}
