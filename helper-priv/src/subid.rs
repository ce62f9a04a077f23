//! Which host ids instances may be mapped to: root's subordinate ranges in /etc/subuid and
//! /etc/subgid (LXD's default 1000000:1000000000 when root has none), minus every id another
//! owner holds there. Another owner's ids belong to that owner's user namespaces (Debian's
//! `lxd` package gives `_lxd` and root the same range, rootless podman gives users theirs):
//! a container mapped onto them could reach that owner's files and processes, and theirs ours.

use silo_proto::error::HelperError;
use silo_proto::jail::policy::Policy;
use silo_proto::privileged::{check_raw_idmap, IdRange, IdRanges, RawIdmapEntry};

/// Ids per instance.
pub const IDS_PER_INSTANCE: u64 = 65536;

/// One past the highest host id a map may name (u32::MAX is the kernel's "no id").
const ID_LIMIT: u64 = u32::MAX as u64;

/// LXD's default when root has no subordinate range.
const DEFAULT_ROOT: IdRange = IdRange {
    start: 1_000_000,
    count: 1_000_000_000,
};

/// One line of an /etc/subuid-style file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Which file ("/etc/subuid" or "/etc/subgid").
    pub file: &'static str,
    /// The owner as written (a name or a uid).
    pub owner: String,
    /// Its ids.
    pub range: IdRange,
}

impl Entry {
    fn is_root(&self) -> bool {
        self.owner == "root" || self.owner == "0"
    }
}

/// Parses `owner:start:count` lines; blank lines, comments, malformed lines and empty ranges
/// are skipped (they give nobody any id).
pub fn parse(file: &'static str, text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if owner.is_empty() || f.next().is_some() {
                return None;
            }
            let range = IdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            };
            (range.count > 0).then(|| Entry {
                file,
                owner: owner.to_string(),
                range,
            })
        })
        .collect()
}

/// Sorted, merged half-open intervals.
fn normalize(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|(s, e)| s < e);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s1, e1) in a {
        for &(s2, e2) in b {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                out.push((s, e));
            }
        }
    }
    normalize(out)
}

fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in a {
        let mut cur = s;
        for &(bs, be) in b {
            if be <= cur || bs >= e {
                continue;
            }
            if bs > cur {
                out.push((cur, bs));
            }
            cur = cur.max(be);
        }
        if cur < e {
            out.push((cur, e));
        }
    }
    normalize(out)
}

fn span(r: &IdRange) -> (u64, u64) {
    (r.start.min(ID_LIMIT), r.end().min(ID_LIMIT))
}

fn to_ranges(v: &[(u64, u64)]) -> Vec<IdRange> {
    v.iter()
        .map(|&(s, e)| IdRange {
            start: s,
            count: e - s,
        })
        .collect()
}

/// Root's usable ids, and who else holds ids (for the reasons refusals give).
#[derive(Debug, Clone)]
pub struct SubIds {
    /// What silod is told.
    pub ranges: IdRanges,
    /// Every other owner's entry, in both files.
    pub others: Vec<Entry>,
}

impl SubIds {
    /// Works the ranges out from the two files' contents.
    pub fn from_texts(subuid: &str, subgid: &str) -> Result<SubIds, HelperError> {
        let mut all = parse("/etc/subuid", subuid);
        all.extend(parse("/etc/subgid", subgid));
        let roots = |file: &str| -> Vec<(u64, u64)> {
            normalize(
                all.iter()
                    .filter(|e| e.file == file && e.is_root())
                    .map(|e| span(&e.range))
                    .collect(),
            )
        };
        let (ru, rg) = (roots("/etc/subuid"), roots("/etc/subgid"));
        let root = match (ru.is_empty(), rg.is_empty()) {
            (true, true) => vec![span(&DEFAULT_ROOT)],
            (false, false) => intersect(&ru, &rg),
            _ => {
                return Err(HelperError::Unsupported(
                    "root has an entry in only one of /etc/subuid and /etc/subgid; silo maps uids and gids to the same host ids and needs both".into(),
                ))
            }
        };
        let others: Vec<Entry> = all.into_iter().filter(|e| !e.is_root()).collect();
        let taken = normalize(others.iter().map(|e| span(&e.range)).collect());
        let usable: Vec<(u64, u64)> = subtract(&root, &taken)
            .into_iter()
            .filter(|(s, e)| e - s >= IDS_PER_INSTANCE)
            .collect();
        if usable.is_empty() {
            return Err(HelperError::Unsupported(no_range_message(&root, &taken)));
        }
        Ok(SubIds {
            ranges: IdRanges {
                root: to_ranges(&root),
                usable: to_ranges(&usable),
            },
            others,
        })
    }

