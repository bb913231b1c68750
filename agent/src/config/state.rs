//! Validation of the `[state]` section: the classic pair of files and the AWS named shadows
//! (`[[state.named_shadows]]`, file only: lists of tables have no environment variable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ctx::Ctx;
use super::raw::{RawNamedShadow, RawState};
use super::{Cloud, CloudKind, ConfigError, NamedShadowSettings, StateSettings};

pub(super) fn state(
    raw: RawState,
    state_dir: &Path,
    cloud: &Cloud,
    ctx: &Ctx,
) -> Result<StateSettings, ConfigError> {
    let desired_file = raw.desired_file.unwrap_or_else(|| state_dir.join("desired.json"));
    let reported_file = raw.reported_file.unwrap_or_else(|| state_dir.join("reported.json"));
    let poll_interval = raw.poll_interval.map_or(Duration::from_secs(1), |d| d.0);
    if poll_interval < Duration::from_millis(50) {
        return Err(ctx.invalid("state.poll_interval", "must be at least 50ms"));
    }
    if desired_file == reported_file {
        return Err(ctx.invalid("state.reported_file", "must differ from state.desired_file"));
    }
    let named_shadows = named_shadows(
        raw.named_shadows,
        state_dir,
        cloud,
        ctx,
        [
            ("state.desired_file".to_owned(), &desired_file),
            ("state.reported_file".to_owned(), &reported_file),
        ],
    )?;
    Ok(StateSettings {
        enabled: raw.enabled.unwrap_or(true),
        desired_file,
        reported_file,
        poll_interval,
        named_shadows,
    })
}

/// The named shadows: AWS only, names valid and distinct, and no file shared with another
/// entry or with the classic pair (`classic`: its keys and files).
fn named_shadows(
    raw: Vec<RawNamedShadow>,
    state_dir: &Path,
    cloud: &Cloud,
    ctx: &Ctx,
    classic: [(String, &PathBuf); 2],
) -> Result<Vec<NamedShadowSettings>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if cloud.kind() != CloudKind::Aws {
        let which = match cloud {
            Cloud::Embedded(_) => "the embedded azure emulator",
            _ => "azure",
        };
        return Err(ctx.invalid(
            "state.named_shadows",
            format!(
                "named shadows are an AWS IoT feature but the cloud is {which}: set cloud.provider = \"aws\" or remove them"
            ),
        ));
    }
    // Every file in use so far, with the key that named it.
    let mut files: Vec<(String, PathBuf)> = classic.into_iter().map(|(k, p)| (k, p.clone())).collect();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("state.named_shadows[{i}].{field}");
        let name = match entry.name {
            Some(n) => n,
            None => return Err(ctx.invalid(&key("name"), "missing: the shadow's name")),
        };
        if let Err(reason) = connector_aws::limits::validate_shadow_name(&name) {
            return Err(ctx.invalid(&key("name"), format!("`{name}` is not a shadow name: {reason}")));
        }
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(ctx.invalid(
                &key("name"),
                format!("`{name}` is listed twice (also state.named_shadows[{first}])"),
            ));
        }
        let desired_file =
            entry.desired_file.unwrap_or_else(|| state_dir.join(format!("shadow-{name}.desired.json")));
        let reported_file =
            entry.reported_file.unwrap_or_else(|| state_dir.join(format!("shadow-{name}.reported.json")));
        for (field, path) in [("desired_file", &desired_file), ("reported_file", &reported_file)] {
            if path.as_os_str().is_empty() {
                return Err(ctx.invalid(&key(field), "must not be empty"));
            }
            if let Some((other, _)) = files.iter().find(|(_, p)| p == path) {
                return Err(ctx.invalid(
                    &key(field),
                    format!("{} is also {other}: every document needs its own files", path.display()),
                ));
            }
            files.push((key(field), path.clone()));
        }
        out.push(NamedShadowSettings { name, desired_file, reported_file });
    }
    Ok(out)
}
