//! The AWS IoT Jobs service over MQTT (paho with a client certificate) driven by the
//! control API as the back end: notifications at the right moments, the execution state
//! machine, documented rejections, timers on the service clock, answers to the requester
//! only.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use connector_emulator::control::aws_api::{
    AwsFaults, CreateJob, JobExecutionStatus, JobRetryConfig, JobState, JobTimeoutConfig, JobsSettings,
};
use serde_json::{json, Value};

const P: &str = "$aws/things/lamp/jobs";

/// The thing `lamp` connected with its certificate and subscribed to all its jobs topics.
async fn lamp(env: &Env, dir: &std::path::Path) -> Device {
    aws_thing_with_cert(env, "lamp", dir).await;
    let dev = env.aws_cert_connect("lamp", &dir.join("lamp.pem"), &dir.join("lamp.key")).await.unwrap();
    assert_eq!(dev.subscribe(&format!("{P}/#"), 1).await, 1);
    dev
}

fn job(id: &str, targets: &[&str]) -> CreateJob {
    CreateJob::new(
        id,
        json!({"operation": "install", "job": id}),
        targets.iter().map(|t| t.to_string()).collect(),
    )
}

async fn request(dev: &Device, rest: &str, body: Value) {
    dev.publish(&format!("{P}/{rest}"), body.to_string(), 1).await.unwrap();
}

#[tokio::test]
async fn job_from_creation_to_success_with_notifications_and_versions() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    // Another thing's connection watching lamp's jobs topics: it gets the notifications,
    // never the answers to lamp's requests.
    let (_, wc, wk) = aws_thing_with_cert(&env, "watcher", dir.path()).await;
    let watcher = env.aws_cert_connect("watcher", &wc, &wk).await.unwrap();
    assert_eq!(watcher.subscribe(&format!("{P}/#"), 1).await, 1);

    env.ctl.aws_create_job(&job("fw-1", &["lamp"])).await.unwrap();
    let n = dev.expect_json(&format!("{P}/notify")).await;
    assert_eq!(
        (n["jobs"]["QUEUED"][0]["jobId"].as_str(), n["jobs"]["QUEUED"][0]["versionNumber"].as_u64()),
        (Some("fw-1"), Some(1))
    );
    let n = dev.expect_json(&format!("{P}/notify-next")).await;
    assert_eq!(n["execution"]["status"], "QUEUED");
    assert_eq!(n["execution"]["jobDocument"], json!({"operation": "install", "job": "fw-1"}));

    request(&dev, "start-next", json!({"statusDetails": {"step": "download"}, "clientToken": "s1"})).await;
    let a = dev.expect_json(&format!("{P}/start-next/accepted")).await;
    let e = &a["execution"];
    assert_eq!(a["clientToken"], "s1");
    assert_eq!(
        (e["jobId"].as_str(), e["thingName"].as_str(), e["status"].as_str()),
        (Some("fw-1"), Some("lamp"), Some("IN_PROGRESS"))
    );
    assert_eq!((e["versionNumber"].as_u64(), e["executionNumber"].as_u64()), (Some(2), Some(1)));
    assert_eq!(e["statusDetails"], json!({"step": "download"}));

    request(
        &dev,
        "fw-1/update",
        json!({"status": "IN_PROGRESS", "statusDetails": {"progress": "50%"}, "expectedVersion": 2,
               "includeJobExecutionState": true, "clientToken": "u1"}),
    )
    .await;
    let a = dev.expect_json(&format!("{P}/fw-1/update/accepted")).await;
    assert_eq!(
        a["executionState"],
        json!({"status": "IN_PROGRESS", "statusDetails": {"progress": "50%"}, "versionNumber": 3})
    );
    assert_eq!(a["clientToken"], "u1");
    let x = env.ctl.aws_job_execution("lamp", "fw-1", None).await.unwrap();
    assert_eq!(
        (x.status, x.version_number, x.status_details.get("progress").map(String::as_str)),
        (JobExecutionStatus::InProgress, 3, Some("50%"))
    );

    // A stale expectedVersion: VersionMismatch with the current state.
    request(&dev, "fw-1/update", json!({"status": "SUCCEEDED", "expectedVersion": 2, "clientToken": "u2"}))
        .await;
    let r = dev.expect_json(&format!("{P}/fw-1/update/rejected")).await;
    assert_eq!((r["code"].as_str(), r["clientToken"].as_str()), (Some("VersionMismatch"), Some("u2")));
    assert_eq!(r["executionState"]["versionNumber"], 3);

    request(
        &dev,
        "fw-1/update",
        json!({"status": "SUCCEEDED", "expectedVersion": "3", "includeJobDocument": true}),
    )
    .await;
    let a = dev.expect_json(&format!("{P}/fw-1/update/accepted")).await;
    assert_eq!(a["jobDocument"]["job"], "fw-1");
    assert_eq!(dev.expect_json(&format!("{P}/notify")).await["jobs"], json!({}));
    assert!(dev.expect_json(&format!("{P}/notify-next")).await.get("execution").is_none());
    let x = env.ctl.aws_job_execution("lamp", "fw-1", None).await.unwrap();
    assert_eq!((x.status, x.version_number), (JobExecutionStatus::Succeeded, 4));
    assert_eq!(x.status_details.get("progress").map(String::as_str), Some("50%"));
    assert_eq!(env.ctl.aws_job("fw-1").await.unwrap().status, JobState::Completed);

    // A terminal execution cannot move again.
    request(&dev, "fw-1/update", json!({"status": "IN_PROGRESS"})).await;
    let r = dev.expect_json(&format!("{P}/fw-1/update/rejected")).await;
    assert_eq!(
        (r["code"].as_str(), r["executionState"]["status"].as_str()),
        (Some("InvalidStateTransition"), Some("SUCCEEDED"))
    );

    // The watcher saw the four notifications and none of the answers.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(watcher.recv_json("notification").await.0);
    }
    assert_eq!(
        seen,
        [
            format!("{P}/notify"),
            format!("{P}/notify-next"),
            format!("{P}/notify"),
            format!("{P}/notify-next")
        ]
    );
    assert!(watcher.nothing_within(Duration::from_millis(300)).await.is_none());
    dev.disconnect().await;
}

