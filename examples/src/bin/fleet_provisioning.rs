//! Fleet provisioning by claim: a device connects to AWS IoT Core with a shared claim
//! certificate, gets its own certificate and a thing through a provisioning template,
//! stores that identity, connects as the thing and sends a few telemetry messages. Run it
//! twice with the same identity directory and the second run reuses the stored identity
//! without provisioning again.
//!
//! By default everything runs locally: the emulator starts in-process, a claim certificate
//! and a provisioning template are created through its control API, and the messages are
//! read back from it at the end.
//!
//! ```text
//! cargo run -p connector-examples --bin fleet_provisioning
//! ```
//!
//! With `AWS_IOT_ENDPOINT` set it provisions against a real AWS IoT endpoint instead:
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_IOT_ENDPOINT` | the `…-ats.iot.{region}.amazonaws.com` data endpoint |
//! | `FLEET_CLAIM_CERT`, `FLEET_CLAIM_KEY` | the claim certificate and key (PEM files) |
//! | `FLEET_TEMPLATE` | the provisioning template's name |
//! | `FLEET_PARAMETERS` | template parameters, `Name=value,Name=value` (optional) |
//! | `FLEET_CLIENT_ID` | the claim connection's client id (default `fleet-claim-{pid}`) |
//! | `FLEET_CSR_CN` | use CreateCertificateFromCsr with this subject CN (the key stays here) |
//! | `AWS_IOT_ROOT_CA` | trust roots (PEM file), e.g. AmazonRootCA1.pem; system roots otherwise |
//! | `FLEET_IDENTITY_DIR` | where the identity is kept (default `./fleet-identity`) |
//!
//! The private key is written with mode 0600 and never printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_aws::fleet::client::{
    provision_then_connect, CertificateRequest, FleetRequest, Origin, ProvisioningOptions,
};
use connector_aws::fleet::{IdentityStore, KeyAlgorithm, TemplateName};
use connector_aws::{AwsAuth, AwsOptions, X509Credentials};
use connector_core::{PemSource, Publish, QoS};
use connector_emulator::control::aws_api::{CreateCertificate, ProvisioningTemplate};
use connector_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::json;

const MESSAGES: usize = 3;
const LOCAL_TEMPLATE: &str = "ExampleFleet";

/// The claim options and request for a real endpoint, from the environment; `None` when
/// `AWS_IOT_ENDPOINT` is not set.
fn from_env() -> anyhow::Result<Option<(AwsOptions, FleetRequest, IdentityStore)>> {
    let Ok(endpoint) = std::env::var("AWS_IOT_ENDPOINT") else { return Ok(None) };
    let var =
        |name: &str| std::env::var(name).with_context(|| format!("AWS_IOT_ENDPOINT is set: set {name} too"));
    let cert = X509Credentials::from_files(var("FLEET_CLAIM_CERT")?, var("FLEET_CLAIM_KEY")?);
    let client_id =
        std::env::var("FLEET_CLIENT_ID").unwrap_or_else(|_| format!("fleet-claim-{}", std::process::id()));
    let mut claim = AwsOptions::new(endpoint, client_id, AwsAuth::Certificate(cert));
    if let Ok(ca) = std::env::var("AWS_IOT_ROOT_CA") {
        claim = claim.trust_roots(PemSource::File(ca.into()));
    }
    let mut request = FleetRequest::new(TemplateName::new(var("FLEET_TEMPLATE")?)?);
    for pair in std::env::var("FLEET_PARAMETERS").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("FLEET_PARAMETERS: `{pair}` is not Name=value")
        };
        request = request.parameter(k.trim(), v.trim());
    }
    if let Ok(cn) = std::env::var("FLEET_CSR_CN") {
        request = request.from_csr(KeyAlgorithm::EcP256, cn);
    }
    let dir = std::env::var("FLEET_IDENTITY_DIR").unwrap_or_else(|_| "fleet-identity".into());
    Ok(Some((claim, request, IdentityStore::new(PathBuf::from(dir)))))
}

/// Starts the emulator, registers a claim certificate and a template naming things
/// `sensor-{SerialNumber}`, and keeps the identity in a temporary directory.
async fn local(
) -> anyhow::Result<(EmulatorHandle, AwsOptions, FleetRequest, IdentityStore, tempfile::TempDir)> {
    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let port = emu.aws_mqtt_port().context("the emulator's AWS MQTT port is disabled")?;
    println!("emulator: AWS IoT MQTT/TLS on 127.0.0.1:{port}, control API at {}", emu.control_url());
    let ctl = emu.control();
    let template = ProvisioningTemplate::new(json!({
        "Parameters": {"SerialNumber": {"Type": "String"}},
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "Properties": {"ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}
        },
        "DeviceConfiguration": {"ReportInterval": "30"}
    }));
    ctl.aws_put_provisioning_template(LOCAL_TEMPLATE, &template).await?;
    let claim = ctl
        .aws_create_certificate(&CreateCertificate {
            common_name: Some("fleet-claim".into()),
            ..Default::default()
        })
        .await?;
    println!("claim certificate {} and template {LOCAL_TEMPLATE} created", &claim.certificate_id[..12]);
    let key = claim.private_key_pem.clone().context("the emulator returned no claim key")?;
    let cert = X509Credentials::from_pem(claim.certificate_pem.clone(), key);
    let options = AwsOptions::new(emu.aws_endpoint(), "fleet-claim-1", AwsAuth::Certificate(cert))
        .port(port)
        .trust_roots(PemSource::File(emu.ca_path().to_owned()));
    let request = FleetRequest::new(TemplateName::new(LOCAL_TEMPLATE)?).parameter("SerialNumber", "0042");
    let dir = tempfile::tempdir()?;
    let store = IdentityStore::new(dir.path().join("identity"));
    Ok((emu, options, request, store, dir))
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    // ntex's worker logs "Server is gone" at error level when the in-process emulator
    // shuts down at the end: expected here, so not shown by default.
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,ntex_server::wrk=off".into()))
        .init();
    let (emu, claim, request, store, _tmp) = match from_env()? {
        Some((claim, request, store)) => {
            println!("using the real AWS IoT endpoint {}", claim.endpoint);
            (None, claim, request, store, None)
        }
        None => {
            let (emu, claim, request, store, tmp) = local().await?;
            (Some(emu), claim, request, store, Some(tmp))
        }
    };

    println!(
        "provisioning through template {} ({}) into {} ...",
        request.template,
        if matches!(request.certificate, CertificateRequest::FromCsr { .. }) {
            "CreateCertificateFromCsr"
        } else {
            "CreateKeysAndCertificate"
        },
        store.dir().display()
    );
    let opts = ProvisioningOptions::default();
    let done = provision_then_connect(&claim, &request, &store, &opts).await?;
    let id = &done.identity;
    match done.origin {
        Origin::Provisioned => {
            println!("provisioned: thing {} certificate {}", id.thing_name, id.certificate_id)
        }
        Origin::Stored => println!("reusing the stored identity: thing {}", id.thing_name),
        _ => {}
    }
    println!("device configuration: {:?}", id.device_configuration);
    done.connector.wait_connected(Duration::from_secs(30)).await.context("connecting as the new thing")?;
    println!("connected as {}", id.thing_name);

    let publisher = done.connector.publisher();
    for i in 0..MESSAGES {
        let body = format!("{{\"seq\":{i},\"temperature\":{:.1}}}", 21.0 + i as f64 * 0.5);
        publisher.publish(Publish::telemetry(body.clone()).qos(QoS::AtLeastOnce)).await?;
        println!("sent {body}");
    }
    done.connector.stop().await;
    println!("disconnected");

    if let Some(emu) = emu {
        // A second run with the same directory reuses the identity: no claim connection.
        let again = provision_then_connect(&claim, &request, &store, &opts).await?;
        println!(
            "second call: {} (thing {})",
            if again.origin == Origin::Stored { "stored identity reused" } else { "provisioned again" },
            again.identity.thing_name
        );
        again.connector.stop().await;
        let got = emu.control().aws_telemetry(Some(&id.thing_name), None).await?;
        println!("the emulator received {} message(s) from {}", got.len(), id.thing_name);
        let things = emu.control().aws_things().await?;
        emu.shutdown();
        if got.len() != MESSAGES {
            bail!("expected {MESSAGES} messages, the emulator has {}", got.len());
        }
        if again.origin != Origin::Stored || things.len() != 1 {
            bail!("the second call should reuse the identity ({} things registered)", things.len());
        }
    }
    Ok(())
}
