//! What each subcommand does.

use clap::CommandFactory;
use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::format;
use crate::images::ImageCmd;
use crate::remotes::{ConfError, Config};
use crate::util::out;
use crate::{Cli, Command, InfoFormat, OperationCmd};

/// Errors a command reports to the user as one line.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// From the client.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Output failed.
    #[error("{0}")]
    Output(String),
    /// The command cannot do what was asked (bad arguments, a refused state, ...).
    #[error("{0}")]
    Fail(String),
    /// Nothing to print: leave with this status (`silo exec` passes on the command's).
    #[error("exit status {0}")]
    Exit(i32),
}

fn show(v: &Value, f: InfoFormat) -> Result<(), CmdError> {
    let s = match f {
        InfoFormat::Yaml => format::yaml(v).map_err(CmdError::Output)?,
        InfoFormat::Json => {
            serde_json::to_string_pretty(v).map_err(|e| CmdError::Output(e.to_string()))? + "\n"
        }
    };
    out(&s)
}

/// A name argument that may carry a `remote:` prefix.
enum Arg<'a> {
    /// Always a name: no prefix means the default remote.
    Name(&'a mut String),
    /// A name or something else (a key=value, a filter that may hold an IPv6 address): with
    /// an `=` only a known `remote:` prefix before it counts.
    Maybe(&'a mut String),
    /// An optional name; `remote:` alone leaves none.
    Opt(&'a mut Option<String>),
}

/// Every argument of `cmd` that names something on a server, in one place: each command's
/// `[remote:]name` arguments are split here, before the command runs.
fn name_args(cmd: &mut Command) -> Vec<Arg<'_>> {
    use crate::config::{ConfigCmd as C, DeviceCmd as D};
    use crate::files::FileCmd as F;
    use crate::images::AliasCmd as IA;
    use crate::networks::NetworkCmd as N;
    use crate::profiles::{ProfileCmd as P, ProfileDeviceCmd as PD};
    use crate::storage::{StorageCmd as S, VolumeCmd as V};
    match cmd {
        Command::Info { name, .. } => vec![Arg::Opt(name)],
        Command::List(a) => a.filters.first_mut().map(Arg::Maybe).into_iter().collect(),
        Command::Start(a) | Command::Pause(a) => names(&mut a.names),
        Command::Stop(a) | Command::Restart(a) => names(&mut a.names),
        Command::Delete(a) => names(&mut a.names),
        Command::Exec(a) => vec![Arg::Name(&mut a.name)],
        Command::Console(a) => vec![Arg::Name(&mut a.name)],
        Command::File(F::Push(a)) => vec![Arg::Name(&mut a.target)],
        Command::File(F::Pull(a)) => names(&mut a.sources),
        Command::File(F::Delete { paths, .. }) => names(paths),
        Command::Snapshot(a) => vec![Arg::Name(&mut a.instance)],
        Command::Warning(
            crate::warnings::WarningCmd::Show { uuid } | crate::warnings::WarningCmd::Ack { uuid },
        ) => vec![Arg::Name(uuid)],
        Command::Warning(crate::warnings::WarningCmd::Delete { uuid, .. }) => vec![Arg::Opt(uuid)],
        Command::Restore(a) => vec![Arg::Name(&mut a.instance)],
        Command::Move(a) => vec![Arg::Name(&mut a.source), Arg::Name(&mut a.target)],
        Command::Copy(a) => vec![Arg::Name(&mut a.source), Arg::Opt(&mut a.target)],
        Command::Publish(a) => vec![Arg::Name(&mut a.source)],
        Command::Export(a) => vec![Arg::Name(&mut a.instance)],
        Command::Import(a) => vec![Arg::Opt(&mut a.name)],
        Command::Config(c) => match c {
            C::Show { instance, .. } | C::Edit { instance } => vec![Arg::Opt(instance)],
            C::Get { first, .. } | C::Unset { first, .. } => vec![Arg::Maybe(first)],
            C::Set { args } => args.first_mut().map(Arg::Maybe).into_iter().collect(),
            C::Device(
                D::Add { instance, .. }
                | D::Remove { instance, .. }
                | D::Show { instance }
                | D::List { instance }
                | D::Get { instance, .. }
                | D::Set { instance, .. }
                | D::Unset { instance, .. }
                | D::Override { instance, .. },
            ) => vec![Arg::Name(instance)],
            C::Metadata(
                crate::metadata::MetadataCmd::Show { instance }
                | crate::metadata::MetadataCmd::Edit { instance },
            ) => vec![Arg::Name(instance)],
            C::Template(t) => match t {
                crate::metadata::TemplateCmd::List { instance, .. }
                | crate::metadata::TemplateCmd::Show { instance, .. }
                | crate::metadata::TemplateCmd::Create { instance, .. }
                | crate::metadata::TemplateCmd::Edit { instance, .. }
                | crate::metadata::TemplateCmd::Delete { instance, .. } => {
                    vec![Arg::Name(instance)]
                }
            },
            C::Trust(t) => match t {
                crate::trust::TrustCmd::Remove { fingerprint }
                | crate::trust::TrustCmd::Show { fingerprint }
                | crate::trust::TrustCmd::Edit { fingerprint } => vec![Arg::Name(fingerprint)],
                crate::trust::TrustCmd::RevokeToken { name } => vec![Arg::Name(name)],
                crate::trust::TrustCmd::List { .. }
                | crate::trust::TrustCmd::Add { .. }
                | crate::trust::TrustCmd::ListTokens { .. } => vec![],
            },
        },
        Command::Image(c) => match c {
            ImageCmd::List { filters, .. } => {
                filters.first_mut().map(Arg::Maybe).into_iter().collect()
            }
            ImageCmd::Show { image }
            | ImageCmd::Info { image }
            | ImageCmd::Edit { image }
            | ImageCmd::GetProperty { image, .. }
            | ImageCmd::SetProperty { image, .. }
            | ImageCmd::UnsetProperty { image, .. }
            | ImageCmd::Export { image, .. } => vec![Arg::Name(image)],
            ImageCmd::Delete { images }
            | ImageCmd::Refresh { images }
            | ImageCmd::ExportSimplestreams { images, .. } => names(images),
            ImageCmd::Import { .. } | ImageCmd::Copy { .. } => vec![],
            ImageCmd::Alias(a) => match a {
                IA::Create { name, .. } | IA::Delete { name } => vec![Arg::Name(name)],
                IA::Rename { old, .. } => vec![Arg::Name(old)],
                IA::List { filters, .. } => {
                    filters.first_mut().map(Arg::Maybe).into_iter().collect()
                }
            },
        },
        Command::Profile(c) => match c {
            P::List { remote, .. } => vec![Arg::Opt(remote)],
            P::Show { profile }
            | P::Create { profile, .. }
            | P::Edit { profile }
            | P::Get { profile, .. }
            | P::Set { profile, .. }
            | P::Unset { profile, .. } => vec![Arg::Name(profile)],
            P::Delete { profiles } => names(profiles),
            P::Rename { old, .. } => vec![Arg::Name(old)],
            P::Add { instance, .. } | P::Remove { instance, .. } | P::Assign { instance, .. } => {
                vec![Arg::Name(instance)]
            }
            P::Device(
                PD::Add { profile, .. }
                | PD::Remove { profile, .. }
                | PD::Show { profile }
                | PD::List { profile }
                | PD::Get { profile, .. }
                | PD::Set { profile, .. }
                | PD::Unset { profile, .. },
            ) => vec![Arg::Name(profile)],
            P::Copy { source, target, .. } => vec![Arg::Name(source), Arg::Name(target)],
        },
        Command::Network(c) => match c {
            N::List { remote, .. } => vec![Arg::Opt(remote)],
            N::Attach {
                network, instance, ..
            }
            | N::Detach {
                network, instance, ..
            } => vec![Arg::Name(network), Arg::Name(instance)],
            N::AttachProfile { network, .. }
            | N::DetachProfile { network, .. }
            | N::Create { network, .. }
            | N::Edit { network }
            | N::Get { network, .. }
            | N::Info { network }
            | N::ListLeases { network, .. }
            | N::Set { network, .. }
            | N::Show { network }
            | N::Unset { network, .. } => vec![Arg::Name(network)],
            N::Delete { networks } => names(networks),
            N::Rename { old, .. } => vec![Arg::Name(old)],
        },
        Command::Storage(c) => match c {
            S::List { remote, .. } => vec![Arg::Opt(remote)],
            S::Create { pool, .. }
            | S::Show { pool, .. }
            | S::Edit { pool }
            | S::Info { pool, .. }
            | S::Get { pool, .. }
            | S::Set { pool, .. }
            | S::Unset { pool, .. } => vec![Arg::Name(pool)],
            S::Delete { pools } => names(pools),
            S::Volume(
                V::List { pool, .. }
                | V::Create { pool, .. }
                | V::Delete { pool, .. }
                | V::Show { pool, .. }
                | V::Get { pool, .. }
                | V::Set { pool, .. }
                | V::Unset { pool, .. }
                | V::Edit { pool, .. }
                | V::Info { pool, .. }
                | V::Rename { pool, .. }
                | V::Snapshot { pool, .. }
                | V::Restore { pool, .. }
                | V::Attach { pool, .. }
                | V::Detach { pool, .. }
                | V::AttachProfile { pool, .. }
                | V::DetachProfile { pool, .. }
                | V::Export { pool, .. }
                | V::Import { pool, .. },
            ) => vec![Arg::Name(pool)],
            S::Volume(V::Copy { source, target, .. } | V::Move { source, target }) => {
                vec![Arg::Name(source), Arg::Name(target)]
            }
        },
        _ => vec![],
    }
}

fn names(v: &mut [String]) -> Vec<Arg<'_>> {
    v.iter_mut().map(Arg::Name).collect()
}

