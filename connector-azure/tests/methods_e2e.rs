//! Direct methods through the real actor tree against the emulator over TLS: handlers by
//! name, the default answer, panics, deadlines, stream responders, two devices, malformed
//! payloads and responses, and a restart of the dispatcher.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_actors::messages::{InjectPanic, RouteKey, Sink, Subscribe};
use connector_actors::methods::{MethodCall, MethodError, MethodResponse};
use connector_actors::{Connector, GetState};
use connector_core::{ConnectionEvent, ProviderError, QoS};
use connector_emulator::control::api::{MethodInvocation, MethodResult};
use connector_emulator::EmulatorHandle;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use common::{device, fast_backoff, sample, start, WAIT};

/// A device on the emulator, connected through the actor tree.
async fn connect(emu: &EmulatorHandle, id: &str) -> Connector {
    let conn = Connector::builder(device(emu, id).await).backoff(fast_backoff()).start();
    conn.wait_connected(WAIT).await.unwrap();
    conn
}

/// Returns once the hub has the device's method subscription and the dispatcher's route is
/// in place: this SUBSCRIBE goes through the Subscriber after the route registration and on
/// the wire after the provider's own subscriptions, so its SUBACK comes after theirs.
async fn methods_ready(conn: &Connector) {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let key = RouteKey::Topic { filter: "$iothub/methods/POST/#".into(), qos: QoS::AtMostOnce };
    conn.subscriber().subscribe(Subscribe { key, sink: Sink::Channel(tx) }).await.unwrap();
}

fn invocation(name: &str, payload: Option<Value>) -> MethodInvocation {
    MethodInvocation { timeout_ms: Some(WAIT.as_millis() as u64), ..MethodInvocation::new(name, payload) }
}

async fn invoke(emu: &EmulatorHandle, device: &str, name: &str, payload: Option<Value>) -> MethodResult {
    emu.control().invoke(device, None, &invocation(name, payload)).await.unwrap()
}

/// Invokes in a task of its own, for calls answered through a stream.
fn invoke_later(
    emu: &EmulatorHandle,
    device: &str,
    name: &str,
) -> actix_rt::task::JoinHandle<Result<MethodResult, connector_emulator::ControlError>> {
    let (control, device, inv) = (emu.control(), device.to_owned(), invocation(name, Some(json!({"n": 1}))));
    actix_rt::spawn(async move { control.invoke(&device, None, &inv).await })
}

fn explode(name: &str) -> MethodResponse {
    panic!("handler bug in {name}")
}

