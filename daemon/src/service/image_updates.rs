//! Keeping pulled images current, as LXD's `autoUpdateImages` and `pruneExpiredImages` do:
//! every `images.auto_update_interval` hours (and at start) each image with `auto_update`
//! and an `update_source` asks its source for the alias's current fingerprint; a newer one
//! is pulled with the same settings, the aliases and the instances' `volatile.base_image`
//! move to it, and the old image goes once nothing uses it. Cached images unused for
//! `images.remote_cache_expiry` days are removed.

use std::time::Duration;

use crate::service::image_server::{self, PullOptions, Server};
use crate::service::images::{self, Alias};
use crate::service::{DomainError, Services};

/// LXD's default interval, in hours.
const DEFAULT_INTERVAL_HOURS: u64 = 6;
/// LXD's default cache expiry, in days.
const DEFAULT_EXPIRY_DAYS: u64 = 10;
/// How often the updater reads its settings again.
const SETTING_POLL: Duration = Duration::from_secs(60);
/// How often unused cached images are looked for (LXD prunes daily; hourly here).
const EXPIRY_EVERY: Duration = Duration::from_secs(3600);

fn setting(c: &Services, key: &str, default: u64) -> u64 {
    crate::store::config::all(&c.db)
        .ok()
        .and_then(|cfg| cfg.get(key).and_then(|v| v.trim().parse::<u64>().ok()))
        .unwrap_or(default)
}

/// Refreshes one image from its source. Answers the new image's fingerprint when there was
/// a newer one, `None` when it was current.
pub async fn refresh(
    c: &Services,
    fp: &str,
    report: &(dyn Fn(String) + Send + Sync),
) -> Result<Option<String>, DomainError> {
    let img = images::get(&c.db, fp)?
        .ok_or_else(|| DomainError::NotFound(format!("image {fp:?} not found")))?;
    let Some(source) = img.update_source.clone() else {
        return Err(DomainError::BadRequest(format!(
            "image {fp} has no source to refresh from (it was not pulled from an image server)"
        )));
    };
    if source.alias.is_empty() {
        // Pulled by fingerprint: that names one version for good.
        return Ok(None);
    }
    let src = image_server::source_of(&source);
    let server = Server::new(&src.server, &src.certificate)?;
    let remote = image_server::resolve(&server, &src, &c.host.kernel_architecture).await?;
    if remote.fingerprint == img.fingerprint {
        return Ok(None);
    }
    tracing::info!(old = %img.fingerprint, new = %remote.fingerprint, server = %src.server, alias = %src.alias, "refreshing an image");
    let opts = PullOptions {
        aliases: Vec::new(),
        public: img.public,
        auto_update: img.auto_update,
        cached: img.cached,
    };
    let new = image_server::pull(c, &src, opts, report).await?;
    if new.fingerprint == img.fingerprint {
        return Ok(None);
    }
    move_users(c, &img.fingerprint, &new.fingerprint)?;
    remove_if_unused(c, &img.fingerprint).await?;
    Ok(Some(new.fingerprint))
}

/// Moves the aliases and instances of `old` to `new`.
fn move_users(c: &Services, old: &str, new: &str) -> Result<(), DomainError> {
    for a in images::aliases(&c.db)?
        .into_iter()
        .filter(|a| a.target == old)
    {
        images::alias_put(
            &c.db,
            &Alias {
                target: new.to_string(),
                ..a
            },
            false,
        )?;
    }
    for i in crate::service::instances::list_records(&c.db)? {
        if i.config.get("volatile.base_image").map(String::as_str) == Some(old) {
            crate::service::instances::set_keys(
                &c.db,
                &i.name,
                &[("volatile.base_image", new)],
                None,
            )?;
        }
    }
    Ok(())
}

/// Whether an instance was made from image `fp`.
fn has_instances(c: &Services, fp: &str) -> Result<bool, DomainError> {
    Ok(crate::service::instances::list_records(&c.db)?
        .iter()
        .any(|i| i.config.get("volatile.base_image").map(String::as_str) == Some(fp)))
}

fn in_use(c: &Services, fp: &str) -> Result<bool, DomainError> {
    Ok(has_instances(c, fp)? || images::aliases(&c.db)?.iter().any(|a| a.target == fp))
}

/// Removes an image (its pool volumes, record and files) unless an instance or alias still
/// names it.
async fn remove_if_unused(c: &Services, fp: &str) -> Result<bool, DomainError> {
    if in_use(c, fp)? {
        return Ok(false);
    }
    images::delete(c, fp).await?;
    Ok(true)
}

/// One pass of the updater over every auto-updated image with a source.
pub async fn update_all(c: &Services) {
    let Ok(all) = images::list(&c.db) else {
        return;
    };
    for img in all {
        if !img.auto_update || img.update_source.is_none() {
            continue;
        }
        let quiet = |_: String| {};
        if let Err(e) = refresh(c, &img.fingerprint, &quiet).await {
            tracing::warn!(image = %img.fingerprint, "refreshing the image failed: {e}");
        }
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Removes cached images not used for `images.remote_cache_expiry` days (0: kept).
pub async fn expire_cached(c: &Services, now: time::OffsetDateTime) {
    let days = setting(c, "images.remote_cache_expiry", DEFAULT_EXPIRY_DAYS);
    if days == 0 {
        return;
    }
    let Ok(all) = images::list(&c.db) else {
        return;
    };
    let limit = time::Duration::days(i64::try_from(days).unwrap_or(i64::MAX / 86_400_000));
    for img in all.into_iter().filter(|i| i.cached) {
        let used = if img.last_used_at.is_empty() {
            &img.uploaded_at
        } else {
            &img.last_used_at
        };
        let Some(t) = parse_time(used) else { continue };
        if now - t < limit {
            continue;
        }
        // A cached image's aliases do not keep it (LXD prunes it with them); instances do.
        // Unreadable instances keep the image.
        let users = has_instances(c, &img.fingerprint).unwrap_or(true);
        if users {
            continue;
        }
        tracing::info!(image = %img.fingerprint, "removing a cached image unused for {days} days");
        if let Err(e) = images::delete(c, &img.fingerprint).await {
            tracing::warn!(image = %img.fingerprint, "removing an expired cached image failed: {e}");
        }
    }
}

/// The updater: at start, then every `images.auto_update_interval` hours (0 disables the
/// refresh, not the expiry of cached images). The setting is read again every
/// [`SETTING_POLL`], so a change takes effect within that, counted from the last pass.
pub async fn run(c: Services) {
    let mut last_refresh: Option<tokio::time::Instant> = None;
    let mut last_expiry: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let hours = setting(&c, "images.auto_update_interval", DEFAULT_INTERVAL_HOURS);
        let every = Duration::from_secs(hours.saturating_mul(3600));
        // The images are the cluster's: only its leader refreshes and expires them, its
        // writes fenced by its leadership (a standalone host does it itself).
        if last_expiry.is_none_or(|t| now.duration_since(t) >= EXPIRY_EVERY)
            && crate::service::cluster::leader::as_leader(
                &c,
                expire_cached(&c, time::OffsetDateTime::now_utc()),
            )
            .await
            .is_some()
        {
            last_expiry = Some(now);
        }
        if hours > 0
            && last_refresh.is_none_or(|t| now.duration_since(t) >= every)
            && crate::service::cluster::leader::as_leader(&c, update_all(&c))
                .await
                .is_some()
        {
            last_refresh = Some(now);
        }
        tokio::time::sleep(SETTING_POLL).await;
    }
}
