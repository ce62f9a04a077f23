//! silod: the unprivileged API daemon. See ARCHITECTURE.md for the code map.

pub mod api;
pub mod backups;
pub mod confinement;
pub mod db;
pub mod events;
pub mod exec;
pub mod filter;
pub mod helpers;
pub mod images;
pub mod instances;
pub mod networks;
pub mod operations;
pub mod profiles;
pub mod runtime;
pub mod schedule;
pub mod snapshots;
pub mod startup;
pub mod state;
pub mod storage;