/// Splits the `remote:` prefixes off `cmd`'s name arguments and returns the one remote they
/// name (the default remote when none does). Names on different remotes are refused:
/// only `image copy`, `launch` and `init` work across servers.
fn route(conf: &Config, cmd: &mut Command) -> Result<String, ConfError> {
    let mut chosen: Option<String> = None;
    let mut pick = |r: String| -> Result<(), ConfError> {
        match &chosen {
            Some(c) if *c != r => Err(ConfError::Refused(format!(
                "the names given are on different remotes ({c} and {r}): this command works on one server"
            ))),
            _ => {
                chosen = Some(r);
                Ok(())
            }
        }
    };
    for arg in name_args(cmd) {
        match arg {
            Arg::Name(s) => {
                let (r, rest) = conf.parse_remote(s)?;
                let rest = rest.to_string();
                *s = rest;
                pick(r)?;
            }
            // Without '=' it is a name (or a name filter), and names have no colon.
            Arg::Maybe(s) if s.contains(':') && !s.contains('=') => {
                let (r, rest) = conf.parse_remote(s)?;
                let rest = rest.to_string();
                *s = rest;
                pick(r)?;
            }
            Arg::Maybe(s) => {
                let known = s
                    .split_once(':')
                    .filter(|(r, _)| !r.contains('=') && conf.file.remotes.contains_key(*r))
                    .map(|(r, rest)| (r.to_string(), rest.to_string()));
                if let Some((r, rest)) = known {
                    *s = rest;
                    pick(r)?;
                }
            }
            Arg::Opt(o) => {
                if let Some(s) = o.as_deref() {
                    let (r, rest) = conf.parse_remote(s)?;
                    *o = (!rest.is_empty()).then(|| rest.to_string());
                    pick(r)?;
                }
            }
        }
    }
    Ok(chosen.unwrap_or_else(|| conf.file.default_remote.clone()))
}

