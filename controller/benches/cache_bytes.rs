//! Bytes the SealedSecret cache holds per object (issue #14, item 2), without a control plane:
//! the resident growth of a process building the cache, fed objects shaped like the API server's
//! (managedFields, status written by gitseal), trimmed as the controller trims them.
//!
//! ```sh
//! cargo bench -p gitseal-controller --bench cache_bytes   # GITSEAL_BENCH_OBJECTS=20000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitseal_shared::types::{ApiGroup, SealedSecretObject};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::json;

mod support;
use support::env_usize;

/// This process's resident set in KiB (`VmRSS`): on one thread, glibc's heap grows in place,
/// so the growth over building the store is the store's size plus the allocator's overhead.
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Object `i` as a watch of the API server returns it once gitseal has written its status.
fn object(i: usize) -> SealedSecretObject {
    let name = format!("s{i:05}");
    let ct = "AgB".repeat(250);
    serde_json::from_value(json!({
        "apiVersion": "gitseal.dev/v1", "kind": "SealedSecret",
        "metadata": {
            "name": name, "namespace": "gitseal-test-abcdef12", "uid": "6f1c2f2e-4b7a-4f8e-9a55-0b1c2d3e4f50",
            "resourceVersion": "123456", "generation": 1, "creationTimestamp": "2026-11-30T10:00:00Z",
            "annotations": {"gitseal.dev/key-id": "k1-0123456789abcdef"},
            "managedFields": [
                {"manager": "gitseal-tests", "operation": "Apply", "apiVersion": "gitseal.dev/v1",
                 "time": "2026-11-30T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:gitseal.dev/key-id": {}}},
                              "f:spec": {"f:encryptedData": {"f:key0": {}}, "f:template": {"f:metadata": {"f:name": {}, "f:namespace": {}}}}}},
                {"manager": "gitseal-controller", "operation": "Apply", "apiVersion": "gitseal.dev/v1",
                 "time": "2026-11-30T10:00:01Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:keyId": {}, "f:observedGeneration": {}}}}
            ]
        },
        "spec": {"encryptedData": {"key0": ct},
                 "template": {"metadata": {"name": name, "namespace": "gitseal-test-abcdef12"}}},
        "status": {"observedGeneration": 1, "keyId": "k1-0123456789abcdef",
                   "conditions": [{"type": "Synced", "status": "True", "reason": "Unsealed",
                                   "lastUpdateTime": "2026-11-30T10:00:01Z", "lastTransitionTime": "2026-11-30T10:00:01Z"}]}
    }))
    .unwrap()
}

/// Resident bytes per object of a store of `n` objects made by `cut`.
fn per_object<K>(n: usize, dyntype: K::DynamicType, cut: impl Fn(SealedSecretObject) -> K) -> f64
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut writer = Writer::<K>::new(dyntype);
    let reader = writer.as_reader();
    let before = rss_kib();
    writer.apply_watcher_event(&Event::Init);
    for i in 0..n {
        writer.apply_watcher_event(&Event::InitApply(cut(object(i))));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let after = rss_kib();
    assert_eq!(reader.len(), n);
    (after - before) as f64 * 1024.0 / n as f64
}

fn main() {
    let n = env_usize("GITSEAL_BENCH_OBJECTS", 20_000);
    // Each kind in a fresh process of its own, so that neither reuses the other's freed heap.
    match std::env::var("GITSEAL_BENCH_CACHE").as_deref() {
        Ok("trimmed") => {
            let bytes = per_object(n, ApiGroup::Gitseal.api_resource(), |mut o| {
                gitseal_controller::trim::for_cache(&mut o);
                o
            });
            println!("trimmed whole objects (Store<SealedSecretObject>): {bytes:.0} resident bytes per object");
        }
        Ok("compact") => {
            let bytes =
                per_object(n, ApiGroup::Gitseal, |o| gitseal_controller::trim::Cached::new(&o, ApiGroup::Gitseal));
            println!("compact entries (Store<trim::Cached>): {bytes:.0} resident bytes per object");
        }
        Ok("cache") => {
            use gitseal_controller::cache::Cache;
            let cache = Cache::new(ApiGroup::Gitseal);
            let before = rss_kib();
            cache.apply(Event::Init);
            for i in 0..n {
                cache.apply(Event::InitApply(gitseal_controller::trim::Cached::new(&object(i), ApiGroup::Gitseal)));
            }
            cache.apply(Event::InitDone);
            let after = rss_kib();
            assert_eq!(cache.len(), n);
            let bytes = (after - before) as f64 * 1024.0 / n as f64;
            println!("the controller's cache (cache::Cache of trim::Entry): {bytes:.0} resident bytes per object");
        }
        _ => {
            println!("cache: {n} objects");
            for kind in ["trimmed", "compact", "cache"] {
                let me = std::env::current_exe().unwrap();
                let status = std::process::Command::new(me).env("GITSEAL_BENCH_CACHE", kind).status().unwrap();
                assert!(status.success());
            }
        }
    }
}
