//! Discovery: what `kubectl api-resources` and the kube-apiserver's aggregator read, all from
//! [`Resource::ALL`](gitseal_shared::api::Resource::ALL).

use axum::Json;
use gitseal_shared::api::{ApiGroup, ApiGroupList, ApiResourceList};

/// `/apis`
pub(super) async fn group_list() -> Json<ApiGroupList> {
    Json(ApiGroupList::gitseal())
}

/// `/apis/api.gitseal.dev`
pub(super) async fn group() -> Json<ApiGroup> {
    Json(ApiGroup::gitseal())
}

/// `/apis/api.gitseal.dev/v1`
pub(super) async fn resource_list() -> Json<ApiResourceList> {
    Json(ApiResourceList::gitseal())
}
