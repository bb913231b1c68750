//! Validation of the `[azure]` and `[aws]` sections.

use std::time::Duration;

use super::ctx::{non_empty, required, Ctx};
use super::raw::{RawAws, RawAzure};
use super::{AwsAuth, AwsSettings, AzureAuth, AzureSettings, ConfigError, DpsAttestation, DpsSettings};

pub(super) fn azure(
    raw: RawAzure,
    ctx: &Ctx,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AzureSettings, ConfigError> {
    let websocket = match raw.transport.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("mqtt") => false,
        Some("websocket") | Some("wss") => true,
        Some(other) => {
            return Err(ctx.invalid("azure.transport", format!("`{other}`: expected `mqtt` or `websocket`")))
        }
    };
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("azure.ca_file", ca)?;
    }
    let cs = ctx.secret(
        "azure.connection_string_file",
        raw.connection_string_file.as_deref(),
        "azure.connection_string_env",
        raw.connection_string_env.as_deref(),
        env,
    )?;
    let x509 = match raw.x509 {
        Some(c) => {
            let cert = required(ctx, "azure.x509.cert_file", c.cert_file, "the device certificate (PEM)")?;
            let key = required(ctx, "azure.x509.key_file", c.key_file, "the device private key (PEM)")?;
            ctx.must_exist("azure.x509.cert_file", &cert)?;
            ctx.must_exist("azure.x509.key_file", &key)?;
            Some((cert, key))
        }
        None => None,
    };
    let auth = match (cs, raw.dps) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "azure.dps",
                "a connection string and [azure.dps] are both configured: choose one",
            ))
        }
        (Some(cs), None) => {
            if let Err(e) = cs.expose().parse::<connector_azure::ConnectionString>() {
                let key = if raw.connection_string_file.is_some() {
                    "azure.connection_string_file"
                } else {
                    "azure.connection_string_env"
                };
                // The text came from a secret: an "unknown key" may be a pasted key's base64
                // (`KEY==` followed by anything), so it is not shown.
                let reason = match e {
                    connector_azure::ConnectionStringError::UnknownKey(_) => {
                        "an unknown key (not shown: it may be part of a secret)".to_owned()
                    }
                    e => e.to_string(),
                };
                return Err(ctx.invalid(key, format!("not a device connection string: {reason}")));
            }
            AzureAuth::ConnectionString(cs)
        }
        (None, Some(dps)) => {
            let id_scope =
                required(ctx, "azure.dps.id_scope", non_empty(ctx, "azure.dps.id_scope", dps.id_scope)?, "the DPS ID scope")?;
            let registration_id = required(
                ctx,
                "azure.dps.registration_id",
                non_empty(ctx, "azure.dps.registration_id", dps.registration_id)?,
                "the registration id",
            )?;
            let sym = ctx.secret(
                "azure.dps.symmetric_key_file",
                dps.symmetric_key_file.as_deref(),
                "azure.dps.symmetric_key_env",
                dps.symmetric_key_env.as_deref(),
                env,
            )?;
            let group = ctx.secret(
                "azure.dps.group_key_file",
                dps.group_key_file.as_deref(),
                "azure.dps.group_key_env",
                dps.group_key_env.as_deref(),
                env,
            )?;
            let want_x509 = dps.x509.unwrap_or(false);
            let attestation = match (sym, group, want_x509) {
                (Some(k), None, false) => DpsAttestation::SymmetricKey(k),
                (None, Some(k), false) => DpsAttestation::GroupKey(k),
                (None, None, true) => {
                    let (cert_file, key_file) = x509.clone().ok_or_else(|| {
                        ctx.invalid("azure.x509", "missing: azure.dps.x509 = true needs [azure.x509] cert_file and key_file")
                    })?;
                    DpsAttestation::X509 { cert_file, key_file }
                }
                (None, None, false) => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "no attestation: set symmetric_key_file/_env, group_key_file/_env, or x509 = true",
                    ))
                }
                _ => {
                    return Err(ctx.invalid(
                        "azure.dps",
                        "more than one attestation: set only one of the symmetric key, the group key and x509",
                    ))
                }
            };
            for (key, secret) in [
                ("azure.dps.symmetric_key_file", matches!(&attestation, DpsAttestation::SymmetricKey(_))),
                ("azure.dps.group_key_file", matches!(&attestation, DpsAttestation::GroupKey(_))),
            ] {
                if !secret {
                    continue;
                }
                let (DpsAttestation::SymmetricKey(k) | DpsAttestation::GroupKey(k)) = &attestation else { continue };
                if connector_azure::SasKey::from_base64(k.expose()).is_err() {
                    return Err(ctx.invalid(key, "not a base64 symmetric key"));
                }
            }
            let dps_settings = DpsSettings {
                id_scope,
                registration_id,
                endpoint: dps.endpoint.unwrap_or_else(|| connector_azure::dps::GLOBAL_ENDPOINT.to_owned()),
                port: dps.port,
                attestation,
                timeout: dps.timeout.map_or(Duration::from_secs(60), |d| d.0),
            };
            // Reject what the DPS client would (bad scope or registration id) now.
            let probe_key = connector_azure::SasKey::from_base64("AAAAAAAAAAAAAAAAAAAAAA==")
                .map_err(|e| ctx.invalid("azure.dps", e.to_string()))?;
            if let Err(e) = connector_azure::dps::DpsRegistration::new(
                dps_settings.id_scope.clone(),
                dps_settings.registration_id.clone(),
                connector_azure::dps::DpsAuth::SymmetricKey(probe_key),
                connector_azure::dps::DpsOptions::default(),
            ) {
                return Err(ctx.invalid("azure.dps.registration_id", e.to_string()));
            }
            AzureAuth::Dps(dps_settings)
        }
        (None, None) => match x509 {
            Some((cert_file, key_file)) => AzureAuth::X509 {
                host_name: required(ctx, "azure.host_name", non_empty(ctx, "azure.host_name", raw.host_name)?, "the hub host name for X.509")?,
                device_id: required(ctx, "azure.device_id", non_empty(ctx, "azure.device_id", raw.device_id)?, "the device id for X.509")?,
                cert_file,
                key_file,
            },
            None => {
                return Err(ctx.invalid(
                    "azure",
                    "no credentials: set connection_string_file or connection_string_env, [azure.dps], or [azure.x509] with host_name and device_id",
                ))
            }
        },
    };
    Ok(AzureSettings { auth, port: raw.port, ca_file: raw.ca_file, model_id: raw.model_id, websocket })
}

