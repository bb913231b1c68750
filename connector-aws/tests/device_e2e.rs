//! The typed AWS device against the emulator over mutual TLS: JSON telemetry, classic and
//! named shadows with typed sections, typed deltas, a job.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{eventually, fast_backoff, options, thing_with_cert, AwsEnv, WAIT};
use connector_actors::{JobOutcome, JobRun};
use connector_aws::device::{AwsDevice, DeviceError};
use connector_aws::{AwsAuth, AwsProvider};
use connector_emulator::control::aws_api::{CreateJob, JobExecutionStatus};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct Config {
    interval: u64,
}

/// A connected typed device and its MQTT client id.
async fn typed_device(env: &AwsEnv, thing: &str) -> (AwsDevice, String) {
    let creds = thing_with_cert(&env.emu, thing).await;
    let provider = AwsProvider::new(options(&env.emu, thing, AwsAuth::Certificate(creds))).unwrap();
    let client_id = provider.client_id().to_owned();
    let dev = AwsDevice::start_with(provider, |b| {
        b.backoff(fast_backoff()).operation_timeout(Duration::from_secs(5))
    });
    dev.wait_connected(WAIT).await.unwrap();
    (dev, client_id)
}

#[actix_rt::test]
async fn the_typed_device_speaks_telemetry_shadows_and_jobs() {
    let env = AwsEnv::start().await;
    let (dev, client_id) = typed_device(&env, "typed-thing").await;

    dev.send_telemetry(&json!({"t": 1})).await.unwrap();
    let got = env.ctl.aws_telemetry(Some(&client_id), None).await.unwrap();
    assert_eq!(got.iter().map(|t| t.payload.as_deref()).collect::<Vec<_>>(), [Some(r#"{"t":1}"#)]);

    // Classic and named side by side, typed.
    let classic = dev.shadow(None);
    let config = dev.shadow(Some("config"));
    classic.report(&json!({"power": "on"})).await.unwrap();
    let v = config.report(&Config { interval: 5 }).await.unwrap();
    let c = config.get::<Config, Config>().await.unwrap();
    assert_eq!((c.desired, c.reported, c.version), (None, Some(Config { interval: 5 }), v));
    let p = classic.get::<serde_json::Value, serde_json::Value>().await.unwrap();
    assert_eq!(p.reported, Some(json!({"power": "on"})));

    // A cloud change arrives as a typed delta of that document only.
    let mut deltas = config.deltas::<Config>(8).await.unwrap();
    env.ctl.aws_update_desired("typed-thing", Some("config"), json!({"interval": 60})).await.unwrap();
    let d = tokio::time::timeout(WAIT, deltas.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((d.body, d.catch_up), (Config { interval: 60 }, false));
    // Updating at a stale version is refused; at the current one it is accepted.
    let current = config.get::<Config, Config>().await.unwrap().version.unwrap();
    let stale = config.update(Some(&Config { interval: 1 }), None::<&Config>, Some(current - 1)).await;
    assert!(matches!(stale, Err(DeviceError::State(_))), "{stale:?}");
    config.update(None::<&Config>, Some(&Config { interval: 60 }), Some(current)).await.unwrap();
    config.delete().await.unwrap();

    dev.jobs().register("report", |_run: JobRun| async move { JobOutcome::succeeded() }).unwrap();
    env.ctl
        .aws_create_job(&CreateJob::new(
            "typed-job",
            json!({"operation": "report"}),
            vec!["typed-thing".into()],
        ))
        .await
        .unwrap();
    let status = eventually("the job to succeed", || async {
        let e = env.ctl.aws_job_execution("typed-thing", "typed-job", None).await.ok()?;
        (!matches!(e.status, JobExecutionStatus::Queued | JobExecutionStatus::InProgress)).then_some(e.status)
    })
    .await;
    assert_eq!(status, JobExecutionStatus::Succeeded);
    dev.stop().await;
}

#[actix_rt::test]
async fn a_document_that_does_not_fit_the_type_is_a_typed_error() {
    let env = AwsEnv::start().await;
    let (dev, _) = typed_device(&env, "typed-mismatch").await;
    dev.shadow(None).report(&json!({"interval": "soon"})).await.unwrap();
    let e = dev.shadow(None).get::<Config, Config>().await.unwrap_err();
    assert!(matches!(e, DeviceError::Json(_)), "{e:?}");
    // A delta that does not fit is an item of the stream, not skipped unseen.
    let mut deltas = dev.shadow(None).deltas::<Config>(8).await.unwrap();
    env.ctl.aws_update_desired("typed-mismatch", None, json!({"interval": "later"})).await.unwrap();
    env.ctl.aws_update_desired("typed-mismatch", None, json!({"interval": 7})).await.unwrap();
    let first = tokio::time::timeout(WAIT, deltas.next()).await.unwrap().unwrap();
    assert!(matches!(first, Err(DeviceError::Json(_))), "{first:?}");
    let second = tokio::time::timeout(WAIT, deltas.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(second.body, Config { interval: 7 });
    dev.stop().await;
}