#[tokio::test]
async fn failed_rejected_describe_next_and_request_errors() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    env.ctl.aws_create_job(&job("j-a", &["lamp"])).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    env.ctl.aws_create_job(&job("j-b", &["lamp"])).await.unwrap();
    assert_eq!(dev.expect_json(&format!("{P}/notify")).await["jobs"]["QUEUED"].as_array().unwrap().len(), 2);

    request(&dev, "get", json!({"clientToken": "g"})).await;
    let a = dev.expect_json(&format!("{P}/get/accepted")).await;
    let queued: Vec<&str> =
        a["queuedJobs"].as_array().unwrap().iter().map(|j| j["jobId"].as_str().unwrap()).collect();
    assert_eq!((queued, a["inProgressJobs"].as_array().unwrap().len()), (vec!["j-a", "j-b"], 0));

    request(&dev, "$next/get", json!({})).await;
    let a = dev.expect_json(&format!("{P}/$next/get/accepted")).await;
    assert_eq!(
        (a["execution"]["jobId"].as_str(), a["execution"]["jobDocument"]["job"].as_str()),
        (Some("j-a"), Some("j-a"))
    );

    // j-b goes IN_PROGRESS first and so becomes next.
    request(&dev, "j-b/update", json!({"status": "IN_PROGRESS"})).await;
    dev.expect_json(&format!("{P}/j-b/update/accepted")).await;
    assert_eq!(dev.expect_json(&format!("{P}/notify-next")).await["execution"]["jobId"], "j-b");
    request(&dev, "$next/get", json!({"includeJobDocument": false})).await;
    let a = dev.expect_json(&format!("{P}/$next/get/accepted")).await;
    assert_eq!((a["execution"]["jobId"].as_str(), a["execution"].get("jobDocument")), (Some("j-b"), None));

    request(&dev, "j-b/update", json!({"status": "FAILED", "statusDetails": {"reason": "checksum"}})).await;
    dev.expect_json(&format!("{P}/j-b/update/accepted")).await;
    dev.expect_json(&format!("{P}/notify")).await;
    assert_eq!(dev.expect_json(&format!("{P}/notify-next")).await["execution"]["jobId"], "j-a");
    request(&dev, "j-a/update", json!({"status": "REJECTED", "statusDetails": {"reason": "battery low"}}))
        .await;
    dev.expect_json(&format!("{P}/j-a/update/accepted")).await;
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    let all = env.ctl.aws_job_executions("lamp").await.unwrap();
    let states: Vec<_> = all.iter().map(|x| (x.job_id.as_str(), x.status)).collect();
    assert_eq!(states, [("j-a", JobExecutionStatus::Rejected), ("j-b", JobExecutionStatus::Failed)]);
    assert_eq!(all[0].status_details.get("reason").map(String::as_str), Some("battery low"));

    // Documented rejections.
    request(&dev, "j-a/get", json!({"clientToken": "d"})).await;
    let r = dev.expect_json(&format!("{P}/j-a/get/rejected")).await;
    assert_eq!((r["code"].as_str(), r["clientToken"].as_str()), (Some("TerminalStateReached"), Some("d")));
    dev.publish(&format!("{P}/j-a/update"), "not json", 1).await.unwrap();
    assert_eq!(dev.expect_json(&format!("{P}/j-a/update/rejected")).await["code"], "InvalidJson");
    request(&dev, "nope/update", json!({"status": "SUCCEEDED"})).await;
    assert_eq!(dev.expect_json(&format!("{P}/nope/update/rejected")).await["code"], "ResourceNotFound");
    request(&dev, "j-a/update", json!({"status": "CANCELED"})).await;
    assert_eq!(dev.expect_json(&format!("{P}/j-a/update/rejected")).await["code"], "InvalidRequest");
    request(&dev, "something", json!({})).await;
    assert_eq!(dev.expect_json(&format!("{P}/something/rejected")).await["code"], "InvalidTopic");
    // Throttled once by a fault, then served.
    env.ctl
        .aws_faults("lamp", &AwsFaults { throttle_jobs: true, count: Some(1), ..Default::default() })
        .await
        .unwrap();
    request(&dev, "get", json!({"clientToken": "t"})).await;
    let r = dev.expect_json(&format!("{P}/get/rejected")).await;
    assert_eq!((r["code"].as_str(), r["clientToken"].as_str()), (Some("RequestThrottled"), Some("t")));
    request(&dev, "get", json!({})).await;
    dev.expect_json(&format!("{P}/get/accepted")).await;
    dev.disconnect().await;
}

