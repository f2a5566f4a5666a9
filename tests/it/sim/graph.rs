//! exchange-sim's Microsoft 365 face over a real port: tokens, getSchedule,
//! subscriptions with the validation handshake answered by a receiver on
//! loopback, notifications, throttling.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{PASSWORD, PASSWORD_ENV, SimProcess, WAIT};

const TENANT: &str = "8f2c6a1e-4b7d-4e9a-9c3f-2d5e7a1b0c64";
const CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
const ALICE: &str = "alice@example.com";

fn start(extra: &[&str]) -> SimProcess {
    let mut args = vec!["--graph-secret-env", PASSWORD_ENV];
    args.extend_from_slice(extra);
    SimProcess::start(&args)
}

impl SimProcess {
    async fn token_request(&self, tenant: &str, client: &str, secret: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("client_id", client),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token endpoint answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("token answer is JSON"))
    }

    async fn token(&self) -> String {
        let (status, body) = self.token_request(TENANT, CLIENT, PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn graph(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("Prefer", "outlook.timezone=\"UTC\"");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("Graph answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn get_schedule(
        &self,
        token: &str,
        path_mailbox: &str,
        schedules: &[&str],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.graph(
            reqwest::Method::POST,
            &format!("/v1.0/users/{path_mailbox}/calendar/getSchedule"),
            token,
            Some(json!({
                "schedules": schedules,
                "startTime": {"dateTime": "2030-01-15T00:00:00", "timeZone": "UTC"},
                "endTime": {"dateTime": "2030-01-16T00:00:00", "timeZone": "UTC"},
                "availabilityViewInterval": 60,
            })),
        )
        .await
    }
}

fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap_or_default()
}

#[tokio::test]
async fn graph_token_success_and_each_aadsts() {
    let sim = start(&[]);
    let (status, body) = sim.token_request(TENANT, CLIENT, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
    // The domain alias names the same tenant.
    assert_eq!(
        sim.token_request("example.com", CLIENT, PASSWORD).await.0,
        200
    );

    let (status, body) = sim.token_request(TENANT, CLIENT, "wrong").await;
    assert_eq!((status, aadsts(&body)), (401, 7000215), "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS7000215:"))
    );
    let (status, body) = sim
        .token_request(TENANT, "00000000-0000-0000-0000-000000000000", PASSWORD)
        .await;
    assert_eq!((status, aadsts(&body)), (400, 700016), "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    let (status, body) = sim.token_request("other.example", CLIENT, PASSWORD).await;
    assert_eq!((status, aadsts(&body)), (400, 90002), "{body}");
    assert_eq!(body["error"], "invalid_request");

    let (status, _) = sim
        .control("POST", "/sim/graph/faults?kind=expired-secret", "")
        .await;
    assert_eq!(status, 200);
    let (status, body) = sim.token_request(TENANT, CLIENT, PASSWORD).await;
    assert_eq!((status, aadsts(&body)), (401, 7000222), "{body}");
    sim.control("POST", "/sim/graph/faults?kind=consent-missing&count=2", "")
        .await;
    for _ in 0..2 {
        let (status, body) = sim.token_request(TENANT, CLIENT, PASSWORD).await;
        assert_eq!((status, aadsts(&body)), (400, 65001), "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    assert_eq!(sim.token_request(TENANT, CLIENT, PASSWORD).await.0, 200);

    // Without the secret's variable every request fails as a wrong secret.
    let unset = SimProcess::start(&["--graph-secret-env", "EXCHANGE_SIM_TEST_UNSET_VAR"]);
    let (status, body) = unset.token_request(TENANT, CLIENT, PASSWORD).await;
    assert_eq!((status, aadsts(&body)), (401, 7000215), "{body}");

    let stats = sim.stats().await;
    assert_eq!(stats["graph"]["token_requests"], 9, "{stats}");
}

#[tokio::test]
async fn graph_get_schedule_reads_the_scripted_calendars() {
    let sim = start(&["--graph-forbidden", "boss@example.com"]);
    sim.control(
        "POST",
        "/sim/calendars",
        &format!(
            "{ALICE},2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\n\
             {ALICE},2030-01-15T14:00:00Z,2030-01-15T15:30:00Z,WorkingElsewhere\n\
             boss@example.com,,,\n"
        ),
    )
    .await;
    let (status, _, body) = sim.get_schedule("not-a-token", ALICE, &[ALICE]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let token = sim.token().await;
    let (status, headers, body) = sim
        .get_schedule(&token, ALICE, &[ALICE, "nobody@example.com"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["preference-applied"], "outlook.timezone=\"UTC\"");
    let alice = &body["value"][0];
    assert_eq!(alice["scheduleId"], ALICE);
    let items = alice["scheduleItems"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{alice}");
    assert_eq!(items[0]["status"], "busy");
    assert_eq!(items[0]["start"]["dateTime"], "2030-01-15T10:00:00.0000000");
    assert_eq!(items[0]["start"]["timeZone"], "UTC");
    assert_eq!(items[0]["end"]["dateTime"], "2030-01-15T11:00:00.0000000");
    assert_eq!(items[1]["status"], "workingElsewhere");
    let view = alice["availabilityView"].as_str().expect("view");
    assert_eq!(view.len(), 24);
    assert_eq!(&view[10..11], "2");
    let nobody = &body["value"][1];
    assert_eq!(
        nobody["error"]["responseCode"], "ErrorMailRecipientNotFound",
        "{nobody}"
    );

    // Over Graph's documented limit of 20 schedules: refused.
    let many: Vec<String> = (0..21).map(|i| format!("u{i}@example.com")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _, body) = sim.get_schedule(&token, ALICE, &many).await;
    assert_eq!(status, 400, "{body}");

    // RBAC for Applications: the mailbox in the path or in schedules.
    let (status, _, body) = sim
        .get_schedule(&token, ALICE, &[ALICE, "boss@example.com"])
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "ErrorAccessDenied");
    let (status, _, _) = sim.get_schedule(&token, "boss@example.com", &[ALICE]).await;
    assert_eq!(status, 403);

    let graph = &sim.stats().await["graph"];
    assert_eq!(graph["get_schedule_requests"], 5, "{graph}");
    assert_eq!(graph["get_schedule_by_mailbox"][ALICE], 4, "{graph}");
    assert_eq!(graph["max_concurrency"][ALICE], 1, "{graph}");
}

#[tokio::test]
async fn graph_concurrency_per_path_mailbox_is_counted() {
    let sim = start(&["--latency-ms", "300"]);
    sim.control("POST", "/sim/calendars", &format!("{ALICE},,,\n"))
        .await;
    let token = sim.token().await;
    let (a, b, c) = tokio::join!(
        sim.get_schedule(&token, ALICE, &[ALICE]),
        sim.get_schedule(&token, ALICE, &[ALICE]),
        sim.get_schedule(&token, ALICE, &[ALICE]),
    );
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    let graph = &sim.stats().await["graph"];
    assert_eq!(graph["max_concurrency"][ALICE], 3, "{graph}");
}

#[tokio::test]
async fn graph_throttling_answers_429_with_retry_after() {
    let sim = start(&[]);
    sim.control("POST", "/sim/calendars", &format!("{ALICE},,,\n"))
        .await;
    let token = sim.token().await;
    let (status, body) = sim
        .control(
            "POST",
            &format!("/sim/graph/faults?kind=throttle&mailbox={ALICE}&retry_after=7&count=2"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        let (status, headers, body) = sim.get_schedule(&token, ALICE, &[ALICE]).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(body["error"]["code"], "ApplicationThrottled");
    }
    assert_eq!(sim.get_schedule(&token, ALICE, &[ALICE]).await.0, 200);
    sim.control(
        "POST",
        &format!("/sim/graph/faults?kind=throttle&mailbox={ALICE}&status=503&retry_after=none"),
        "",
    )
    .await;
    let (status, headers, _) = sim.get_schedule(&token, ALICE, &[ALICE]).await;
    assert_eq!(status, 503);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(sim.stats().await["graph"]["throttled"], 3);
}

/// A notification receiver on loopback: validation requests are echoed
/// (or refused when `refuse` is set); other POSTs' bodies go to `notes`.
struct Receiver {
    base: String,
    notes: tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    refuse: Arc<Mutex<bool>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use http_body_util::BodyExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, notes) = tokio::sync::mpsc::unbounded_channel();
        let refuse = Arc::new(Mutex::new(false));
        let refusing = refuse.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let refusing = refusing.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let refusing = refusing.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let token = url::form_urlencoded::parse(
                                request.uri().query().unwrap_or_default().as_bytes(),
                            )
                            .find(|(k, _)| k == "validationToken")
                            .map(|(_, v)| v.into_owned());
                            let body = http_body_util::Limited::new(request.into_body(), 1 << 20)
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, content_type, answer) = match token {
                                Some(_) if *refusing.lock().expect("flag") => {
                                    (500, "text/plain", String::new())
                                }
                                Some(token) => (200, "text/plain", token),
                                None => {
                                    let value =
                                        serde_json::from_slice(&body).unwrap_or(Value::Null);
                                    let _ = tx.send((path, value));
                                    (202, "text/plain", String::new())
                                }
                            };
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(answer),
                            ));
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            response.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static(content_type),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        Receiver {
            base,
            notes,
            refuse,
        }
    }

    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(WAIT, self.notes.recv())
            .await
            .expect("a notification within the wait")
            .expect("receiver running")
    }
}

