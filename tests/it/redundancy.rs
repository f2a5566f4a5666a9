//! Presence Redundancy Groups (CL-4) in the store, on whichever database
//! the run uses (the test command runs this module on SQLite and on
//! PostgreSQL). Time is passed in, so every lease expires exactly when the
//! test says.

use presence_gateway::domain::presence::CalendarPresence;
use presence_gateway::domain::redundancy::GroupForm;
use presence_gateway::domain::refusal::{RedundancyRefusal, Refusal};
use presence_gateway::error::AppError;
use presence_gateway::store;
use presence_gateway::store::presence::Publication;
use presence_gateway::store::redundancy;

use crate::support::{TestApp, field_error};

const A: &str = "alice-node";
const B: &str = "bob-node";
const T0: i64 = 1_800_000_000;

fn form(name: &str, a: &str, b: &str, ha: bool, after: &str) -> GroupForm {
    GroupForm::parse(name, a, b, ha, after).expect("a valid form")
}

/// Two registered nodes, one calendar user on each, and a group of the two
/// with High Availability and a 30 s Failover After.
async fn pair() -> (TestApp, i64) {
    let app = TestApp::spawn().await;
    app.add_node(A).await;
    app.add_node(B).await;
    for (user, node) in [("ann", A), ("bert", B)] {
        app.create_end_user(user, "end-user-pass-1").await;
        sqlx::query("UPDATE users SET node = $1, calendar_enabled = 1 WHERE user_id = $2")
            .bind(node)
            .bind(user)
            .execute(&app.state.pool)
            .await
            .unwrap();
    }
    let id = redundancy::save(
        &app.state.pool,
        None,
        &form("Pair 1", A, B, true, "30"),
        "admin",
        T0,
    )
    .await
    .expect("save the group");
    (app, id)
}

fn meeting(user: &str, since: i64) -> Vec<Publication> {
    vec![Publication {
        user_id: user.to_owned(),
        presence: CalendarPresence::InAMeeting,
        since,
        until: Some(since + 1800),
        gateway: Some("Exchange".to_owned()),
        reason: None,
    }]
}

async fn renew(app: &TestApp, node: &str, now: i64) -> Vec<String> {
    redundancy::renew(&app.state.pool, node, now)
        .await
        .expect("renew")
}

async fn publishes(app: &TestApp, node: &str, user: &str, now: i64) -> bool {
    let written = store::presence::publish_as(&app.state.pool, node, &meeting(user, now), now)
        .await
        .expect("publish");
    !written.is_empty()
}

async fn audited(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND actor = 'cluster'"
    ))
    .await
}

