//! The one error of silo's domain, with the status LXD gives it. `api/` turns it into an HTTP
//! answer; background operations keep its status, so a 404 inside an operation stays a 404.

/// Every way an API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 412.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 429: too many wrong trust passwords from one address.
    #[error("{0}")]
    TooManyRequests(String),
    /// 500.
    #[error("{0}")]
    Internal(String),
    /// 501: a mode of a request LXD defines that silo does not do.
    #[error("{0}")]
    NotImplemented(String),
    /// 503: a helper went away; silod is about to exit for its supervisor to restart it.
    #[error("{0}")]
    Unavailable(String),
}

impl DomainError {
    /// The HTTP status LXD answers this with; `api/` maps it, and operations keep it.
    pub fn status(&self) -> u16 {
        match self {
            DomainError::BadRequest(_) => 400,
            DomainError::Forbidden(_) => 403,
            DomainError::NotFound(_) => 404,
            DomainError::Conflict(_) => 409,
            DomainError::PreconditionFailed(_) => 412,
            DomainError::TooManyRequests(_) => 429,
            DomainError::Internal(_) => 500,
            DomainError::NotImplemented(_) => 501,
            DomainError::Unavailable(_) => 503,
        }
    }
}

impl From<silo_proto::HelperError> for DomainError {
    fn from(e: silo_proto::HelperError) -> Self {
        let msg = e.to_string();
        match e.http_status() {
            400 => DomainError::BadRequest(msg),
            403 => DomainError::Forbidden(msg),
            404 => DomainError::NotFound(msg),
            409 => DomainError::Conflict(msg),
            _ => DomainError::Internal(msg),
        }
    }
}

impl From<crate::helpers::HelperCallError> for DomainError {
    fn from(e: crate::helpers::HelperCallError) -> Self {
        DomainError::Unavailable(e.to_string())
    }
}

impl From<crate::store::StoreError> for DomainError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        let msg = e.to_string();
        match e {
            StoreError::NotFound(_) => DomainError::NotFound(msg),
            StoreError::Conflict(_) => DomainError::Conflict(msg),
            StoreError::Cluster(_) => DomainError::Unavailable(msg),
            StoreError::Sqlite { .. }
            | StoreError::TooNew { .. }
            | StoreError::Poisoned
            | StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::NotVolatile { .. } => DomainError::Internal(msg),
        }
    }
}

impl From<crate::model::filter::FilterError> for DomainError {
    fn from(e: crate::model::filter::FilterError) -> Self {
        DomainError::BadRequest(e.0)
    }
}

impl From<crate::model::config::ConfigError> for DomainError {
    fn from(e: crate::model::config::ConfigError) -> Self {
        DomainError::BadRequest(e.to_string())
    }
}

impl From<crate::model::devices::DeviceError> for DomainError {
    fn from(e: crate::model::devices::DeviceError) -> Self {
        DomainError::BadRequest(e.to_string())
    }
}

impl From<crate::model::parse::ParseError> for DomainError {
    fn from(e: crate::model::parse::ParseError) -> Self {
        DomainError::BadRequest(e.to_string())
    }
}

impl From<crate::model::password::PasswordError> for DomainError {
    fn from(e: crate::model::password::PasswordError) -> Self {
        DomainError::Internal(e.to_string())
    }
}

impl From<crate::helpers::HelperFailure> for DomainError {
    fn from(e: crate::helpers::HelperFailure) -> Self {
        match e {
            crate::helpers::HelperFailure::Refused(e) => e.into(),
            crate::helpers::HelperFailure::Gone(e) => e.into(),
        }
    }
}

impl From<String> for DomainError {
    /// A failure known only by its text (an exec stream that broke): a 500.
    fn from(e: String) -> Self {
        DomainError::Internal(e)
    }
}

impl From<crate::model::profile::ProfileError> for DomainError {
    fn from(e: crate::model::profile::ProfileError) -> Self {
        match e {
            crate::model::profile::ProfileError::Damaged(m) => DomainError::Internal(m),
            e => DomainError::BadRequest(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::Named;
    use crate::store::StoreError;

    #[test]
    fn store_errors_keep_their_status() {
        let nf: DomainError = StoreError::not_found(Named::new("instance", "x")).into();
        assert_eq!(
            (nf.status(), nf.to_string().as_str()),
            (404, "instance \"x\" not found")
        );
        let c: DomainError = StoreError::conflict(Named::new("instance", "a")).into();
        assert_eq!(c.status(), 409);
    }
}
