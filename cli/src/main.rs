//! `gitseal`: seal Kubernetes Secrets for Git (kubeseal's workflow), unseal them with private
//! keys, re-seal and validate whole repositories (offline or through the controller), manage
//! the controller's keys, read its audit trail, and keep plaintext Secrets out of Git.
//!
//! This file is wiring only: kubeseal's subcommand-less form rewritten ([`kubeseal`]) → parse
//! (clap, exit 2 on usage errors) → resolve into a
//! [`config::Config`] → run one command → print at most one error line ([`output::finish`]).

mod api;
mod cli;
mod cluster;
mod commands;
mod config;
mod data_sources;
mod edit;
mod fetch;
mod generate;
mod io;
mod kubeseal;
mod material;
mod output;
mod rbac;
mod table;
mod tree;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match kubeseal::translate(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("error: {usage}");
            return ExitCode::from(2);
        }
    };
    let cli = cli::Cli::parse_from(args);
    let config = match config::Config::resolve(cli) {
        Ok(c) => c,
        Err(usage) => {
            let _ = usage.print();
            return ExitCode::from(2);
        }
    };
    output::finish(commands::run(config))
}