#[tokio::test]
async fn a_node_outside_any_group_serves_its_own_users_without_a_lease() {
    let app = TestApp::spawn().await;
    app.add_node(A).await;
    app.create_end_user("ann", "end-user-pass-1").await;
    sqlx::query("UPDATE users SET node = $1 WHERE user_id = 'ann'")
        .bind(A)
        .execute(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(renew(&app, A, T0).await, [A]);
    assert_eq!(app.count("SELECT COUNT(*) FROM node_leases").await, 0);
    assert!(publishes(&app, A, "ann", T0).await);
    // Another node's engine never writes for ann.
    assert!(!publishes(&app, B, "ann", T0).await);
}

#[tokio::test]
async fn a_silent_node_is_failed_over_and_falls_back_when_it_renews_again() {
    let (app, _) = pair().await;
    assert_eq!(renew(&app, A, T0).await, [A]);
    assert_eq!(renew(&app, B, T0).await, [B]);
    // B renews for the last time at T0 + 2; its lease runs to T0 + 32.
    assert_eq!(renew(&app, B, T0 + 2).await, [B]);
    assert_eq!(renew(&app, A, T0 + 20).await, [A]);
    assert_eq!(
        renew(&app, A, T0 + 31).await,
        [A],
        "not before the lease ran out"
    );
    assert!(publishes(&app, B, "bert", T0 + 31).await);

    assert_eq!(renew(&app, A, T0 + 33).await, [A, B], "failed over");
    assert_eq!(audited(&app, "redundancy_group.failover").await, 1);
    let leases = redundancy::leases(&app.state.pool).await.unwrap();
    let bob = leases.iter().find(|l| l.node == B).unwrap();
    assert_eq!((bob.served_by.as_str(), bob.served_since), (A, T0 + 33));
    // Renewing again changes nothing and audits nothing.
    assert_eq!(renew(&app, A, T0 + 35).await, [A, B]);
    assert_eq!(audited(&app, "redundancy_group.failover").await, 1);

    // B was frozen, not dead: awake, it publishes nothing, before and
    // after it renews, while A does.
    assert!(
        !publishes(&app, B, "bert", T0 + 40).await,
        "fenced: lease expired"
    );
    assert!(publishes(&app, A, "bert", T0 + 20).await);
    assert_eq!(renew(&app, B, T0 + 41).await, Vec::<String>::new());
    assert!(
        !publishes(&app, B, "bert", T0 + 41).await,
        "fenced: served by A"
    );
    // A hands bert back at its next renewal and stops publishing for him
    // at once; B takes him at its own next renewal.
    assert_eq!(renew(&app, A, T0 + 42).await, [A]);
    assert_eq!(audited(&app, "redundancy_group.fallback").await, 1);
    assert!(!publishes(&app, A, "bert", T0 + 42).await);
    assert_eq!(renew(&app, B, T0 + 43).await, [B]);
    assert!(publishes(&app, B, "bert", T0 + 43).await);
    assert!(!publishes(&app, A, "bert", T0 + 43).await);
    assert!(publishes(&app, A, "ann", T0 + 43).await);
    assert!(!publishes(&app, B, "ann", T0 + 43).await);
}

#[tokio::test]
async fn a_node_whose_peer_died_while_serving_it_takes_its_own_users_back() {
    let (app, _) = pair().await;
    renew(&app, A, T0).await;
    renew(&app, B, T0).await;
    renew(&app, A, T0 + 20).await;
    assert_eq!(renew(&app, A, T0 + 31).await, [A, B]);
    // A dies in turn (its lease runs to T0 + 61) while B is back: B takes
    // its own users back, and A's, without waiting for a handover that
    // cannot come.
    assert_eq!(renew(&app, B, T0 + 40).await, Vec::<String>::new());
    assert_eq!(renew(&app, B, T0 + 50).await, Vec::<String>::new());
    assert!(!publishes(&app, B, "bert", T0 + 50).await);
    assert_eq!(renew(&app, B, T0 + 62).await, [B, A]);
    assert!(publishes(&app, B, "bert", T0 + 62).await);
    assert!(publishes(&app, B, "ann", T0 + 62).await);
    assert!(!publishes(&app, A, "bert", T0 + 62).await);
    assert!(!publishes(&app, A, "ann", T0 + 62).await);
}

#[tokio::test]
async fn after_an_outage_of_both_nodes_each_renews_its_own_first() {
    let (app, _) = pair().await;
    renew(&app, A, T0).await;
    renew(&app, B, T0).await;
    // The database was away for a minute: both leases ran out. Whichever
    // node comes first keeps to its own users, so nothing moves.
    assert_eq!(renew(&app, A, T0 + 60).await, [A]);
    assert_eq!(renew(&app, B, T0 + 61).await, [B]);
    assert_eq!(renew(&app, A, T0 + 62).await, [A]);
    assert_eq!(audited(&app, "redundancy_group.failover").await, 0);
}

#[tokio::test]
async fn a_node_stopped_on_purpose_is_taken_over_at_its_peers_next_renewal() {
    let (app, _) = pair().await;
    renew(&app, A, T0).await;
    renew(&app, B, T0).await;
    assert!(
        redundancy::hand_over(&app.state.pool, B, T0 + 1)
            .await
            .unwrap()
    );
    assert!(!publishes(&app, B, "bert", T0 + 1).await);
    assert_eq!(renew(&app, A, T0 + 2).await, [A, B]);
    // A stops in turn while B is gone: nobody takes over, so A's engine
    // publishes its users unknown before it gives its lease up.
    assert!(
        !redundancy::hand_over(&app.state.pool, A, T0 + 20)
            .await
            .unwrap()
    );
    assert!(publishes(&app, A, "bert", T0 + 20).await);
    redundancy::give_up(&app.state.pool, A, T0 + 20)
        .await
        .unwrap();
    assert!(!publishes(&app, A, "ann", T0 + 20).await);
    // Outside a group there is nobody to hand over to.
    assert!(
        !redundancy::hand_over(&app.state.pool, "test-node", T0)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn without_high_availability_nothing_fails_over_and_the_leases_go() {
    let (app, id) = pair().await;
    renew(&app, A, T0).await;
    renew(&app, B, T0).await;
    renew(&app, A, T0 + 20).await;
    assert_eq!(renew(&app, A, T0 + 31).await, [A, B]);
    redundancy::save(
        &app.state.pool,
        Some(id),
        &form("Pair 1", A, B, false, "30"),
        "admin",
        T0 + 32,
    )
    .await
    .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM node_leases").await, 0);
    assert_eq!(renew(&app, A, T0 + 100).await, [A]);
    assert_eq!(renew(&app, B, T0 + 100).await, [B]);
    assert!(publishes(&app, B, "bert", T0 + 100).await);
    assert!(!publishes(&app, A, "bert", T0 + 100).await);
    // Deleting the group audits it; each node keeps to its own.
    redundancy::delete(&app.state.pool, id, "admin", T0 + 101)
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'redundancy_group.%' AND actor = 'admin'")
            .await,
        3
    );
}

fn refusal(result: Result<i64, AppError>) -> RedundancyRefusal {
    match result {
        Err(AppError::Refused(Refusal::Redundancy(r))) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_group_names_known_nodes_each_in_one_group_under_a_unique_name() {
    let (app, id) = pair().await;
    app.add_node("carol-node").await;
    app.add_node("dave-node").await;
    let pool = &app.state.pool;
    let save = |f: GroupForm, id: Option<i64>| async move {
        redundancy::save(pool, id, &f, "admin", T0).await
    };
    assert_eq!(
        refusal(save(form("pair 1", "carol-node", "dave-node", true, "30"), None).await),
        RedundancyRefusal::NameTaken
    );
    assert_eq!(
        refusal(save(form("Pair 2", "carol-node", "erin-node", true, "30"), None).await),
        RedundancyRefusal::UnknownNode {
            field: "node_b",
            node: "erin-node".to_owned()
        }
    );
    assert_eq!(
        refusal(save(form("Pair 2", B, "carol-node", true, "30"), None).await),
        RedundancyRefusal::NodeInGroup {
            field: "node_a",
            node: B.to_owned(),
            group: "Pair 1".to_owned()
        }
    );
    // Nothing of a refused group was written.
    assert_eq!(app.count("SELECT COUNT(*) FROM redundancy_groups").await, 1);
    // The group itself may keep its nodes and its name.
    save(form("Pair 1", B, A, true, "45"), Some(id))
        .await
        .expect("the same group, changed");
    let second = save(form("Pair 2", "carol-node", "dave-node", true, "10"), None)
        .await
        .expect("a second group");
    let groups = redundancy::groups(pool).await.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].failover_after, 45);
    assert_eq!(groups[1].id, second);
}

// ---------------------------------------------------------------- console

const PAGE: &str = "/system/presence-redundancy-groups";

fn group_form<'a>(
    name: &'a str,
    a: &'a str,
    b: &'a str,
    ha: bool,
    after: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("name", name),
        ("node_a", a),
        ("node_b", b),
        ("failover_after", after),
    ];
    if ha {
        form.push(("high_availability", "on"));
    }
    form
}

