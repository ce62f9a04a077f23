//! Pure rules of silo's domain: typed records, config keys, devices, filters, schedules. Nothing
//! here does I/O or depends on another layer, so all of it is unit-tested as a normal user.

pub mod config;
pub mod devices;
pub mod filter;
pub mod parse;
pub mod password;
pub mod schedule;

/// Deserializes `null` as the type's default: the stock client sends `"config": null` for
/// empty maps.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    /// The model is the bottom layer: nothing in it may reach up into the layers that do I/O.
    #[test]
    fn model_uses_no_other_layer() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("config.rs", include_str!("config.rs")),
            ("devices.rs", include_str!("devices.rs")),
            ("filter.rs", include_str!("filter.rs")),
            ("parse.rs", include_str!("parse.rs")),
            ("password.rs", include_str!("password.rs")),
            ("schedule.rs", include_str!("schedule.rs")),
        ];
        let layers = ["service", "store", "helpers", "api"];
        for (file, text) in sources {
            for (n, line) in text.lines().enumerate() {
                for layer in layers {
                    // Split so this test's own source does not match itself.
                    let needle = format!("{}::{layer}", "crate");
                    assert!(!line.contains(&needle), "model/{file}:{}: {line}", n + 1);
                }
            }
        }
    }
}
