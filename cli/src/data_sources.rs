//! Data given on the command line of `gitseal seal`, read as `kubectl create secret generic`
//! reads it: `--from-file [KEY=]PATH` (a directory adds each regular file in it), and
//! `--from-env-file PATH` (`KEY=VALUE` lines), plus `--generate NAME=SPEC` ([`crate::generate`]).
//! Same key rules as kubectl (and the API server): a key already present is an error, and every
//! key must be one Kubernetes accepts.
//!
//! Every value lives in zeroizing buffers and goes only into the sealed output.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use gitseal_shared::SecretBytes;
use gitseal_shared::manifest::secret::{PlainSecret, check_data_key};
use zeroize::Zeroizing;

use crate::generate::{self, Spec};

/// A Secret holds at most 1 MiB; no single source may add more.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
/// Most files one `--from-file DIR` adds.
pub const MAX_DIR_ENTRIES: usize = 1024;

/// `--from-file`, `--from-env-file` and `--generate`, parsed.
#[derive(Debug, Clone, Default)]
pub struct DataSources {
    /// `(key, path)`: no key means the file's name (each file's, for a directory).
    pub files: Vec<(Option<String>, PathBuf)>,
    pub env_files: Vec<PathBuf>,
    pub generate: Vec<(String, Spec)>,
    /// `-f` was given: add to the Secret read from it. Otherwise, with any source, a new Secret
    /// named by `--name`/`--namespace` is made and stdin is not read.
    pub read_input: bool,
}

impl DataSources {
    pub fn from_args(files: &[String], env_files: &[PathBuf], generate: &[String], read_input: bool) -> Result<Self> {
        if generate.len() > generate::MAX_GENERATED {
            bail!("at most {} --generate values at once", generate::MAX_GENERATED);
        }
        Ok(Self {
            files: files.iter().map(|f| parse_file_source(f)).collect::<Result<_>>()?,
            env_files: env_files.to_vec(),
            generate: generate.iter().map(|g| generate::parse_arg(g)).collect::<Result<_>>()?,
            read_input,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.env_files.is_empty() && self.generate.is_empty()
    }

    /// Add every source to `secret`, in kubectl's order (files, env files), then generated values.
    pub fn add_to(&self, secret: &mut PlainSecret) -> Result<()> {
        for (key, path) in &self.files {
            add_file_source(secret, key.as_deref(), path)?;
        }
        for path in &self.env_files {
            add_env_file(secret, path, &|k| std::env::var_os(k).map(|v| v.into_encoded_bytes()))?;
        }
        for (key, spec) in &self.generate {
            let value = spec.generate()?;
            add(secret, key, SecretBytes::new(value.to_vec()))?;
        }
        Ok(())
    }
}

/// kubectl's `ParseFileSource`: `PATH`, or `KEY=PATH` with exactly one `=`.
pub fn parse_file_source(source: &str) -> Result<(Option<String>, PathBuf)> {
    match source.matches('=').count() {
        0 => Ok((None, PathBuf::from(source))),
        1 if source.starts_with('=') => {
            Err(anyhow!("--from-file {source}: key name for file path {} missing", &source[1..]))
        }
        1 if source.ends_with('=') => {
            Err(anyhow!("--from-file {source}: file path for key name {} missing", &source[..source.len() - 1]))
        }
        1 => {
            let (k, p) = source.split_once('=').unwrap_or_default();
            Ok((Some(k.to_string()), PathBuf::from(p)))
        }
        _ => Err(anyhow!("--from-file {source}: key names or file paths cannot contain '='")),
    }
}

fn add(secret: &mut PlainSecret, key: &str, value: SecretBytes) -> Result<()> {
    check_data_key(key)?;
    if secret.data.contains_key(key) {
        bail!("cannot add key {key}, another key by that name already exists");
    }
    secret.data.insert(key.to_string(), value);
    Ok(())
}

/// At most [`MAX_SOURCE_BYTES`] of `path`.
fn read_capped(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > MAX_SOURCE_BYTES {
        bail!("{} is larger than a Secret may be (1 MiB)", path.display());
    }
    Ok(buf)
}

fn add_file_source(secret: &mut PlainSecret, key: Option<&str>, path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("--from-file: cannot read {}", path.display()))?;
    if !meta.is_dir() {
        let name = match key {
            Some(k) => k.to_string(),
            None => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let value = read_capped(path)?;
        return add(secret, &name, SecretBytes::new(value.to_vec()))
            .with_context(|| format!("--from-file {}", path.display()));
    }
    if key.is_some() {
        bail!("--from-file {}: cannot give a key name for a directory path", path.display());
    }
    let mut entries: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("--from-file: cannot list {}", path.display()))? {
        let entry = entry.with_context(|| format!("--from-file: cannot list {}", path.display()))?;
        // Regular files only, as kubectl (symbolic links and subdirectories are skipped).
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            entries.push(entry.path());
            if entries.len() > MAX_DIR_ENTRIES {
                bail!("--from-file {}: more than {MAX_DIR_ENTRIES} files", path.display());
            }
        }
    }
    entries.sort();
    for file in entries {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let value = read_capped(&file)?;
        add(secret, &name, SecretBytes::new(value.to_vec()))
            .with_context(|| format!("--from-file {}", file.display()))?;
    }
    Ok(())
}

