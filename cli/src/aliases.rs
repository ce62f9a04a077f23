//! `silo alias ...`: user command aliases in the client's config.yml (`aliases:`, as lxc keeps
//! them), and their expansion before the command line is parsed.

use clap::Subcommand;

use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::remotes::Config;
use crate::util::{fail, out};

/// `silo alias ...`.
#[derive(Debug, Subcommand)]
#[command(after_help = "\
An alias's target replaces the words it names; @ARGS@ takes the remaining arguments, @ARG1@,
@ARG2@... one each (unused ones are appended). A target starting with / runs that program.
Example: silo alias add list-all 'list -c ns4 @ARGS@'")]
pub enum AliasCmd {
    /// Add an alias.
    Add {
        /// The alias (one or more words, quoted).
        alias: String,
        /// What it expands to.
        target: String,
    },
    /// List the aliases.
    #[command(alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Remove an alias.
    #[command(alias = "rm")]
    Remove {
        /// The alias.
        alias: String,
    },
    /// Rename an alias.
    #[command(alias = "mv")]
    Rename {
        /// The alias.
        old: String,
        /// Its new name.
        new: String,
    },
}

/// Runs `silo alias ...`.
pub fn run(cmd: AliasCmd) -> Result<(), CmdError> {
    let mut conf = Config::load()?;
    match cmd {
        AliasCmd::Add { alias, target } => {
            if conf.file.aliases.contains_key(&alias) {
                return fail(format!("Alias {alias} already exists"));
            }
            conf.file.aliases.insert(alias, target);
            conf.save()?;
        }
        AliasCmd::List { format } => {
            let rows: Vec<Vec<String>> = conf
                .file
                .aliases
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            let raw = serde_json::to_value(&conf.file.aliases)
                .map_err(|e| CmdError::Output(e.to_string()))?;
            let text = format::render(format, &["ALIAS", "TARGET"], &rows, &raw)
                .map_err(CmdError::Output)?;
            out(&text)?;
        }
        AliasCmd::Remove { alias } => {
            if conf.file.aliases.remove(&alias).is_none() {
                return fail(format!("Alias {alias} doesn't exist"));
            }
            conf.save()?;
        }
        AliasCmd::Rename { old, new } => {
            let Some(target) = conf.file.aliases.get(&old).cloned() else {
                return fail(format!("Alias {old} doesn't exist"));
            };
            if conf.file.aliases.contains_key(&new) {
                return fail(format!("Alias {new} already exists"));
            }
            conf.file.aliases.remove(&old);
            conf.file.aliases.insert(new, target);
            conf.save()?;
        }
    }
    Ok(())
}

/// lxc's built-in alias, used when the user's aliases have no match.
const DEFAULT_ALIASES: &[(&str, &str)] = &[("shell", "exec @ARGS@ -- su -l")];

/// Why an alias could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    /// `@ARGn@` beyond the arguments given.
    #[error("Found alias {0:?} references an argument outside the given number")]
    TooFew(String),
}

/// The longest alias whose words start `args` (after the program name): (its words, its
/// target's words).
fn find<'a>(
    aliases: impl Iterator<Item = (&'a str, &'a str)>,
    args: &[String],
) -> Option<(Vec<String>, Vec<String>)> {
    aliases
        .filter(|(k, _)| {
            let words: Vec<&str> = k.split(' ').collect();
            !words.is_empty()
                && words.len() < args.len()
                && words.iter().zip(&args[1..]).all(|(w, a)| w == a)
        })
        .max_by_key(|(k, _)| k.split(' ').count())
        .map(|(k, v)| {
            (
                k.split(' ').map(str::to_string).collect(),
                v.split(' ').map(str::to_string).collect(),
            )
        })
}

/// `@ARGn@` numbers in `word`.
fn numbered(word: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find("@ARG") {
        let after = &rest[i + 4..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && after[digits.len()..].starts_with('@') {
            if let Ok(n) = digits.parse() {
                out.push((format!("@ARG{digits}@"), n));
            }
            rest = &after[digits.len() + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Expands `args` (the whole command line, program name first) with `aliases` as lxc does:
/// leading flags stay in front, the alias's words are replaced by its target, `@ARGS@` takes
/// the remaining arguments and `@ARGn@` the n-th (those used are not appended again). `None`
/// when no alias matches.
pub fn expand(
    aliases: &std::collections::BTreeMap<String, String>,
    args: &[String],
) -> Result<Option<Vec<String>>, AliasError> {
    let Some(prog) = args.first() else {
        return Ok(None);
    };
    let flags: Vec<String> = args[1..]
        .iter()
        .take_while(|a| a.starts_with('-'))
        .cloned()
        .collect();
    let mut orig = vec![prog.clone()];
    orig.extend(args[1 + flags.len()..].iter().cloned());
    let found = find(aliases.iter().map(|(k, v)| (k.as_str(), v.as_str())), &orig)
        .or_else(|| find(DEFAULT_ALIASES.iter().copied(), &orig));
    let Some((key, value)) = found else {
        return Ok(None);
    };
    let mut out = Vec::new();
    if !value.first().is_some_and(|v| v.starts_with('/')) {
        out.push(prog.clone());
    }
    out.extend(flags);
    let mut rest: Vec<Option<String>> = orig[1 + key.len()..].iter().cloned().map(Some).collect();
    let mut by_number = std::collections::BTreeMap::new();
    for w in &value {
        for (_, n) in numbered(w) {
            if n == 0 || n > rest.len() {
                return Err(AliasError::TooFew(key.join(" ")));
            }
            by_number.insert(n, orig[key.len() + n].clone());
        }
    }
    for n in by_number.keys() {
        rest[n - 1] = None;
    }
    let rest: Vec<String> = rest.into_iter().flatten().collect();
    let mut used_args = false;
    for w in value {
        if w == "@ARGS@" {
            out.extend(rest.iter().cloned());
            used_args = true;
            continue;
        }
        let mut word = w.clone();
        for (pat, n) in numbered(&w) {
            word = word.replace(&pat, &by_number[&n]);
        }
        out.push(word);
    }
    if !used_args {
        out.extend(rest);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn expands_as_lxc() {
        let mut a = std::collections::BTreeMap::new();
        a.insert("ls4".to_string(), "list -c ns4".to_string());
        a.insert("snap".to_string(), "snapshot @ARG1@ s-@ARG2@".to_string());
        a.insert("x y".to_string(), "exec @ARGS@ -- true".to_string());
        let e = |s: &str| expand(&a, &v(s)).unwrap();
        assert_eq!(e("silo ls4 c1"), Some(v("silo list -c ns4 c1")));
        assert_eq!(
            e("silo snap c1 one more"),
            Some(v("silo snapshot c1 s-one more"))
        );
        assert_eq!(e("silo x y c1"), Some(v("silo exec c1 -- true")));
        assert_eq!(e("silo --debug ls4"), Some(v("silo --debug list -c ns4")));
        assert_eq!(e("silo shell c1"), Some(v("silo exec c1 -- su -l")));
        assert_eq!(e("silo list"), None);
        assert!(expand(&a, &v("silo snap c1")).is_err());
    }
}
