//! `gitseal completions`.

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  gitseal completions bash > /etc/bash_completion.d/gitseal\n  gitseal completions zsh > \"${fpath[1]}/_gitseal\""
)]
pub struct CompletionsArgs {
    /// Shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
