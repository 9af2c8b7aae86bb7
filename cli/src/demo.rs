//! `strata demo`.

use crate::args::DemoArgs;
use crate::failure::Failure;

pub fn run(_args: DemoArgs) -> Result<(), Failure> {
    Err(Failure::new("demo is not built yet"))
}
