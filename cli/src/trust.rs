//! `silo config trust ...`: the server's trust store and certificate add tokens, as
//! `lxc config trust` does them.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;
use crate::commands::CmdError;
use crate::format::{self, Format};
use crate::util::{self, fail, out, outln};

/// `silo config trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// List trusted certificates.
    #[command(visible_alias = "ls")]
    List {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Trust a client: with a certificate file, or (a name) print a one-time token for it.
    #[command(after_help = "\
Examples:
  silo config trust add laptop              print a token `lxc remote add NAME TOKEN` takes
  silo config trust add client.crt          trust the certificate in client.crt
  silo config trust add client.crt --name laptop")]
    Add {
        /// A certificate file (PEM), or the client's name for a token.
        #[arg(value_name = "CERT|NAME")]
        what: String,
        /// The certificate's name (default: its common name).
        #[arg(long)]
        name: Option<String>,
        /// client or metrics.
        #[arg(long = "type", default_value = "client")]
        kind: String,
        /// Restrict the certificate to projects (refused: silo has no projects yet).
        #[arg(long)]
        restricted: bool,
    },
    /// Remove a trusted certificate.
    #[command(visible_alias = "rm")]
    Remove {
        /// Its fingerprint (a unique prefix will do).
        fingerprint: String,
    },
    /// Show a trusted certificate.
    Show {
        /// Its fingerprint (a unique prefix will do).
        fingerprint: String,
    },
    /// Edit a trusted certificate's name and type in $EDITOR, or from YAML on stdin.
    Edit {
        /// Its fingerprint (a unique prefix will do).
        fingerprint: String,
    },
    /// List the certificate add tokens that are still usable.
    ListTokens {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a certificate add token by its client's name.
    RevokeToken {
        /// The name the token was made for.
        name: String,
    },
}

/// The token `lxc remote add NAME TOKEN` takes, from a token operation: base64 of
/// `{client_name, fingerprint, addresses, secret, expires_at}`.
pub fn token_of(op: &Value) -> Option<String> {
    use base64::Engine;
    let md = &op["metadata"];
    let secret = md["secret"].as_str()?;
    let t = json!({
        "client_name": md["request"]["name"].as_str().unwrap_or_default(),
        "fingerprint": md["fingerprint"].as_str().unwrap_or_default(),
        "addresses": md["addresses"].as_array().cloned().unwrap_or_default(),
        "secret": secret,
        "expires_at": md["expiresAt"].as_str().unwrap_or("0001-01-01T00:00:00Z"),
    });
    let bytes = serde_json::to_vec(&t).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The running token operations.
async fn token_ops(client: &Client) -> Result<Vec<Value>, CmdError> {
    let ops = client.get("/1.0/operations?recursion=1").await?;
    // The listing groups operations by status: {"running": [...], "success": [...]}.
    let mut v: Vec<Value> = Vec::new();
    if let Some(m) = ops.as_object() {
        for list in m.values() {
            v.extend(list.as_array().cloned().unwrap_or_default());
        }
    }
    Ok(v.into_iter()
        .filter(|o| o["class"] == "token" && o["status_code"] == 103)
        .filter(|o| o["metadata"].get("request").is_some())
        .collect())
}

/// Subject CN, issue and expiry dates of a PEM certificate, for the listing.
fn cert_details(pem: &str) -> (String, String, String) {
    let der = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    use base64::Engine;
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(der) else {
        return Default::default();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Default::default();
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let date = |t: x509_parser::time::ASN1Time| {
        time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map(|t| {
                let f =
                    time::macros::format_description!("[year]/[month]/[day] [hour]:[minute] UTC");
                t.format(&f).unwrap_or_default()
            })
            .unwrap_or_default()
    };
    (
        cn,
        date(cert.validity().not_before),
        date(cert.validity().not_after),
    )
}

async fn list(client: &Client, fmt: Format) -> Result<(), CmdError> {
    let all = client.get("/1.0/certificates?recursion=1").await?;
    let mut rows: Vec<Vec<String>> = all
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let (cn, issued, expires) = cert_details(c["certificate"].as_str().unwrap_or(""));
            let fp = c["fingerprint"].as_str().unwrap_or_default();
            vec![
                util::vs(c.get("type")),
                util::vs(c.get("name")),
                cn,
                fp.get(..12).unwrap_or(fp).to_string(),
                issued,
                expires,
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    let text = format::render(
        fmt,
        &[
            "TYPE",
            "NAME",
            "COMMON NAME",
            "FINGERPRINT",
            "ISSUE DATE",
            "EXPIRY DATE",
        ],
        &rows,
        &all,
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

async fn add(
    client: &Client,
    what: &str,
    name: Option<String>,
    kind: &str,
    restricted: bool,
) -> Result<(), CmdError> {
    let path = std::path::Path::new(what);
    if path.is_file() {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| CmdError::Fail(format!("reading {what}: {e}")))?;
        client
            .query(
                "POST",
                "/1.0/certificates",
                Some(&json!({
                    "name": name.unwrap_or_default(),
                    "type": kind,
                    "restricted": restricted,
                    "certificate": pem,
                })),
            )
            .await?;
        return Ok(());
    }
    let client_name = name.unwrap_or_else(|| what.to_string());
    let op = client
        .query(
            "POST",
            "/1.0/certificates",
            Some(&json!({
                "name": client_name,
                "type": kind,
                "restricted": restricted,
                "token": true,
            })),
        )
        .await?;
    let Some(token) = token_of(&op) else {
        return fail("the server answered without a token");
    };
    outln(&format!(
        "Client {client_name} certificate add token:\n{token}"
    ))
}

async fn list_tokens(client: &Client, fmt: Format) -> Result<(), CmdError> {
    let ops = token_ops(client).await?;
    let mut rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o["metadata"]["request"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                token_of(o).unwrap_or_default(),
                o["metadata"]["expiresAt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ]
        })
        .collect();
    util::sort_rows(&mut rows);
    let text = format::render(
        fmt,
        &["NAME", "TOKEN", "EXPIRES AT"],
        &rows,
        &Value::Array(ops),
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

async fn revoke_token(client: &Client, name: &str) -> Result<(), CmdError> {
    let ops = token_ops(client).await?;
    let Some(op) = ops
        .iter()
        .find(|o| o["metadata"]["request"]["name"] == name)
    else {
        return fail(format!("no certificate add token for {name:?}"));
    };
    let id = op["id"].as_str().unwrap_or_default();
    client
        .query("DELETE", &silo_api::paths::operation(id), None)
        .await?;
    Ok(())
}

const EDIT_HELP: &str = "\
### This is a YAML representation of the certificate.
### Any line starting with a '# will be ignored.
###
### Only the name and type can be changed.";

async fn edit(client: &Client, fp: &str) -> Result<(), CmdError> {
    let path = silo_api::paths::certificate(fp);
    let (v, etag) = client.get_etag(&path).await?;
    let current = util::yaml_ordered(&v, &["name", "type", "restricted", "projects"])?;
    util::edit(EDIT_HELP, &current, |text| {
        let etag = etag.clone();
        let path = path.clone();
        async move {
            let v = util::parse_yaml(&text)?;
            let put = json!({
                "name": v.get("name").cloned().unwrap_or(Value::String(String::new())),
                "type": v.get("type").cloned().unwrap_or(Value::String("client".into())),
                "restricted": v.get("restricted").cloned().unwrap_or(Value::Bool(false)),
                "projects": v.get("projects").cloned().unwrap_or(json!([])),
            });
            client
                .request("PUT", &path, Some(&put), &crate::client::if_match(etag))
                .await?
                .metadata()?;
            Ok(())
        }
    })
    .await
}

/// Runs one `silo config trust` command.
pub async fn run(client: &Client, cmd: TrustCmd) -> Result<(), CmdError> {
    match cmd {
        TrustCmd::List { format } => list(client, format).await,
        TrustCmd::Add {
            what,
            name,
            kind,
            restricted,
        } => add(client, &what, name, &kind, restricted).await,
        TrustCmd::Remove { fingerprint } => {
            client
                .query("DELETE", &silo_api::paths::certificate(&fingerprint), None)
                .await?;
            Ok(())
        }
        TrustCmd::Show { fingerprint } => {
            let v = client
                .get(&silo_api::paths::certificate(&fingerprint))
                .await?;
            out(&util::yaml_ordered(
                &v,
                &["name", "type", "restricted", "projects", "certificate"],
            )?)
        }
        TrustCmd::Edit { fingerprint } => edit(client, &fingerprint).await,
        TrustCmd::ListTokens { format } => list_tokens(client, format).await,
        TrustCmd::RevokeToken { name } => revoke_token(client, &name).await,
    }
}
