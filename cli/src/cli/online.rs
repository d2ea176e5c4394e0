//! Arguments shared by the commands that talk to a cluster.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How to reach the cluster and find the controller. Resolved in `config/online.rs`.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config]
    #[arg(long, value_name = "FILE", env = "GITSEAL_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context [default: the current context]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CONTEXT")]
    pub context: Option<String>,

    /// Name of the controller's Service (also read from SEALED_SECRETS_CONTROLLER_NAME)
    /// [default: gitseal-controller]
    #[arg(long, value_name = "NAME", env = "GITSEAL_CONTROLLER_NAME")]
    pub controller_name: Option<String>,

    /// Namespace of the controller and its keys (also read from
    /// SEALED_SECRETS_CONTROLLER_NAMESPACE) [default: gitseal-system]
    #[arg(long, value_name = "NS", env = "GITSEAL_CONTROLLER_NAMESPACE")]
    pub controller_namespace: Option<String>,
}

/// `-n`: the namespace of objects that name none.
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Cluster")]
pub struct NamespaceArg {
    /// Namespace of SealedSecrets whose manifest names none [default: the context's namespace]
    #[arg(short = 'n', long, value_name = "NS", env = "GITSEAL_NAMESPACE")]
    pub namespace: Option<String>,
}

/// `-o` of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputArg {
    /// Columns for people
    #[default]
    Table,
    /// More columns: full key ids, names
    Wide,
    /// JSON for scripts
    Json,
    /// YAML for scripts
    Yaml,
}
