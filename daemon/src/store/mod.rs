//! The database: one module per table over rusqlite. Decoding never defaults: a corrupt row is
//! an error naming the row.

pub mod db;
