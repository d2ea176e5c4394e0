//! `gitseal`: seal Kubernetes Secrets for Git (kubeseal's workflow), unseal them with private
//! keys, re-seal and validate whole repositories (offline or through the controller), manage
//! the controller's keys, read its audit trail, and keep plaintext Secrets out of Git.
//!
//! This file is wiring only: parse (clap, exit 2 on usage errors) → resolve into a
//! [`config::Config`] → run one command → print at most one error line ([`output::finish`]).

mod api;
mod cli;
mod cluster;
mod commands;
mod config;
mod edit;
mod fetch;
mod io;
mod material;
mod output;
mod rbac;
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
