//! The SealedSecret cache of one controller (issue #14, item 2): an [`Entry`] per object by
//! `namespace/name`, fed by the watch.
//!
//! kube-runtime's reflector store keeps an `Arc` of the watched type (a struct with a whole
//! `ObjectMeta`, about 500 bytes before any string) under a key holding copies of the name and
//! namespace. Here the key is the same shared [`Key`] the lanes queue, and the entry has no
//! metadata struct: about 600 bytes per object with a status, against about 1,000.
//!
//! Status strings and item-name lists are shared between entries that say the same (objects
//! unsealed in the same second with the same key, objects with the same item names).
//!
//! A re-list (the watch lost its place) does not build a second cache beside the first: every
//! listed object is written in place and marked with the list's number, and what the list did
//! not contain is dropped when it ends.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use kube::runtime::watcher::Event;

use crate::lanes::Key;
use crate::trim::{Cached, Entry};

/// One controller's cached SealedSecrets (one group, one namespace or all).
#[derive(Debug)]
pub struct Cache {
    group: ApiGroup,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Number of the list in progress or last finished.
    listing: u32,
    statuses: Interner<str>,
    names: Interner<[Box<str>]>,
}

/// One shared copy of each value that many entries hold. Values no entry holds any more are
/// dropped whenever the table has doubled since it was last swept, so it stays within twice
/// the values in use.
#[derive(Debug)]
struct Interner<T: ?Sized> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner { set: HashSet::new(), sweep_at: 1024 }
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    fn intern(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(shared) = self.set.get(&value) {
            return shared.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|v| Arc::strong_count(v) > 1);
            self.set.shrink_to_fit();
            self.sweep_at = (2 * self.set.len()).max(1024);
        }
        self.set.insert(value.clone());
        value
    }
}

/// What a watch event changed: an object to put in its lane, with whether it is settled.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Applied(Key, bool),
    Deleted(Key),
    /// A list ended; the watch has seen every object.
    Listed,
    None,
}

