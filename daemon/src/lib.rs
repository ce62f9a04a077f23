//! silod: the unprivileged API daemon. See ARCHITECTURE.md for the code map.

pub mod api;
pub mod confinement;
pub mod db;
pub mod events;
pub mod helpers;
pub mod operations;
pub mod startup;
pub mod state;
