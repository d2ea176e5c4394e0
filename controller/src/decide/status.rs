//! The `Synced` condition and the rest of a SealedSecret's status.

use gitseal_shared::KeyId;
use gitseal_shared::types::{SealedSecretCondition, SealedSecretObject, SealedSecretStatus};

/// The condition type gitseal (and Bitnami) report.
pub const SYNCED: &str = "Synced";

/// The status to write, or `None` when the current one already says the same.
pub fn next_status(
    ss: &SealedSecretObject,
    ok: bool,
    reason: &str,
    message: &str,
    key_ids: Option<&[KeyId]>,
    now: &str,
) -> Option<SealedSecretStatus> {
    let current = ss.status.clone().unwrap_or_default();
    let status = if ok { "True" } else { "False" };
    let old = current.conditions.iter().find(|c| c.type_ == SYNCED);
    let key_id = match key_ids {
        Some(ids) if !ids.is_empty() => Some(KeyId::join(ids.iter().cloned())),
        Some(_) => current.key_id.clone(),
        None => current.key_id.clone(),
    };
    let unchanged = old.is_some_and(|c| {
        c.status == status && c.reason.as_deref() == Some(reason) && c.message.as_deref().unwrap_or("") == message
    }) && current.observed_generation == ss.metadata.generation
        && current.key_id == key_id;
    if unchanged {
        return None;
    }
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.to_string()),
    };
    let condition = SealedSecretCondition {
        type_: SYNCED.into(),
        status: status.into(),
        last_update_time: Some(now.into()),
        last_transition_time: transition,
        reason: Some(reason.into()),
        message: (!message.is_empty()).then(|| message.to_string()),
    };
    // Synced first: Bitnami's printer columns read conditions[0].
    let mut conditions = vec![condition];
    conditions.extend(current.conditions.into_iter().filter(|c| c.type_ != SYNCED));
    Some(SealedSecretStatus { observed_generation: ss.metadata.generation, conditions, key_id })
}
