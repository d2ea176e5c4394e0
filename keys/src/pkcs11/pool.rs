//! A small pool of logged-in sessions on one token, re-opened after the token goes away.
//!
//! At most `sessions` are open at once (the controller sizes it to its private-key threads, so
//! the private-key budget counts token operations as it counts in-memory ones). When an
//! operation fails with CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED,
//! CKR_TOKEN_NOT_PRESENT or CKR_CRYPTOKI_NOT_INITIALIZED, the library is finalized and
//! initialized again, the user logged in again, and the operation retried once. Each
//! re-initialisation is a new *generation*: sessions and object handles of an older one are
//! forgotten, never reused — not even closed, since after C_Initialize a new session may carry
//! the same handle number and C_CloseSession on the stale one would close it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::{TokenConfig, token_err};
use crate::{Error, Result};

/// Whether `e` means the session or the library is gone (re-open and retry), rather than a
/// refusal of this operation.
pub fn is_reconnect_error(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// A short form of a cryptoki error (its own texts are paragraphs of the standard).
pub(crate) fn short(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// Leave a stale session unclosed (see the module docs); it holds only a handle number and a
/// reference to the old library context.
fn forget(session: Session) {
    std::mem::forget(session);
}

/// How long [`Pool::refresh`] waits for sessions in use to come back.
const REFRESH_QUIET: Duration = Duration::from_secs(2);

struct Inner {
    ctx: Option<Pkcs11>,
    slot: Option<Slot>,
    idle: Vec<(u64, Session)>,
    /// Sessions handed out now.
    out: usize,
    /// When the library was last (re-)initialised, or tried to be.
    connected_at: Option<Instant>,
}

pub(super) struct Pool {
    config: TokenConfig,
    inner: Mutex<Inner>,
    freed: Condvar,
    generation: AtomicU64,
    reconnects: AtomicU64,
}

impl Pool {
    pub(super) fn open(config: TokenConfig) -> Result<Pool> {
        let pool = Pool {
            config,
            inner: Mutex::new(Inner { ctx: None, slot: None, idle: Vec::new(), out: 0, connected_at: None }),
            freed: Condvar::new(),
            generation: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        };
        {
            let mut inner = pool.lock();
            pool.connect(&mut inner)?;
        }
        Ok(pool)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn describe(&self) -> String {
        match (&self.config.token_label, self.config.slot) {
            (Some(l), _) => format!("token {l:?} of {}", self.config.module.display()),
            (None, Some(s)) => format!("slot {s} of {}", self.config.module.display()),
            (None, None) => format!("the first token of {}", self.config.module.display()),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::SeqCst)
    }

    /// (Re-)initialise the library, find the slot, log in; one idle session of the new
    /// generation is left in the pool.
    fn connect(&self, inner: &mut Inner) -> Result<()> {
        inner.connected_at = Some(Instant::now());
        inner.idle.drain(..).for_each(|(_, s)| forget(s));
        if let Some(old) = inner.ctx.take() {
            // May fail: the library may already be finalized (that is why we are here).
            let _ = old.finalize();
        }
        let ctx = Pkcs11::new(&self.config.module).map_err(|e| {
            Error::Token(format!("cannot load the module {} ({})", self.config.module.display(), short(&e)))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(token_err("C_Initialize", e)),
        }
        let slot = self.find_slot(&ctx)?;
        let session = ctx.open_rw_session(slot).map_err(|e| token_err("C_OpenSession", e))?;
        let pin = AuthPin::from(self.config.pin.as_str().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(token_err("C_Login (check the PIN)", e)),
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        inner.ctx = Some(ctx);
        inner.slot = Some(slot);
        inner.idle.push((generation, session));
        Ok(())
    }

    fn find_slot(&self, ctx: &Pkcs11) -> Result<Slot> {
        let slots = ctx.get_slots_with_token().map_err(|e| token_err("C_GetSlotList", e))?;
        if let Some(label) = &self.config.token_label {
            for slot in &slots {
                let info = ctx.get_token_info(*slot).map_err(|e| token_err("C_GetTokenInfo", e))?;
                if info.label().trim_end() == label {
                    return Ok(*slot);
                }
            }
            return Err(Error::Token(format!("no token labelled {label:?} in {}", self.config.module.display())));
        }
        if let Some(id) = self.config.slot {
            return slots
                .into_iter()
                .find(|s| s.id() == id)
                .ok_or_else(|| Error::Token(format!("no token in slot {id} of {}", self.config.module.display())));
        }
        slots.into_iter().next().ok_or_else(|| Error::Token(format!("no token in {}", self.config.module.display())))
    }

    /// A session of the current generation: idle, new, or the next one given back.
    fn take(&self) -> Result<(u64, Session)> {
        let mut inner = self.lock();
        loop {
            let generation = self.generation();
            while let Some((g, s)) = inner.idle.pop() {
                if g == generation {
                    inner.out += 1;
                    return Ok((g, s));
                }
                forget(s);
            }
            if inner.out < self.config.sessions.max(1) {
                let opened = match (&inner.ctx, inner.slot) {
                    (Some(ctx), Some(slot)) => ctx.open_rw_session(slot).map_err(Some),
                    _ => Err(None),
                };
                match opened {
                    Ok(s) => {
                        inner.out += 1;
                        return Ok((generation, s));
                    }
                    Err(Some(e)) if !is_reconnect_error(&e) => return Err(token_err("C_OpenSession", e)),
                    // No library, or it is gone: re-initialise (leaves one idle session).
                    Err(_) => {
                        self.reconnects.fetch_add(1, Ordering::SeqCst);
                        self.connect(&mut inner)?;
                        continue;
                    }
                }
            }
            inner = self.freed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&self, generation: u64, session: Session, healthy: bool) {
        let mut inner = self.lock();
        inner.out = inner.out.saturating_sub(1);
        if healthy && generation == self.generation() {
            inner.idle.push((generation, session));
        } else {
            forget(session);
        }
        drop(inner);
        // All: a refresh may wait for the last session beside takers waiting for any.
        self.freed.notify_all();
    }

    /// Re-initialise unless another thread already did since `generation`.
    fn reconnect(&self, generation: u64) -> Result<()> {
        let mut inner = self.lock();
        if self.generation() != generation {
            return Ok(());
        }
        self.reconnects.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(token = %self.describe(), "PKCS#11 token went away; re-opening the library and retrying");
        self.connect(&mut inner)
    }

    /// Re-initialise the library because a key object vanished, unless that was done less than
    /// `every` ago: SoftHSM forgets objects whose files went away (its token directory moved,
    /// a volume remounted) and finds them again only on C_Initialize; an HSM may do the same
    /// after a reload. True when a new generation is open.
    pub(super) fn refresh(&self, every: Duration) -> bool {
        let mut inner = self.lock();
        if inner.connected_at.is_some_and(|t| t.elapsed() < every) {
            return false;
        }
        // Never finalize under an operation in flight (other keys may be working): wait a
        // moment for every session to come back, else leave the library as it is.
        let deadline = Instant::now() + REFRESH_QUIET;
        while inner.out > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inner = self.freed.wait_timeout(inner, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        self.reconnects.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(token = %self.describe(), "a key object is missing from the PKCS#11 token; re-opening the library");
        self.connect(&mut inner).is_ok()
    }

    /// Run `f` on a pooled session; re-open and retry once if the token went away.
    pub(super) fn with_session<T>(&self, f: impl Fn(&Session) -> cryptoki::error::Result<T>) -> Result<T> {
        let mut last = None;
        for _ in 0..2 {
            let (generation, session) = self.take()?;
            match f(&session) {
                Ok(v) => {
                    self.give(generation, session, true);
                    return Ok(v);
                }
                Err(e) if is_reconnect_error(&e) => {
                    self.give(generation, session, false);
                    last = Some(e);
                    self.reconnect(generation)?;
                }
                Err(e) => {
                    self.give(generation, session, true);
                    return Err(token_err("token operation", e));
                }
            }
        }
        Err(last.map_or_else(|| Error::Token("the token did not answer".into()), |e| token_err("token operation", e)))
    }

    /// Finalize the library under the pool without telling it, as when the token restarts.
    pub(super) fn finalize_for_test(&self) {
        let inner = self.lock();
        if let Some(ctx) = &inner.ctx {
            let _ = ctx.clone().finalize();
        }
    }
}
