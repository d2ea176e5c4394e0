//! kubeseal's command line, spoken by `gitseal` with no subcommand: `gitseal --cert c.pem < s.yaml`,
//! `gitseal --fetch-cert`, `gitseal --validate`, `gitseal --recovery-unseal
//! --recovery-private-key k.pem`. [`translate`] rewrites such an argument list into the gitseal
//! subcommand with the same meaning before clap parses it; a flag that cannot mean the same
//! (`--re-encrypt`, kubectl's connection flags) gets a one-line pointer to what to use instead.
//!
//! Meaning kept from kubeseal: sealing writes `bitnami.com/v1alpha1` JSON unless `--api` or
//! `-o/--format` say otherwise (or their environment variables are set); `-o` is the output
//! *format* and `-w` the output *file*, which is replaced if it exists.

use std::ffi::OsString;

/// kubeseal's modes besides sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Seal,
    FetchCert,
    Validate,
    RecoveryUnseal,
}

/// kubeseal flags that take a value, and gitseal's spelling of each (`None`: handled apart).
const VALUED: [(&str, Option<&str>); 15] = [
    ("--cert", Some("--cert")),
    ("--context", Some("--context")),
    ("--kubeconfig", Some("--kubeconfig")),
    ("--controller-name", Some("--controller-name")),
    ("--controller-namespace", Some("--controller-namespace")),
    ("--scope", Some("--scope")),
    ("--name", Some("--name")),
    ("--namespace", Some("--namespace")),
    ("--from-file", Some("--from-file")),
    ("--merge-into", Some("--merge-into")),
    ("--secret-file", None),
    ("--sealed-secret-file", None),
    ("--format", None),
    ("--recovery-private-key", None),
    ("--api", Some("--api")),
];

/// kubectl's connection flags, which kubeseal accepts and gitseal takes from the kubeconfig.
const KUBECTL_FLAGS: [&str; 14] = [
    "--server",
    "--token",
    "--user",
    "--cluster",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
    "--insecure-skip-tls-verify",
    "--username",
    "--password",
    "--as",
    "--as-group",
    "--request-timeout",
    "--tls-server-name",
];