impl Cache {
    pub fn new(group: ApiGroup) -> Cache {
        Cache { group, inner: RwLock::new(Inner::default()) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply one watch event.
    pub fn apply(&self, event: Event<Cached>) -> Change {
        match event {
            Event::Init => {
                let mut inner = self.write();
                inner.listing = inner.listing.wrapping_add(1);
                Change::None
            }
            Event::InitApply(c) | Event::Apply(c) => {
                let (key, mut entry) = c.into_entry();
                let settled = entry.is_settled();
                let mut inner = self.write();
                entry.listing = inner.listing;
                entry.status = entry.status.map(|s| inner.statuses.intern(s));
                entry.items = inner.names.intern(entry.items);
                entry.template_items = entry.template_items.map(|t| inner.names.intern(t));
                // The map's key stays the first one (the lanes may hold it already).
                match inner.entries.get_mut(&key) {
                    Some(e) => *e = entry,
                    None => {
                        inner.entries.insert(key.clone(), entry);
                    }
                }
                Change::Applied(key, settled)
            }
            Event::Delete(c) => {
                let (key, _) = c.into_entry();
                self.write().entries.remove(&key);
                Change::Deleted(key)
            }
            Event::InitDone => {
                let mut inner = self.write();
                let listing = inner.listing;
                inner.entries.retain(|_, e| e.listing == listing);
                if inner.entries.capacity() > 2 * inner.entries.len() + 1024 {
                    inner.entries.shrink_to_fit();
                }
                Change::Listed
            }
        }
    }

    /// The trimmed object (see [`crate::trim`]) of `key`, if it is cached.
    pub fn get(&self, key: &Key) -> Option<SealedSecretObject> {
        self.read().entries.get(key).map(|e| e.to_object(key.namespace(), key.name(), self.group))
    }

    /// Whether `key` is settled (see [`Entry::is_settled`]), if it is cached.
    pub fn settled(&self, key: &Key) -> Option<bool> {
        self.read().entries.get(key).map(Entry::is_settled)
    }

    /// Every cached object, with whether it is settled.
    pub fn all(&self) -> Vec<(Key, bool)> {
        self.read().entries.iter().map(|(k, e)| (k.clone(), e.is_settled())).collect()
    }

    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, generation: i64, observed: Option<i64>) -> Cached {
        let mut v = serde_json::json!({
            "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
            "metadata": {"name": name, "namespace": "ns", "generation": generation, "uid": "6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f50", "resourceVersion": "7"},
            "spec": {"encryptedData": {"a": "AgBy"}}
        });
        if let Some(o) = observed {
            v["status"] = serde_json::json!({"observedGeneration": o});
        }
        Cached::new(&serde_json::from_value(v).unwrap(), ApiGroup::Gitseal)
    }

    #[test]
    fn events_say_what_changed_and_the_entry_rebuilds_the_object() {
        let cache = Cache::new(ApiGroup::Gitseal);
        assert_eq!(cache.apply(Event::Init), Change::None);
        assert_eq!(cache.apply(Event::InitApply(object("a", 1, Some(1)))), Change::Applied(Key::new("ns", "a"), true));
        assert_eq!(cache.apply(Event::InitApply(object("b", 2, Some(1)))), Change::Applied(Key::new("ns", "b"), false));
        assert_eq!(cache.apply(Event::InitDone), Change::Listed);
        let a = cache.get(&Key::new("ns", "a")).unwrap();
        assert_eq!(a.metadata.uid.as_deref(), Some("6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f50"));
        assert_eq!(a.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(ApiGroup::of(&a), Some(ApiGroup::Gitseal));
        assert!(crate::trim::cached_digest(&a).is_some());
        assert_eq!(cache.apply(Event::Delete(object("a", 1, Some(1)))), Change::Deleted(Key::new("ns", "a")));
        assert!(cache.get(&Key::new("ns", "a")).is_none());
        assert_eq!(cache.all(), [(Key::new("ns", "b"), false)]);
    }

    #[test]
    fn a_relist_keeps_what_it_saw_and_drops_what_it_did_not() {
        let cache = Cache::new(ApiGroup::Gitseal);
        cache.apply(Event::Init);
        for n in ["a", "b", "c"] {
            cache.apply(Event::InitApply(object(n, 1, None)));
        }
        cache.apply(Event::InitDone);
        // The watch lost its place; "b" was deleted meanwhile and "c" changed.
        cache.apply(Event::Init);
        assert_eq!(cache.len(), 3, "the old entries serve until the list ends");
        cache.apply(Event::InitApply(object("a", 1, None)));
        cache.apply(Event::InitApply(object("c", 2, Some(2))));
        cache.apply(Event::InitDone);
        let mut all = cache.all();
        all.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(all, [(Key::new("ns", "a"), false), (Key::new("ns", "c"), true)]);
    }

    #[test]
    fn equal_statuses_and_item_names_are_kept_once_and_let_go_when_unused() {
        let cache = Cache::new(ApiGroup::Gitseal);
        for i in 0..3000 {
            cache.apply(Event::Apply(object(&format!("o{i}"), 1, Some(1))));
        }
        let inner = cache.read();
        let a = &inner.entries[&Key::new("ns", "o1")];
        let b = &inner.entries[&Key::new("ns", "o2")];
        assert!(Arc::ptr_eq(a.status.as_ref().unwrap(), b.status.as_ref().unwrap()));
        assert!(Arc::ptr_eq(&a.items, &b.items));
        assert_eq!((inner.statuses.set.len(), inner.names.set.len()), (1, 1));
        drop(inner);
        // Every object says something else now: the table never holds more than twice what is used.
        for i in 0..3000 {
            cache.apply(Event::Apply(object(&format!("o{i}"), 2, Some(i))));
        }
        let inner = cache.read();
        let used = inner.entries.values().filter_map(|e| e.status.clone()).collect::<HashSet<_>>().len();
        assert_eq!(used, 3000);
        assert!(inner.statuses.set.len() <= 2 * used, "{}", inner.statuses.set.len());
    }
}
