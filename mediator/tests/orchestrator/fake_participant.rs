//! A TEST DOUBLE of the participants' HTTP contract (docs/ARCHITECTURE.md, "Internal participant
//! API"), so that the mediator's tests do not depend on the real items, slots or billing crates:
//! `PUT /internal/<route>/{order_id}` holds (200) or refuses (409 with a code) and repeats the
//! recorded outcome; `DELETE` releases a hold or leaves a tombstone that refuses a later `PUT`
//! with 409 `order_cancelled`; both need `X-Internal-Token`. On top of that, each answer can be
//! scripted: a 5xx, a response lost after the hold was taken, a hang, a delay.
//!
//! Every call of every fake is written to one shared journal, so tests can check the order of
//! calls across participants.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::put,
};
use serde_json::json;
use shop_common::testing;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::net::{TcpListener, TcpSocket};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Follow the ledger contract.
    Ok,
    /// Refuse with 409 and this code (recorded, so repeats refuse too).
    Reject(&'static str),
    /// Answer this status without doing anything.
    Fail(u16),
    /// Do what `Ok` would do, then answer this status: a lost response.
    ApplyThenFail(u16),
    /// Never answer.
    Hang,
    /// Answer as `Ok`, after a pause.
    Delay(Duration),
    /// Answer as `Ok` once the test opens the gate ([`FakeParticipant::open_gate`]).
    Gated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Held,
    Rejected,
    Released,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub participant: &'static str,
    pub method: &'static str,
    pub order_id: Uuid,
    pub body: Option<serde_json::Value>,
}

pub type Journal = Arc<Mutex<Vec<Call>>>;

#[derive(Default)]
struct Script {
    /// Set once the gate is open: `Gated` answers wait for it.
    gate: Arc<tokio::sync::Notify>,
    gate_open: bool,
    put: VecDeque<Answer>,
    put_default: Option<Answer>,
    delete: VecDeque<Answer>,
    delete_default: Option<Answer>,
    holds: HashMap<Uuid, (Hold, Option<String>)>,
}

#[derive(Clone)]
pub struct FakeParticipant {
    pub name: &'static str,
    pub url: String,
    script: Arc<Mutex<Script>>,
    journal: Journal,
}

#[derive(Clone)]
struct Ctx {
    name: &'static str,
    script: Arc<Mutex<Script>>,
    journal: Journal,
}

impl FakeParticipant {
    /// Serves on a random loopback port.
    pub async fn start(name: &'static str, journal: Journal) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(name, journal, listener, Arc::default())
    }

    /// A loopback address where nothing listens yet (connections are refused), kept for this
    /// test alone: the socket is bound but not listening, so no other process can take the port
    /// before [`FakeParticipant::start_on`] serves on it.
    pub fn reserve_address() -> (TcpSocket, String) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", socket.local_addr().unwrap());
        (socket, url)
    }

    /// Serves on a socket from [`FakeParticipant::reserve_address`] (a participant that comes
    /// back after being down).
    pub fn start_on(name: &'static str, journal: Journal, socket: TcpSocket) -> Self {
        let listener = socket.listen(128).unwrap();
        Self::serve_on(name, journal, listener, Arc::default())
    }

    fn serve_on(
        name: &'static str,
        journal: Journal,
        listener: TcpListener,
        script: Arc<Mutex<Script>>,
    ) -> Self {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ctx = Ctx {
            name,
            script: script.clone(),
            journal: journal.clone(),
        };
        let app = Router::new()
            .route("/internal/{route}/{order_id}", put(act).delete(compensate))
            .with_state(ctx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            name,
            url,
            script,
            journal,
        }
    }

    /// The next PUTs answer these, in order; then `Ok` (or the default set by `always_put`).
    pub fn script_puts(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().put.extend(answers);
    }

    pub fn always_put(&self, answer: Answer) {
        let mut s = self.script.lock().unwrap();
        s.put.clear();
        s.put_default = Some(answer);
    }

    /// Lets every `Gated` answer, waiting or to come, go ahead.
    pub fn open_gate(&self) {
        let mut s = self.script.lock().unwrap();
        s.gate_open = true;
        s.gate.notify_waiters();
    }

    pub fn always_delete(&self, answer: Answer) {
        let mut s = self.script.lock().unwrap();
        s.delete.clear();
        s.delete_default = Some(answer);
    }

    pub fn script_deletes(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().delete.extend(answers);
    }

    /// What this participant recorded for `order_id`.
    pub fn hold(&self, order_id: Uuid) -> Option<Hold> {
        self.script
            .lock()
            .unwrap()
            .holds
            .get(&order_id)
            .map(|(h, _)| *h)
    }

    /// Pretends an action was taken for `order_id` (a straggler's hold).
    pub fn force_hold(&self, order_id: Uuid) {
        self.script
            .lock()
            .unwrap()
            .holds
            .insert(order_id, (Hold::Held, None));
    }

    /// This participant's calls, as `"PUT"` / `"DELETE"`.
    pub fn calls(&self, order_id: Uuid) -> Vec<&'static str> {
        self.journal
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.participant == self.name && c.order_id == order_id)
            .map(|c| c.method)
            .collect()
    }

    /// Sends an action for `order_id` as a straggling owner of the order would, now, and returns
    /// the answer's status and error code.
    pub async fn late_action(&self, route: &str, order_id: Uuid) -> (u16, Option<String>) {
        let response = reqwest::Client::new()
            .put(format!("{}/internal/{route}/{order_id}", self.url))
            .header("x-internal-token", testing::INTERNAL_TOKEN)
            .json(&json!({"resource": "late", "quantity": 1}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (status, body["error"].as_str().map(str::to_owned))
    }

    pub fn puts(&self, order_id: Uuid) -> Vec<Call> {
        self.journal
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.participant == self.name && c.order_id == order_id && c.method == "PUT")
            .cloned()
            .collect()
    }
}

