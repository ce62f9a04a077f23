//! `silo export` and `silo import`: instance backups, as `lxc export`/`lxc import` do them.

use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use silo_api::{paths, InstanceBackupsPost};
use tokio::io::AsyncWriteExt;

use crate::client::Client;
use crate::commands::CmdError;
use crate::util::{fail, outln};

/// `silo export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The instance.
    pub instance: String,
    /// The file to write (default: <instance>.tar.gz... in this directory).
    pub target: Option<std::path::PathBuf>,
    /// Leave the snapshots out.
    #[arg(long)]
    pub instance_only: bool,
    /// Use the storage driver's own format (not supported yet).
    #[arg(long)]
    pub optimized_storage: bool,
    /// gzip (default), xz, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
}

/// `silo import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The backup file.
    pub file: std::path::PathBuf,
    /// The new instance's name (default: the backup's).
    pub name: Option<String>,
    /// The storage pool for it.
    #[arg(short = 's', long)]
    pub storage: Option<String>,
}

/// `silo export INSTANCE [FILE]`: a backup made on the server, downloaded, then removed there.
pub async fn export(client: &Client, a: ExportArgs) -> Result<(), CmdError> {
    let req = InstanceBackupsPost {
        instance_only: a.instance_only,
        optimized_storage: a.optimized_storage,
        compression_algorithm: a.compression.clone(),
        ..Default::default()
    };
    let op = client.create_backup(&a.instance, &req).await?;
    let Some(name) = op
        .resources
        .get("backups")
        .and_then(|b| b.first())
        .and_then(|url| url.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(paths::unescape)
    else {
        return fail("The server did not say which backup it made");
    };
    let ext = match a.compression.as_str() {
        "xz" => ".tar.xz",
        "zstd" => ".tar.zst",
        "none" => ".tar",
        _ => ".tar.gz",
    };
    let target = a
        .target
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{}{ext}", a.instance)));
    let result: Result<(), CmdError> = async {
        let resp = client
            .download(&paths::backup_export(&a.instance, &name))
            .await?;
        let mut f = tokio::fs::File::create(&target)
            .await
            .map_err(|e| CmdError::Fail(format!("Creating {}: {e}", target.display())))?;
        let mut body = http_body_util::BodyExt::into_data_stream(resp.into_body());
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| CmdError::Fail(format!("Downloading the backup: {e}")))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| CmdError::Fail(format!("Writing {}: {e}", target.display())))?;
        }
        f.sync_all()
            .await
            .map_err(|e| CmdError::Fail(format!("Writing {}: {e}", target.display())))
    }
    .await;
    // The server's copy goes whatever happened (lxc does the same).
    let _ = client.delete_backup(&a.instance, &name).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    result?;
    outln("Backup exported successfully!")
}

/// `silo import FILE [NAME]`.
pub async fn import(client: &Client, a: ImportArgs) -> Result<(), CmdError> {
    let f = tokio::fs::File::open(&a.file)
        .await
        .map_err(|e| CmdError::Fail(format!("Opening {}: {e}", a.file.display())))?;
    let len = f
        .metadata()
        .await
        .map(|m| m.len())
        .map_err(|e| CmdError::Fail(e.to_string()))?;
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
    ];
    if let Some(n) = &a.name {
        headers.push(("x-lxd-name", n.clone()));
    }
    if let Some(p) = &a.storage {
        headers.push(("x-lxd-pool", p.clone()));
    }
    let body = StreamBody::new(crate::images::file_stream(f).map(|c| c.map(Frame::data)));
    let answer = client
        .request_stream("POST", &paths::instances(), body, &headers)
        .await?;
    answer.finish(client).await?;
    Ok(())
}