#[tokio::test]
async fn the_console_adds_changes_and_deletes_a_group_with_messages_beside_the_fields() {
    let app = crate::support::admin_app().await;
    app.add_node(A).await;
    app.add_node(B).await;
    app.add_node("carol-node").await;
    let (status, page) = app.get_text(PAGE).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("No Presence Redundancy Group is configured"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"{PAGE}\"")), "in the menu");

    let (status, page) = app.get_text(&format!("{PAGE}/new")).await;
    assert_eq!(status, 200);
    for label in [
        "Enable High Availability",
        "Failover After",
        "Node 1",
        "Node 2",
    ] {
        assert!(page.contains(label), "{label}: {page}");
    }
    assert!(page.contains("value=\"30\""), "the default Failover After");

    // Refused, each beside its field, and nothing written.
    let new = format!("{PAGE}/new");
    let (status, page) = app.post_text(&new, &group_form("", A, A, true, "5")).await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "name").is_some(), "{page}");
    assert!(
        field_error(&page, "node_b")
            .unwrap()
            .contains("other than the first")
    );
    assert!(
        field_error(&page, "failover_after")
            .unwrap()
            .contains("10 to 300")
    );
    assert!(
        page.contains("selected>alice-node"),
        "the choice is kept: {page}"
    );
    let (status, page) = app
        .post_text(&new, &group_form("Pair 1", "erin-node", B, true, "30"))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error(&page, "node_a").as_deref(),
        Some("No cluster node is named erin-node.")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM redundancy_groups").await, 0);

    let response = app
        .post_form(&new, &group_form(" Pair 1 ", A, B, true, "45"))
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(crate::support::location(&response), PAGE);
    let (_, page) = app.get_text(PAGE).await;
    assert!(
        page.contains("Save successful: Pair 1 pairs alice-node and bob-node"),
        "{page}"
    );
    assert!(page.contains("45 seconds"), "{page}");
    assert!(page.contains("Enabled"), "{page}");
    let id: i64 = sqlx::query_scalar("SELECT id FROM redundancy_groups")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();

    // carol-node cannot join another group with bob-node.
    let (status, page) = app
        .post_text(&new, &group_form("Pair 2", "carol-node", B, true, "30"))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error(&page, "node_b").as_deref(),
        Some("bob-node is in the group Pair 1 already: a node belongs to one group at most.")
    );
    let (status, page) = app
        .post_text(
            &new,
            &group_form("PAIR 1", "carol-node", "test-node", true, "30"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "name")
            .unwrap()
            .contains("Another group has this name")
    );

    // Edit: the form shows what is stored; High Availability off.
    let edit = format!("{PAGE}/{id}");
    let (status, page) = app.get_text(&edit).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("value=\"45\"") && page.contains(" checked"),
        "{page}"
    );
    let response = app
        .post_form(&edit, &group_form("Pair 1", A, B, false, "45"))
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, page) = app.get_text(PAGE).await;
    assert!(page.contains("High Availability is off"), "{page}");
    assert_eq!(app.get_text(&format!("{PAGE}/999")).await.0, 404);

    // Delete, after the confirmation page.
    let (status, page) = app.get_text(&format!("{edit}/delete")).await;
    assert_eq!(status, 200);
    assert!(page.contains("You are about to delete the group"), "{page}");
    let response = app.post_form(&format!("{edit}/delete"), &[]).await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, page) = app.get_text(PAGE).await;
    assert!(page.contains("Delete successful"), "{page}");
    assert_eq!(app.count("SELECT COUNT(*) FROM redundancy_groups").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'redundancy_group.%'")
            .await,
        3
    );
}

