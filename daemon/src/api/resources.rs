//! `GET /1.0/resources`: the host's hardware, read by `service::resources`.

use std::sync::Arc;

use axum::extract::State;

use super::response::{sync, ApiResult, DomainError};
use crate::service::Services;

/// `GET /1.0/resources`.
pub async fn get(State(d): State<Arc<Services>>) -> ApiResult {
    let kind = d.host.system_type.clone();
    // Hundreds of small sysfs reads: off the async workers.
    let r = tokio::task::spawn_blocking(move || crate::service::resources::read(&kind))
        .await
        .map_err(|e| DomainError::Internal(format!("reading the host's resources: {e}")))?;
    Ok(sync(r))
}