/// kubectl's `AddFromEnvFile`: per line, a UTF-8 BOM dropped from the first, leading white space
/// trimmed, empty and `#` lines skipped, `KEY=VALUE` split at the first `=` (the value as it is,
/// no quotes removed), a line without `=` takes the environment variable KEY (`env`). Keys must
/// be environment variable names (`[-._a-zA-Z][-._a-zA-Z0-9]*`, not starting with `..`).
pub fn add_env_file(secret: &mut PlainSecret, path: &Path, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        bail!("--from-env-file {}: env secret file cannot be a directory", path.display());
    }
    let bytes = read_capped(path).with_context(|| "--from-env-file".to_string())?;
    let where_ = |n: usize| format!("--from-env-file {} line {}", path.display(), n + 1);
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| anyhow!("{}: not UTF-8 text", where_(n)))?;
        let line = if n == 0 { line.strip_prefix('\u{feff}').unwrap_or(line) } else { line };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Zeroizing::new(v.as_bytes().to_vec())),
            None => (line, Zeroizing::new(env(line).unwrap_or_default())),
        };
        if !is_env_var_name(key) {
            let shown: String = key.chars().take(64).collect();
            bail!(
                "{}: {shown:?} is not a valid key name: letters, digits, '-', '_', '.', not starting with a digit or '..'",
                where_(n)
            );
        }
        add(secret, key, SecretBytes::new(value.to_vec())).with_context(|| where_(n))?;
    }
    Ok(())
}

fn is_env_var_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'));
    first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) && !key.starts_with("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &PlainSecret, k: &str) -> String {
        String::from_utf8(s.data[k].expose().to_vec()).unwrap()
    }

    #[test]
    fn file_sources_parse_as_kubectl_parses_them() {
        assert_eq!(parse_file_source("a/b.txt").unwrap(), (None, PathBuf::from("a/b.txt")));
        assert_eq!(parse_file_source("k=a/b.txt").unwrap(), (Some("k".into()), PathBuf::from("a/b.txt")));
        assert!(parse_file_source("=a").unwrap_err().to_string().contains("key name for file path a missing"));
        assert!(parse_file_source("k=").unwrap_err().to_string().contains("file path for key name k missing"));
        assert!(parse_file_source("a=b=c").unwrap_err().to_string().contains("cannot contain '='"));
    }

    #[test]
    fn files_and_directories_add_keys_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), "CERT").unwrap();
        std::fs::write(dir.path().join("tls.key"), "KEY").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut s = PlainSecret::default();
        add_file_source(&mut s, None, dir.path()).unwrap();
        assert_eq!(s.data.keys().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
        add_file_source(&mut s, Some("ca.crt"), &dir.path().join("tls.crt")).unwrap();
        assert_eq!(value(&s, "ca.crt"), "CERT");
        let e = add_file_source(&mut s, None, &dir.path().join("tls.crt")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot add key tls.crt, another key by that name already exists"), "{e:#}");
        let e = add_file_source(&mut s, Some("x"), dir.path()).unwrap_err();
        assert!(e.to_string().contains("cannot give a key name for a directory path"));
        let e = add_file_source(&mut s, Some("a/b"), &dir.path().join("tls.crt")).unwrap_err();
        assert!(format!("{e:#}").contains("\"a/b\""), "{e:#}");
    }

    #[test]
    fn env_files_read_as_kubectl_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        std::fs::write(
            &path,
            "\u{feff}# comment\n\n  USER=admin\nPASSWORD=\"quoted\" kept = as is \nEMPTY=\nFROM_ENV\r\nURL=a=b\n",
        )
        .unwrap();
        let mut s = PlainSecret::default();
        let env = |k: &str| (k == "FROM_ENV").then(|| b"from the environment".to_vec());
        add_env_file(&mut s, &path, &env).unwrap();
        assert_eq!(value(&s, "USER"), "admin");
        assert_eq!(value(&s, "PASSWORD"), "\"quoted\" kept = as is ");
        assert_eq!(value(&s, "EMPTY"), "");
        assert_eq!(value(&s, "FROM_ENV"), "from the environment");
        assert_eq!(value(&s, "URL"), "a=b");
        assert_eq!(s.data.len(), 5);
    }

    #[test]
    fn env_file_errors_name_the_line_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.env");
        std::fs::write(&path, "OK=1\n9LIVES=hunter2\n").unwrap();
        let e = format!("{:#}", add_env_file(&mut PlainSecret::default(), &path, &|_| None).unwrap_err());
        assert!(e.contains("line 2") && e.contains("9LIVES") && !e.contains("hunter2"), "{e}");
        std::fs::write(&path, "A=1\nA=2\n").unwrap();
        let e = format!("{:#}", add_env_file(&mut PlainSecret::default(), &path, &|_| None).unwrap_err());
        assert!(e.contains("another key by that name"), "{e}");
        let e = format!("{:#}", add_env_file(&mut PlainSecret::default(), dir.path(), &|_| None).unwrap_err());
        assert!(e.contains("cannot be a directory"), "{e}");
    }

    #[test]
    fn a_source_larger_than_a_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; (MAX_SOURCE_BYTES + 1) as usize]).unwrap();
        let e = format!("{:#}", add_file_source(&mut PlainSecret::default(), None, &path).unwrap_err());
        assert!(e.contains("larger than a Secret"), "{e}");
    }
}