/// `args` (program name first) unchanged when they start with a subcommand, else rewritten
/// from kubeseal's form. `Err` is a one-line message for a usage error (exit status 2).
pub fn translate(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if first == "seal" {
        // kubeseal's mode flags after `seal`: clap would suggest a look-alike (`--recipient`
        // for `--re-encrypt`); say which gitseal command does that instead.
        for arg in args.iter().skip(2).take_while(|a| *a != "--") {
            let (flag, _) = split_flag(&arg.to_string_lossy());
            if let Some(command) = mode_command(&flag) {
                return Err(format!("kubeseal's {flag} is `{command}` in gitseal, not a flag of gitseal seal"));
            }
        }
    }
    if !first.starts_with('-') || matches!(first, "-h" | "--help" | "-V" | "--version") {
        return Ok(args);
    }
    let mut out: Vec<OsString> = vec![args[0].clone()];
    let mut mode = Mode::Seal;
    let mut keys: Vec<OsString> = Vec::new();
    let mut file: Option<OsString> = None;
    let mut format: Option<OsString> = None;
    let mut rest: Vec<OsString> = Vec::new();
    let mut api_given = false;

    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        i += 1;
        let (flag, inline) = split_flag(&arg);
        match flag.as_str() {
            "--fetch-cert" => set_mode(&mut mode, Mode::FetchCert, inline.as_deref())?,
            "--validate" => set_mode(&mut mode, Mode::Validate, inline.as_deref())?,
            "--recovery-unseal" => set_mode(&mut mode, Mode::RecoveryUnseal, inline.as_deref())?,
            "--re-encrypt" => {
                return Err("kubeseal --re-encrypt is `gitseal reseal FILE…` here: it re-seals SealedSecret files in place through the controller (see gitseal reseal --help)".into());
            }
            "--raw" | "--allow-empty-data" => {
                if flag_on(inline.as_deref(), &flag)? {
                    rest.push(flag.clone().into());
                }
            }
            f if KUBECTL_FLAGS.contains(&f) => {
                return Err(format!(
                    "kubeseal's {f} is not taken here: gitseal connects with your kubeconfig; pass --kubeconfig FILE and --context NAME"
                ));
            }
            _ => {
                let Some((_, to)) = VALUED.iter().find(|(from, _)| *from == flag) else {
                    return Err(format!(
                        "{arg} is not a kubeseal flag gitseal knows; run `gitseal --help` for gitseal's commands"
                    ));
                };
                let value = match inline {
                    Some(v) => OsString::from(v),
                    None => {
                        let v = args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?;
                        i += 1;
                        v
                    }
                };
                match (flag.as_str(), to) {
                    ("--secret-file", _) => file = Some(value),
                    ("--sealed-secret-file", _) => rest.extend(["-w".into(), value]),
                    ("--format", _) => format = Some(value),
                    ("--recovery-private-key", _) => keys.push(value),
                    ("--api", Some(to)) => {
                        api_given = true;
                        rest.extend([OsString::from(*to), value]);
                    }
                    (_, Some(to)) => rest.extend([OsString::from(*to), value]),
                    (_, None) => unreachable_flag(&flag)?,
                }
            }
        }
    }

    match mode {
        Mode::Seal => {
            out.push("seal".into());
            if !api_given && std::env::var_os("GITSEAL_API").is_none() {
                out.extend(["--api".into(), "bitnami".into()]);
            }
            let env_format = ["GITSEAL_FORMAT", "SEALED_SECRETS_FORMAT"].iter().any(|v| std::env::var_os(v).is_some());
            match format {
                Some(f) => out.extend(["--format".into(), f]),
                // As kubeseal: JSON unless `-w` names a .yaml/.yml file (config picks by extension).
                None if !env_format => out.extend(["--format".into(), "json".into()]),
                None => {}
            }
            if let Some(f) = file {
                out.extend(["-f".into(), f]);
            }
            out.extend(rest);
        }
        Mode::FetchCert => {
            out.push("cert".into());
            out.extend(rename(rest, "-w", "-o"));
        }
        Mode::Validate => {
            out.push("validate".into());
            out.extend(rest);
            out.push(file.unwrap_or_else(|| "-".into()));
        }
        Mode::RecoveryUnseal => {
            if keys.is_empty() {
                return Err("--recovery-unseal needs --recovery-private-key FILE (gitseal unseal --key FILE)".into());
            }
            out.push("unseal".into());
            for k in keys {
                out.extend(["--key".into(), k]);
            }
            out.extend(["--format".into(), format.unwrap_or_else(|| "json".into())]);
            if let Some(f) = file {
                out.extend(["-f".into(), f]);
            }
            out.extend(rest);
        }
    }
    Ok(out)
}

/// `--flag=value` → (`--flag`, `value`); short flags map to kubeseal's long names.
fn split_flag(arg: &str) -> (String, Option<String>) {
    let long = |short: char| match short {
        'f' => Some("--secret-file"),
        'w' => Some("--sealed-secret-file"),
        'o' => Some("--format"),
        'n' => Some("--namespace"),
        _ => None,
    };
    if let Some(rest) = arg.strip_prefix("--") {
        return match rest.split_once('=') {
            Some((f, v)) => (format!("--{f}"), Some(v.to_string())),
            None => (arg.to_string(), None),
        };
    }
    let mut chars = arg.chars().skip(1);
    match chars.next().and_then(long) {
        Some(name) => {
            let tail: String = chars.collect();
            let tail = tail.strip_prefix('=').map(str::to_string).unwrap_or(tail);
            (name.to_string(), (!tail.is_empty()).then_some(tail))
        }
        None => (arg.to_string(), None),
    }
}

/// The gitseal command for one of kubeseal's mode flags.
fn mode_command(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "--fetch-cert" => "gitseal cert",
        "--validate" => "gitseal validate FILE",
        "--re-encrypt" => "gitseal reseal FILE",
        "--recovery-unseal" | "--recovery-private-key" => "gitseal unseal --key FILE",
        _ => return None,
    })
}

