//! System > Service Parameters over a real port (SPEC section 3): every
//! integer parameter at its edges, host and choice validation, Set to
//! Default, restart records and the banner, the notification port check,
//! several nodes, the suggested Calendar Spread, and the Troubleshooter
//! following this node's parameters.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use presence_gateway::domain::params::{CATALOGUE, Kind, Param};
use presence_gateway::store;

use crate::support::{TestApp, admin_app, location};

const PAGE: &str = "/system/service-parameters";
const NODE: &str = "test-node";
const BANNER: &str = "Presence Engine restart needed";

async fn stored(app: &TestApp, node: &str) -> HashMap<String, String> {
    let mut conn = app.state.pool.acquire().await.unwrap();
    store::params::stored_values(&mut conn, node).await.unwrap()
}

/// The whole form as the page would send it for `node`: what the node has
/// now, with `changes` typed over it.
async fn form(app: &TestApp, node: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let values = stored(app, node).await;
    let mut fields = vec![("node".to_owned(), node.to_owned())];
    for param in CATALOGUE {
        let value = changes
            .iter()
            .find(|(k, _)| *k == param.key)
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_else(|| store::params::effective(&values, param, node));
        fields.push((param.key.to_owned(), value));
    }
    fields.push(("save".to_owned(), "1".to_owned()));
    fields
}

async fn post(app: &TestApp, fields: &[(String, String)]) -> (u16, String, String) {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = app.post_form(PAGE, &pairs).await;
    let status = response.status().as_u16();
    let target = location(&response);
    (status, target, response.text().await.unwrap())
}

/// Saves `changes` on `node` and follows the redirect to the page.
async fn save_ok(app: &TestApp, node: &str, changes: &[(&str, &str)]) -> String {
    let (status, target, body) = post(app, &form(app, node, changes).await).await;
    assert_eq!(status, 303, "save {changes:?}: {body}");
    assert_eq!(target, format!("{PAGE}?node={node}"));
    let (status, page) = app.get_text(&target).await;
    assert_eq!(status, 200);
    page
}

async fn save_refused(app: &TestApp, node: &str, changes: &[(&str, &str)]) -> String {
    let (status, _, body) = post(app, &form(app, node, changes).await).await;
    assert_eq!(status, 422, "save {changes:?} should be refused");
    body
}

async fn reset(app: &TestApp, node: &str, button: (&str, &str), typed: &[(&str, &str)]) -> String {
    let mut fields = form(app, node, typed).await;
    fields.retain(|(k, _)| k != "save");
    fields.push((button.0.to_owned(), button.1.to_owned()));
    let (status, target, body) = post(app, &fields).await;
    assert_eq!(status, 303, "{button:?}: {body}");
    app.get_text(&target).await.1
}

fn number_input(param: &Param, value: &str) -> String {
    let Kind::Integer { min, max } = param.kind else {
        panic!("{} is not an integer", param.key)
    };
    format!(
        "id=\"{key}\" name=\"{key}\" type=\"number\" min=\"{min}\" max=\"{max}\" step=\"1\" \
         value=\"{value}\"",
        key = param.key
    )
}

fn param(key: &str) -> &'static Param {
    Param::by_key(key).unwrap()
}

