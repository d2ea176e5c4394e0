//! Test fixtures: a [`Shared`] with one loaded key and a Kubernetes client that reaches nothing,
//! for driving the routers in-process (tower `oneshot`).

use std::sync::Arc;

use clap::Parser as _;

use crate::Shared;
use crate::audit::AuditLog;
use crate::config::Cli;
use crate::registry::{KeyState, LoadedKey};

/// A client whose every request fails: handlers under test must not need the cluster.
fn offline_client() -> kube::Client {
    let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        Err::<http::Response<String>, _>(std::io::Error::other("no cluster in unit tests"))
    });
    kube::Client::new(svc, "default")
}

/// Shared state with one 2048-bit key, the default limits and `extra` flags, auditing to `audit`.
pub fn shared_with(extra: &[&str], audit: Box<dyn std::io::Write + Send>) -> Arc<Shared> {
    shared_on(offline_client(), extra, audit)
}

/// As [`shared_with`], on `client` (a scripted API server: `crate::mock_api`).
pub fn shared_on(client: kube::Client, extra: &[&str], audit: Box<dyn std::io::Write + Send>) -> Arc<Shared> {
    let mut args = vec!["gitseal-controller", "--namespace", "gitseal-system"];
    args.extend_from_slice(extra);
    let config = Cli::try_parse_from(args).expect("test flags parse").run.resolve().expect("test config resolves");
    let shared = Shared::new(client, config, AuditLog::to_writer(audit, "test").expect("in-memory audit log"));
    let pair = gitseal_keys::generate::generate_key_pair(
        gitseal_keys::RsaBits::Rsa2048,
        "",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .expect("key generation");
    shared.registry.upsert(LoadedKey::from_pair("test-key".into(), pair, KeyState::Active).expect("decryption key"));
    Arc::new(shared)
}

/// A digest key in `shared` and `app/db` (`password: hunter2`) sealed for its first usable key,
/// generation 1: the object the scripted-API tests reconcile.
pub fn sealed_db(shared: &Shared) -> gitseal_shared::types::SealedSecretObject {
    use gitseal_shared::manifest::secret::PlainSecret;
    use gitseal_shared::seal::{SealOptions, seal_secret};
    use gitseal_shared::value::RecipientSet;
    shared.registry.set_digest_key(crate::decide::DigestKey::generate().expect("digest key"));
    let recipient = shared.registry.usable().first().expect("fixture key").cert.recipient().expect("recipient");
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "app"},
                                 "stringData": {"password": "hunter2"}});
    let plain = PlainSecret::from_value(&doc).expect("plain Secret");
    let set = RecipientSet::new(vec![recipient]).expect("recipients");
    let mut ss = seal_secret(&plain, &set, &SealOptions::default()).expect("seal");
    ss.metadata.uid = Some("uid-1".into());
    ss.metadata.generation = Some(1);
    ss
}

/// Shared state with no key loaded (a controller right after start), `extra` flags, auditing to `audit`.
pub fn shared_without_keys(extra: &[&str], audit: Box<dyn std::io::Write + Send>) -> Arc<Shared> {
    let mut args = vec!["gitseal-controller", "--namespace", "gitseal-system"];
    args.extend_from_slice(extra);
    let config = Cli::try_parse_from(args).expect("test flags parse").run.resolve().expect("test config resolves");
    Arc::new(Shared::new(offline_client(), config, AuditLog::to_writer(audit, "test").expect("in-memory audit log")))
}

/// Audit lines written to memory, readable while the sink is in use.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// A key whose token can be switched off: while down, every unwrap answers
/// [`gitseal_shared::Error::KeyUnavailable`] as a PKCS#11 key does when its token is gone.
pub struct Switchable {
    inner: Arc<dyn gitseal_shared::value::UnwrapKey>,
    pub down: std::sync::atomic::AtomicBool,
}

impl Switchable {
    /// `key`'s RSA key behind a switch (down at first when `down`), and the key to decide with.
    pub fn wrap(
        key: &gitseal_shared::value::DecryptionKey,
        down: bool,
    ) -> (Arc<Switchable>, gitseal_shared::value::DecryptionKey) {
        let inner = key.rsa().expect("an RSA key").clone();
        let switch = Arc::new(Switchable { inner, down: down.into() });
        (switch.clone(), gitseal_shared::value::DecryptionKey::from_rsa(switch, None))
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl gitseal_shared::value::UnwrapKey for Switchable {
    fn key_id(&self) -> &gitseal_shared::KeyId {
        self.inner.key_id()
    }
    fn modulus_bytes(&self) -> usize {
        self.inner.modulus_bytes()
    }
    fn path(&self) -> gitseal_shared::value::UnwrapPath {
        gitseal_shared::value::UnwrapPath::TokenRawRsa
    }
    fn unwrap(&self, wrapped: &[u8], label: &[u8]) -> gitseal_shared::Result<gitseal_shared::SecretBytes> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(gitseal_shared::Error::KeyUnavailable("the token did not answer"));
        }
        self.inner.unwrap(wrapped, label)
    }
    fn export_pkcs8(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        None
    }
}
