//! `gitseal`: seal Kubernetes Secrets for Git (kubeseal's workflow, offline), unseal them with
//! private keys, re-seal and validate whole repositories, and generate keys.
//!
//! This file is wiring only: parse (clap, exit 2 on usage errors) → resolve into a
//! [`config::Config`] → run one command → print at most one error line ([`output::finish`]).

mod cli;
mod commands;
mod config;
mod edit;
mod fetch;
mod io;
mod material;
mod output;
mod table;
mod tree;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match config::Config::resolve(cli) {
        Ok(c) => c,
        Err(usage) => {
            let _ = usage.print();
            return ExitCode::from(2);
        }
    };
    output::finish(commands::run(config))
}
