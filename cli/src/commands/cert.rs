//! `gitseal cert`: the controller's sealing certificate (or its age recipients), fetched
//! through the API server's service proxy as `kubeseal --fetch-cert` does, or passed on from
//! `--cert URL|FILE` after checking that it is one.

use anyhow::{Context, Result, anyhow, bail};
use gitseal_keys::{Certificate, recipients};

use crate::cluster::{self, Cluster};
use crate::config::{CertConfig, ClusterConfig};
use crate::io::{self, Mode};
use crate::material;

pub fn run(cfg: &CertConfig) -> Result<()> {
    if let Some(out) = &cfg.output {
        io::ensure_absent(out)?;
    }
    let text = match (&cfg.given, cfg.recipients) {
        (Some(spec), _) => material::load_certificate(spec, "--cert")?.pem().to_string(),
        (None, false) => fetch_certificate(&cfg.cluster)?.pem().to_string(),
        (None, true) => fetch_recipients(&cfg.cluster)?,
    };
    match &cfg.output {
        Some(path) => {
            io::write_new(path, text.as_bytes(), Mode::Public)?;
            eprintln!("Wrote {}", path.display());
            Ok(())
        }
        None => io::write_stdout(text.as_bytes()),
    }
}

/// The latest certificate of the controller, checked.
pub fn fetch_certificate(cfg: &ClusterConfig) -> Result<Certificate> {
    cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let pem = get_when_ready(&cluster, "/v1/cert.pem").await?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            anyhow!(
                "Service {}/{} did not answer with a certificate ({e}): is it a gitseal or sealed-secrets controller?",
                cluster.controller_namespace,
                cluster.controller_name
            )
        })?;
        cert.check_not_expired(time::OffsetDateTime::now_utc()).context("the controller's certificate")?;
        Ok(cert)
    })
}

/// The controller's `/v1/recipients`: comments and `age1…` lines, each line checked.
fn fetch_recipients(cfg: &ClusterConfig) -> Result<String> {
    cluster::run(async {
        let cluster = Cluster::connect(cfg).await?;
        let text = get_when_ready(&cluster, "/v1/recipients").await?;
        let list = recipients::parse_recipients_file(&text).map_err(|e| {
            anyhow!("the controller's /v1/recipients is not a recipients file ({e}): is it a gitseal controller?")
        })?;
        if list.is_empty() {
            bail!("the controller publishes no age recipient yet: wait until it has a key, then try again");
        }
        Ok(if text.ends_with('\n') { text } else { format!("{text}\n") })
    })
}

/// `path` from the controller, waiting (bounded, on stderr) while it answers that it has no key
/// yet: a controller that has just started answers 503 until its first key is loaded. The service
/// proxy does not hand `Retry-After` on through kube's client, so the wait is the controller's
/// usual one ([`crate::fetch::retry_delay`] of nothing: one second).
async fn get_when_ready(cluster: &Cluster, path: &str) -> Result<String> {
    let start = std::time::Instant::now();
    loop {
        match cluster.controller_get(path).await {
            Err(e)
                if e.to_string().contains("no sealing key is loaded yet")
                    && start.elapsed() < crate::fetch::WAIT_FOR_READY =>
            {
                let delay = crate::fetch::retry_delay(None);
                eprintln!("gitseal: the controller has no sealing key yet; waiting {}s", delay.as_secs());
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}
