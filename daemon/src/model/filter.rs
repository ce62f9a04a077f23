//! LXD's `?filter=` (the api_filtering extension): `key eq value`, `key ne value`, joined with
//! `and`/`or`, each optionally negated with `not`. Keys are dotted paths into the object;
//! a path that runs into a map tries the rest as one key (`config.image.os`).

use serde_json::Value;

/// A `?filter=` that does not parse; a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    not: bool,
    key: String,
    eq: bool,
    value: String,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    // Disjunction of conjunctions: `a and b or c` is (a and b) or c.
    any_of: Vec<Vec<Clause>>,
}

fn tokens(s: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match quote {
            Some(q) if ch == q => {
                quote = None;
                out.push(std::mem::take(&mut cur));
            }
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => quote = Some(ch),
            None if ch.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(ch),
        }
    }
    if quote.is_some() {
        return Err(FilterError("invalid filter: unterminated quote".into()));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

impl Filter {
    /// Parses the filter text (empty means everything).
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let t = tokens(s)?;
        let mut f = Filter::default();
        let mut group: Vec<Clause> = Vec::new();
        let mut i = 0;
        let bad = |m: &str| FilterError(format!("invalid filter {s:?}: {m}"));
        while i < t.len() {
            let mut not = false;
            if t[i].eq_ignore_ascii_case("not") {
                not = true;
                i += 1;
            }
            let key = t.get(i).ok_or_else(|| bad("expected a key"))?.clone();
            let op = t
                .get(i + 1)
                .ok_or_else(|| bad("expected eq or ne"))?
                .to_ascii_lowercase();
            let value = t.get(i + 2).ok_or_else(|| bad("expected a value"))?.clone();
            let eq = match op.as_str() {
                "eq" => true,
                "ne" => false,
                other => return Err(bad(&format!("unknown operator {other:?} (eq, ne)"))),
            };
            group.push(Clause {
                not,
                key,
                eq,
                value,
            });
            i += 3;
            match t.get(i).map(|x| x.to_ascii_lowercase()) {
                None => break,
                Some(j) if j == "and" => i += 1,
                Some(j) if j == "or" => {
                    f.any_of.push(std::mem::take(&mut group));
                    i += 1;
                }
                Some(other) => return Err(bad(&format!("expected and/or, found {other:?}"))),
            }
            if i >= t.len() {
                return Err(bad("dangling and/or"));
            }
        }
        if !group.is_empty() {
            f.any_of.push(group);
        }
        Ok(f)
    }

    /// Whether it lets everything pass (no filter was given).
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }

    /// Whether an API object passes; it is turned into JSON only when there is a filter.
    pub fn accepts<T: serde::Serialize>(&self, obj: &T) -> bool {
        self.is_empty() || serde_json::to_value(obj).is_ok_and(|v| self.matches(&v))
    }

    /// Whether `obj` passes.
    pub fn matches(&self, obj: &Value) -> bool {
        if self.any_of.is_empty() {
            return true;
        }
        self.any_of.iter().any(|g| g.iter().all(|c| c.test(obj)))
    }
}

fn lookup<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(key) {
        return Some(v);
    }
    let (head, rest) = key.split_once('.')?;
    lookup(obj.get(head)?, rest)
}

impl Clause {
    fn test(&self, obj: &Value) -> bool {
        let found = lookup(obj, &self.key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let same = found
            .map(|f| f.eq_ignore_ascii_case(&self.value))
            .unwrap_or(false);
        (same == self.eq) != self.not
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let o = json!({"name": "c1", "status": "Stopped", "config": {"image.os": "busybox"}});
        assert!(Filter::parse("").unwrap().matches(&o));
        assert!(Filter::parse("name eq c1").unwrap().matches(&o));
        assert!(!Filter::parse("name ne c1").unwrap().matches(&o));
        assert!(
            Filter::parse("status eq stopped and config.image.os eq busybox")
                .unwrap()
                .matches(&o)
        );
        assert!(Filter::parse("name eq x or name eq c1")
            .unwrap()
            .matches(&o));
        assert!(Filter::parse("not name eq x").unwrap().matches(&o));
        assert!(Filter::parse("name eq 'c1'").unwrap().matches(&o));
        assert!(Filter::parse("name gt c1").is_err());
        assert!(Filter::parse("name eq").is_err());
        assert!(Filter::parse("name eq c1 and").is_err());
    }
}