pub(super) fn aws(raw: RawAws, ctx: &Ctx) -> Result<AwsSettings, ConfigError> {
    let endpoint = required(
        ctx,
        "aws.endpoint",
        non_empty(ctx, "aws.endpoint", raw.endpoint)?,
        "the device data endpoint (xxxx-ats.iot.REGION.amazonaws.com)",
    )?;
    if let Some(ca) = &raw.ca_file {
        ctx.must_exist("aws.ca_file", ca)?;
    }
    let auth = match (raw.cert_file, raw.key_file, raw.fleet_provisioning) {
        (Some(_), Some(_), Some(_)) => {
            return Err(ctx.invalid(
                "aws.fleet_provisioning",
                "a device certificate and fleet provisioning are both configured: choose one",
            ))
        }
        (Some(cert_file), Some(key_file), None) => {
            ctx.must_exist("aws.cert_file", &cert_file)?;
            ctx.must_exist("aws.key_file", &key_file)?;
            AwsAuth::Certificate { cert_file, key_file }
        }
        (Some(_), None, _) => {
            return Err(ctx.invalid("aws.key_file", "missing: aws.cert_file needs its private key"))
        }
        (None, Some(_), _) => {
            return Err(ctx.invalid("aws.cert_file", "missing: aws.key_file needs its certificate"))
        }
        (None, None, Some(f)) => {
            let template_name = required(
                ctx,
                "aws.fleet_provisioning.template_name",
                non_empty(ctx, "aws.fleet_provisioning.template_name", f.template_name)?,
                "the provisioning template",
            )?;
            let claim_cert_file = required(
                ctx,
                "aws.fleet_provisioning.claim_cert_file",
                f.claim_cert_file,
                "the claim certificate",
            )?;
            let claim_key_file = required(
                ctx,
                "aws.fleet_provisioning.claim_key_file",
                f.claim_key_file,
                "the claim private key",
            )?;
            ctx.must_exist("aws.fleet_provisioning.claim_cert_file", &claim_cert_file)?;
            ctx.must_exist("aws.fleet_provisioning.claim_key_file", &claim_key_file)?;
            AwsAuth::FleetProvisioning {
                template_name,
                claim_cert_file,
                claim_key_file,
                parameters: f.parameters,
                timeout: f.timeout.map_or(Duration::from_secs(60), |d| d.0),
            }
        }
        (None, None, None) => {
            return Err(
                ctx.invalid("aws", "no credentials: set cert_file and key_file, or [aws.fleet_provisioning]")
            )
        }
    };
    if raw.thing_name.is_none() && raw.client_id.is_none() && matches!(auth, AwsAuth::Certificate { .. }) {
        return Err(ctx.invalid("aws.thing_name", "missing: the thing name (or aws.client_id)"));
    }
    Ok(AwsSettings {
        endpoint,
        port: raw.port,
        thing_name: non_empty(ctx, "aws.thing_name", raw.thing_name)?,
        client_id: non_empty(ctx, "aws.client_id", raw.client_id)?,
        ca_file: raw.ca_file,
        auth,
    })
}
