//! Events about single SealedSecrets, published without kube-runtime's `Recorder` cache.
//!
//! `Recorder::publish` keeps every event it sent for six minutes (to turn repeats into a
//! series), with the whole `Event` and its key: about 2.5 KiB per object. A cold start of
//! 10,000 objects publishes one `Unsealed` event each within those six minutes, so the cache
//! alone was about 25 MiB of the start-up peak (issue #14, item 2). A repeat on one object
//! within six minutes is rare here (a failed object is retried after ten minutes), so each
//! event is created on its own, exactly as the recorder creates a first one. Rare events
//! (keys, audit, shards) still go through the recorder.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Who reports: the controller's name and this replica's identity.
pub const CONTROLLER: &str = "gitseal-controller";

/// The event the recorder would create first for `reference` (events.k8s.io/v1).
pub fn event(
    reference: &ObjectReference,
    instance: &str,
    warning: bool,
    reason: &str,
    action: &str,
    note: &str,
) -> Event {
    let now = jiff::Timestamp::now();
    Event {
        action: Some(action.into()),
        reason: Some(reason.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        note: Some(note.into()),
        metadata: ObjectMeta {
            namespace: reference.namespace.clone(),
            name: Some(format!("{}.{:x}", reference.name.as_deref().unwrap_or(CONTROLLER), now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        ..Event::default()
    }
}

/// Create `event` in its namespace.
pub async fn publish(client: &kube::Client, event: &Event) -> Result<(), kube::Error> {
    let ns = event.metadata.namespace.as_deref().unwrap_or("default");
    Api::<Event>::namespaced(client.clone(), ns).create(&PostParams::default(), event).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_names_the_object_the_reporter_and_the_reason() {
        let reference = ObjectReference {
            api_version: Some("gitseal.dev/v1".into()),
            kind: Some("SealedSecret".into()),
            name: Some("db".into()),
            namespace: Some("app".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let e = event(&reference, "pod-0", true, "DecryptFailed", "Unseal", "no key opened it");
        assert_eq!(e.metadata.namespace.as_deref(), Some("app"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("db."));
        assert_eq!(e.regarding.as_ref(), Some(&reference));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!((e.reason.as_deref(), e.action.as_deref()), (Some("DecryptFailed"), Some("Unseal")));
        assert_eq!(
            (e.reporting_controller.as_deref(), e.reporting_instance.as_deref()),
            (Some(CONTROLLER), Some("pod-0"))
        );
        assert!(e.series.is_none() && e.event_time.is_some());
    }
}
