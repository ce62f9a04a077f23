//! Background operations (`/1.0/operations`): created by async API calls, run as tokio tasks,
//! announced on `/1.0/events` at every status change, waited on, cancelled.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::service::events::{now_rfc3339, Events};
use crate::service::DomainError;

/// LXD's operation status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    /// 105.
    Pending,
    /// 103.
    Running,
    /// 104.
    Cancelling,
    /// 200.
    Success,
    /// 400.
    Failure,
    /// 401.
    Cancelled,
}

impl OpStatus {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            OpStatus::Pending => 105,
            OpStatus::Running => 103,
            OpStatus::Cancelling => 104,
            OpStatus::Success => 200,
            OpStatus::Failure => 400,
            OpStatus::Cancelled => 401,
        }
    }

    /// The text LXD shows.
    pub fn text(self) -> &'static str {
        match self {
            OpStatus::Pending => "Pending",
            OpStatus::Running => "Running",
            OpStatus::Cancelling => "Cancelling",
            OpStatus::Success => "Success",
            OpStatus::Failure => "Failure",
            OpStatus::Cancelled => "Cancelled",
        }
    }

    /// Whether the operation has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpStatus::Success | OpStatus::Failure | OpStatus::Cancelled
        )
    }
}

/// An operation: LXD's object (`silo_api::Operation`, what the API shows) and what silod
/// keeps beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// The object as the API shows it.
    #[serde(flatten)]
    pub api: silo_api::Operation,
    /// The status of what failed (404 for a missing source, 409 for a taken name, ...): kept
    /// for silod's own use, not part of LXD's operation object.
    #[serde(skip)]
    pub err_status: Option<u16>,
}

impl std::ops::Deref for Operation {
    type Target = silo_api::Operation;
    fn deref(&self) -> &silo_api::Operation {
        &self.api
    }
}

#[derive(Debug)]
struct Entry {
    op: Mutex<Operation>,
    done: watch::Sender<bool>,
    cancel: CancellationToken,
}

/// What a running operation's body gets.
#[derive(Debug, Clone)]
pub struct OpCtx {
    entry: Arc<Entry>,
    events: Events,
}

impl OpCtx {
    /// Cancelled when a client DELETEs the operation.
    pub fn cancelled(&self) -> CancellationToken {
        self.entry.cancel.clone()
    }

    /// Replaces the running operation's metadata (a download's progress) and announces it,
    /// as LXD's `op.UpdateMetadata` does.
    pub fn set_metadata(&self, metadata: serde_json::Value) {
        let snapshot = {
            let Ok(mut op) = self.entry.op.lock() else {
                return;
            };
            op.api.metadata = metadata;
            op.api.updated_at = now_rfc3339();
            op.clone()
        };
        self.events.send(
            "operation",
            serde_json::to_value(&snapshot).unwrap_or_default(),
        );
    }
}

/// The registry of operations.
#[derive(Debug, Clone)]
pub struct Operations {
    map: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    events: Events,
    /// How long a finished operation stays visible.
    keep: Duration,
}

/// Errors of the registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    /// No such operation.
    #[error("operation not found")]
    NotFound,
    /// It cannot be cancelled.
    #[error("this operation cannot be cancelled")]
    NotCancellable,
    /// It has already finished.
    #[error("only running operations can be cancelled")]
    NotRunning,
}

impl Operations {
    /// A new registry announcing on `events`.
    pub fn new(events: Events) -> Operations {
        Operations {
            map: Arc::default(),
            events,
            keep: Duration::from_secs(30),
        }
    }

