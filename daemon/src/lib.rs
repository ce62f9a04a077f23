//! silod: the unprivileged API daemon. See ARCHITECTURE.md for the code map.
//!
//! Layers, one way: `api` (HTTP) → `service` (what silo does) → `store` (the database) and
//! `helpers` (the root helpers) → `model` (pure rules, depending on nothing). `startup` and
//! `confinement` wire them together. `tests/layers.rs` checks the direction from the `use` lines.

pub mod admin;
pub mod api;
pub mod confinement;
pub mod helpers;
pub mod model;
pub mod service;
pub mod startup;
pub mod store;
pub mod tls;
