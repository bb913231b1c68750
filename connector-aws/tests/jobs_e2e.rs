//! AWS IoT Jobs through the real actor tree (the JobsActor over the AWS provider's jobs
//! codec) against the emulator's jobs service over mutual TLS: the handler registry runs
//! jobs to SUCCEEDED, FAILED (a panicking handler, an overrunning one) and REJECTED (an
//! operation nobody handles) while the tree stays up; the raw requests, their typed
//! rejections, progress reports and notifications.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_actors::jobs::{JobError, JobEvent, JobOutcome, JobRun, JobsOptions};
use connector_core::jobs::{
    DescribeRequest, JobErrorCode, JobStatus, JobUpdate, StartNextRequest, StatusDetails,
};
use connector_emulator::control::aws_api::{CreateJob, JobExecutionStatus};
use futures::StreamExt;
use serde_json::json;

async fn final_status(env: &AwsEnv, thing: &str, job: &str) -> (JobExecutionStatus, StatusDetails) {
    eventually(&format!("{job} to end"), || async {
        let e = env.ctl.aws_job_execution(thing, job, None).await.ok()?;
        let terminal = !matches!(e.status, JobExecutionStatus::Queued | JobExecutionStatus::InProgress);
        terminal.then_some((e.status, e.status_details))
    })
    .await
}

#[actix_rt::test]
async fn handlers_end_jobs_succeeded_failed_and_rejected_and_the_tree_survives() {
    let env = AwsEnv::start().await;
    let dev = env.device("pump-1").await;
    let jobs = dev.conn.jobs().expect("AWS has jobs");
    jobs.register("install", |run: JobRun| async move {
        let version = run.document["version"].as_str().unwrap_or("?").to_owned();
        run.progress(StatusDetails::from([("step".to_owned(), "downloading".to_owned())])).await.unwrap();
        JobOutcome::Succeeded(StatusDetails::from([("installed".to_owned(), version)]))
    })
    .unwrap();
    jobs.register("explode", |_run: JobRun| async move {
        if std::hint::black_box(true) {
            panic!("handler bug");
        }
        JobOutcome::succeeded()
    })
    .unwrap();

    for (id, op) in [("job-ok", "install"), ("job-panic", "explode"), ("job-unknown", "mystery")] {
        let doc = json!({"operation": op, "version": "2.1"});
        env.ctl.aws_create_job(&CreateJob::new(id, doc, vec!["pump-1".into()])).await.unwrap();
    }
    let (s, d) = final_status(&env, "pump-1", "job-ok").await;
    assert_eq!(s, JobExecutionStatus::Succeeded);
    assert_eq!(d.get("installed").map(String::as_str), Some("2.1"));
    let (s, d) = final_status(&env, "pump-1", "job-panic").await;
    assert_eq!(s, JobExecutionStatus::Failed);
    assert!(d["reason"].contains("panicked"), "{d:?}");
    let (s, d) = final_status(&env, "pump-1", "job-unknown").await;
    assert_eq!(s, JobExecutionStatus::Rejected);
    assert!(d["reason"].contains("mystery"), "{d:?}");

    // The panic hurt neither the connection nor the jobs channel.
    assert!(dev.conn.is_connected());
    assert_eq!(jobs.get_pending().await.unwrap(), Default::default());
    let text = metrics_text(&dev.conn);
    for status in ["SUCCEEDED", "FAILED", "REJECTED"] {
        assert!(text.contains(&format!("status=\"{status}\"")), "connector_jobs_total for {status}:\n{text}");
    }
    dev.conn.stop().await;
}

