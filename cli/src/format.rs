//! Listing output: `--format table|json|yaml|csv`, as LXD's client offers.

use comfy_table::{presets::ASCII_FULL, ContentArrangement, Table};
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
        Format::Table => {
            let mut t = Table::new();
            t.load_preset(ASCII_FULL)
                .set_content_arrangement(ContentArrangement::Disabled)
                .set_header(headers.to_vec());
            for r in rows {
                t.add_row(r.clone());
            }
            Ok(format!("{t}\n"))
        }
        Format::Json => serde_json::to_string(raw)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_norway::to_string(raw).map_err(|e| e.to_string()),
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
    serde_norway::to_string(v).map_err(|e| e.to_string())
}