/// Drops the filters a bare `remote:` left empty.
fn drop_empty_filters(cmd: &mut Command) {
    let filters = match cmd {
        Command::List(a) => &mut a.filters,
        Command::Image(ImageCmd::List { filters, .. }) => filters,
        Command::Image(ImageCmd::Alias(crate::images::AliasCmd::List { filters, .. })) => filters,
        Command::Config(crate::config::ConfigCmd::Set { args }) => {
            // `config set remote: key value` sets server keys.
            if args.first().is_some_and(String::is_empty) {
                args.remove(0);
            }
            return;
        }
        _ => return,
    };
    filters.retain(|f| !f.is_empty());
}

/// `silo launch`/`init` with an image: the instance's server from NAME's prefix (else the
/// default remote), the image's from IMAGE's; an image on another server is resolved here and
/// pulled by the target, as lxc does.
async fn create_instance(conf: &Config, cmd: Command) -> Result<(), CmdError> {
    let (image, name) = match &cmd {
        Command::Launch(a) => (a.image.clone(), a.name.clone()),
        Command::Init(a) => (a.image.clone().unwrap_or_default(), a.name.clone()),
        _ => return Err(CmdError::Fail("not an instance creation".into())),
    };
    let (target, name) = match &name {
        Some(n) => {
            let (r, rest) = conf.parse_remote(n)?;
            (r, (!rest.is_empty()).then(|| rest.to_string()))
        }
        None => (conf.file.default_remote.clone(), None),
    };
    let (image_remote, image_name) = conf.parse_remote(&image)?;
    let image_name = image_name.to_string();
    let client = conf.instance_client(&target)?;
    let source = if image_remote == target {
        None
    } else {
        let img = crate::requests::resolve(conf, &image_remote, &image_name).await?;
        Some(crate::requests::instance_source(&img))
    };
    match cmd {
        Command::Launch(mut a) => {
            a.image = image_name;
            a.name = name;
            crate::instances::launch(&client, a, source).await
        }
        Command::Init(mut a) => {
            a.image = Some(image_name);
            a.name = name;
            crate::instances::init(&client, a, source).await
        }
        _ => Ok(()),
    }
}