#[tokio::test]
async fn the_page_shows_every_parameter_with_its_range_default_and_help() {
    let app = admin_app().await;
    let (status, page) = app.get_text(PAGE).await;
    assert_eq!(status, 200);
    assert!(page.contains("<label for=\"node\">Server</label>"));
    assert!(page.contains("<option value=\"test-node\" selected>test-node</option>"));
    assert!(page.contains("<label for=\"service\">Service</label>"));
    assert!(page.contains(">Presence Engine (Active)</option>"));
    assert!(page.contains(">Go</button>"));
    for param in CATALOGUE {
        assert!(
            page.contains(&format!(
                "<label for=\"{}\">{}</label>",
                param.key, param.label
            )),
            "{}",
            param.key
        );
        assert!(
            page.contains(&format!("name=\"reset\" value=\"{}\"", param.key)),
            "{}",
            param.key
        );
        if let Some(range) = param.range() {
            assert!(page.contains(&format!("<td>{range}</td>")), "{range}");
        }
    }
    assert!(page.contains(&number_input(param("exchange_timeout"), "3")));
    assert!(page.contains("<td>Restart required</td>"));
    assert!(page.contains("<td>Restart recommended</td>"));
    assert!(page.contains("<td>Applies incrementally</td>"));
    assert!(page.contains("name=\"reset_all\""));
    assert!(page.contains(">Save</button>"));
    // SP-2: the notification port's help.
    assert!(page.contains(
        "Existing subscriptions keep the old port until they renew, which may take up to an \
         hour, unless the Presence Engine is restarted."
    ));
    // SP-1: the caution stands before the three Exchange request parameters
    // and after every other one.
    let caution = page
        .find(
            "Caution:</strong> We do not recommend that you change the default settings of \
               these parameters, because any change may adversely affect your Microsoft \
               Exchange integration.",
        )
        .expect("the caution");
    for key in ["exchange_timeout", "exchange_queue", "exchange_threads"] {
        assert!(
            page.find(&format!("<label for=\"{key}\">")).unwrap() > caution,
            "{key}"
        );
    }
    for key in ["ews_status_frequency", "notification_port", "exchange_auth"] {
        assert!(
            page.find(&format!("<label for=\"{key}\">")).unwrap() < caution,
            "{key}"
        );
    }
    // The Notification Host defaults to the node's name.
    assert!(page.contains(
        "id=\"notification_host\" name=\"notification_host\" type=\"text\" value=\"test-node\""
    ));

    // End users are kept out.
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    let other = app.other_client();
    let response = other
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[
            ("user_id", "erin"),
            ("password", "ember-lantern-pw-1"),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let response = other.get(app.url(PAGE)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test]
async fn every_integer_parameter_at_its_edges() {
    let app = admin_app().await;
    for param in CATALOGUE {
        let Kind::Integer { min, max } = param.kind else {
            continue;
        };
        for bad in [min - 1, max + 1] {
            let body = save_refused(&app, NODE, &[(param.key, &bad.to_string())]).await;
            assert!(
                body.contains(&format!(
                    "{} must be a whole number from {min} to {max} ({}).",
                    param.label, param.unit
                )),
                "{}={bad}: {body}",
                param.key
            );
            assert!(body.contains(&format!("id=\"{}-error\"", param.key)));
            assert!(
                body.contains(&format!(
                    "<li><a href=\"#{}\">{} must be",
                    param.key, param.label
                )),
                "the summary at the top links to the field: {body}"
            );
            assert!(
                body.contains(&format!("value=\"{bad}\"")),
                "the value as typed is kept"
            );
            assert!(
                !stored(&app, NODE).await.contains_key(param.key),
                "{}",
                param.key
            );
        }
        for good in [min, max] {
            let page = save_ok(&app, NODE, &[(param.key, &good.to_string())]).await;
            assert!(
                page.contains(&number_input(param, &good.to_string())),
                "{}={good} shown",
                param.key
            );
            let value = store::params::effective(&stored(&app, NODE).await, param, NODE);
            assert_eq!(value, good.to_string(), "{}", param.key);
        }
    }
    let params = {
        let mut conn = app.state.pool.acquire().await.unwrap();
        store::params::load(&mut conn, NODE).await.unwrap()
    };
    assert_eq!(params.exchange_timeout_seconds, 20);
    assert_eq!(params.exchange_queue, 5000);
    assert_eq!(params.notification_port, 65535);
}

#[tokio::test]
async fn host_and_choices_are_validated() {
    let app = admin_app().await;
    let body = save_refused(
        &app,
        NODE,
        &[
            ("notification_host", "http://x/"),
            ("exchange_queue", "100"),
            ("exchange_timeout", "ten"),
        ],
    )
    .await;
    assert!(body.contains("id=\"notification_host-error\""), "{body}");
    assert!(body.contains("value=\"http://x/\""));
    assert!(body.contains("Exchange Timeout must be a whole number from 1 to 20 (seconds)."));
    // Typed values survive, in a text input where they are no number.
    assert!(
        body.contains(
            "id=\"exchange_timeout\" name=\"exchange_timeout\" type=\"text\" value=\"ten\""
        )
    );
    assert!(body.contains(&number_input(param("exchange_queue"), "100")));
    assert!(stored(&app, NODE).await.is_empty(), "nothing saved");

    let body = save_refused(&app, NODE, &[("notification_host", "")]).await;
    assert!(body.contains("Enter the host name or IP address Exchange posts notifications to."));
    // The refusal speaks of the Notification Host, not of a server location.
    let body = save_refused(&app, NODE, &[("notification_host", "presence 1")]).await;
    assert!(
        body.contains("The Notification Host cannot contain spaces."),
        "{body}"
    );
    assert!(!body.contains("server location"), "{body}");

    let body = save_refused(&app, NODE, &[("exchange_auth", "ntlm")]).await;
    assert!(
        body.contains("Choose one of: Auto (NTLMv2, then Basic), Basic Only."),
        "{body}"
    );
    let body = save_refused(&app, NODE, &[("calendar_out_of_office", "maybe")]).await;
    assert!(body.contains("Do not display Out of Office availability."));
    assert!(stored(&app, NODE).await.is_empty(), "nothing saved");

    let page = save_ok(
        &app,
        NODE,
        &[
            ("notification_host", " Presence-1.Example.COM "),
            ("exchange_auth", "basic"),
        ],
    )
    .await;
    assert!(page.contains("Update successful."));
    assert!(page.contains("value=\"presence-1.example.com\""));
    assert!(page.contains("<option value=\"basic\" selected>Basic Only</option>"));
    let values = stored(&app, NODE).await;
    assert_eq!(values["notification_host"], "presence-1.example.com");
    assert_eq!(values["exchange_auth"], "basic");
    save_ok(&app, NODE, &[("notification_host", "10.0.0.5")]).await;
    assert_eq!(stored(&app, NODE).await["notification_host"], "10.0.0.5");
}

#[tokio::test]
async fn set_to_default_one_and_all() {
    let app = admin_app().await;
    save_ok(
        &app,
        NODE,
        &[
            ("exchange_timeout", "5"),
            ("exchange_queue", "100"),
            ("calendar_out_of_office", "display"),
        ],
    )
    .await;
    assert_eq!(stored(&app, NODE).await.len(), 3);

    // One parameter: only it, whatever else was typed and not saved.
    let page = reset(
        &app,
        NODE,
        ("reset", "exchange_timeout"),
        &[("exchange_queue", "7")],
    )
    .await;
    assert!(page.contains("Update successful."), "{page}");
    assert!(page.contains(&number_input(param("exchange_timeout"), "3")));
    let values = stored(&app, NODE).await;
    assert!(
        !values.contains_key("exchange_timeout"),
        "the default is no row"
    );
    assert_eq!(values["exchange_queue"], "100");
    let audit = app
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'service parameter updated'
           AND target = 'test-node: Exchange Timeout'",
        )
        .await;
    assert_eq!(audit, 2, "set and reset are both audited");

    // Already the default: nothing to do.
    let records = app.count("SELECT COUNT(*) FROM config_changes").await;
    let page = reset(&app, NODE, ("reset", "exchange_timeout"), &[]).await;
    assert!(page.contains("No changes."), "{page}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        records
    );

    // All of them.
    let page = reset(&app, NODE, ("reset_all", "1"), &[]).await;
    assert!(page.contains("Update successful."));
    assert!(stored(&app, NODE).await.is_empty());
    assert!(page.contains(&number_input(param("exchange_queue"), "2200")));
    assert!(page.contains("<option value=\"hide\" selected>"));

    // An unknown parameter is refused, and nothing changes.
    let mut fields = form(&app, NODE, &[]).await;
    fields.retain(|(k, _)| k != "save");
    fields.push(("reset".to_owned(), "no_such_thing".to_owned()));
    let (status, _, body) = post(&app, &fields).await;
    assert_eq!(status, 422);
    assert!(body.contains("There is no such parameter"));
}

#[tokio::test]
async fn restart_records_and_the_banner() {
    let app = admin_app().await;
    let (_, home) = app.get_text("/").await;
    assert!(!home.contains(BANNER));

    // Applies live: audited, no restart record, no banner.
    let page = save_ok(&app, NODE, &[("calendar_out_of_office", "display")]).await;
    assert!(
        page.contains("Applies incrementally: Calendar Out of Office Information"),
        "{page}"
    );
    assert!(!page.contains("Restart required:"), "{page}");
    assert_eq!(app.count("SELECT COUNT(*) FROM config_changes").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'service parameter updated'")
            .await,
        1
    );
    let (_, home) = app.get_text("/").await;
    assert!(!home.contains(BANNER));

    // Needs a restart: recorded, the banner lists it.
    let page = save_ok(&app, NODE, &[("exchange_timeout", "5")]).await;
    assert!(
        page.contains(
            "Update successful. Restart required: restart the Presence Engine on test-node for \
             Exchange Timeout to take effect."
        ),
        "{page}"
    );
    let (_, home) = app.get_text("/").await;
    assert!(home.contains(BANNER), "{home}");
    assert!(
        home.contains("Service parameter Exchange Timeout on test-node: 3 → 5 seconds"),
        "{home}"
    );
    assert!(home.contains("(restart required)"));

    // Restart recommended: recorded as such.
    save_ok(&app, NODE, &[("calendar_spread", "10")]).await;
    let restart: String = sqlx::query_scalar(
        "SELECT restart FROM config_changes WHERE summary LIKE '%Calendar Spread%'",
    )
    .fetch_one(&app.state.pool)
    .await
    .unwrap();
    assert_eq!(restart, "recommended");

    // The same values again: "No changes.", nothing recorded.
    let records = app.count("SELECT COUNT(*) FROM config_changes").await;
    let audits = app.count("SELECT COUNT(*) FROM audit_log").await;
    let page = save_ok(&app, NODE, &[]).await;
    assert!(page.contains("No changes."));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        records
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, audits);
}