fn token_refused(headers: &HeaderMap) -> Option<Response> {
    match headers.get("x-internal-token") {
        None => Some(StatusCode::UNAUTHORIZED.into_response()),
        Some(t) if t.as_bytes() != testing::INTERNAL_TOKEN.as_bytes() => {
            Some(StatusCode::FORBIDDEN.into_response())
        }
        Some(_) => None,
    }
}

fn refusal(code: &str) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": code, "detail": "refused by the fake participant"})),
    )
        .into_response()
}

fn status(code: u16) -> Response {
    StatusCode::from_u16(code).unwrap().into_response()
}

async fn act(
    State(ctx): State<Ctx>,
    Path((_route, order_id)): Path<(String, Uuid)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = token_refused(&headers) {
        return refused;
    }
    let body = serde_json::from_slice(&body).ok();
    let answer = ctx.record("PUT", order_id, body);
    respond(
        &ctx,
        answer,
        || apply(&ctx, order_id, None),
        |code| apply(&ctx, order_id, Some(code)),
    )
    .await
}

impl Ctx {
    /// Writes the call to the journal; the answer scripted for it.
    fn record(
        &self,
        method: &'static str,
        order_id: Uuid,
        body: Option<serde_json::Value>,
    ) -> Answer {
        self.journal.lock().unwrap().push(Call {
            participant: self.name,
            method,
            order_id,
            body,
        });
        let mut script = self.script.lock().unwrap();
        let s = &mut *script;
        let (queue, default) = match method {
            "PUT" => (&mut s.put, s.put_default.clone()),
            _ => (&mut s.delete, s.delete_default.clone()),
        };
        queue.pop_front().unwrap_or(default.unwrap_or(Answer::Ok))
    }
}

/// Answers as scripted: `honour` is what the contract does (take the hold, or release it),
/// `refuse` a refusal with a code.
async fn respond(
    ctx: &Ctx,
    answer: Answer,
    honour: impl Fn() -> Response,
    refuse: impl Fn(&str) -> Response,
) -> Response {
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            status(500)
        }
        Answer::Fail(code) => status(code),
        Answer::Reject(code) => refuse(code),
        Answer::Delay(d) => {
            tokio::time::sleep(d).await;
            honour()
        }
        Answer::Gated => {
            gate(ctx).await;
            honour()
        }
        Answer::Ok => honour(),
        Answer::ApplyThenFail(code) => {
            honour();
            status(code)
        }
    }
}

/// Waits until the test opens the gate.
async fn gate(ctx: &Ctx) {
    loop {
        let gate = {
            let s = ctx.script.lock().unwrap();
            if s.gate_open {
                return;
            }
            s.gate.clone()
        };
        let opened = gate.notified();
        tokio::pin!(opened);
        // Registered before the re-check, so an opening in between is not missed.
        opened.as_mut().enable();
        if ctx.script.lock().unwrap().gate_open {
            return;
        }
        opened.await;
    }
}

/// The ledger: the first action for an order decides, repeats return the recorded outcome.
fn apply(ctx: &Ctx, order_id: Uuid, reject: Option<&str>) -> Response {
    let mut s = ctx.script.lock().unwrap();
    let (hold, code) = s
        .holds
        .entry(order_id)
        .or_insert_with(|| match reject {
            None => (Hold::Held, None),
            Some(code) => (Hold::Rejected, Some(code.to_owned())),
        })
        .clone();
    match hold {
        Hold::Held => Json(json!({"order_id": order_id, "state": "held"})).into_response(),
        Hold::Rejected => refusal(code.as_deref().unwrap_or("rejected")),
        Hold::Released | Hold::Cancelled => refusal("order_cancelled"),
    }
}

async fn compensate(
    State(ctx): State<Ctx>,
    Path((_route, order_id)): Path<(String, Uuid)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = token_refused(&headers) {
        return refused;
    }
    let answer = ctx.record("DELETE", order_id, None);
    respond(&ctx, answer, || release(&ctx, order_id), refusal).await
}

/// The compensation: releases a hold or leaves a tombstone; idempotent.
fn release(ctx: &Ctx, order_id: Uuid) -> Response {
    let mut s = ctx.script.lock().unwrap();
    let entry = s.holds.entry(order_id).or_insert((Hold::Cancelled, None));
    if entry.0 == Hold::Held {
        entry.0 = Hold::Released;
    }
    let state = match entry.0 {
        Hold::Held | Hold::Released => "released",
        Hold::Cancelled => "cancelled",
        Hold::Rejected => "rejected",
    };
    Json(json!({"order_id": order_id, "state": state})).into_response()
}
