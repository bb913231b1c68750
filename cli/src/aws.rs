//! `connector-cli aws …`: SigV4 presigned WebSocket URLs and a thing's shadow and jobs
//! topics.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use connector_aws::endpoint::{region_of, validate_host};
use connector_aws::limits::validate_thing_name;
use connector_aws::sigv4::{days_from_civil, presign, Presign, SignedHeaders};
use connector_aws::topics::{JobsApi, Reply, ShadowOp};
use connector_aws::{AwsCredentials, AwsTopic};
use connector_core::Secret;

/// AWS IoT Core helpers.
#[derive(Subcommand)]
pub enum Aws {
    /// Print a SigV4 presigned `wss://{endpoint}/mqtt?…` URL (the session token appended
    /// unsigned, as AWS IoT wants it).
    Presign(PresignArgs),
    /// Print a thing's shadow and jobs topics.
    Topics(TopicsArgs),
}

/// `aws presign`.
#[derive(Args)]
pub struct PresignArgs {
    /// The device data endpoint host (`{prefix}-ats.iot.{region}.amazonaws.com`).
    #[arg(long)]
    endpoint: String,
    /// Port: included in the URL and in the signed `Host` header (paho always sends it).
    #[arg(long)]
    port: Option<u16>,
    /// Region of the credential scope (default: taken from the endpoint).
    #[arg(long)]
    region: Option<String>,
    /// The access key id.
    #[arg(long)]
    access_key_id: String,
    /// The secret access key (visible to other local users in the process list; prefer
    /// --secret-access-key-file).
    #[arg(
        long,
        conflicts_with = "secret_access_key_file",
        required_unless_present = "secret_access_key_file"
    )]
    secret_access_key: Option<String>,
    /// A file holding the secret access key (surrounding whitespace ignored).
    #[arg(long)]
    secret_access_key_file: Option<PathBuf>,
    /// The session token of temporary credentials.
    #[arg(long)]
    session_token: Option<String>,
    /// Signing time: RFC 3339 (`2025-01-01T00:00:00Z`) or Unix seconds (default: now).
    #[arg(long)]
    time: Option<String>,
    /// `X-Amz-Expires` in seconds (default: omitted).
    #[arg(long)]
    expires: Option<u64>,
    /// Also sign `Connection: Upgrade` (`connection;host`, like the AWS CRT).
    #[arg(long)]
    sign_connection: bool,
}

/// `aws topics`.
#[derive(Args)]
pub struct TopicsArgs {
    /// The thing name.
    #[arg(long)]
    thing: String,
    /// A named shadow (default: the classic shadow).
    #[arg(long)]
    shadow: Option<String>,
}

/// Runs an `aws` command.
pub fn run(command: Aws, now: SystemTime) -> Result<String, Box<dyn Error>> {
    match command {
        Aws::Presign(a) => presign_url(a, now),
        Aws::Topics(a) => topics(a),
    }
}

fn presign_url(a: PresignArgs, now: SystemTime) -> Result<String, Box<dyn Error>> {
    validate_host(&a.endpoint).map_err(|r| format!("invalid --endpoint: {r}"))?;
    let region = match (&a.region, region_of(&a.endpoint)) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r.to_owned(),
        (None, None) => return Err("--region is needed: the endpoint does not name one".into()),
    };
    let secret = match (&a.secret_access_key, &a.secret_access_key_file) {
        (Some(s), _) => Secret::new(s.clone()),
        (None, Some(path)) => {
            let text = Secret::new(
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
            Secret::new(text.expose().trim())
        }
        (None, None) => return Err("give --secret-access-key or --secret-access-key-file".into()),
    };
    let mut creds = AwsCredentials::new(&a.access_key_id, secret)?;
    if let Some(t) = &a.session_token {
        creds = creds.with_session_token(t.clone());
    }
    let time = match &a.time {
        Some(t) => parse_time(t)?,
        None => now,
    };
    let host = match a.port {
        Some(p) => format!("{}:{p}", a.endpoint),
        None => a.endpoint.clone(),
    };
    let signed = presign(&Presign {
        credentials: &creds,
        region: &region,
        host: &host,
        time,
        expires: a.expires.map(Duration::from_secs),
        signed_headers: if a.sign_connection { SignedHeaders::ConnectionHost } else { SignedHeaders::Host },
    })?;
    Ok(format!("{}\n", signed.url().expose()))
}