fn subscription(expiry_minutes: i64) -> Value {
    let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(expiry_minutes);
    json!({
        "changeType": "created,updated,deleted",
        // As presence-gateway's public Notification URL; --graph-deliver-to
        // sends it to the receiver, as a reverse proxy would.
        "notificationUrl": "https://pg.example.com/graph/notify",
        "lifecycleNotificationUrl": "https://pg.example.com/graph/lifecycle",
        "resource": format!("users/{ALICE}/events"),
        "expirationDateTime": at.format(&time::format_description::well_known::Rfc3339).expect("time"),
        "clientState": "s3cret-state",
    })
}

#[tokio::test]
async fn graph_subscriptions_validate_notify_and_end() {
    let mut receiver = Receiver::start().await;
    let sim = start(&["--graph-deliver-to", &receiver.base, "--minute-ms", "1200"]);
    sim.control("POST", "/sim/calendars", &format!("{ALICE},,,\n"))
        .await;
    let token = sim.token().await;
    let post = reqwest::Method::POST;

    // Too far ahead: refused before any validation.
    let (status, _, body) = sim
        .graph(
            post.clone(),
            "/v1.0/subscriptions",
            &token,
            Some(subscription(4231)),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // A refused validation request fails the subscription.
    *receiver.refuse.lock().expect("flag") = true;
    let (status, _, body) = sim
        .graph(
            post.clone(),
            "/v1.0/subscriptions",
            &token,
            Some(subscription(60)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");
    *receiver.refuse.lock().expect("flag") = false;

    let (status, _, created) = sim
        .graph(
            post.clone(),
            "/v1.0/subscriptions",
            &token,
            Some(subscription(4230)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["clientState"], "s3cret-state");
    assert_eq!(created["resource"], format!("users/{ALICE}/events"));

    // A calendar change: a change notification with the clientState.
    sim.control(
        "POST",
        "/sim/calendars",
        &format!("{ALICE},2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\n"),
    )
    .await;
    let (path, note) = receiver.next().await;
    assert_eq!(path, "/graph/notify");
    let n = &note["value"][0];
    assert_eq!(n["subscriptionId"], id.as_str(), "{note}");
    assert_eq!(n["clientState"], "s3cret-state");
    assert_eq!(n["changeType"], "created");
    assert_eq!(n["tenantId"], TENANT);

    // On demand, a wrong clientState (the receiver must ignore it).
    sim.control(
        "POST",
        &format!("/sim/graph/notify?mailbox={ALICE}&client_state=forged"),
        "",
    )
    .await;
    let (_, note) = receiver.next().await;
    assert_eq!(note["value"][0]["clientState"], "forged");

    // Renewed, then removed by Graph: a lifecycle notification, and gone.
    let (status, _, renewed) = sim
        .graph(
            reqwest::Method::PATCH,
            &format!("/v1.0/subscriptions/{id}"),
            &token,
            Some(json!({"expirationDateTime": subscription(120)["expirationDateTime"]})),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    let reauthorize = format!("/v1.0/subscriptions/{id}/reauthorize");
    let (status, _, _) = sim
        .graph(reqwest::Method::POST, &reauthorize, &token, None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = sim
        .control(
            "POST",
            &format!("/sim/graph/lifecycle?mailbox={ALICE}&event=subscriptionRemoved"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (path, note) = receiver.next().await;
    assert_eq!(path, "/graph/lifecycle");
    assert_eq!(note["value"][0]["lifecycleEvent"], "subscriptionRemoved");
    assert_eq!(note["value"][0]["subscriptionId"], id.as_str());
    let (status, _, _) = sim
        .graph(
            reqwest::Method::DELETE,
            &format!("/v1.0/subscriptions/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A new one, deleted by its owner.
    let (_, _, again) = sim
        .graph(post, "/v1.0/subscriptions", &token, Some(subscription(60)))
        .await;
    let again = again["id"].as_str().expect("id").to_owned();
    let (status, _, _) = sim
        .graph(
            reqwest::Method::DELETE,
            &format!("/v1.0/subscriptions/{again}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 204);

    let graph = &sim.stats().await["graph"];
    assert_eq!(graph["subscriptions_created"], 2, "{graph}");
    assert_eq!(graph["subscriptions_renewed"], 1, "{graph}");
    assert_eq!(graph["subscriptions_deleted"], 1, "{graph}");
    assert_eq!(graph["subscriptions_active"], 0, "{graph}");
    assert_eq!(graph["validations_failed"], 1, "{graph}");
    assert_eq!(graph["validations_ok"], 4, "{graph}");
    assert_eq!(graph["notifications_sent"], 2, "{graph}");
}

#[tokio::test]
async fn graph_https_urls_fail_validation_without_deliver_to() {
    let sim = start(&[]);
    sim.control("POST", "/sim/calendars", &format!("{ALICE},,,\n"))
        .await;
    let token = sim.token().await;
    let (status, _, body) = sim
        .graph(
            reqwest::Method::POST,
            "/v1.0/subscriptions",
            &token,
            Some(subscription(60)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "ValidationError");
}

#[tokio::test]
async fn graph_tokens_expire_after_their_lifetime() {
    let sim = start(&["--graph-token-lifetime-secs", "1"]);
    sim.control("POST", "/sim/calendars", &format!("{ALICE},,,\n"))
        .await;
    let (status, body) = sim.token_request(TENANT, CLIENT, PASSWORD).await;
    assert_eq!(
        (status, body["expires_in"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(sim.get_schedule(&token, ALICE, &[ALICE]).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (status, _, body) = sim.get_schedule(&token, ALICE, &[ALICE]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
}
