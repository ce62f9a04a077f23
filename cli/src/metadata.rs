//! `silo config metadata ...` and `silo config template ...`: an instance's metadata.yaml and
//! template files, as `lxc config metadata` and `lxc config template` do them.

use std::io::{IsTerminal, Read};

use clap::Subcommand;
use silo_api::{lenient, paths};

use crate::client::Client;
use crate::commands::CmdError;
use crate::format::Format;
use crate::util::{self, fail, out};

/// `silo config metadata ...`.
#[derive(Debug, Subcommand)]
pub enum MetadataCmd {
    /// Show an instance's metadata.yaml.
    Show {
        /// The instance.
        instance: String,
    },
    /// Edit an instance's metadata.yaml in $EDITOR, or from YAML on stdin.
    Edit {
        /// The instance.
        instance: String,
    },
}

/// `silo config template ...`.
#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// List an instance's template files.
    #[command(alias = "ls")]
    List {
        /// The instance.
        instance: String,
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show a template's contents.
    Show {
        /// The instance.
        instance: String,
        /// The template file.
        template: String,
    },
    /// Create an empty template file (or replace it with stdin when that is not a terminal).
    Create {
        /// The instance.
        instance: String,
        /// The template file.
        template: String,
    },
    /// Edit a template file in $EDITOR, or from stdin.
    Edit {
        /// The instance.
        instance: String,
        /// The template file.
        template: String,
    },
    /// Delete a template file.
    #[command(alias = "rm")]
    Delete {
        /// The instance.
        instance: String,
        /// The template file.
        template: String,
    },
}

const METADATA_EDIT_HELP: &str = "### This is a YAML representation of the instance metadata.
### Any line starting with a '# will be ignored.
###
### A sample configuration looks like:
###
### architecture: x86_64
### creation_date: 1477146654
### expiry_date: 0
### properties:
###   architecture: x86_64
###   description: Busybox x86_64
###   name: busybox-x86_64
###   os: Busybox
### templates:
###   /template:
###     when:
###     - \"\"
###     create_only: false
###     template: template.tpl
###     properties: {}";

const ORDER: &[&str] = &[
    "architecture",
    "creation_date",
    "expiry_date",
    "properties",
    "templates",
];

/// Runs `silo config metadata ...`.
pub async fn metadata(client: &Client, cmd: MetadataCmd) -> Result<(), CmdError> {
    match cmd {
        MetadataCmd::Show { instance } => {
            let v = client.get(&paths::instance_metadata(&instance)).await?;
            out(&util::yaml_ordered(&v, ORDER)?)
        }
        MetadataCmd::Edit { instance } => {
            let path = paths::instance_metadata(&instance);
            let (v, etag) = client.get_etag(&path).await?;
            let current = util::yaml_ordered(&v, ORDER)?;
            util::edit(METADATA_EDIT_HELP, &current, |text| {
                let etag = etag.clone();
                let path = path.clone();
                async move {
                    let md: silo_api::ImageMetadata =
                        lenient::from_yaml_value(util::parse_yaml(&text)?)
                            .map_err(|e| CmdError::Fail(e.to_string()))?;
                    let body = serde_json::to_value(&md).unwrap_or_default();
                    let headers: Vec<(&str, String)> =
                        etag.into_iter().map(|e| ("if-match", e)).collect();
                    client
                        .request("PUT", &path, Some(&body), &headers)
                        .await?
                        .metadata()?;
                    Ok(())
                }
            })
            .await
        }
    }
}

async fn put_template(
    client: &Client,
    instance: &str,
    template: &str,
    data: Vec<u8>,
) -> Result<(), CmdError> {
    let headers = [
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", data.len().to_string()),
    ];
    client
        .request_stream(
            "POST",
            &paths::instance_templates(instance, Some(template)),
            http_body_util::Full::new(hyper::body::Bytes::from(data)),
            &headers,
        )
        .await?
        .metadata()?;
    Ok(())
}

fn read_stdin() -> Result<Vec<u8>, CmdError> {
    let mut data = Vec::new();
    std::io::stdin()
        .read_to_end(&mut data)
        .map_err(|e| CmdError::Fail(format!("reading stdin: {e}")))?;
    Ok(data)
}

/// Runs `silo config template ...`.
pub async fn template(client: &Client, cmd: TemplateCmd) -> Result<(), CmdError> {
    match cmd {
        TemplateCmd::List { instance, format } => {
            let v = client
                .get(&paths::instance_templates(&instance, None))
                .await?;
            let mut names: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
            names.sort();
            let rows: Vec<Vec<String>> = names.into_iter().map(|n| vec![n]).collect();
            out(&crate::format::render(format, &["FILENAME"], &rows, &v)
                .map_err(CmdError::Output)?)
        }
        TemplateCmd::Show { instance, template } => {
            let data = client
                .get_raw(&paths::instance_templates(&instance, Some(&template)))
                .await?;
            std::io::Write::write_all(&mut std::io::stdout(), &data)
                .map_err(|e| CmdError::Fail(e.to_string()))
        }
        TemplateCmd::Create { instance, template } => {
            let data = if std::io::stdin().is_terminal() {
                Vec::new()
            } else {
                read_stdin()?
            };
            put_template(client, &instance, &template, data).await
        }
        TemplateCmd::Edit { instance, template } => {
            if !std::io::stdin().is_terminal() {
                return put_template(client, &instance, &template, read_stdin()?).await;
            }
            let data = client
                .get_raw(&paths::instance_templates(&instance, Some(&template)))
                .await?;
            let mut content = util::run_editor(&String::from_utf8_lossy(&data))?;
            loop {
                match put_template(client, &instance, &template, content.clone().into_bytes()).await
                {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        eprintln!("Error updating template file: {e}");
                        util::outln(
                            "Press enter to open the editor again or ctrl+c to abort change",
                        )?;
                        let mut b = [0u8; 1];
                        std::io::stdin()
                            .read(&mut b)
                            .map_err(|e| CmdError::Fail(e.to_string()))?;
                        content = util::run_editor(&content)?;
                    }
                }
            }
        }
        TemplateCmd::Delete { instance, template } => {
            let (status, v) = client
                .raw(
                    "DELETE",
                    &paths::instance_templates(&instance, Some(&template)),
                    None,
                )
                .await?;
            if status != 200 {
                return fail(v["error"].as_str().unwrap_or("failed").to_string());
            }
            Ok(())
        }
    }
}