fn metrics_text(conn: &connector_actors::Connector) -> String {
    use prometheus::Encoder as _;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new().encode(&conn.registry().gather(), &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[actix_rt::test]
async fn an_overrunning_handler_fails_its_job_and_the_next_one_runs() {
    let env = AwsEnv::start().await;
    let dev = env.device("pump-2").await;
    let jobs = dev.conn.jobs().unwrap();
    jobs.set_options(JobsOptions {
        handler_timeout: Duration::from_millis(300),
        step_timeout_minutes: Some(5),
    });
    jobs.register("hang", |_run: JobRun| async move {
        futures::future::pending::<()>().await;
        JobOutcome::succeeded()
    })
    .unwrap();
    jobs.register("quick", |_run: JobRun| async move { JobOutcome::succeeded() }).unwrap();
    env.ctl
        .aws_create_job(&CreateJob::new("j-hang", json!({"operation": "hang"}), vec!["pump-2".into()]))
        .await
        .unwrap();
    env.ctl
        .aws_create_job(&CreateJob::new("j-quick", json!({"operation": "quick"}), vec!["pump-2".into()]))
        .await
        .unwrap();
    let (s, d) = final_status(&env, "pump-2", "j-hang").await;
    assert_eq!(s, JobExecutionStatus::Failed);
    assert!(d["reason"].contains("overran"), "{d:?}");
    assert_eq!(final_status(&env, "pump-2", "j-quick").await.0, JobExecutionStatus::Succeeded);
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn raw_requests_answers_and_typed_rejections() {
    let env = AwsEnv::start().await;
    let dev = env.device("pump-3").await;
    let jobs = dev.conn.jobs().unwrap();
    let mut events = jobs.events(16);
    // An answer means the channel is up (its subscriptions precede requests on the wire).
    assert_eq!(jobs.start_next(StartNextRequest::default()).await.unwrap(), None, "nothing pending yet");
    env.ctl
        .aws_create_job(&CreateJob::new("j1", json!({"operation": "x"}), vec!["pump-3".into()]))
        .await
        .unwrap();

    // notify-next tells the device about it.
    let next = loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap().unwrap() {
            JobEvent::NextChanged(Some(e)) => break e,
            _ => continue,
        }
    };
    assert_eq!((next.job_id.as_str(), next.status), ("j1", JobStatus::Queued));

    let pending = jobs.get_pending().await.unwrap();
    assert_eq!(pending.queued_jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), ["j1"]);
    let described = jobs.describe("$next", DescribeRequest::default()).await.unwrap().unwrap();
    assert_eq!(described.job_document, Some(json!({"operation": "x"})));

    let started = jobs.start_next(StartNextRequest::default()).await.unwrap().unwrap();
    assert_eq!((started.job_id.as_str(), started.status), ("j1", JobStatus::InProgress));

    // A stale expectedVersion is a VersionMismatch.
    let mut stale = JobUpdate::new(JobStatus::InProgress);
    stale.expected_version = Some(started.version_number + 5);
    match jobs.update("j1", stale).await {
        Err(JobError::Rejected { code: JobErrorCode::VersionMismatch, .. }) => {}
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    // Progress with details, at the right version.
    let mut progress = JobUpdate::new(JobStatus::InProgress);
    progress.expected_version = Some(started.version_number);
    progress.status_details = Some(StatusDetails::from([("pct".to_owned(), "50".to_owned())]));
    progress.include_job_execution_state = Some(true);
    let answer = jobs.update("j1", progress).await.unwrap();
    assert_eq!(answer.execution_state.map(|s| s.status), Some(JobStatus::InProgress));
    let seen = env.ctl.aws_job_execution("pump-3", "j1", None).await.unwrap();
    assert_eq!(seen.status_details.get("pct").map(String::as_str), Some("50"));

    jobs.update("j1", JobUpdate::new(JobStatus::Succeeded)).await.unwrap();
    // After the terminal state, a transition is refused by the service.
    match jobs.update("j1", JobUpdate::new(JobStatus::InProgress)).await {
        Err(JobError::Rejected { code: JobErrorCode::InvalidStateTransition, .. }) => {}
        other => panic!("expected InvalidStateTransition, got {other:?}"),
    }
    // An unknown job is ResourceNotFound; a malformed id never leaves the device.
    match jobs.describe("nope", DescribeRequest::default()).await {
        Err(JobError::Rejected { code: JobErrorCode::ResourceNotFound, .. }) => {}
        other => panic!("expected ResourceNotFound, got {other:?}"),
    }
    assert!(matches!(jobs.describe("a/b", DescribeRequest::default()).await, Err(JobError::Invalid(_))));
    assert!(matches!(
        jobs.update("j1", JobUpdate::new(JobStatus::Canceled)).await,
        Err(JobError::Invalid(_))
    ));
    dev.conn.stop().await;
}

#[actix_rt::test]
async fn a_job_queued_while_offline_runs_after_the_reconnect() {
    let env = AwsEnv::start().await;
    let dev = env.device("pump-4").await;
    let jobs = dev.conn.jobs().unwrap();
    jobs.register("reboot", |_run: JobRun| async move { JobOutcome::succeeded() }).unwrap();
    let refuse =
        connector_emulator::control::aws_api::AwsFaults { refuse_connect: Some(3), ..Default::default() };
    env.ctl.aws_faults(&dev.client_id, &refuse).await.unwrap();
    let mut conn_events = dev.conn.events(16);
    env.ctl.aws_drop(&dev.client_id).await.unwrap();
    wait_disconnected(&mut conn_events).await;
    env.ctl
        .aws_create_job(&CreateJob::new("j-off", json!({"operation": "reboot"}), vec!["pump-4".into()]))
        .await
        .unwrap();
    env.ctl.aws_faults(&dev.client_id, &Default::default()).await.unwrap();
    assert_eq!(final_status(&env, "pump-4", "j-off").await.0, JobExecutionStatus::Succeeded);
    dev.conn.stop().await;
}

/// An actor that installs whatever version the job names.
struct Installer;

impl actix::Actor for Installer {
    type Context = actix::Context<Self>;
}

impl actix::Handler<connector_actors::jobs::JobInvoked> for Installer {
    type Result = JobOutcome;
    fn handle(&mut self, m: connector_actors::jobs::JobInvoked, _: &mut Self::Context) -> JobOutcome {
        let version = m.0.document["version"].as_str().unwrap_or("?").to_owned();
        JobOutcome::Succeeded(StatusDetails::from([("installed".to_owned(), version)]))
    }
}

#[actix_rt::test]
async fn an_actor_runs_a_job_and_a_stopped_one_fails_it() {
    use actix::Actor as _;
    let env = AwsEnv::start().await;
    let dev = env.device("actor-jobs").await;
    let jobs = dev.conn.jobs().expect("AWS has jobs");
    jobs.register_recipient("install", Installer.start().recipient()).unwrap();
    // An empty operation could never run: refused, as an empty method name is.
    let refused = jobs.register("", |_run: JobRun| async move { JobOutcome::succeeded() });
    assert!(matches!(refused, Err(JobError::EmptyOperation)), "{refused:?}");
    let gone = {
        let sys = actix::Arbiter::new();
        let addr = Installer::start_in_arbiter(&sys.handle(), |_| Installer);
        sys.stop();
        sys.join().unwrap();
        addr
    };
    jobs.register_recipient("gone", gone.recipient()).unwrap();
    let doc = json!({"operation": "install", "version": "3.0"});
    env.ctl.aws_create_job(&CreateJob::new("actor-ok", doc, vec!["actor-jobs".into()])).await.unwrap();
    let (s, d) = final_status(&env, "actor-jobs", "actor-ok").await;
    assert_eq!((s, d.get("installed").map(String::as_str)), (JobExecutionStatus::Succeeded, Some("3.0")));
    let doc = json!({"operation": "gone"});
    env.ctl.aws_create_job(&CreateJob::new("actor-gone", doc, vec!["actor-jobs".into()])).await.unwrap();
    let (s, d) = final_status(&env, "actor-jobs", "actor-gone").await;
    assert_eq!(s, JobExecutionStatus::Failed);
    assert!(d["reason"].contains("unavailable"), "{d:?}");
    dev.conn.stop().await;
}