/// `silo image copy [REMOTE:]IMAGE REMOTE:`: the target pulls the image from the source.
async fn image_copy(conf: &Config, cmd: ImageCmd) -> Result<(), CmdError> {
    let ImageCmd::Copy {
        source,
        target,
        aliases,
        copy_aliases,
        auto_update,
        public,
    } = cmd
    else {
        return Err(CmdError::Fail("not an image copy".into()));
    };
    let (src_remote, image) = conf.parse_remote(&source)?;
    let (dst_remote, rest) = conf.parse_remote(&target)?;
    if !rest.is_empty() {
        return Err(CmdError::Fail(format!(
            "the target of image copy is a remote (`{dst_remote}:`), not {target:?}: name the copy with --alias"
        )));
    }
    let client = conf.instance_client(&dst_remote)?;
    let img = crate::requests::resolve(conf, &src_remote, image).await?;
    let req = crate::requests::image_copy(
        &img,
        &crate::requests::CopyOpts {
            aliases,
            copy_aliases,
            auto_update,
            public,
        },
    );
    let body = serde_json::to_value(&req).map_err(|e| CmdError::Output(e.to_string()))?;
    let a = client
        .request("POST", &silo_api::paths::images(), Some(&body), &[])
        .await?;
    a.metadata()?;
    if let Some(id) = a.operation_id() {
        wait_with_progress(&client, &id, "Copying the image").await?;
    }
    out("Image copied successfully!\n")
}

