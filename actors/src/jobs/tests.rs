use super::*;

#[test]
fn outcomes_map_to_terminal_statuses_with_valid_details() {
    assert_eq!(JobOutcome::succeeded().status(), JobStatus::Succeeded);
    assert_eq!(JobOutcome::failed("x").status(), JobStatus::Failed);
    assert_eq!(JobOutcome::rejected("x").status(), JobStatus::Rejected);
    for reason in ["", "line\nbreak", &"y".repeat(5000)] {
        let d = JobOutcome::failed(reason).into_details();
        assert!(jobs::validate_status_details(&d).is_ok(), "{reason:?} → {d:?}");
    }
}

#[test]
fn invalid_requests_are_refused_before_sending() {
    let bad = [
        JobRequest::Describe("no/slash".into(), DescribeRequest::default()),
        JobRequest::Update("$next".into(), JobUpdate::new(JobStatus::Succeeded)),
        JobRequest::Update("ok".into(), JobUpdate::new(JobStatus::Queued)),
        JobRequest::StartNext(StartNextRequest { status_details: None, step_timeout_in_minutes: Some(0) }),
    ];
    for r in bad {
        assert!(matches!(r.validate(), Err(JobError::Invalid(_))), "{r:?}");
    }
    assert!(JobRequest::Describe("$next".into(), DescribeRequest::default()).validate().is_ok());
    assert!(JobRequest::GetPending.validate().is_ok());
}
