//! `GET /1.0/metrics`: LXD's Prometheus text (`text/plain`, no JSON envelope).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::response::ApiResult;
use crate::service::{metrics, Services};

/// `?project=` (and `?target=`, which a single host ignores).
#[derive(Debug, Deserialize, Default)]
pub struct MetricsQuery {
    #[serde(default)]
    project: Option<String>,
}

/// `GET /1.0/metrics`.
pub async fn get(State(d): State<Arc<Services>>, Query(q): Query<MetricsQuery>) -> ApiResult {
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let text = metrics::gather(&d, project).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