/// Waits for an operation, showing its `*_progress` metadata on one line as lxc does, and
/// answers it once done.
pub(crate) async fn wait_with_progress(
    client: &Client,
    id: &str,
    what: &str,
) -> Result<silo_api::Operation, CmdError> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let path = silo_api::paths::operation_wait(id, 1);
        let op: silo_api::Operation = client.get_as(&path).await?;
        if let Some(p) = crate::requests::progress_text(&op.metadata) {
            if p != last {
                let line = format!("{what}: {p}");
                if tty {
                    print!("\r\x1b[2K{line}");
                } else {
                    println!("{line}");
                }
                let _ = std::io::stdout().flush();
                last = p;
            }
        }
        if op.status_code >= 200 {
            if tty && !last.is_empty() {
                println!();
            }
            if op.succeeded() {
                return Ok(op);
            }
            return Err(ClientError::Api(if op.err.is_empty() {
                "operation failed".to_string()
            } else {
                op.err
            })
            .into());
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    let mut command = cli.command;
    match command {
        Command::Remote(c) => return crate::remotes::run(c).await,
        Command::Alias(c) => return crate::aliases::run(c),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "silo", &mut std::io::stdout());
            return Ok(());
        }
        Command::Manpage { dir } => return manpages(&dir),
        _ => {}
    }
    let conf = Config::load()?;
    match command {
        Command::Launch(_) => return create_instance(&conf, command).await,
        Command::Init(ref a) if a.image.is_some() && !a.server.any() => {
            return create_instance(&conf, command).await
        }
        // Between two servers: two clients and LXD's migration protocol.
        Command::Copy(ref a) => {
            if let Some((src, dst, name)) =
                crate::migrate::crossing(&conf, &a.source, a.target.as_deref())?
            {
                let Command::Copy(a) = command else {
                    return Ok(());
                };
                return crate::migrate::copy_cmd(&conf, a, src, dst, name).await;
            }
        }
        Command::Move(ref a) => {
            if let Some((src, dst, name)) =
                crate::migrate::crossing(&conf, &a.source, Some(&a.target))?
            {
                let Command::Move(a) = command else {
                    return Ok(());
                };
                return crate::migrate::move_cmd(&conf, a, src, dst, name).await;
            }
        }
        Command::Query(_) => {
            let Command::Query(a) = command else {
                return Ok(());
            };
            return crate::query::run(&conf, a).await;
        }
        Command::Image(ImageCmd::Copy { .. }) => {
            let Command::Image(c) = command else {
                return Ok(());
            };
            return image_copy(&conf, c).await;
        }
        _ => {}
    }
    let remote = route(&conf, &mut command)?;
    drop_empty_filters(&mut command);
    if conf.remote(&remote)?.protocol() == "simplestreams" {
        if let Command::Image(c) = command {
            // As lxc: the client reads the image server's index itself.
            return crate::simplestreams::run_remote(&conf, &remote, c).await;
        }
    }
    let client = conf.instance_client(&remote)?;
    match command {
        Command::Init(a) => crate::instances::init(&client, a, None).await,
        Command::Launch(a) => crate::instances::launch(&client, a, None).await,
        Command::Start(a) => {
            crate::instances::state_action(&client, "start", a.names, a.all, false, -1).await
        }
        Command::Stop(a) => {
            crate::instances::state_action(&client, "stop", a.names, a.all, a.force, a.timeout)
                .await
        }
        Command::Restart(a) => {
            crate::instances::state_action(&client, "restart", a.names, a.all, a.force, a.timeout)
                .await
        }
        Command::Pause(a) => {
            crate::instances::state_action(&client, "freeze", a.names, a.all, false, -1).await
        }
        Command::Exec(a) => crate::exec::exec(&client, a).await,
        Command::Console(a) => crate::exec::console(&client, a).await,
        Command::File(c) => crate::files::run(&client, c).await,
        Command::Info {
            name: Some(name),
            show_log,
            ..
        } => crate::instances::info(&client, &name, show_log).await,
        Command::List(a) => crate::instances::list(&client, a).await,
        Command::Delete(a) => crate::instances::delete(&client, a).await,
        Command::Config(c) => crate::config::run(&client, c).await,
        Command::Image(c) => crate::images::run(&client, c).await,
        Command::Profile(c) => crate::profiles::run(&client, c).await,
        Command::Snapshot(a) => crate::snapshots::snapshot(&client, a).await,
        Command::Restore(a) => crate::snapshots::restore(&client, a).await,
        Command::Move(a) => crate::snapshots::move_cmd(&client, a).await,
        Command::Copy(a) => crate::snapshots::copy(&client, a).await,
        Command::Publish(a) => crate::snapshots::publish(&client, a).await,
        Command::Export(a) => crate::backups::export(&client, a).await,
        Command::Import(a) => crate::backups::import(&client, a).await,
        Command::Network(c) => crate::networks::run(&client, c).await,
        Command::Storage(c) => crate::storage::run(&client, c).await,
        Command::Version => version(&client).await,
        Command::Info {
            name: None,
            resources: true,
            ..
        } => {
            let r: silo_api::Resources = client.get_as("/1.0/resources").await?;
            out(&crate::resources::render(&r))
        }
        Command::Info {
            name: None, format, ..
        } => {
            // Printed as the server sent it, silo's own section and all: free-form here.
            let v = client.get(&silo_api::paths::server()).await?;
            show(&v, format)
        }
        Command::Operation(OperationCmd::List { format }) => operation_list(&client, format).await,
        Command::Operation(OperationCmd::Show { id }) => {
            let v = serde_json::to_value(client.operation(&id).await?)
                .map_err(|e| CmdError::Output(e.to_string()))?;
            show(&v, InfoFormat::Yaml)
        }
        Command::Operation(OperationCmd::Delete { id }) => {
            client
                .query("DELETE", &silo_api::paths::operation(&id), None)
                .await?;
            Ok(())
        }
        Command::Warning(c) => crate::warnings::run(&client, c).await,
        Command::Cluster(c) => crate::cluster::run(&client, c).await,
        Command::Monitor { types, format, .. } => monitor(&client, &types, format).await,
        Command::Remote(_)
        | Command::Completion { .. }
        | Command::Manpage { .. }
        | Command::Query(_)
        | Command::Alias(_) => Ok(()),
    }
}

