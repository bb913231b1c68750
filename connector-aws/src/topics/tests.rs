use super::*;

fn thing() -> String {
    "lamp".into()
}

#[test]
fn every_topic_round_trips() {
    use AwsTopic::*;
    let named = || Some("cfg".to_string());
    let table = [
        ("$aws/things/lamp/shadow/get", ShadowRequest { thing: thing(), shadow: None, op: ShadowOp::Get }),
        (
            "$aws/things/lamp/shadow/update",
            ShadowRequest { thing: thing(), shadow: None, op: ShadowOp::Update },
        ),
        (
            "$aws/things/lamp/shadow/name/cfg/delete",
            ShadowRequest { thing: thing(), shadow: named(), op: ShadowOp::Delete },
        ),
        (
            "$aws/things/lamp/shadow/get/accepted",
            ShadowReply { thing: thing(), shadow: None, op: ShadowOp::Get, reply: Reply::Accepted },
        ),
        (
            "$aws/things/lamp/shadow/name/cfg/update/rejected",
            ShadowReply { thing: thing(), shadow: named(), op: ShadowOp::Update, reply: Reply::Rejected },
        ),
        (
            "$aws/things/lamp/shadow/delete/accepted",
            ShadowReply { thing: thing(), shadow: None, op: ShadowOp::Delete, reply: Reply::Accepted },
        ),
        ("$aws/things/lamp/shadow/update/delta", ShadowDelta { thing: thing(), shadow: None }),
        ("$aws/things/lamp/shadow/name/cfg/update/delta", ShadowDelta { thing: thing(), shadow: named() }),
        ("$aws/things/lamp/shadow/update/documents", ShadowDocuments { thing: thing(), shadow: None }),
        (
            "$aws/things/lamp/shadow/name/$x/update/+",
            ShadowFilter { thing: thing(), shadow: Some("$x".into()), op: ShadowOp::Update },
        ),
        // A shadow named like an operation is still a named shadow.
        (
            "$aws/things/lamp/shadow/name/get/get",
            ShadowRequest { thing: thing(), shadow: Some("get".into()), op: ShadowOp::Get },
        ),
        ("$aws/things/lamp/jobs/get", JobsRequest { thing: thing(), api: JobsApi::GetPending }),
        ("$aws/things/lamp/jobs/start-next", JobsRequest { thing: thing(), api: JobsApi::StartNext }),
        (
            "$aws/things/lamp/jobs/job-1/get",
            JobsRequest { thing: thing(), api: JobsApi::Describe { job_id: "job-1".into() } },
        ),
        (
            "$aws/things/lamp/jobs/$next/get",
            JobsRequest { thing: thing(), api: JobsApi::Describe { job_id: "$next".into() } },
        ),
        (
            "$aws/things/lamp/jobs/get/get",
            JobsRequest { thing: thing(), api: JobsApi::Describe { job_id: "get".into() } },
        ),
        (
            "$aws/things/lamp/jobs/j_2/update",
            JobsRequest { thing: thing(), api: JobsApi::Update { job_id: "j_2".into() } },
        ),
        (
            "$aws/things/lamp/jobs/get/accepted",
            JobsReply { thing: thing(), api: JobsApi::GetPending, reply: Reply::Accepted },
        ),
        (
            "$aws/things/lamp/jobs/start-next/rejected",
            JobsReply { thing: thing(), api: JobsApi::StartNext, reply: Reply::Rejected },
        ),
        (
            "$aws/things/lamp/jobs/j1/update/accepted",
            JobsReply {
                thing: thing(),
                api: JobsApi::Update { job_id: "j1".into() },
                reply: Reply::Accepted,
            },
        ),
        (
            "$aws/things/lamp/jobs/$next/get/rejected",
            JobsReply {
                thing: thing(),
                api: JobsApi::Describe { job_id: "$next".into() },
                reply: Reply::Rejected,
            },
        ),
        ("$aws/things/lamp/jobs/notify", JobsNotify { thing: thing() }),
        ("$aws/things/lamp/jobs/notify-next", JobsNotifyNext { thing: thing() }),
        (
            "$aws/things/lamp/jobs/+/accepted",
            JobsReplyFilter { thing: thing(), per_job: false, reply: Reply::Accepted },
        ),
        (
            "$aws/things/lamp/jobs/+/+/rejected",
            JobsReplyFilter { thing: thing(), per_job: true, reply: Reply::Rejected },
        ),
    ];
    for (text, topic) in table {
        assert_eq!(AwsTopic::parse(text).as_ref(), Ok(&topic), "{text}");
        assert_eq!(topic.assemble().as_deref(), Ok(text), "{topic:?}");
    }
}

#[test]
fn malformed_topics_are_typed_errors() {
    let unknown_shadow = TopicParseError::UnknownOperation { service: "shadow" };
    let unknown_jobs = TopicParseError::UnknownOperation { service: "jobs" };
    let table: &[(&str, TopicParseError)] = &[
        ("sensors/lamp", TopicParseError::Unknown),
        ("$aws/things/lamp/defender/metrics/json", TopicParseError::Unknown),
        ("$aws/certificates/create/json", TopicParseError::Unknown),
        ("$aws/things/lamp/shadow", unknown_shadow.clone()),
        ("$aws/things/lamp/shadow/patch", unknown_shadow.clone()),
        ("$aws/things/lamp/shadow/get/maybe", unknown_shadow.clone()),
        ("$aws/things/lamp/shadow/get/accepted/x", unknown_shadow.clone()),
        (
            "$aws/things/lamp/shadow/get/delta",
            TopicParseError::Invalid("only update has delta and documents"),
        ),
        ("$aws/things/lamp/jobs", unknown_jobs.clone()),
        ("$aws/things/lamp/jobs/notify/x/y/z", unknown_jobs.clone()),
        ("$aws/things/lamp/jobs/j1/cancel", unknown_jobs.clone()),
        ("$aws/things/lamp/jobs/j1/get/maybe", unknown_jobs),
    ];
    for (text, want) in table {
        assert_eq!(AwsTopic::parse(text).as_ref(), Err(want), "{text}");
    }
    for bad in [
        "$aws/things//shadow/get",
        "$aws/things/la mp/shadow/get",
        "$aws/things/lamp/shadow/name//get",
        "$aws/things/lamp/shadow/name/a+b/get",
        "$aws/things/lamp/jobs/$next/update",
        "$aws/things/lamp/jobs/bad.id/get",
    ] {
        assert!(matches!(AwsTopic::parse(bad), Err(TopicParseError::InvalidName { .. })), "{bad}");
    }
    let long = AwsTopic::ShadowRequest { thing: "x".repeat(129), shadow: None, op: ShadowOp::Get };
    assert!(matches!(long.assemble(), Err(TopicParseError::InvalidName { what: "thing name", .. })));
    let next = AwsTopic::JobsRequest { thing: thing(), api: JobsApi::Update { job_id: "$next".into() } };
    assert!(next.assemble().is_err());
}

#[test]
fn directions() {
    assert_eq!(AwsTopic::parse("$aws/things/t/jobs/get").unwrap().direction(), Direction::DeviceToService);
    assert_eq!(AwsTopic::parse("$aws/things/t/jobs/notify").unwrap().direction(), Direction::ServiceToDevice);
    assert_eq!(AwsTopic::parse("$aws/things/t/shadow/get/+").unwrap().direction(), Direction::Filter);
}
