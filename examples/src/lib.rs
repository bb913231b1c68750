//! Runnable examples of the cloud connector (the binaries in `src/bin/` and the
//! `[[example]]`s), and what the AWS examples share: the device options from the
//! environment or from a thing created on the in-process emulator. The README's code
//! blocks are compiled as doc tests of this library, so the front page stays true to the
//! API.

use anyhow::Context as _;
use connector_aws::{AwsAuth, AwsOptions, X509Credentials};
use connector_core::PemSource;
use connector_emulator::control::aws_api::CreateCertificate;
use connector_emulator::EmulatorHandle;

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Installs a log subscriber: `RUST_LOG` if set, else `default`.
pub fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()),
        )
        .init();
}

/// Options for a real AWS IoT endpoint when `AWS_IOT_ENDPOINT` is set: `AWS_IOT_THING`,
/// `AWS_IOT_CERT`, `AWS_IOT_KEY` (PEM files) are then required and `AWS_IOT_CA` optional.
pub fn aws_options_from_env() -> anyhow::Result<Option<AwsOptions>> {
    let Ok(endpoint) = std::env::var("AWS_IOT_ENDPOINT") else { return Ok(None) };
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is required with AWS_IOT_ENDPOINT"));
    let creds = X509Credentials::from_files(var("AWS_IOT_CERT")?, var("AWS_IOT_KEY")?);
    let mut opts = AwsOptions::new(endpoint, var("AWS_IOT_THING")?, AwsAuth::Certificate(creds));
    if let Ok(ca) = std::env::var("AWS_IOT_CA") {
        opts = opts.trust_roots(PemSource::File(ca.into()));
    }
    Ok(Some(opts))
}

/// Creates `thing` with a certificate from the emulator's CA (through its control API)
/// and returns the options to connect as it over mutual TLS.
pub async fn emulator_thing(emu: &EmulatorHandle, thing: &str) -> anyhow::Result<AwsOptions> {
    let ctl = emu.control();
    ctl.aws_create_thing(thing).await?;
    let cert = ctl
        .aws_create_certificate(&CreateCertificate { thing_name: Some(thing.into()), ..Default::default() })
        .await?;
    let key = cert.private_key_pem.context("the emulator issues the key")?;
    let creds = X509Credentials::from_pem(cert.certificate_pem, key);
    Ok(AwsOptions::new(emu.aws_endpoint(), thing, AwsAuth::Certificate(creds))
        .port(emu.aws_mqtt_port().context("the emulator's AWS endpoint is enabled")?)
        .trust_roots(PemSource::File(emu.ca_path().to_owned())))
}
