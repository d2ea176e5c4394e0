//! Runs the test control plane (and optional addons) until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use gitseal_tests::playground::{Addon, Playground};
use tokio::signal::unix::{SignalKind, signal};

/// Start a real kube-apiserver + etcd + kube-controller-manager on loopback with gitseal-controller,
/// print `export KUBECONFIG=…`, wait for Ctrl-C.
///
/// Needs the peers built by tests/peers/install.sh.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// What to run next to the control plane (repeatable).
    #[arg(long = "with", value_enum, default_value = "gitseal")]
    with: Vec<AddonArg>,

    /// Run gitseal's controller with --bitnami-compat (it then serves bitnami.com SealedSecrets
    /// too, and Bitnami's CRD is installed beside gitseal's)
    #[arg(long)]
    bitnami_compat: bool,

    /// Once ready, write `export KUBECONFIG=…` and `export GITSEAL_CERT=…` to FILE (replaced
    /// atomically; removed on exit), for scripts: `until [ -s FILE ]; do sleep 1; done; . FILE`
    #[arg(long, value_name = "FILE")]
    env_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AddonArg {
    /// gitseal's CRDs and controller, in gitseal-system (build it first: cargo build -p gitseal-controller).
    Gitseal,
    /// Bitnami's sealed-secrets CRD and controller, in kube-system.
    Bitnami,
}

impl From<AddonArg> for Addon {
    fn from(a: AddonArg) -> Self {
        match a {
            AddonArg::Gitseal => Addon::Gitseal,
            AddonArg::Bitnami => Addon::Bitnami,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // kube logs each failed /readyz probe of the start-up as an ERROR; expected here.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitseal-playground: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let addons: Vec<Addon> = cli
        .with
        .iter()
        .copied()
        .map(Addon::from)
        .map(|a| if cli.bitnami_compat && a == Addon::Gitseal { Addon::GitsealCompat } else { a })
        .collect();
    let playground = tokio::select! {
        p = Playground::start(&addons) => p?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = term.recv() => return Ok(()),
    };
    let mut playground = playground;
    print!("{}", playground.instructions());
    if let Some(path) = &cli.env_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, playground.env_exports())?;
        std::fs::rename(&tmp, path)?;
    }
    // A peer killed from outside is restarted in place; the playground itself keeps running.
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; break }
            _ = term.recv() => break,
            _ = tick.tick() => match playground.supervise().await {
                Ok(happened) => happened.iter().for_each(|h| eprintln!("gitseal-playground: {h}")),
                Err(e) => eprintln!("gitseal-playground: could not restart a peer (retrying): {e}"),
            },
        }
    }
    eprintln!("gitseal-playground: stopping");
    if let Some(path) = &cli.env_file {
        let _ = std::fs::remove_file(path);
    }
    drop(playground);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