    /// Starts `body` as a background operation and returns its first snapshot.
    /// `body` returns the final metadata, or what failed (its status is kept).
    pub fn start<F, Fut>(
        &self,
        class: &str,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
        may_cancel: bool,
        body: F,
    ) -> Operation
    where
        F: FnOnce(OpCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<serde_json::Value, DomainError>> + Send + 'static,
    {
        self.start_full(
            Uuid::new_v4().to_string(),
            class,
            description,
            resources,
            serde_json::Value::Null,
            may_cancel,
            body,
        )
    }

    /// A fresh operation id, for callers that must know it before the operation starts.
    pub fn new_id() -> String {
        Uuid::new_v4().to_string()
    }

    /// [`Operations::start`] with a chosen id and initial metadata (exec's stream secrets).
    #[allow(clippy::too_many_arguments)]
    pub fn start_full<F, Fut>(
        &self,
        id: String,
        class: &str,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
        metadata: serde_json::Value,
        may_cancel: bool,
        body: F,
    ) -> Operation
    where
        F: FnOnce(OpCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<serde_json::Value, DomainError>> + Send + 'static,
    {
        let now = now_rfc3339();
        let op = Operation {
            api: silo_api::Operation {
                id,
                class: class.to_string(),
                description: description.to_string(),
                created_at: now.clone(),
                updated_at: now,
                status: OpStatus::Running.text().into(),
                status_code: OpStatus::Running.code().into(),
                resources,
                metadata,
                may_cancel,
                err: String::new(),
                location: crate::service::host::location(),
            },
            err_status: None,
        };
        let (done, _) = watch::channel(false);
        let entry = Arc::new(Entry {
            op: Mutex::new(op.clone()),
            done,
            cancel: CancellationToken::new(),
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(op.id.clone(), entry.clone());
        }
        self.events
            .send("operation", serde_json::to_value(&op).unwrap_or_default());
        let ctx = OpCtx {
            entry: entry.clone(),
            events: self.events.clone(),
        };
        let this = self.clone();
        tokio::spawn(async move {
            let cancel = entry.cancel.clone();
            let result = tokio::select! {
                r = body(ctx) => Some(r),
                () = cancel.cancelled() => None,
            };
            let (status, metadata, err) = match result {
                Some(Ok(md)) => (OpStatus::Success, Some(md), None),
                Some(Err(e)) => (OpStatus::Failure, None, Some(e)),
                None => (
                    OpStatus::Cancelled,
                    None,
                    Some(DomainError::Conflict("operation cancelled".into())),
                ),
            };
            this.finish(&entry, status, metadata, err);
        });
        op
    }

    fn finish(
        &self,
        entry: &Arc<Entry>,
        status: OpStatus,
        metadata: Option<serde_json::Value>,
        err: Option<DomainError>,
    ) {
        let snapshot = {
            let Ok(mut op) = entry.op.lock() else { return };
            op.api.status = status.text().into();
            op.api.status_code = status.code().into();
            op.api.updated_at = now_rfc3339();
            op.api.may_cancel = false;
            if let Some(md) = metadata {
                op.api.metadata = md;
            }
            if let Some(e) = err {
                op.api.err = e.to_string();
                op.err_status = Some(e.status());
            }
            op.clone()
        };
        self.events.send(
            "operation",
            serde_json::to_value(&snapshot).unwrap_or_default(),
        );
        // send_replace stores the value even when nobody is waiting yet, so a later /wait
        // sees the operation as done.
        entry.done.send_replace(true);
        let map = self.map.clone();
        let id = snapshot.id.clone();
        let keep = self.keep;
        tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            if let Ok(mut m) = map.lock() {
                m.remove(&id);
            }
        });
    }

    /// A snapshot of one operation.
    pub fn get(&self, id: &str) -> Result<Operation, OpError> {
        let m = self.map.lock().map_err(|_| OpError::NotFound)?;
        let e = m.get(id).ok_or(OpError::NotFound)?;
        let op = e.op.lock().map_err(|_| OpError::NotFound)?.clone();
        Ok(op)
    }

    /// All operations, oldest first.
    pub fn list(&self) -> Vec<Operation> {
        let Ok(m) = self.map.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Operation> = m
            .values()
            .filter_map(|e| e.op.lock().ok().map(|o| o.clone()))
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        v
    }

    /// Waits until the operation ends or `timeout` passes (None: forever), then snapshots it.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Operation, OpError> {
        let mut rx = {
            let m = self.map.lock().map_err(|_| OpError::NotFound)?;
            m.get(id).ok_or(OpError::NotFound)?.done.subscribe()
        };
        let fut = rx.wait_for(|d| *d);
        match timeout {
            Some(t) => {
                let _ = tokio::time::timeout(t, fut).await;
            }
            None => {
                let _ = fut.await;
            }
        }
        self.get(id)
    }

    /// Cancels a running, cancellable operation.
    pub fn cancel(&self, id: &str) -> Result<(), OpError> {
        let m = self.map.lock().map_err(|_| OpError::NotFound)?;
        let e = m.get(id).ok_or(OpError::NotFound)?;
        let op = e.op.lock().map_err(|_| OpError::NotFound)?;
        if op.status_code >= 200 {
            return Err(OpError::NotRunning);
        }
        if !op.may_cancel {
            return Err(OpError::NotCancellable);
        }
        e.cancel.cancel();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_announces_and_waits() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let ops = Operations::new(events);
        let op = ops.start("task", "Testing", BTreeMap::new(), false, |_ctx| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(serde_json::json!({"answer": 42}))
        });
        assert_eq!(op.status_code, 103);
        let first = rx.recv().await.expect("event");
        assert_eq!(first.kind, "operation");
        assert_eq!(first.metadata["status_code"], 103);
        let done = ops.wait(&op.id, None).await.expect("wait");
        assert_eq!(done.status_code, 200);
        assert_eq!(done.metadata["answer"], 42);
        let last = rx.recv().await.expect("event");
        assert_eq!(last.metadata["status"], "Success");
        assert_eq!(ops.cancel(&op.id), Err(OpError::NotRunning));
    }

    #[tokio::test]
    async fn cancel_and_failure() {
        let ops = Operations::new(Events::new());
        let slow = ops.start("task", "Slow", BTreeMap::new(), true, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(serde_json::Value::Null)
        });
        let fixed = ops.start("task", "Fixed", BTreeMap::new(), false, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(serde_json::Value::Null)
        });
        assert_eq!(ops.cancel(&fixed.id), Err(OpError::NotCancellable));
        ops.cancel(&slow.id).expect("cancel");
        let c = ops.wait(&slow.id, None).await.expect("wait");
        assert_eq!(c.status_code, 401);
        let t = ops
            .wait(&fixed.id, Some(Duration::from_millis(20)))
            .await
            .expect("wait");
        assert_eq!(
            t.status_code, 103,
            "a timed-out wait returns the running op"
        );
        let f = ops.start("task", "Failing", BTreeMap::new(), false, |_| async {
            Err(DomainError::NotFound("it broke".into()))
        });
        let f = ops.wait(&f.id, None).await.expect("wait");
        assert_eq!((f.status_code, f.err.as_str()), (400, "it broke"));
        assert_eq!(f.err_status, Some(404), "the failure keeps its status");
        assert_eq!(ops.get("nope").unwrap_err(), OpError::NotFound);
    }
}