    /// Reads /etc/subuid and /etc/subgid (before the jail; a missing file is an empty one).
    pub fn read() -> Result<SubIds, HelperError> {
        let read = |p: &str| match std::fs::read_to_string(p) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(HelperError::io("read", p, e)),
        };
        SubIds::from_texts(&read("/etc/subuid")?, &read("/etc/subgid")?)
    }

    /// Checks one instance's ids `base..base+size` lie in a usable range; the refusal says
    /// which owner holds them when another does.
    pub fn check(&self, base: u64, size: u64) -> Result<(), String> {
        let end = base
            .checked_add(size)
            .ok_or_else(|| format!("base {base} overflows"))?;
        if self
            .ranges
            .usable
            .iter()
            .any(|r| r.start <= base && end <= r.end())
        {
            return Ok(());
        }
        if let Some(o) = self
            .others
            .iter()
            .find(|o| base < o.range.end() && o.range.start < end)
        {
            return Err(format!(
                "ids {base}-{} overlap ids {} gives to {:?} ({}-{}); silo maps only ids no other owner holds. \
                 An instance created before that entry keeps its ids: copy it (a copy gets a free range) or \
                 give that owner a range apart from root's",
                end - 1,
                o.file,
                o.owner,
                o.range.start,
                o.range.end() - 1
            ));
        }
        let root: Vec<String> = self
            .ranges
            .root
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end() - 1))
            .collect();
        Err(format!(
            "ids {base}-{} are outside root's subordinate range {}",
            end - 1,
            root.join(", ")
        ))
    }
}

