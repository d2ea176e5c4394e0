//! `gitseal-controller`: wiring only; the work lives in the library.

use std::process::ExitCode;

use clap::Parser;
use gitseal_controller::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { group }) => match gitseal_controller::crd::render(group) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", gitseal_controller::error::report(&e));
                ExitCode::FAILURE
            }
        },
        None => {
            let config = match cli.run.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {}", gitseal_controller::error::report(&e));
                    return ExitCode::from(2);
                }
            };
            gitseal_controller::telemetry::init(&config);
            match gitseal_controller::run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %gitseal_controller::error::report(&e), "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
