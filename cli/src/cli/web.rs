//! `gitseal web`: the sealing page, served locally.

use std::net::SocketAddr;

use clap::Args;

use super::ClusterArgs;

const WEB_HELP: &str = "\
Examples:
  # Seal in the browser for a certificate you have (prints the URL to open):
  gitseal web --cert cluster.pem

  # For the certificate the controller serves now (fetched once, through the API server):
  gitseal web --context prod

The page seals in the browser (gitseal's sealing code compiled to WebAssembly): what you type
never leaves it, and this server only hands out the page and the certificate. It keeps working
after the server stops. Only RSA certificates (kubeseal's format) are supported; for age
recipients use `gitseal seal --recipient`.";

#[derive(Debug, Args)]
#[command(after_help = WEB_HELP)]
pub struct WebArgs {
    /// Certificate to seal for: a file, or an http(s):// or file:// URL [default: the
    /// controller's, like `gitseal cert`]
    #[arg(long, value_name = "FILE|URL", env = "GITSEAL_CERT")]
    pub cert: Option<String>,

    /// Address to serve on; port 0 picks a free port
    #[arg(long, value_name = "ADDR:PORT", env = "GITSEAL_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}
