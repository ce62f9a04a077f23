//! The trust middleware: every request passes here once, and [`crate::model::trust::access`]
//! decides what its caller may do. A request without a [`Peer`] (a server that forgot to say
//! where it came from) is untrusted.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::model::trust::{access, is_metrics, Access, CallerKind, Peer};
use crate::service::{trust, DomainError, Services};

/// What the connection says of the caller.
pub fn caller_of(d: &Services, peer: Option<&Peer>) -> CallerKind {
    match peer {
        Some(Peer::Local) => CallerKind::Local,
        Some(Peer::Tls {
            cert: Some(cert), ..
        }) => trust::kind_of(d, &cert.1),
        Some(Peer::Tls { cert: None, .. }) | None => CallerKind::Untrusted,
    }
}

/// Applies the rule table; the handlers behind it find the caller's kind in the request's
/// extensions to show an untrusted caller its view.
pub async fn authorize(State(d): State<Arc<Services>>, mut req: Request, next: Next) -> Response {
    let kind = caller_of(&d, req.extensions().get::<Peer>());
    let (method, path) = (req.method().as_str(), req.uri().path());
    let mut decision = access(kind, method, path);
    if decision == Access::Denied && is_metrics(method, path) && trust::metrics_open(&d) {
        decision = Access::Full;
    }
    match decision {
        Access::Full | Access::Untrusted => {
            req.extensions_mut().insert(kind);
            next.run(req).await
        }
        Access::Denied => {
            tracing::debug!(method = %req.method(), uri = %req.uri(), ?kind, "refused");
            DomainError::Forbidden("not authorized".into()).into_response()
        }
    }
}
