//! Listing output: `--format table|json|yaml|csv`, as LXD's client offers.

use serde_json::Value;

/// Output formats for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// A bordered table.
    #[default]
    Table,
    /// JSON of the objects as the API returned them.
    Json,
    /// YAML of the objects as the API returned them.
    Yaml,
    /// Comma-separated rows without a header.
    Csv,
}

/// Renders `rows` under `headers`, or `raw` for json/yaml.
pub fn render(
    format: Format,
    headers: &[&str],
    rows: &[Vec<String>],
    raw: &Value,
) -> Result<String, String> {
    match format {
        Format::Table => Ok(table(headers, rows)),
        Format::Json => serde_json::to_string(raw)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => yaml(raw),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in rows {
                w.write_record(r).map_err(|e| e.to_string())?;
            }
            let bytes = w.into_inner().map_err(|e| e.to_string())?;
            String::from_utf8(bytes).map_err(|e| e.to_string())
        }
    }
}

/// YAML of any value (for `show` and `info`).
pub fn yaml(v: &Value) -> Result<String, String> {
    serde_norway::to_string(v)
        .map(|y| go_quotes(&y))
        .map_err(|e| e.to_string())
}

/// Rewrites single-quoted scalar values (`key: '1000'`, `- ''`) as double-quoted ones, as
/// Go's YAML encoder (and so LXD's client) writes them.
pub fn go_quotes(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    // Inside a block scalar (`key: |-`), lines are content and stay as they are.
    let mut block: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let indent = body.len() - body.trim_start().len();
        if let Some(b) = block {
            if body.trim().is_empty() || indent > b {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        let last = body.rsplit([' ', '-']).next().unwrap_or("");
        let is_block_head = body.trim_end().ends_with(['|', '>'])
            || ((body.contains(": |") || body.contains(": >") || body.contains("- |"))
                && last
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '-' || c == '+'));
        if is_block_head {
            block = Some(indent);
            out.push_str(line);
            continue;
        }
        out.push_str(&requote_line(body));
        out.push_str(nl);
    }
    out
}

fn requote_line(line: &str) -> String {
    if !line.ends_with('\'') {
        return line.to_string();
    }
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    // The value starts after "- " items, or after the first ": " of a plain key.
    let mut start = indent;
    let mut r = rest;
    while let Some(x) = r.strip_prefix("- ") {
        start += 2;
        r = x;
    }
    if !r.starts_with('\'') {
        match r.find(": ") {
            Some(i) if !r[..i].contains(['\'', '"', '#']) => start += i + 2,
            _ => return line.to_string(),
        }
    }
    let value = &line[start..];
    let Some(inner) = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .filter(|_| value.len() >= 2)
    else {
        return line.to_string();
    };
    // A well-formed single-quoted scalar has only doubled quotes inside.
    if inner.replace("''", "").contains('\'') {
        return line.to_string();
    }
    let text = inner.replace("''", "'");
    // Go double-quotes strings that would read back as another type; the rest it leaves
    // to the emitter, which single-quotes them too.
    if !resolves_non_string(&text) {
        return line.to_string();
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{}\"{escaped}\"", &line[..start])
}

/// Whether a plain scalar `t` would be read by Go's YAML as null, a bool or a number.
fn resolves_non_string(t: &str) -> bool {
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return true;
    }
    if matches!(
        t.to_ascii_lowercase().as_str(),
        "y" | "yes" | "n" | "no" | "true" | "false" | "on" | "off"
    ) {
        return true;
    }
    let u = t.replace('_', "");
    let body = u.strip_prefix(['+', '-']).unwrap_or(&u);
    let all = |s: &str, f: fn(char) -> bool| !s.is_empty() && s.chars().all(f);
    if let Some(h) = body.strip_prefix("0x") {
        return all(h, |c| c.is_ascii_hexdigit());
    }
    if let Some(b) = body.strip_prefix("0b") {
        return all(b, |c| c == '0' || c == '1');
    }
    if all(body, |c| c.is_ascii_digit()) {
        return true;
    }
    if matches!(body.to_ascii_lowercase().as_str(), ".inf" | ".nan") {
        return true;
    }
    if body.contains(|c: char| c.is_ascii_digit())
        && all(body, |c| {
            c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')
        })
        && body.parse::<f64>().is_ok()
    {
        return true;
    }
    // Base 60 ("1:20").
    body.contains(':') && body.split(':').all(|p| all(p, |c| c.is_ascii_digit()))
}

/// LXD's client table style (Go tablewriter with row lines): `+`/`-`/`|` borders, a `-`
/// line under the header too, and a line after every row.
const LXC_PRESET: &str = "||--+-++|-+++++++++";

/// A table as LXD's client draws it: centred headers (an odd space goes right),
/// left-aligned cells, a line after every row, multi-line cells.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
    // comfy-table centres with the odd space on the left; tablewriter puts it on the right,
    // so headers are padded here to their column's width.
    let width = |s: &str| s.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(headers.len()) {
            widths[i] = widths[i].max(width(c));
        }
    }
    let mut t = Table::new();
    t.load_preset(LXC_PRESET)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().zip(&widths).map(|(h, w)| {
            let gap = w - width(h);
            let left = gap / 2;
            Cell::new(format!("{}{h}{}", " ".repeat(left), " ".repeat(gap - left)))
                .set_alignment(CellAlignment::Left)
        }));
    for r in rows {
        let mut cells: Vec<String> = r.iter().take(headers.len()).cloned().collect();
        cells.resize(headers.len(), String::new());
        t.add_row(cells);
    }
    let mut out = t.to_string();
    if rows.is_empty() {
        // comfy-table closes an empty table with a second border under the header's.
        if let Some(i) = out.rfind('\n') {
            out.truncate(i);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes() {
        assert_eq!(
            go_quotes("a: '1'\nb: ''\nc:\n- 'yes'\n- plain\nd: it's\ne: '[]'\nf: |-\n  g: '1'\n  h\ni: '1.5'\n"),
            "a: \"1\"\nb: \"\"\nc:\n- \"yes\"\n- plain\nd: it's\ne: '[]'\nf: |-\n  g: '1'\n  h\ni: \"1.5\"\n"
        );
    }

    #[test]
    fn lxc_table() {
        let t = table(
            &["NAME", "FINGERPRINT", "TYPE"],
            &[
                vec!["c1".into(), "db8077692402".into(), "CONTAINER".into()],
                vec!["c2".into(), "a\nbb".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "\
+------+--------------+-----------+
| NAME | FINGERPRINT  |   TYPE    |
+------+--------------+-----------+
| c1   | db8077692402 | CONTAINER |
+------+--------------+-----------+
| c2   | a            |           |
|      | bb           |           |
+------+--------------+-----------+
"
        );
        assert_eq!(
            table(&["ID", "TYPE"], &[]),
            "+----+------+\n| ID | TYPE |\n+----+------+\n"
        );
    }
}