#[tokio::test]
async fn only_administrators_reach_the_page() {
    let app = TestApp::spawn().await;
    let anonymous = app.get(PAGE).await;
    assert!(crate::support::location(&anonymous).starts_with("/login"));
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    assert_eq!(app.get(PAGE).await.status().as_u16(), 403);
    let posted = app
        .post_form(&format!("{PAGE}/new"), &group_form("P", A, B, true, "30"))
        .await;
    assert_eq!(posted.status().as_u16(), 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM redundancy_groups").await, 0);
}

#[tokio::test]
async fn control_center_and_home_say_who_serves_whom_and_since_when() {
    let (app, _) = pair().await;
    app.sign_in_admin().await;
    let now = app.state.now();
    renew(&app, A, now).await;
    renew(&app, B, now).await;
    let (_, page) = app.get_text("/serviceability/control-center").await;
    assert!(
        page.contains(
            "Pair 1, with bob-node (High Availability enabled, Failover After 30 seconds)"
        ),
        "{page}"
    );
    assert!(!page.contains("Failed over"), "{page}");
    renew(&app, A, now + 20).await;
    assert_eq!(renew(&app, A, now + 31).await, [A, B]);

    let since = presence_gateway::clock::format_time(now + 31);
    let said = format!("Failed over: bob-node&#39;s users are served by alice-node since {since}.");
    let (_, page) = app.get_text("/serviceability/control-center").await;
    assert!(page.contains(&said), "{page}");
    let (_, page) = app.get_text("/").await;
    assert!(page.contains(&said), "{page}");
    let (_, page) = app.get_text(PAGE).await;
    assert!(page.contains(&said), "{page}");
    // Fallback: the lines go.
    renew(&app, B, now + 40).await;
    renew(&app, A, now + 42).await;
    let (_, page) = app.get_text("/").await;
    assert!(!page.contains("Failed over"), "{page}");
}
