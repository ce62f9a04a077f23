//! `silo query`: one raw request to the API, printed as `lxc query` prints it.

use clap::Args;
use serde_json::Value;

use crate::commands::CmdError;
use crate::remotes::Config;
use crate::util::{fail, out};

/// `silo query [REMOTE:]PATH`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example: silo query -X DELETE --wait /1.0/instances/c1
The answer's metadata is printed as JSON (--raw: the whole answer). DATA is sent as JSON when
it parses as JSON, else as a JSON string, as lxc sends it.")]
pub struct QueryArgs {
    /// `[REMOTE:]PATH`, the path starting with /1.0.
    pub path: String,
    /// The method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// The request body.
    #[arg(short = 'd', long = "data", default_value = "")]
    pub data: String,
    /// Wait for the operation the answer names, and fail with its error.
    #[arg(long)]
    pub wait: bool,
    /// Print the whole answer, not only its metadata.
    #[arg(long)]
    pub raw: bool,
}

/// JSON indented with tabs and a blank line after, as Go's encoder and `fmt.Println` give it.
fn pretty(v: &Value) -> Result<String, CmdError> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).map_err(|e| CmdError::Output(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| CmdError::Output(e.to_string()))
}

/// The whole answer with its fields in the order LXD's `api.Response` has them.
fn pretty_envelope(v: &Value) -> Result<String, CmdError> {
    const KEYS: [&str; 7] = [
        "type",
        "status",
        "status_code",
        "operation",
        "error_code",
        "error",
        "metadata",
    ];
    let mut s = String::from("{\n");
    for (i, k) in KEYS.iter().enumerate() {
        let val = v.get(*k).cloned().unwrap_or(match *k {
            "status_code" | "error_code" => Value::from(0),
            "metadata" => Value::Null,
            _ => Value::from(""),
        });
        let text = pretty(&val)?.replace('\n', "\n\t");
        let comma = if i + 1 < KEYS.len() { "," } else { "" };
        s.push_str(&format!("\t{}: {text}{comma}\n", Value::from(*k)));
    }
    s.push('}');
    Ok(s)
}

/// Runs `silo query`.
pub async fn run(conf: &Config, a: QueryArgs) -> Result<(), CmdError> {
    let (remote, path) = conf.parse_remote(&a.path)?;
    if !path.starts_with('/') {
        return fail("Query path must start with /");
    }
    let client = conf.client(&remote)?;
    let body = if a.data.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&a.data).unwrap_or_else(|_| Value::from(a.data.clone())))
    };
    let method = a.method.to_uppercase();
    let answer = match client.request(&method, path, body.as_ref(), &[]).await {
        Ok(answer) => answer,
        // Not the API's JSON (a file's contents): printed as it came, as lxc does.
        Err(crate::client::ClientError::Protocol(_)) if method == "GET" => {
            let bytes = client.get_raw(path).await?;
            use std::io::Write;
            return std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| CmdError::Output(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let mut shown = answer.body.clone();
    answer.metadata()?;
    if a.wait {
        if let Some(op) = answer.body.get("operation").and_then(Value::as_str) {
            let wait = match op.split_once('?') {
                Some((p, q)) => format!("{p}/wait?{q}"),
                None => format!("{op}/wait?"),
            };
            let waited = client.request("GET", &wait, None, &[]).await?;
            let md = waited.metadata()?;
            if let Some(err) = md.get("err").and_then(Value::as_str) {
                if !err.is_empty() {
                    return fail(err.to_string());
                }
            }
            shown = waited.body;
        }
    }
    if a.raw {
        return out(&format!("{}\n\n", pretty_envelope(&shown)?));
    }
    match shown.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.is_empty() => Ok(()),
        Some(md) => out(&format!("{}\n\n", pretty(md)?)),
    }
}