fn set_mode(mode: &mut Mode, to: Mode, inline: Option<&str>) -> Result<(), String> {
    if inline.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return Ok(());
    }
    if *mode != Mode::Seal && *mode != to {
        return Err("--fetch-cert, --validate and --recovery-unseal are separate modes: give one".into());
    }
    *mode = to;
    Ok(())
}

/// pflag booleans: `--raw`, `--raw=true`, `--raw=false`.
fn flag_on(inline: Option<&str>, flag: &str) -> Result<bool, String> {
    match inline.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(format!("{flag} takes true or false")),
    }
}

fn rename(args: Vec<OsString>, from: &str, to: &str) -> Vec<OsString> {
    args.into_iter().map(|a| if a == from { to.into() } else { a }).collect()
}

fn unreachable_flag(flag: &str) -> Result<(), String> {
    Err(format!("{flag} is not supported in kubeseal's form here; run `gitseal --help`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Result<Vec<String>, String> {
        let mut all = vec!["gitseal".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        translate(all.into_iter().map(OsString::from).collect())
            .map(|v| v.into_iter().skip(1).map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn subcommands_and_help_pass_through_untouched() {
        assert_eq!(t(&["seal", "--cert", "c.pem"]).unwrap(), ["seal", "--cert", "c.pem"]);
        assert_eq!(t(&["--help"]).unwrap(), ["--help"]);
        assert_eq!(t(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_bare_kubeseal_form_seals_bitnami_json_and_w_replaces_its_file() {
        if std::env::var_os("GITSEAL_API").is_some() || std::env::var_os("SEALED_SECRETS_FORMAT").is_some() {
            return;
        }
        assert_eq!(
            t(&["--cert", "c.pem", "-n", "app", "--scope=cluster-wide"]).unwrap(),
            [
                "seal",
                "--api",
                "bitnami",
                "--format",
                "json",
                "--cert",
                "c.pem",
                "--namespace",
                "app",
                "--scope",
                "cluster-wide"
            ]
        );
        assert_eq!(
            t(&["--cert=c.pem", "-oyaml", "-f", "s.yaml", "-w", "out.yaml", "--raw=false"]).unwrap(),
            ["seal", "--api", "bitnami", "--format", "yaml", "-f", "s.yaml", "--cert", "c.pem", "-w", "out.yaml"]
        );
    }

    #[test]
    fn kubeseal_modes_become_gitseal_commands() {
        assert_eq!(t(&["--fetch-cert", "--controller-name", "x"]).unwrap(), ["cert", "--controller-name", "x"]);
        assert_eq!(t(&["--validate", "-f", "s.json"]).unwrap(), ["validate", "s.json"]);
        assert_eq!(t(&["--validate"]).unwrap(), ["validate", "-"]);
        assert_eq!(
            t(&["--recovery-unseal", "--recovery-private-key", "k.pem", "-o", "yaml"]).unwrap(),
            ["unseal", "--key", "k.pem", "--format", "yaml"]
        );
    }

    #[test]
    fn flags_that_cannot_mean_the_same_point_to_what_to_use() {
        assert!(t(&["--re-encrypt"]).unwrap_err().contains("gitseal reseal"));
        assert!(t(&["--cert", "c", "--token", "x"]).unwrap_err().contains("--kubeconfig"));
        assert!(t(&["--recovery-unseal"]).unwrap_err().contains("--recovery-private-key"));
        assert!(t(&["--fetch-cert", "--validate"]).unwrap_err().contains("separate modes"));
        assert!(t(&["--bogus"]).unwrap_err().contains("gitseal --help"));
        assert!(t(&["seal", "--cert", "c", "--re-encrypt"]).unwrap_err().contains("`gitseal reseal FILE`"));
        assert!(t(&["seal", "--fetch-cert"]).unwrap_err().contains("`gitseal cert`"));
        assert_eq!(t(&["seal", "--", "--fetch-cert"]).unwrap(), ["seal", "--", "--fetch-cert"]);
    }
}
