//! `render plan`.

use super::{GlobalArgs, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _global: &GlobalArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("render plan is not implemented yet")
}