impl SubIds {
    /// Checks a start's `raw.idmap` (already shaped by [`check_raw_idmap`]): never into a
    /// privileged instance, never host ids of any subordinate range (root's, which every
    /// instance's range comes from, or another owner's), and only host ids the root policy's
    /// `raw_idmap_host_ids` lists. Two instances may map the same host id: that is what sharing
    /// a host user's directory between them takes, and the policy names which ids.
    pub fn check_raw(
        &self,
        raw: &[RawIdmapEntry],
        privileged: bool,
        policy: &Policy,
    ) -> Result<(), HelperError> {
        if raw.is_empty() {
            return Ok(());
        }
        let inv = |why: String| HelperError::invalid("raw.idmap", why);
        if privileged {
            return Err(inv(
                "a privileged instance has no user namespace to map ids into".into(),
            ));
        }
        check_raw_idmap(raw).map_err(inv)?;
        for e in raw {
            let (s, end) = (e.host, e.host + e.count);
            let ids = format!("host ids {}-{}", s, end - 1);
            if let Some(r) = self
                .ranges
                .root
                .iter()
                .find(|r| s < r.end() && r.start < end)
            {
                return Err(inv(format!(
                    "{ids} lie in root's subordinate range {}-{}, which instances' own ids come from",
                    r.start,
                    r.end() - 1
                )));
            }
            if let Some(o) = self
                .others
                .iter()
                .find(|o| s < o.range.end() && o.range.start < end)
            {
                return Err(inv(format!(
                    "{ids} overlap ids {} gives to {:?} ({}-{})",
                    o.file,
                    o.owner,
                    o.range.start,
                    o.range.end() - 1
                )));
            }
            if !policy
                .raw_idmap_host_ids
                .iter()
                .any(|p| p.covers(e.host, e.count))
            {
                let allowed: Vec<String> = policy
                    .raw_idmap_host_ids
                    .iter()
                    .map(|p| p.to_string())
                    .collect();
                return Err(policy.deny(format!(
                    "raw.idmap maps {ids}, which raw_idmap_host_ids does not list (it allows {})",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Why no range is usable, and the line that would give one.
fn no_range_message(root: &[(u64, u64)], taken: &[(u64, u64)]) -> String {
    // Past every other owner's ids, on a round number, as big as LXD's default if it fits.
    let after = taken
        .last()
        .map(|t| t.1)
        .unwrap_or(0)
        .max(DEFAULT_ROOT.start);
    let start = after.div_ceil(DEFAULT_ROOT.start) * DEFAULT_ROOT.start;
    let count = DEFAULT_ROOT.count.min(ID_LIMIT.saturating_sub(start));
    let have = if root.is_empty() {
        "root's /etc/subuid and /etc/subgid ranges have no ids in common".to_string()
    } else {
        "no subordinate id range of root is free of other owners (each needs 65536 ids no other entry in /etc/subuid or /etc/subgid holds)".to_string()
    };
    if count >= IDS_PER_INSTANCE {
        format!("{have}: add a line like `root:{start}:{count}` to /etc/subuid and /etc/subgid, then restart silod")
    } else {
        format!("{have}: give root a range of at least 65536 ids that no other owner holds, in both /etc/subuid and /etc/subgid, then restart silod")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, count: u64) -> IdRange {
        IdRange { start, count }
    }

    #[test]
    fn parses_lines() {
        let e = parse(
            "/etc/subuid",
            "# comment\n\nsilo:1:2\nroot:100000:65536\nbad\nx:1\ny:a:2\nz:5:0\nw:1:2:3\n",
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].owner, "silo");
        assert_eq!(e[1].range, r(100000, 65536));
        assert!(e[1].is_root());
    }

    #[test]
    fn default_without_entries() {
        let s = SubIds::from_texts("", "").expect("default");
        assert_eq!(s.ranges.root, vec![r(1_000_000, 1_000_000_000)]);
        assert_eq!(s.ranges.usable, s.ranges.root);
        assert!(s.check(1_000_000, IDS_PER_INSTANCE).is_ok());
        assert!(s
            .check(1_000_000 + 1_000_000_000 - 65536, IDS_PER_INSTANCE)
            .is_ok());
        assert!(s
            .check(1_000_000 + 1_000_000_000 - 65535, IDS_PER_INSTANCE)
            .is_err());
        assert!(s.check(0, IDS_PER_INSTANCE).is_err());
        assert!(s.check(u64::MAX - 10, IDS_PER_INSTANCE).is_err());
    }

    #[test]
    fn other_owners_are_cut_out() {
        // A user's podman range inside the default: cut out, both sides still usable.
        let s = SubIds::from_texts("alice:1065536:65536\n", "alice:1065536:65536\n").expect("ok");
        assert_eq!(
            s.ranges.usable,
            vec![r(1_000_000, 65536), r(1_131_072, 1_000_000_000 - 131_072)]
        );
        assert!(s.check(1_000_000, IDS_PER_INSTANCE).is_ok());
        let e = s.check(1_065_536 + 100, IDS_PER_INSTANCE).unwrap_err();
        assert!(e.contains("\"alice\"") && e.contains("/etc/subuid"), "{e}");
        // Only in subgid counts as much.
        let s = SubIds::from_texts("", "bob:1000000:10\n").expect("ok");
        assert_eq!(s.ranges.usable[0].start, 1_000_010);
        assert!(s
            .check(1_000_000, IDS_PER_INSTANCE)
            .unwrap_err()
            .contains("/etc/subgid"));
        // A leftover smaller than one instance is not offered.
        let s = SubIds::from_texts("", "bob:1065000:10\n").expect("ok");
        assert_eq!(s.ranges.usable[0].start, 1_065_010);
    }

    #[test]
    fn debian_lxd_layout_is_refused_with_the_line_to_add() {
        let t = "_lxd:100000:1000000001\nroot:100000:1000000001\n";
        let e = SubIds::from_texts(t, t).unwrap_err().to_string();
        assert!(e.contains("no subordinate id range of root is free"), "{e}");
        assert!(e.contains("`root:1001000000:1000000000`"), "{e}");
        // With that line added, only it is usable.
        let t2 = format!("{t}root:1001000000:1000000000\n");
        let s = SubIds::from_texts(&t2, &t2).expect("ok");
        assert_eq!(s.ranges.usable, vec![r(1_001_000_000, 1_000_000_000)]);
        let e = s.check(165536, IDS_PER_INSTANCE).unwrap_err();
        assert!(e.contains("\"_lxd\""), "{e}");
        assert!(s.check(1_001_000_000, IDS_PER_INSTANCE).is_ok());
    }

    #[test]
    fn root_ranges_of_both_files_intersect() {
        let s = SubIds::from_texts("root:100000:200000\n", "root:150000:200000\n").expect("ok");
        assert_eq!(s.ranges.usable, vec![r(150000, 150000)]);
        assert!(SubIds::from_texts("root:100000:65536\n", "root:300000:65536\n").is_err());
        assert!(SubIds::from_texts("root:100000:65536\n", "").is_err());
        assert!(SubIds::from_texts("root:100000:1000\n", "root:100000:1000\n").is_err());
        // Ids past u32 cannot be mapped: a range running past them is cut there.
        let s = SubIds::from_texts("root:4294900000:1000000\n", "root:4294900000:1000000\n")
            .expect("ok");
        assert_eq!(s.ranges.usable, vec![r(4_294_900_000, 67295)]);
        let s = SubIds::from_texts("root:4294950000:1000000\n", "root:4294950000:1000000\n");
        assert!(s.is_err());
    }

    #[test]
    fn interval_ops() {
        assert_eq!(
            normalize(vec![(5, 9), (1, 3), (2, 6), (7, 7)]),
            vec![(1, 9)]
        );
        assert_eq!(
            subtract(&[(0, 10)], &[(2, 3), (5, 7)]),
            vec![(0, 2), (3, 5), (7, 10)]
        );
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), vec![]);
        assert_eq!(
            intersect(&[(0, 5), (8, 12)], &[(3, 9)]),
            vec![(3, 5), (8, 9)]
        );
    }
}
