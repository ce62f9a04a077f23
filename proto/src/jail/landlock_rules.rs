//! Landlock rulesets, required to be fully enforced (fail closed, never best effort).

use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The ABI silo is written against (this host's kernel has ABI 7).
pub const ABI_USED: ABI = ABI::V6;

/// Landlock could not be enforced as declared.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// Building or enforcing the ruleset failed.
    #[error("landlock: {0}")]
    Ruleset(String),
    /// The kernel enforced less than asked.
    #[error("landlock: not fully enforced ({0}); refusing to run with a weaker sandbox")]
    Partial(String),
}

/// What a process may reach through the filesystem and network.
#[derive(Debug, Clone, Default)]
pub struct LandlockSpec {
    /// None: the process mounts or pivots, which landlock's fs rules forbid; only net and scope
    /// rules apply. Some: all fs access is handled and only these paths are reachable.
    pub fs: Option<FsRules>,
    /// Deny signalling processes outside the domain (off for silo-priv, which signals the
    /// containers a previous incarnation of itself started).
    pub scope_signal: bool,
}

/// Filesystem rules.
#[derive(Debug, Clone, Default)]
pub struct FsRules {
    /// Paths readable (and, for directories, listable and executable) beneath.
    pub read: Vec<PathBuf>,
    /// Paths fully writable beneath.
    pub write: Vec<PathBuf>,
}

impl LandlockSpec {
    /// Restricts the calling thread and its future children. Returns a description.
    pub fn restrict_self(&self) -> Result<String, LandlockError> {
        let abi = ABI_USED;
        let e = |x: &dyn std::fmt::Display| LandlockError::Ruleset(x.to_string());
        let mut scopes = landlock::make_bitflags!(Scope::{AbstractUnixSocket});
        if self.scope_signal {
            scopes |= Scope::Signal;
        }
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessNet::from_all(abi))
            .map_err(|x| e(&x))?
            .scope(scopes)
            .map_err(|x| e(&x))?;
        let mut what = String::from("net+scope");
        if self.fs.is_some() {
            ruleset = ruleset
                .handle_access(AccessFs::from_all(abi))
                .map_err(|x| e(&x))?;
            what = String::from("fs+net+scope");
        }
        let mut created = ruleset.create().map_err(|x| e(&x))?;
        if let Some(fs) = &self.fs {
            created = created
                .add_rules(path_beneath_rules(&fs.read, AccessFs::from_read(abi)))
                .map_err(|x| e(&x))?
                .add_rules(path_beneath_rules(&fs.write, AccessFs::from_all(abi)))
                .map_err(|x| e(&x))?;
        }
        let status = created.restrict_self().map_err(|x| e(&x))?;
        match status.ruleset {
            RulesetStatus::FullyEnforced => {}
            other => return Err(LandlockError::Partial(format!("{other:?}"))),
        }
        if self.fs.is_none() {
            what.push_str(" fully enforced (no fs rules: this process mounts)");
        } else {
            what.push_str(" fully enforced");
        }
        Ok(what)
    }
}