#[tokio::test]
async fn step_timer_times_out_on_the_service_clock() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    env.ctl.aws_create_job(&job("slow", &["lamp"])).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    request(&dev, "start-next", json!({"stepTimeoutInMinutes": 1})).await;
    let a = dev.expect_json(&format!("{P}/start-next/accepted")).await;
    let left = a["execution"]["approximateSecondsBeforeTimedOut"].as_u64().unwrap();
    assert!((55..=60).contains(&left), "{left}");
    // A minute later on the service clock the execution is TIMED_OUT.
    let clock = env.ctl.aws_advance_clock(61).await.unwrap();
    assert_eq!(clock.offset_seconds, 61);
    assert_eq!(dev.expect_json(&format!("{P}/notify")).await["jobs"], json!({}));
    assert!(dev.expect_json(&format!("{P}/notify-next")).await.get("execution").is_none());
    let x = env.ctl.aws_job_execution("lamp", "slow", None).await.unwrap();
    assert_eq!((x.status, x.version_number), (JobExecutionStatus::TimedOut, 3));
    request(&dev, "slow/update", json!({"status": "SUCCEEDED"})).await;
    let r = dev.expect_json(&format!("{P}/slow/update/rejected")).await;
    assert_eq!(
        (r["code"].as_str(), r["executionState"]["status"].as_str()),
        (Some("InvalidStateTransition"), Some("TIMED_OUT"))
    );
    dev.disconnect().await;
}

/// The control API may push the service clock as far as it is asked: the clock saturates
/// at the end of time instead of overflowing, and the service keeps answering.
#[tokio::test]
async fn service_clock_saturates_at_the_end_of_time() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    env.ctl.aws_create_job(&job("late", &["lamp"])).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    let clock = env.ctl.aws_advance_clock(u64::MAX).await.unwrap();
    assert_eq!((clock.offset_seconds, clock.now), (u64::MAX, u64::MAX));
    let clock = env.ctl.aws_advance_clock(1).await.unwrap();
    assert_eq!((clock.offset_seconds, clock.now), (u64::MAX, u64::MAX));
    // Timers set at the end of time saturate too.
    request(&dev, "start-next", json!({"stepTimeoutInMinutes": 10})).await;
    let a = dev.expect_json(&format!("{P}/start-next/accepted")).await;
    assert_eq!(
        (a["execution"]["jobId"].as_str(), a["execution"]["approximateSecondsBeforeTimedOut"].as_u64()),
        (Some("late"), Some(0))
    );
    dev.disconnect().await;
}

