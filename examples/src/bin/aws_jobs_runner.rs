//! An AWS IoT device that runs jobs: handlers registered by the job document's
//! `operation` run each execution the JobsActor starts, report progress, and end it
//! `SUCCEEDED`, `FAILED` or `REJECTED`. A handler that panics or overruns its timeout
//! fails its job, never the device.
//!
//! By default everything runs locally: the emulator starts in-process, a thing and its
//! certificate are created through its control API, and the example plays the cloud too —
//! it creates four jobs (an install, a failing self-test, a panicking handler and an
//! operation nobody handles), waits for their executions to end, prints each status and
//! its details, and exits 0.
//!
//! ```text
//! cargo run -p connector-examples --bin aws_jobs_runner
//! ```
//!
//! With `AWS_IOT_ENDPOINT`, `AWS_IOT_THING`, `AWS_IOT_CERT`, `AWS_IOT_KEY` (PEM files) and
//! optionally `AWS_IOT_CA` set, it connects to that endpoint instead and runs jobs until
//! Ctrl-C.

use std::time::Duration;

use anyhow::{bail, Context as _};
use connector_actors::jobs::{JobOutcome, JobRun, JobsOptions};
use connector_actors::Connector;
use connector_aws::AwsProvider;
use connector_core::jobs::StatusDetails;
use connector_emulator::control::aws_api::{CreateJob, JobExecutionStatus};
use connector_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

const THING: &str = "pump-01";

fn details(pairs: &[(&str, &str)]) -> StatusDetails {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Registers the device's job handlers.
fn handlers(conn: &Connector) -> anyhow::Result<()> {
    let jobs = conn.jobs().context("AWS provides jobs")?;
    jobs.set_options(JobsOptions {
        handler_timeout: Duration::from_secs(30),
        step_timeout_minutes: Some(10),
    });
    jobs.register("install", |run: JobRun| async move {
        let version = run.document["version"].as_str().unwrap_or("unknown").to_owned();
        println!("job {}: installing {version}", run.job_id);
        for step in ["download", "verify", "apply"] {
            if let Err(e) = run.progress(details(&[("step", step)])).await {
                return JobOutcome::failed(format!("progress report failed: {e}"));
            }
        }
        JobOutcome::Succeeded(details(&[("installed", &version)]))
    })?;
    jobs.register("self-test", |run: JobRun| async move {
        println!("job {}: self-test", run.job_id);
        JobOutcome::Failed(details(&[("sensor", "pressure out of range")]))
    })?;
    jobs.register("buggy", |run: JobRun| async move {
        println!("job {}: about to panic", run.job_id);
        if std::hint::black_box(true) {
            panic!("simulated bug in a job handler");
        }
        JobOutcome::succeeded()
    })?;
    Ok(())
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    connector_examples::init_tracing("error,connector_actors::jobs=info,ntex_server=off");

    if let Some(opts) = connector_examples::aws_options_from_env()? {
        let conn = Connector::builder(AwsProvider::new(opts)?).start();
        handlers(&conn)?;
        println!("running jobs until Ctrl-C");
        tokio::signal::ctrl_c().await?;
        conn.stop().await;
        return Ok(());
    }

    let emu = Emulator::start(EmulatorConfig::ephemeral())?;
    let ctl = emu.control();
    let opts = connector_examples::emulator_thing(&emu, THING).await?;
    let conn = Connector::builder(AwsProvider::new(opts)?).start();
    conn.wait_connected(Duration::from_secs(20)).await.context("connecting")?;
    handlers(&conn)?;
    println!("device {THING} connected to the emulator; creating jobs");

    let jobs = [
        ("install-2-1", json!({"operation": "install", "version": "2.1.0"}), JobExecutionStatus::Succeeded),
        ("self-test-1", json!({"operation": "self-test"}), JobExecutionStatus::Failed),
        ("buggy-1", json!({"operation": "buggy"}), JobExecutionStatus::Failed),
        ("format-disk-1", json!({"operation": "format-disk"}), JobExecutionStatus::Rejected),
    ];
    for (id, doc, _) in &jobs {
        ctl.aws_create_job(&CreateJob::new(*id, doc.clone(), vec![THING.into()])).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (id, _, want) in &jobs {
        let execution = loop {
            let e = ctl.aws_job_execution(THING, id, None).await?;
            if !matches!(e.status, JobExecutionStatus::Queued | JobExecutionStatus::InProgress) {
                break e;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("job {id} did not end: {:?}", e.status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!("job {id}: {:?} {:?}", execution.status, execution.status_details);
        if execution.status != *want {
            bail!("job {id} ended {:?}, expected {want:?}", execution.status);
        }
    }
    if !conn.is_connected() {
        bail!("the device lost its connection");
    }
    println!("all jobs ended as expected; the device is still connected");
    conn.stop().await;
    Ok(())
}