#[actix_rt::test]
async fn a_registered_handler_answers_with_its_status_and_json() {
    let emu = start();
    let conn = connect(&emu, "echo-dev").await;
    conn.methods()
        .register("echo", |call: MethodCall| async move {
            let args: Value = match call.json() {
                Ok(v) => v,
                Err(e) => return MethodResponse::error(400, e),
            };
            MethodResponse::new(201, json!({ "method": call.name(), "echo": args }))
        })
        .unwrap();
    methods_ready(&conn).await;
    let r = invoke(&emu, "echo-dev", "echo", Some(json!({"x": [1, 2], "s": "é"}))).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.payload, json!({ "method": "echo", "echo": {"x": [1, 2], "s": "é"} }));
    assert_eq!(sample(&conn, "connector_method_calls_total", &[("status", "201")]), 1.0);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn handlers_are_chosen_by_name() {
    let emu = start();
    let conn = connect(&emu, "names-dev").await;
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = a_calls.clone();
    conn.methods()
        .register_fn("reboot", move |_| {
            a.fetch_add(1, Ordering::SeqCst);
            MethodResponse::ok(json!({"handler": "reboot"}))
        })
        .unwrap();
    let b = b_calls.clone();
    conn.methods()
        .register("thermostat1*getMaxMinReport", move |_: MethodCall| {
            b.fetch_add(1, Ordering::SeqCst);
            async { MethodResponse::ok(json!({"handler": "report"})) }
        })
        .unwrap();
    methods_ready(&conn).await;
    let r = invoke(&emu, "names-dev", "reboot", None).await;
    assert_eq!((r.status, r.payload), (200, json!({"handler": "reboot"})));
    assert_eq!((a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst)), (1, 0));
    let r = invoke(&emu, "names-dev", "thermostat1*getMaxMinReport", None).await;
    assert_eq!((r.status, r.payload), (200, json!({"handler": "report"})));
    assert_eq!((a_calls.load(Ordering::SeqCst), b_calls.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(conn.methods().names(), ["reboot", "thermostat1*getMaxMinReport"]);
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn unknown_methods_get_the_default_answer() {
    let emu = start();
    let conn = connect(&emu, "default-dev").await;
    let methods = conn.methods();
    methods.register_fn("known", |_| MethodResponse::empty(204)).unwrap();
    methods_ready(&conn).await;
    let r = invoke(&emu, "default-dev", "nope", Some(json!({}))).await;
    assert_eq!((r.status, r.payload), (404, json!({"error": "method not found", "method": "nope"})));
    // A default of one's own.
    methods.set_default(|call: MethodCall| async move {
        MethodResponse::new(501, json!({"unsupported": call.name()}))
    });
    let r = invoke(&emu, "default-dev", "other", None).await;
    assert_eq!((r.status, r.payload), (501, json!({"unsupported": "other"})));
    let r = invoke(&emu, "default-dev", "known", None).await;
    assert_eq!((r.status, r.payload), (204, Value::Null), "a named handler wins over the default");
    // Unregistered: the default takes it; cleared: the built-in 404 again.
    assert!(methods.unregister("known"));
    assert!(!methods.unregister("known"));
    let r = invoke(&emu, "default-dev", "known", None).await;
    assert_eq!((r.status, r.payload), (501, json!({"unsupported": "known"})));
    methods.clear_default();
    let r = invoke(&emu, "default-dev", "known", None).await;
    assert_eq!((r.status, r.payload), (404, json!({"error": "method not found", "method": "known"})));
    assert!(matches!(methods.register_fn("", |_| MethodResponse::empty(200)), Err(MethodError::EmptyName)));
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn a_panicking_handler_answers_500_and_the_tree_survives() {
    let emu = start();
    let conn = connect(&emu, "panic-dev").await;
    let mut events = conn.events(64);
    let methods = conn.methods();
    methods.register_fn("boom", |call| explode(call.name())).unwrap();
    methods
        .register("boom_later", |call: MethodCall| async move {
            tokio::task::yield_now().await;
            explode(call.name())
        })
        .unwrap();
    methods.register_fn("fine", |_| MethodResponse::ok(json!("still here"))).unwrap();
    methods_ready(&conn).await;
    for name in ["boom", "boom_later"] {
        let r = invoke(&emu, "panic-dev", name, None).await;
        assert_eq!((r.status, r.payload), (500, json!({"error": "the handler panicked", "method": name})));
    }
    let r = invoke(&emu, "panic-dev", "fine", None).await;
    assert_eq!((r.status, r.payload), (200, json!("still here")));
    assert_eq!(sample(&conn, "connector_handler_panics_total", &[("handler", "method")]), 2.0);
    assert_eq!(sample(&conn, "connector_method_calls_total", &[("status", "500")]), 2.0);
    assert_eq!(sample(&conn, "connector_actor_restarts_total", &[]), 0.0);
    assert!(conn.is_connected());
    while let Some(Some(e)) = events.next().now_or_never() {
        assert!(!matches!(e, ConnectionEvent::Disconnected { .. }), "the connection stayed up: {e:?}");
    }
    conn.stop().await;
    emu.shutdown();
}

/// Sends on drop: tells the test that a handler's future was dropped.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[actix_rt::test]
async fn deadlines_and_dropped_responders_are_answered_for_the_handler() {
    let emu = start();
    let conn = connect(&emu, "deadline-dev").await;
    let methods = conn.methods();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let signal = Arc::new(Mutex::new(Some(dropped_tx)));
    methods
        .register_with_deadline("slow", Duration::from_millis(300), move |_: MethodCall| {
            let guard = DropSignal(signal.lock().unwrap().take());
            async move {
                let _guard = guard;
                futures::future::pending::<()>().await;
                MethodResponse::empty(200)
            }
        })
        .unwrap();
    let mut calls = methods.stream("manual", 4).unwrap();
    methods_ready(&conn).await;

    // A handler that overruns: 504, and its late answer is discarded with its future.
    let r = invoke(&emu, "deadline-dev", "slow", None).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.payload["method"], "slow");
    assert_eq!(r.payload["deadlineMs"], 300);
    tokio::time::timeout(WAIT, dropped_rx).await.expect("the late handler is dropped").unwrap();

    // A stream call answered.
    let pending = invoke_later(&emu, "deadline-dev", "manual");
    let c = tokio::time::timeout(WAIT, calls.next()).await.unwrap().unwrap();
    assert_eq!((c.call.name(), c.call.json::<Value>().unwrap()), ("manual", json!({"n": 1})));
    c.responder.respond(MethodResponse::ok(json!({"answered": true}))).await.unwrap();
    let r = pending.await.unwrap().unwrap();
    assert_eq!((r.status, r.payload), (200, json!({"answered": true})));

    // A responder dropped unanswered: 500 at once, not the caller's timeout.
    let pending = invoke_later(&emu, "deadline-dev", "manual");
    let c = tokio::time::timeout(WAIT, calls.next()).await.unwrap().unwrap();
    drop(c.responder);
    let r = pending.await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.payload),
        (500, json!({"error": "handler dropped the request", "method": "manual"}))
    );

    // A stream call past the deadline: 504, and the responder learns it.
    methods.set_deadline(Duration::from_millis(300));
    let pending = invoke_later(&emu, "deadline-dev", "manual");
    let c = tokio::time::timeout(WAIT, calls.next()).await.unwrap().unwrap();
    let r = pending.await.unwrap().unwrap();
    assert_eq!(r.status, 504);
    assert!(c.responder.is_answered());
    let late = c.responder.respond(MethodResponse::ok(json!("late"))).await;
    assert_eq!(late, Err(MethodError::AlreadyAnswered { method: "manual".into() }));

    // The stream dropped: the method is unregistered and gets the default answer.
    drop(calls);
    let r = invoke(&emu, "deadline-dev", "manual", None).await;
    assert_eq!((r.status, r.payload), (404, json!({"error": "method not found", "method": "manual"})));
    assert!(methods.names().iter().all(|n| n != "manual"));
    assert!(conn.is_connected());
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn two_devices_are_isolated_from_each_other() {
    let emu = start();
    let a = connect(&emu, "iso-a").await;
    let b = connect(&emu, "iso-b").await;
    let mut counts = Vec::new();
    for (conn, me) in [(&a, "iso-a"), (&b, "iso-b")] {
        let n = Arc::new(AtomicUsize::new(0));
        let seen = n.clone();
        conn.methods()
            .register_fn("whoami", move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                MethodResponse::ok(json!({ "device": me }))
            })
            .unwrap();
        counts.push(n);
    }
    b.methods().register_fn("only_b", |_| MethodResponse::empty(200)).unwrap();
    methods_ready(&a).await;
    methods_ready(&b).await;
    let calls = || (counts[0].load(Ordering::SeqCst), counts[1].load(Ordering::SeqCst));

    let r = invoke(&emu, "iso-a", "whoami", None).await;
    assert_eq!((r.status, r.payload), (200, json!({"device": "iso-a"})));
    assert_eq!(calls(), (1, 0), "device B's handler never ran");
    let r = invoke(&emu, "iso-b", "whoami", None).await;
    assert_eq!((r.status, r.payload), (200, json!({"device": "iso-b"})));
    assert_eq!(calls(), (1, 1));
    let r = invoke(&emu, "iso-a", "only_b", None).await;
    assert_eq!(r.status, 404, "B's registration is not A's");
    assert_eq!(sample(&b, "connector_method_calls_total", &[]), 1.0);
    a.stop().await;
    b.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn malformed_payloads_and_responses_are_typed_errors() {
    #[derive(Debug, serde::Deserialize)]
    struct Args {
        #[allow(dead_code)]
        delay: u32,
    }
    let emu = start();
    let conn = connect(&emu, "malformed-dev").await;
    let methods = conn.methods();
    methods
        .register_fn("parse", |call| match call.json::<Args>() {
            Ok(_) => MethodResponse::ok(json!("parsed")),
            Err(e) => MethodResponse::error(400, e),
        })
        .unwrap();
    let too_large = Value::String("x".repeat(130 * 1024)).to_string();
    let answers: Vec<MethodResponse> = vec![
        MethodResponse::raw(200, "not json"),
        MethodResponse::raw(200, "{\"open\": "),
        MethodResponse::raw(200, too_large.clone()),
    ];
    methods
        .register_fn("answer", move |call| {
            let i: usize = call.json().unwrap_or(0);
            answers[i].clone()
        })
        .unwrap();
    let mut manual = methods.stream("manual", 4).unwrap();
    methods_ready(&conn).await;

    // Request payloads the handler cannot use: a 400 naming the reason, no panic.
    let requests = [
        (None, "empty payload"),
        // `"payload": null` is no payload to the service API.
        (Some(Value::Null), "empty payload"),
        (Some(json!("a string")), "invalid type: string"),
        (Some(json!(42)), "invalid type: integer"),
        (Some(json!({"delay": "soon"})), "invalid type: string"),
        (Some(json!({"delay": -1})), "invalid value"),
        (Some(json!({"delay": 1e10})), "invalid type: floating point"),
        (Some(json!({})), "missing field `delay`"),
        (Some(json!([])), "invalid length 0"),
    ];
    for (payload, reason) in requests {
        let r = invoke(&emu, "malformed-dev", "parse", payload.clone()).await;
        assert_eq!(r.status, 400, "{payload:?}");
        let text = r.payload["error"].as_str().unwrap();
        assert!(text.contains("payload of method `parse`") && text.contains(reason), "{payload:?}: {text}");
    }
    let r = invoke(&emu, "malformed-dev", "parse", Some(json!({"delay": 5}))).await;
    assert_eq!((r.status, r.payload), (200, json!("parsed")));

    // Responses the hub would refuse: the caller gets a 500 naming the reason.
    for (i, reason) in [(0, "not JSON"), (1, "not JSON"), (2, "exceeds the limit of 131072")] {
        let r = invoke(&emu, "malformed-dev", "answer", Some(json!(i))).await;
        assert_eq!(r.status, 500, "answer {i}");
        let text = r.payload["error"].as_str().unwrap();
        assert!(text.contains("response was refused") && text.contains(reason), "answer {i}: {text}");
    }

    // Through a responder, the answering code gets the typed error too.
    for (body, too_big) in [("not json".to_string(), false), (too_large, true)] {
        let pending = invoke_later(&emu, "malformed-dev", "manual");
        let c = tokio::time::timeout(WAIT, manual.next()).await.unwrap().unwrap();
        let err = c.responder.respond(MethodResponse::raw(200, body)).await.unwrap_err();
        match err {
            MethodError::InvalidResponse { method, source } => {
                assert_eq!(method, "manual");
                assert_eq!(matches!(source, ProviderError::PayloadTooLarge { .. }), too_big, "{source}");
                assert_eq!(matches!(source, ProviderError::Unsupported { .. }), !too_big, "{source}");
            }
            other => panic!("a refused response, got {other:?}"),
        }
        assert_eq!(pending.await.unwrap().unwrap().status, 500);
    }
    assert_eq!(sample(&conn, "connector_handler_panics_total", &[]), 0.0);
    assert!(conn.is_connected());
    conn.stop().await;
    emu.shutdown();
}

#[actix_rt::test]
async fn a_restarted_dispatcher_keeps_its_registrations() {
    let emu = start();
    let conn = connect(&emu, "restart-dev").await;
    conn.methods().register_fn("ping", |_| MethodResponse::ok(json!("pong"))).unwrap();
    methods_ready(&conn).await;
    let old = conn.methods().addr();
    // The dispatcher dies (its reply is dropped); its supervisor hears of it before it
    // answers the next request sent to it.
    assert!(old.send(InjectPanic).await.is_err());
    conn.connection().send(GetState).await.unwrap();
    assert!(conn.methods().addr() != old, "a new dispatcher took over");
    assert_eq!(sample(&conn, "connector_actor_restarts_total", &[("actor", "methods")]), 1.0);
    let r = invoke(&emu, "restart-dev", "ping", None).await;
    assert_eq!((r.status, r.payload), (200, json!("pong")));
    assert!(conn.is_connected());
    conn.stop().await;
    emu.shutdown();
}

/// An actor that answers `counter` calls with how many it has had.
struct Counter(u64);

impl actix::Actor for Counter {
    type Context = actix::Context<Self>;
}

impl actix::Handler<connector_actors::methods::MethodInvoked> for Counter {
    type Result = MethodResponse;
    fn handle(
        &mut self,
        m: connector_actors::methods::MethodInvoked,
        _: &mut Self::Context,
    ) -> MethodResponse {
        self.0 += 1;
        MethodResponse::ok(json!({"calls": self.0, "method": m.0.name()}))
    }
}

#[actix_rt::test]
async fn an_actor_handles_a_method_and_a_stopped_one_answers_503() {
    use actix::Actor as _;
    let emu = start();
    let conn = connect(&emu, "actor-methods").await;
    let counter = Counter(0).start();
    conn.methods().register_recipient("counter", counter.clone().recipient()).unwrap();
    methods_ready(&conn).await;
    for n in 1..=2 {
        let r = invoke(&emu, "actor-methods", "counter", None).await;
        assert_eq!((r.status, r.payload), (200, json!({"calls": n, "method": "counter"})));
    }
    // An actor that is gone: the call is answered, not left to time out.
    let gone = {
        let sys = actix::Arbiter::new();
        let addr = Counter::start_in_arbiter(&sys.handle(), |_| Counter(0));
        sys.stop();
        sys.join().unwrap();
        addr
    };
    conn.methods().register_recipient("gone", gone.recipient()).unwrap();
    let r = invoke(&emu, "actor-methods", "gone", None).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.payload.to_string().contains("unavailable"), "{r:?}");
    conn.stop().await;
    emu.shutdown();
}