/// `silo version`: the client's, and the server's if it answers.
async fn version(client: &Client) -> Result<(), CmdError> {
    out(&format!("Client version: {}\n", env!("CARGO_PKG_VERSION")))?;
    let server = match client.server().await {
        Ok(v) if !v.environment.server_version.is_empty() => v.environment.server_version,
        Ok(_) => "unknown".to_string(),
        Err(_) => "unreachable".to_string(),
    };
    out(&format!("Server version: {server}\n"))
}

/// `silo operation list`: a table of the server's operations, oldest first.
async fn operation_list(client: &Client, format: format::Format) -> Result<(), CmdError> {
    let mut ops: Vec<silo_api::Operation> =
        client.operations().await?.into_values().flatten().collect();
    ops.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o.id.clone(),
                o.class.to_uppercase(),
                o.description.clone(),
                o.status.to_uppercase(),
                if o.may_cancel { "YES" } else { "NO" }.to_string(),
                o.created_at.clone(),
            ]
        })
        .collect();
    let raw = serde_json::to_value(&ops).map_err(|e| CmdError::Output(e.to_string()))?;
    let text = format::render(
        format,
        &[
            "ID",
            "TYPE",
            "DESCRIPTION",
            "STATUS",
            "CANCELABLE",
            "CREATED",
        ],
        &rows,
        &raw,
    )
    .map_err(CmdError::Output)?;
    out(&text)
}

/// `silo monitor`: prints the server's events (of `types`, or all) as they come.
async fn monitor(client: &Client, types: &[String], format: InfoFormat) -> Result<(), CmdError> {
    for t in types {
        if !["operation", "logging", "lifecycle"].contains(&t.as_str()) {
            return Err(CmdError::Output(format!(
                "unknown event type {t:?}: expected operation, logging or lifecycle"
            )));
        }
    }
    let joined = types.join(",");
    let filter = if types.is_empty() {
        None
    } else {
        Some(joined.as_str())
    };
    let mut failed = None;
    client
        .events(filter, |ev| {
            let r = match format {
                InfoFormat::Yaml => format::yaml(&ev).map(|y| y + "\n"),
                InfoFormat::Json => serde_json::to_string(&ev)
                    .map(|j| j + "\n")
                    .map_err(|e| e.to_string()),
            }
            .map_err(CmdError::Output)
            .and_then(|t| out(&t));
            if let Err(e) = r {
                failed = Some(e);
                return false;
            }
            true
        })
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `silo manpage DIR`: a man page for silo and one for each subcommand.
fn manpages(dir: &std::path::Path) -> Result<(), CmdError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CmdError::Output(format!("creating {}: {e}", dir.display())))?;
    let cmd = Cli::command();
    write_man(&cmd, "silo", dir)?;
    for sub in cmd.get_subcommands() {
        let name = format!("silo-{}", sub.get_name());
        write_man(sub, &name, dir)?;
    }
    Ok(())
}

fn write_man(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<(), CmdError> {
    let cmd = cmd.clone().name(name.to_string().leak() as &str);
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| CmdError::Output(e.to_string()))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf)
        .map_err(|e| CmdError::Output(format!("writing {}: {e}", path.display())))
}