/// Unix seconds, or RFC 3339 `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_time(s: &str) -> Result<SystemTime, Box<dyn Error>> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let bad = || format!("invalid --time `{s}`: expected Unix seconds or RFC 3339 (2025-01-01T00:00:00Z)");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad().into());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
        let t = s.get(r).ok_or_else(bad)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u32>().map_err(|_| bad())
    };
    let (y, mo, d, h, mi, se) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad().into()),
    };
    if d == 0 || d > days_in_month || h > 23 || mi > 59 || se > 60 {
        return Err(bad().into());
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad().into());
        }
        rest = &frac[digits..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh = num(s.len() - 5..s.len() - 3)?;
            let om = num(s.len() - 2..s.len())?;
            if oh > 23 || om > 59 {
                return Err(bad().into());
            }
            let v = i64::from(oh * 3600 + om * 60);
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad().into()),
    };
    let secs =
        days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se.min(59)) - offset;
    let secs = u64::try_from(secs).map_err(|_| format!("invalid --time `{s}`: before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

fn topics(a: TopicsArgs) -> Result<String, Box<dyn Error>> {
    validate_thing_name(&a.thing).map_err(|r| format!("invalid --thing: {r}"))?;
    if let Some(s) = &a.shadow {
        connector_aws::limits::validate_shadow_name(s).map_err(|r| format!("invalid --shadow: {r}"))?;
    }
    let thing = || a.thing.clone();
    let shadow = || a.shadow.clone();
    let mut rows: Vec<(String, AwsTopic)> = Vec::new();
    for op in [ShadowOp::Get, ShadowOp::Update, ShadowOp::Delete] {
        let o = op.as_str();
        rows.push((format!("shadow {o}"), AwsTopic::ShadowRequest { thing: thing(), shadow: shadow(), op }));
        for reply in [Reply::Accepted, Reply::Rejected] {
            rows.push((
                format!("shadow {o} {}", reply.as_str()),
                AwsTopic::ShadowReply { thing: thing(), shadow: shadow(), op, reply },
            ));
        }
        if op == ShadowOp::Update {
            rows.push((
                "shadow update delta".into(),
                AwsTopic::ShadowDelta { thing: thing(), shadow: shadow() },
            ));
            rows.push((
                "shadow update documents".into(),
                AwsTopic::ShadowDocuments { thing: thing(), shadow: shadow() },
            ));
        }
        rows.push((
            format!("subscribe shadow {o}"),
            AwsTopic::ShadowFilter { thing: thing(), shadow: shadow(), op },
        ));
    }
    let job = || "{jobId}".to_string();
    for (name, api) in [
        ("jobs get pending", JobsApi::GetPending),
        ("jobs start next", JobsApi::StartNext),
        ("jobs describe", JobsApi::Describe { job_id: job() }),
        ("jobs update", JobsApi::Update { job_id: job() }),
    ] {
        rows.push((name.into(), AwsTopic::JobsRequest { thing: thing(), api: api.clone() }));
        for reply in [Reply::Accepted, Reply::Rejected] {
            rows.push((
                format!("{name} {}", reply.as_str()),
                AwsTopic::JobsReply { thing: thing(), api: api.clone(), reply },
            ));
        }
    }
    rows.push(("jobs notify".into(), AwsTopic::JobsNotify { thing: thing() }));
    rows.push(("jobs notify next".into(), AwsTopic::JobsNotifyNext { thing: thing() }));
    for per_job in [false, true] {
        for reply in [Reply::Accepted, Reply::Rejected] {
            let what = if per_job { "per job" } else { "get/start-next" };
            rows.push((
                format!("subscribe jobs {what} {}", reply.as_str()),
                AwsTopic::JobsReplyFilter { thing: thing(), per_job, reply },
            ));
        }
    }
    let mut out = String::new();
    for (name, topic) in rows {
        // `{jobId}` is a placeholder, not a valid job id: substitute after assembling.
        let text = match &topic {
            AwsTopic::JobsRequest { api, .. } | AwsTopic::JobsReply { api, .. } if api.job_id().is_some() => {
                let real = with_job(&topic, "JOBID").assemble()?;
                real.replace("/JOBID/", "/{jobId}/")
            }
            _ => topic.assemble()?,
        };
        let _ = writeln!(out, "{name}: {text}");
    }
    Ok(out)
}

fn with_job(topic: &AwsTopic, id: &str) -> AwsTopic {
    let swap = |api: &JobsApi| match api {
        JobsApi::Describe { .. } => JobsApi::Describe { job_id: id.into() },
        JobsApi::Update { .. } => JobsApi::Update { job_id: id.into() },
        other => other.clone(),
    };
    match topic {
        AwsTopic::JobsRequest { thing, api } => {
            AwsTopic::JobsRequest { thing: thing.clone(), api: swap(api) }
        }
        AwsTopic::JobsReply { thing, api, reply } => {
            AwsTopic::JobsReply { thing: thing.clone(), api: swap(api), reply: *reply }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_or_rfc3339() {
        let t = |s: &str| parse_time(s).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(t("1735689600"), 1_735_689_600);
        assert_eq!(t("2025-01-01T00:00:00Z"), 1_735_689_600);
        assert_eq!(t("2025-01-01T01:30:00.123+01:30"), 1_735_689_600);
        assert_eq!(t("2024-12-31T19:00:00-05:00"), 1_735_689_600);
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-01-01T00:00:00",
            "x025-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2025-01-01T00:00:00.Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