#[tokio::test]
async fn job_timeout_retries_and_the_periodic_tick() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    let mut spec = job("retry", &["lamp"]);
    spec.timeout_config = Some(JobTimeoutConfig { in_progress_timeout_in_minutes: 1 });
    spec.retry_config = Some(JobRetryConfig { number_of_retries: 1 });
    env.ctl.aws_create_job(&spec).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    request(&dev, "start-next", json!({})).await;
    dev.expect_json(&format!("{P}/start-next/accepted")).await;
    // Two seconds short of the job timer: the one-second tick times it out once real time
    // catches up, and the retry (execution 2) is queued.
    env.ctl.aws_advance_clock(58).await.unwrap();
    let (t, n) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = dev.rx.recv().await.unwrap().expect("connected");
            if m.topic().ends_with("/notify-next") {
                return (m.topic().to_string(), serde_json::from_slice::<Value>(m.payload()).unwrap());
            }
        }
    })
    .await
    .expect("notify-next after the timeout");
    assert_eq!(t, format!("{P}/notify-next"));
    assert_eq!(
        (n["execution"]["executionNumber"].as_u64(), n["execution"]["status"].as_str()),
        (Some(2), Some("QUEUED"))
    );
    let first = env.ctl.aws_job_execution("lamp", "retry", Some(1)).await.unwrap();
    assert_eq!(first.status, JobExecutionStatus::TimedOut);
    // Cancel from the back end: the queued retry is CANCELED and the job too.
    let info = env.ctl.aws_cancel_job("retry", false).await.unwrap();
    assert_eq!(info.status, JobState::Canceled);
    let second = env.ctl.aws_job_execution("lamp", "retry", None).await.unwrap();
    assert_eq!((second.execution_number, second.status), (2, JobExecutionStatus::Canceled));
    // Unknown targets are refused.
    let err = env.ctl.aws_create_job(&job("orphan", &["nobody"])).await.err().unwrap();
    assert_eq!(err.status(), Some(404), "{err}");
    dev.disconnect().await;
}

#[tokio::test]
async fn notify_on_start_is_a_setting() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    let on = JobsSettings { notify_on_start: true };
    assert_eq!(env.ctl.aws_jobs_settings(&on).await.unwrap(), on);
    env.ctl.aws_create_job(&job("n-1", &["lamp"])).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    request(&dev, "start-next", json!({})).await;
    dev.expect_json(&format!("{P}/start-next/accepted")).await;
    let n = dev.expect_json(&format!("{P}/notify")).await;
    assert_eq!(n["jobs"]["IN_PROGRESS"][0]["jobId"], "n-1");
    assert!(n["jobs"].get("QUEUED").is_none());
    dev.disconnect().await;
}

#[tokio::test]
async fn back_end_cancels_and_removes_executions() {
    let env = Env::start();
    let dir = tempfile::tempdir().unwrap();
    let dev = lamp(&env, dir.path()).await;
    env.ctl.aws_create_job(&job("c-1", &["lamp"])).await.unwrap();
    env.ctl.aws_create_job(&job("c-2", &["lamp"])).await.unwrap();
    dev.expect_json(&format!("{P}/notify")).await;
    dev.expect_json(&format!("{P}/notify-next")).await;
    dev.expect_json(&format!("{P}/notify")).await;
    request(&dev, "start-next", json!({})).await;
    dev.expect_json(&format!("{P}/start-next/accepted")).await;
    // A running execution is cancelled only with force.
    let err = env.ctl.aws_cancel_job_execution("lamp", "c-1", false).await.err().unwrap();
    assert_eq!(err.status(), Some(409), "{err}");
    let x = env.ctl.aws_cancel_job_execution("lamp", "c-1", true).await.unwrap();
    assert_eq!((x.status, x.version_number), (JobExecutionStatus::Canceled, 3));
    assert_eq!(dev.expect_json(&format!("{P}/notify")).await["jobs"]["QUEUED"][0]["jobId"], "c-2");
    assert_eq!(dev.expect_json(&format!("{P}/notify-next")).await["execution"]["jobId"], "c-2");
    // The device's next update of the cancelled execution is refused.
    request(&dev, "c-1/update", json!({"status": "SUCCEEDED"})).await;
    let r = dev.expect_json(&format!("{P}/c-1/update/rejected")).await;
    assert_eq!(
        (r["code"].as_str(), r["executionState"]["status"].as_str()),
        (Some("InvalidStateTransition"), Some("CANCELED"))
    );
    // Removing the other empties the queue.
    let x = env.ctl.aws_remove_job_execution("lamp", "c-2").await.unwrap();
    assert_eq!(x.status, JobExecutionStatus::Removed);
    assert_eq!(dev.expect_json(&format!("{P}/notify")).await["jobs"], json!({}));
    assert!(dev.expect_json(&format!("{P}/notify-next")).await.get("execution").is_none());
    let jobs = env.ctl.aws_jobs().await.unwrap();
    let states: Vec<_> = jobs.iter().map(|j| (j.job_id.as_str(), j.status)).collect();
    assert_eq!(states, [("c-1", JobState::Completed), ("c-2", JobState::Completed)]);
    assert_eq!(env.ctl.aws_job_executions("nobody").await.err().unwrap().status(), Some(404));
    assert_eq!(env.ctl.aws_job_execution("lamp", "c-9", None).await.err().unwrap().status(), Some(404));
    dev.disconnect().await;
}
