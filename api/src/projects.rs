//! Projects: `/1.0/projects[/<name>[/state]]`. silo has LXD's `default` project only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StringMap;

/// A project: `GET /1.0/projects/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Configuration (`features.*`, `limits.*`, `restricted.*`).
    pub config: StringMap,
    /// What lives in the project (URLs).
    pub used_by: Vec<String>,
}

/// The writable part of a project: `PUT/PATCH /1.0/projects/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectPut {
    /// Configuration.
    pub config: StringMap,
    /// Description.
    pub description: String,
}

/// One resource's limit and usage in `GET /1.0/projects/<name>/state`; -1 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectStateResource {
    /// The limit, -1 for none.
    pub limit: i64,
    /// What is in use.
    pub usage: i64,
}

/// `GET /1.0/projects/<name>/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectState {
    /// By resource: `containers`, `cpu`, `disk`, `instances`, `memory`, `networks`,
    /// `processes`, `virtual-machines`.
    pub resources: BTreeMap<String, ProjectStateResource>,
}
