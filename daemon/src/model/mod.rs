//! Pure rules of silo's domain: typed records, config keys, devices, filters, schedules. Nothing
//! here does I/O or depends on another layer, so all of it is unit-tested as a normal user.

pub mod filter;
pub mod schedule;
