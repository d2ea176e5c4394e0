//! How a run ends: one `error: …` line on stderr and status 1, or success.
//!
//! Messages are built by each layer saying what it was doing (`anyhow` context over the
//! libraries' errors) and printed here once, on one line. No layer puts plaintext or key
//! material into an error, so none can reach this line.

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Exit status for a run that failed (usage errors exit 2, through clap).
pub const FAILURE: u8 = 1;

/// Print the error, if any, and turn the result into the exit status. A closed stdout
/// (`gitseal … | head`) is success, as for any Unix filter.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(FAILURE)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The context chain joined with `: `, on a single line.
pub fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A progress bar on stderr when it is a terminal (hidden otherwise, so logs and pipes stay clean).
pub fn progress(len: u64) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}") {
        bar.set_style(style);
    }
    bar
}

/// Print `value` as pretty JSON or YAML on stdout.
pub fn print_structured(value: &serde_json::Value, yaml: bool) -> anyhow::Result<()> {
    let text = if yaml {
        gitseal_shared::manifest::to_yaml(value)?
    } else {
        format!("{}\n", serde_json::to_string_pretty(value)?)
    };
    crate::io::write_stdout(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn an_error_chain_prints_on_one_line() {
        let inner: anyhow::Result<()> = Err(anyhow::anyhow!("first\nsecond"));
        let e = inner.context("reading x").unwrap_err();
        assert_eq!(one_line(&e), "reading x: first second");
    }

    #[test]
    fn a_broken_pipe_is_success() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
    }
}
