//! Helpers the commands share: output, ordered YAML, LXD-style sizes and dates, key=value
//! arguments, natural sorting, URL path segments and the YAML editor.

use std::cmp::Ordering;
use std::io::{IsTerminal, Read, Write};

use serde_json::Value;

use crate::commands::CmdError;

/// Writes `s` to stdout.
pub fn out(s: &str) -> Result<(), CmdError> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())
        .and_then(|_| o.flush())
        .map_err(|e| CmdError::Output(e.to_string()))
}

/// Writes `s` and a newline to stdout.
pub fn outln(s: &str) -> Result<(), CmdError> {
    out(&format!("{s}\n"))
}

/// A one-line user error.
pub fn fail<T>(msg: impl Into<String>) -> Result<T, CmdError> {
    Err(CmdError::Fail(msg.into()))
}

/// A value as text ("" for null or missing).
pub fn vs(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// YAML of `v` with its top-level keys in `order` (keys not listed are left out), the way
/// LXD's client prints its Go structs.
pub fn yaml_ordered(v: &Value, order: &[&str]) -> Result<String, CmdError> {
    let mut m = serde_norway::Mapping::new();
    for k in order {
        if let Some(x) = v.get(*k) {
            let y = serde_norway::to_value(x).map_err(|e| CmdError::Output(e.to_string()))?;
            m.insert(serde_norway::Value::String((*k).to_string()), y);
        }
    }
    serde_norway::to_string(&serde_norway::Value::Mapping(m))
        .map(|y| crate::format::go_quotes(&y))
        .map_err(|e| CmdError::Output(e.to_string()))
}

/// Plain YAML of a value.
pub fn yaml(v: &Value) -> Result<String, CmdError> {
    crate::format::yaml(v).map_err(CmdError::Output)
}

/// Parses YAML the user wrote into JSON, turning scalars inside string maps (`config`,
/// device keys, properties) into strings as LXD's Go types would.
pub fn parse_yaml(text: &str) -> Result<Value, CmdError> {
    let v: Value = serde_norway::from_str(text).map_err(|e| CmdError::Fail(e.to_string()))?;
    Ok(if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    })
}

/// Turns the scalar values of a map into strings (`2` → `"2"`, `true` → `"true"`).
pub fn stringify_map(v: &mut Value) {
    if let Value::Object(m) = v {
        for x in m.values_mut() {
            match x {
                Value::Number(_) | Value::Bool(_) => *x = Value::String(x.to_string()),
                Value::Null => *x = Value::String(String::new()),
                _ => {}
            }
        }
    }
}

/// `key=value` → (key, value).
pub fn kv(arg: &str) -> Result<(String, String), CmdError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => fail(format!("Bad key=value pair: {arg}")),
    }
}

/// `KEY=VALUE...` arguments as a configuration map.
pub fn kv_map(args: &[String]) -> Result<silo_api::StringMap, CmdError> {
    args.iter().map(|a| kv(a)).collect()
}

/// The arguments of a `set` as lxc's `getConfig` reads them: `KEY VALUE`, or
/// `KEY=VALUE...`. A value of `-` is read from stdin when stdin is not a terminal.
pub fn set_pairs(args: &[String]) -> Result<Vec<(String, String)>, CmdError> {
    let mut pairs: Vec<(String, String)> = match args {
        [k, v] if !k.contains('=') => vec![(k.clone(), v.clone())],
        _ => args.iter().map(|a| kv(a)).collect::<Result<_, _>>()?,
    };
    for (_, v) in &mut pairs {
        if v == "-" && !std::io::stdin().is_terminal() {
            v.clear();
            std::io::stdin()
                .read_to_string(v)
                .map_err(|e| CmdError::Fail(format!("Can't read from stdin: {e}")))?;
        }
    }
    Ok(pairs)
}

/// LXD's `GetByteSizeStringIEC(n, 2)`: 1024-based, "19.36GiB".
pub fn size_iec(n: u64) -> String {
    silo_api::units::format_iec(n)
}

/// LXD's `GetByteSizeString(n, 2)`: 1000-based, "12.30MB".
pub fn size_si(n: u64) -> String {
    silo_api::units::format_si(n)
}

/// An image size as `lxc image list` shows it: MiB with two decimals, labelled "MB".
pub fn size_mb(n: u64) -> String {
    format!("{:.2}MB", n as f64 / 1024.0 / 1024.0)
}

