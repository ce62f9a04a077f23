//! The `limits.*` keys beyond memory, CPU set and processes, and `raw.idmap`, parsed into the
//! typed values silo-priv takes (it validates them again, and maps them onto the host's cgroup
//! files: silod does not know which cgroup version the host has).

use std::collections::BTreeMap;

use silo_proto::privileged::{CpuAllowance, HugePageSize, Limits, RawIdmapEntry};

/// A priority key's value: a whole number 0 to 10, as LXD takes `limits.cpu.priority`,
/// `limits.memory.swap.priority` and `limits.disk.priority`.
pub fn parse_priority(v: &str) -> Result<u8, String> {
    v.parse::<u8>()
        .ok()
        .filter(|p| *p <= 10)
        .ok_or_else(|| format!("{v:?} is not a priority between 0 and 10"))
}

/// `limits.memory.enforce`: `hard` (the default) or `soft`; whether it is soft.
pub fn parse_memory_enforce(v: &str) -> Result<bool, String> {
    match v {
        "hard" => Ok(false),
        "soft" => Ok(true),
        _ => Err(format!("{v:?} is neither hard nor soft")),
    }
}

/// `limits.hugepages.<size>`: a byte size.
pub fn parse_hugepages(v: &str) -> Result<u64, String> {
    let b = silo_proto::types::parse_bytes(v)?;
    if b > silo_proto::privileged::MAX_HUGEPAGES_BYTES {
        return Err(format!("{v:?} is more than any host has"));
    }
    Ok(b)
}

/// Fills in the limits these keys set from an expanded config; a bad value is refused with
/// its key.
pub fn fill(cfg: &BTreeMap<String, String>, l: &mut Limits) -> Result<(), (String, String)> {
    let get = |k: &str| cfg.get(k).map(String::as_str).filter(|v| !v.is_empty());
    fn at(k: &str) -> impl Fn(String) -> (String, String) + '_ {
        move |e| (k.to_string(), e)
    }
    if let Some(v) = get("limits.cpu.allowance") {
        l.cpu_allowance = Some(CpuAllowance::parse(v).map_err(at("limits.cpu.allowance"))?);
    }
    if let Some(v) = get("limits.cpu.priority") {
        l.cpu_priority = Some(parse_priority(v).map_err(at("limits.cpu.priority"))?);
    }
    if let Some(v) = get("limits.memory.enforce") {
        l.memory_soft = parse_memory_enforce(v).map_err(at("limits.memory.enforce"))?;
    }
    if let Some(v) = get("limits.memory.swap") {
        l.memory_swap = Some(
            crate::model::parse::parse_bool(v)
                .map_err(|e| e.to_string())
                .map_err(at("limits.memory.swap"))?,
        );
    }
    if let Some(v) = get("limits.memory.swap.priority") {
        l.memory_swap_priority =
            Some(parse_priority(v).map_err(at("limits.memory.swap.priority"))?);
    }
    for size in HugePageSize::ALL {
        if let Some(v) = get(size.key()) {
            l.hugepages
                .push((size, parse_hugepages(v).map_err(at(size.key()))?));
        }
    }
    if let Some(v) = get("limits.disk.priority") {
        l.disk_priority = Some(parse_priority(v).map_err(at("limits.disk.priority"))?);
    }
    Ok(())
}

/// `raw.idmap` from an expanded config (none when unset).
pub fn raw_idmap(cfg: &BTreeMap<String, String>) -> Result<Vec<RawIdmapEntry>, String> {
    match cfg
        .get("raw.idmap")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        Some(v) => silo_proto::privileged::parse_raw_idmap(v),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_every_key() {
        let mut l = Limits::default();
        fill(
            &cfg(&[
                ("limits.cpu.allowance", "25ms/100ms"),
                ("limits.cpu.priority", "3"),
                ("limits.memory.enforce", "soft"),
                ("limits.memory.swap", "false"),
                ("limits.memory.swap.priority", "7"),
                ("limits.hugepages.2MB", "64MiB"),
                ("limits.hugepages.1GB", "0"),
                ("limits.disk.priority", "0"),
            ]),
            &mut l,
        )
        .expect("fills");
        assert_eq!(
            l.cpu_allowance,
            Some(CpuAllowance::Time {
                quota_us: 25_000,
                period_us: 100_000
            })
        );
        assert_eq!(l.cpu_priority, Some(3));
        assert!(l.memory_soft);
        assert_eq!(l.memory_swap, Some(false));
        assert_eq!(l.memory_swap_priority, Some(7));
        assert_eq!(
            l.hugepages,
            vec![
                (HugePageSize::Size2MB, 64 << 20),
                (HugePageSize::Size1GB, 0)
            ]
        );
        assert_eq!(l.disk_priority, Some(0));
        assert_eq!(l.validate(), Ok(()));
        let mut d = Limits::default();
        fill(
            &cfg(&[
                ("limits.memory.enforce", "hard"),
                ("limits.cpu.allowance", ""),
            ]),
            &mut d,
        )
        .expect("fills");
        assert_eq!(d, Limits::default());
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        for (k, v) in [
            ("limits.cpu.allowance", "150%"),
            ("limits.cpu.allowance", "fast"),
            ("limits.cpu.priority", "11"),
            ("limits.memory.enforce", "strict"),
            ("limits.memory.swap", "sometimes"),
            ("limits.memory.swap.priority", "-1"),
            ("limits.hugepages.2MB", "lots"),
            ("limits.disk.priority", "high"),
        ] {
            let (key, why) = fill(&cfg(&[(k, v)]), &mut Limits::default()).expect_err(k);
            assert_eq!(key, k);
            assert!(why.contains(v), "{k}={v}: {why}");
        }
        assert!(raw_idmap(&cfg(&[("raw.idmap", "both 0 0")])).is_err());
        assert_eq!(raw_idmap(&cfg(&[("raw.idmap", " ")])), Ok(Vec::new()));
    }
}