#[tokio::test]
async fn a_notification_port_another_program_holds_is_refused() {
    let app = admin_app().await;

    let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let body = save_refused(&app, NODE, &[("notification_port", &port)]).await;
    assert!(
        body.contains(&format!(
            "Port {port} is in use by another program on this server (TCP): choose another."
        )),
        "{body}"
    );
    assert!(body.contains("id=\"notification_port-error\""));
    assert!(stored(&app, NODE).await.is_empty());

    // A UDP port whose TCP twin is free, so only UDP can be the reason (a
    // parallel test may hold the TCP port of the same number).
    let udp = (0..50)
        .map(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap())
        .find(|u| {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, u.local_addr().unwrap().port())).is_ok()
        })
        .expect("a UDP port whose TCP twin is free");
    let udp_port = udp.local_addr().unwrap().port().to_string();
    let body = save_refused(&app, NODE, &[("notification_port", &udp_port)]).await;
    assert!(
        body.contains(&format!(
            "Port {udp_port} is in use by another program on this server (UDP): choose another."
        )),
        "{body}"
    );
    assert!(stored(&app, NODE).await.is_empty());

    // The port the node's own engine holds is not "another program".
    sqlx::query("UPDATE nodes SET engine_port = $1 WHERE name = $2")
        .bind(i64::from(tcp.local_addr().unwrap().port()))
        .bind(NODE)
        .execute(&app.state.pool)
        .await
        .unwrap();
    save_ok(&app, NODE, &[("notification_port", &port)]).await;
    assert_eq!(stored(&app, NODE).await["notification_port"], port);

    // Unchanged, it is not checked again: saving another parameter works
    // while the engine no longer claims the port the test still holds.
    sqlx::query("UPDATE nodes SET engine_port = NULL")
        .execute(&app.state.pool)
        .await
        .unwrap();
    save_ok(&app, NODE, &[("exchange_threads", "10")]).await;
    drop(tcp);
    drop(udp);
}