/// Parses an RFC 3339 time from the API.
pub fn parse_time(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

/// LXD's `TimeIsSet`: a time after the Unix epoch.
pub fn time_set(t: &str) -> Option<time::OffsetDateTime> {
    parse_time(t).filter(|d| d.unix_timestamp() > 0)
}

/// Go's "2006/01/02 15:04 UTC" (in UTC).
pub fn time_short(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Go's "Jan 2, 2006 at 3:04pm (MST)" (in UTC), as `lxc image list` shows upload dates.
pub fn time_long(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let month = t.month().to_string();
    let (h12, ampm) = match t.hour() {
        0 => (12, "am"),
        h @ 1..=11 => (h, "am"),
        12 => (12, "pm"),
        h => (h - 12, "pm"),
    };
    format!(
        "{} {}, {} at {}:{:02}{} (UTC)",
        &month[..3.min(month.len())],
        t.day(),
        t.year(),
        h12,
        t.minute(),
        ampm
    )
}

/// Compares strings the way LXD's `SortColumnsNaturally` does: runs of digits as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let la = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let lb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..la], &b[..lb]);
                let ta = trim_zeros(na);
                let tb = trim_zeros(nb);
                let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[la..];
                b = &b[lb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// Sorts table rows column by column, naturally.
pub fn sort_rows(rows: &mut [Vec<String>]) {
    rows.sort_by(|a, b| {
        for (x, y) in a.iter().zip(b.iter()) {
            let o = natural_cmp(x, y);
            if o != Ordering::Equal {
                return o;
            }
        }
        a.len().cmp(&b.len())
    });
}

/// Reads YAML from stdin when it is not a terminal (`silo config edit c1 < file.yaml`),
/// else opens an editor on `header` + `current` and calls `apply` with what was saved,
/// reopening the editor when applying fails, as LXD's client does.
pub async fn edit<F, Fut>(header: &str, current: &str, mut apply: F) -> Result<(), CmdError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), CmdError>>,
{
    if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CmdError::Fail(format!("reading stdin: {e}")))?;
        return apply(text).await;
    }
    let mut content = run_editor(&format!("{header}\n\n{current}"))?;
    loop {
        match apply(strip_comments(&content)).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("Config parsing error: {e}");
                outln("Press enter to open the editor again or ctrl+c to abort change")?;
                let mut b = [0u8; 1];
                std::io::stdin()
                    .read(&mut b)
                    .map_err(|e| CmdError::Fail(e.to_string()))?;
                content = run_editor(&content)?;
            }
        }
    }
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens `$EDITOR` (else `$VISUAL`, else vi) on a temporary file holding `text`; returns
/// what was saved.
pub fn run_editor(text: &str) -> Result<String, CmdError> {
    let editor = ["EDITOR", "VISUAL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let mut f = tempfile::Builder::new()
        .prefix("silo_editor_")
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| CmdError::Fail(format!("creating a temporary file: {e}")))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| CmdError::Fail(format!("writing a temporary file: {e}")))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(f.path())
        .status()
        .map_err(|e| CmdError::Fail(format!("running the editor {editor:?}: {e}")))?;
    if !status.success() {
        return fail(format!("the editor {editor:?} failed ({status})"));
    }
    std::fs::read_to_string(f.path())
        .map_err(|e| CmdError::Fail(format!("reading the edited file: {e}")))
}

/// A progress bar on stderr for transfers over ~4 MB when stderr is a terminal, printing
/// like LXD's client: "Transferring image: 42% (12.30MB/s)".
pub fn progress(prefix: &str, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    if total.is_some_and(|t| t < 4_000_000) {
        return None;
    }
    let speed = |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}/s", size_si(st.per_sec() as u64));
    };
    let done = |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}", size_si(st.pos()));
    };
    let tmpl = match total {
        Some(_) => format!("{prefix}: {{percent}}% ({{lxdspeed}})"),
        None => format!("{prefix}: {{lxddone}} ({{lxdspeed}})"),
    };
    let style = indicatif::ProgressStyle::with_template(&tmpl)
        .ok()?
        .with_key("lxdspeed", speed)
        .with_key("lxddone", done);
    let pb = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    pb.set_style(style);
    Some(pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_mb(1033941), "0.99MB");
        assert_eq!(size_iec(20_786_000_000), "19.36GiB");
        assert_eq!(size_iec(512), "512B");
        assert_eq!(size_si(12_300_000), "12.30MB");
    }

    #[test]
    fn times() {
        let t = parse_time("2026-11-29T04:06:28.950220614Z").expect("time");
        assert_eq!(time_long(t), "Nov 29, 2026 at 4:06am (UTC)");
        assert_eq!(time_short(t), "2026/11/29 04:06 UTC");
        let t = parse_time("2026-11-29T12:00:00Z").expect("time");
        assert_eq!(time_long(t), "Nov 29, 2026 at 12:00pm (UTC)");
        let t = parse_time("2026-11-29T00:05:00Z").expect("time");
        assert_eq!(time_long(t), "Nov 29, 2026 at 12:05am (UTC)");
        assert!(time_set("1970-01-01T00:00:00Z").is_none());
        assert!(time_set("0001-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn natural() {
        let mut r = vec![
            vec!["c10".to_string()],
            vec!["c2".to_string()],
            vec!["b".to_string()],
        ];
        sort_rows(&mut r);
        assert_eq!(r, vec![vec!["b"], vec!["c2"], vec!["c10"]]);
    }

    #[test]
    fn set_arguments() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            set_pairs(&a(&["ipv4.nat", "true"])).expect("pairs"),
            vec![("ipv4.nat".to_string(), "true".to_string())]
        );
        assert_eq!(
            set_pairs(&a(&["a=1", "b=x=y"])).expect("pairs"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x=y".to_string())
            ]
        );
        assert!(set_pairs(&a(&["a=1", "b"])).is_err());
        let m = kv_map(&a(&["ipv4.address=10.0.0.1/24", "ipv6.address=none"])).expect("map");
        assert_eq!(m["ipv4.address"], "10.0.0.1/24");
        assert_eq!(m["ipv6.address"], "none");
        assert!(kv_map(&a(&["novalue"])).is_err());
    }

    #[test]
    fn ordered() {
        let v = serde_json::json!({"b": 1, "a": {"x": "1"}, "c": []});
        assert_eq!(
            yaml_ordered(&v, &["c", "b", "a"]).expect("yaml"),
            "c: []\nb: 1\na:\n  x: \"1\"\n"
        );
    }
}