#[tokio::test]
async fn each_node_has_its_own_parameters() {
    let app = admin_app().await;
    sqlx::query(
        "INSERT INTO nodes (name, address, activated, started_at, last_heartbeat)
         VALUES ('node-b', '127.0.0.2:8443', 0, 0, 0)",
    )
    .execute(&app.state.pool)
    .await
    .unwrap();
    let (_, page) = app.get_text(PAGE).await;
    assert!(
        page.contains("<option value=\"node-b\">node-b</option>"),
        "{page}"
    );
    assert!(page.contains("<option value=\"test-node\" selected>"));

    let (status, page) = app
        .get_text(&format!("{PAGE}?node=node-b&service=presence-engine"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("<option value=\"node-b\" selected>node-b</option>"));
    assert!(page.contains("<input type=\"hidden\" name=\"node\" value=\"node-b\">"));
    assert!(
        page.contains(">Presence Engine (Inactive)</option>"),
        "deactivated node"
    );
    assert!(
        page.contains("type=\"text\" value=\"node-b\""),
        "its own default host"
    );

    let page = save_ok(&app, "node-b", &[("exchange_timeout", "7")]).await;
    assert!(page.contains(&number_input(param("exchange_timeout"), "7")));
    assert_eq!(stored(&app, "node-b").await["exchange_timeout"], "7");
    assert!(
        stored(&app, NODE).await.is_empty(),
        "this node is untouched"
    );
    let (_, page) = app.get_text(PAGE).await;
    assert!(page.contains(&number_input(param("exchange_timeout"), "3")));
    let summary: String = sqlx::query_scalar("SELECT summary FROM config_changes")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(
        summary,
        "Service parameter Exchange Timeout on node-b: 3 → 7 seconds"
    );

    let (status, _) = app.get_text(&format!("{PAGE}?node=no-such-node")).await;
    assert_eq!(status, 404);
    let mut fields = form(&app, NODE, &[]).await;
    fields[0].1 = "no-such-node".to_owned();
    let (status, _, _) = post(&app, &fields).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn calendar_spread_suggests_users_assigned_over_100() {
    let app = admin_app().await;
    let (_, page) = app.get_text(PAGE).await;
    assert!(
        page.contains("Suggested for this node: 0 seconds (0 users assigned / 100, at most 59)"),
        "{page}"
    );
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1250)
         INSERT INTO users (user_id, role, password_hash, created_at, updated_at)
         SELECT 'user' || i, 'end_user', 'unused', 0, 0 FROM n",
    )
    .execute(&app.state.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET node = 'test-node' WHERE role = 'end_user'")
        .execute(&app.state.pool)
        .await
        .unwrap();
    // Users on another node do not count.
    sqlx::query("UPDATE users SET node = 'node-b' WHERE user_id IN ('user1', 'user2')")
        .execute(&app.state.pool)
        .await
        .unwrap();
    let (_, page) = app.get_text(PAGE).await;
    assert!(
        page.contains(
            "Suggested for this node: 12 seconds (1,248 users assigned / 100, at most 59)"
        ),
        "{page}"
    );
}

#[tokio::test]
async fn the_troubleshooter_follows_this_nodes_authentication_parameter() {
    use crate::sim::{ACCOUNT, PASSWORD, PASSWORD_ENV, SimProcess};

    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let app = admin_app().await;
    let pem = std::fs::read(sim.dir.path().join("ca.pem")).unwrap();
    for der in rustls_pemfile::certs(&mut &pem[..]) {
        let der = der.unwrap();
        let info = presence_gateway::tls::certinfo::parse(&der).unwrap();
        store::trust::insert(&app.state.pool, &der, &info, "admin", app.state.now())
            .await
            .unwrap();
    }
    let port = sim.port().to_string();
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", "Sim"),
                ("server", "127.0.0.1"),
                ("account_name", ACCOUNT),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("port", &port),
                ("test_mailbox", "user@example.com"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let gateway = location(&response);
    let run = || async {
        app.post_form(&format!("{gateway}/troubleshoot"), &[])
            .await
            .text()
            .await
            .unwrap()
    };
    let page = run().await;
    assert!(page.contains("<strong>Verified</strong>"), "{page}");
    assert!(
        page.contains("Authentication: NTLMv2, bound to this TLS connection."),
        "Auto by default, and exchange-sim offers NTLM: {page}"
    );

    save_ok(&app, NODE, &[("exchange_auth", "basic")]).await;
    let page = run().await;
    assert!(page.contains("Authentication: Basic."), "{page}");
    assert!(!page.contains("NTLMv2, bound"), "{page}");
}
