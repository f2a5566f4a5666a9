//! User Management > End User (US-1) over a real port: create, edit, delete
//! and set password, every field's message, duplicates, the locale rule
//! (LO-1), sessions ended, Find and List with paging, and the query plans
//! of every search (an index each, never a scan of `users`).

use crate::support::seed::NamedEndUser;
use presence_gateway::domain::user::{Search, SearchField, SearchMatch, UserId};
use presence_gateway::store;

use crate::support::{TestApp, admin_app, field_error, location};

const PASSWORD: &str = "end-user-pass-1";

/// A form's fields as sent.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// An Add New form with every field valid.
fn valid(user_id: &str) -> Vec<(&str, &str)> {
    vec![
        ("user_id", user_id),
        ("first_name", "Jane"),
        ("last_name", "Doe"),
        ("mailbox", "jane.doe@example.com"),
        ("node", "test-node"),
        ("locale", "en-US"),
        ("calendar_enabled", "on"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ]
}

fn with<'a>(
    mut form: Vec<(&'a str, &'a str)>,
    field: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    for entry in form.iter_mut() {
        if entry.0 == field {
            entry.1 = value;
        }
    }
    form
}

fn without<'a>(form: Vec<(&'a str, &'a str)>, field: &str) -> Vec<(&'a str, &'a str)> {
    form.into_iter().filter(|(k, _)| *k != field).collect()
}

/// Creates an end user through the form; returns the row id from the
/// redirect to their page.
async fn add(app: &TestApp, form: &[(&str, &str)]) -> i64 {
    let response = app.post_form("/users/end-users/new", form).await;
    let status = response.status().as_u16();
    let target = location(&response);
    assert_eq!(
        status,
        303,
        "add: {}",
        response.text().await.unwrap_or_default()
    );
    target
        .strip_prefix("/users/end-users/")
        .and_then(|id| id.parse().ok())
        .expect("user id in the redirect")
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, target FROM audit_log ORDER BY id")
        .fetch_all(&app.state.pool)
        .await
        .expect("audit log")
}

#[tokio::test]
async fn end_users_cannot_reach_user_management() {
    let app = TestApp::spawn().await;
    let anonymous = app.get("/users/end-users").await;
    assert_eq!(anonymous.status().as_u16(), 303);
    assert!(location(&anonymous).starts_with("/login"));

    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    for path in [
        "/users/end-users",
        "/users/end-users/new",
        "/users/end-users/1",
        "/users/end-users/1/password",
        "/users/end-users/1/delete",
    ] {
        assert_eq!(app.get(path).await.status().as_u16(), 403, "GET {path}");
    }
    let refused = app
        .post_form("/users/end-users/new", &valid("mallory"))
        .await;
    assert_eq!(refused.status().as_u16(), 403);
    let refused = app
        .post_form(
            "/users/end-users/1/password",
            &[("password", "x-password-1"), ("confirm", "x-password-1")],
        )
        .await;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(
        store::users::find_by_user_id(&app.state.pool, "mallory")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn create_edit_and_delete_an_end_user() {
    let app = admin_app().await;
    let (status, page) = app.get_text("/users/end-users/new").await;
    assert_eq!(status, 200);
    for label in [
        "User ID",
        "First Name",
        "Last Name",
        "Mailbox",
        "Assigned Node",
        "User Locale",
        "Include meeting information in presence",
        "Password",
        "Confirm Password",
    ] {
        assert!(page.contains(&format!(">{label}</label>")), "{label}");
    }
    assert!(page.contains("<option value=\"test-node\">test-node</option>"));
    assert!(page.contains("(none)"));

    let id = add(&app, &valid("jane.doe")).await;
    let (status, page) = app.get_text(&format!("/users/end-users/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Add successful"), "flash");
    assert!(page.contains("value=\"jane.doe\""));
    assert!(page.contains("value=\"jane.doe@example.com\""));
    assert!(page.contains("<option value=\"test-node\" selected>"));
    assert!(page.contains("checked"), "calendar switch on");
    assert!(!page.contains(PASSWORD), "password never rendered");
    assert!(
        !page.contains("id=\"password\""),
        "no password field on edit"
    );
    let row = store::users::find_end_user(&app.state.pool, id)
        .await
        .unwrap()
        .expect("created");
    assert_eq!(row.first_name, "Jane");
    assert_eq!(row.node.as_deref(), Some("test-node"));
    assert!(row.calendar_enabled);

    // The new user can sign in with the password given.
    let browser = app.other_client();
    let signed_in = browser
        .post(app.url("/login"))
        .form(&[
            ("user_id", "jane.doe"),
            ("password", PASSWORD),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&signed_in), "/user-options");

    // Edit: the calendar switch off (a missing checkbox), no node, no mailbox.
    let edited = without(
        with(
            with(with(valid("Jane.Doe2"), "node", ""), "mailbox", ""),
            "first_name",
            "  Janet ",
        ),
        "calendar_enabled",
    );
    let response = app
        .post_form(&format!("/users/end-users/{id}"), &edited)
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), format!("/users/end-users/{id}"));
    let row = store::users::find_end_user(&app.state.pool, id)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(row.user_id, "Jane.Doe2");
    assert_eq!(row.first_name, "Janet");
    assert_eq!(row.node, None);
    assert_eq!(row.mailbox, None);
    assert!(!row.calendar_enabled);
    // Editing does not touch the password or the sessions.
    let still = browser.get(app.url("/user-options")).send().await.unwrap();
    assert_eq!(still.status().as_u16(), 200);

    // Delete: a confirmation page first, then the user and their sessions go.
    let (status, confirm) = app.get_text(&format!("/users/end-users/{id}/delete")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Jane.Doe2"));
    assert!(confirm.contains("sessions end"));
    let response = app
        .post_form(&format!("/users/end-users/{id}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/users/end-users");
    assert!(
        store::users::find_end_user(&app.state.pool, id)
            .await
            .unwrap()
            .is_none()
    );
    let ended = browser.get(app.url("/user-options")).send().await.unwrap();
    assert_eq!(ended.status().as_u16(), 303);
    assert!(location(&ended).contains("ended=1"), "{}", location(&ended));
    assert_eq!(
        app.get(&format!("/users/end-users/{id}"))
            .await
            .status()
            .as_u16(),
        404
    );

    let actions = audit_actions(&app).await;
    let mine: Vec<_> = actions
        .iter()
        .filter(|(a, _)| a.starts_with("end_user."))
        .map(|(a, t)| (a.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        mine,
        [
            ("end_user.create", "jane.doe"),
            ("end_user.update", "Jane.Doe2"),
            ("end_user.delete", "Jane.Doe2"),
        ]
    );
    // Users are live configuration: no restart record.
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM config_changes")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(changes, 0);
}

/// EN-5 on the End User page: the user's calendar presence as saved, the
/// same states User Options shows (nothing is published before the engine
/// reads calendars).
#[tokio::test]
async fn the_detail_page_shows_the_users_calendar_presence() {
    let app = admin_app().await;
    let id = add(&app, &valid("erin")).await;
    let page = format!("/users/end-users/{id}");
    let presence = |body: &str| {
        body.split(r#"<p id="calendar-presence">"#)
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let body = app.get_text(&page).await.1;
    assert!(
        presence(&body).contains("Not available: no presence gateway has been configured."),
        "{body}"
    );
    crate::user_options::add_gateway(&app).await;
    let body = app.get_text(&page).await.1;
    assert!(
        presence(&body).contains("the Presence Engine has not read this user"),
        "{body}"
    );
    // A refused save shows the saved switch, not the one typed.
    let refused = with(
        without(valid("erin"), "calendar_enabled"),
        "mailbox",
        "not a mailbox",
    );
    let (status, body) = app.post_text(&page, &refused).await;
    assert_eq!(status, 422);
    assert!(presence(&body).contains("has not read"), "{body}");
    let saved = without(
        without(without(valid("erin"), "calendar_enabled"), "password"),
        "confirm",
    );
    let (status, _) = app.post_text(&page, &saved).await;
    assert_eq!(status, 303);
    let body = app.get_text(&page).await.1;
    assert!(
        presence(&body).contains("calendar information is switched off for this user"),
        "{body}"
    );
    // Add New has no presence to show.
    let body = app.get_text("/users/end-users/new").await.1;
    assert!(!body.contains("calendar-presence"));
}

#[tokio::test]
async fn every_field_error_is_shown_beside_its_field() {
    let app = admin_app().await;
    let long = "x".repeat(65);
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            with(valid("u1"), "user_id", ""),
            "user_id",
            "Enter a User ID.",
        ),
        (
            with(valid("u1"), "user_id", "a b"),
            "user_id",
            "may contain",
        ),
        (with(valid("u1"), "user_id", &long), "user_id", "at most 64"),
        (
            with(valid("u1"), "first_name", &long),
            "first_name",
            "First Name is at most 64",
        ),
        (
            with(valid("u1"), "last_name", "Do\u{1}e"),
            "last_name",
            "control characters",
        ),
        (
            with(valid("u1"), "mailbox", "jane"),
            "mailbox",
            "e-mail address",
        ),
        (
            with(valid("u1"), "node", "no-such-node"),
            "node",
            "no cluster node named",
        ),
        (
            with(valid("u1"), "locale", "xx-XX"),
            "locale",
            "not a locale this product knows",
        ),
        (
            with(valid("u1"), "password", "short"),
            "password",
            "Use at least 12 characters.",
        ),
        (
            with(
                with(valid("u1"), "password", "QWERTY123456"),
                "confirm",
                "QWERTY123456",
            ),
            "password",
            "one of the 10,000 most common",
        ),
        (
            with(
                with(valid("u1"), "password", "my-U1-secret-pass"),
                "confirm",
                "my-U1-secret-pass",
            ),
            "password",
            "must not contain the user ID",
        ),
        (
            with(valid("u1"), "confirm", "different-pass"),
            "password",
            "do not match",
        ),
    ];
    for (form, field, message) in cases {
        let (status, page) = app.post_text("/users/end-users/new", &form).await;
        assert_eq!(status, 422, "{field}: {message}");
        let shown = field_error(&page, field)
            .unwrap_or_else(|| panic!("no message beside {field} for {message}"));
        assert!(shown.contains(message), "{field}: {shown:?}");
        assert!(page.contains(&format!("aria-describedby=\"{field}-help {field}-error\"")));
        assert!(!page.contains(PASSWORD), "password never rendered back");
    }
    // Everything typed stays in the form, and nothing was written.
    let (_, page) = app
        .post_text(
            "/users/end-users/new",
            &with(valid("kept.id"), "mailbox", "bad"),
        )
        .await;
    assert!(page.contains("value=\"kept.id\""));
    assert!(page.contains("value=\"Doe\""));
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'end_user'")
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);

    // The same rules on edit.
    let id = add(&app, &valid("edit.me")).await;
    let (status, page) = app
        .post_text(
            &format!("/users/end-users/{id}"),
            &with(valid("edit.me"), "mailbox", "@nope"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "mailbox").is_some());
}

#[tokio::test]
async fn duplicate_user_ids_are_refused_whatever_the_case() {
    let app = admin_app().await;
    let first = add(&app, &valid("dup.user")).await;
    let (status, page) = app
        .post_text("/users/end-users/new", &valid("DUP.user"))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error(&page, "user_id").as_deref(),
        Some("A user with this User ID already exists.")
    );
    // An administrator's ID is taken too.
    let (status, page) = app.post_text("/users/end-users/new", &valid("Admin")).await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "user_id").is_some());
    // Renaming onto another user's ID.
    let second = add(&app, &valid("other.user")).await;
    let (status, page) = app
        .post_text(&format!("/users/end-users/{second}"), &valid("dup.USER"))
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "user_id").is_some());
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_locale_must_be_installed_on_every_node() {
    let app = admin_app().await;
    app.add_node("node-b").await;
    app.install_locale("test-node", "de-DE").await;

    // Not offered, and refused when sent anyway, naming the node that lacks it.
    let (_, page) = app.get_text("/users/end-users/new").await;
    assert!(!page.contains("value=\"de-DE\""));
    let (status, page) = app
        .post_text(
            "/users/end-users/new",
            &with(valid("hans"), "locale", "de-DE"),
        )
        .await;
    assert_eq!(status, 422);
    let message = field_error(&page, "locale").expect("message beside User Locale");
    assert!(message.contains("node-b"), "{message}");
    assert!(!message.contains("test-node"), "{message}");
    assert!(
        store::users::find_by_user_id(&app.state.pool, "hans")
            .await
            .unwrap()
            .is_none()
    );

    // Installed everywhere: offered and saved.
    app.install_locale("node-b", "de-DE").await;
    let (_, page) = app.get_text("/users/end-users/new").await;
    assert!(page.contains("value=\"de-DE\""));
    let id = add(&app, &with(valid("hans"), "locale", "de-DE")).await;
    assert_eq!(
        store::users::find_end_user(&app.state.pool, id)
            .await
            .unwrap()
            .unwrap()
            .locale,
        "de-DE"
    );

    // A third node without it: the stored locale is shown with the reason,
    // and saving it again is refused until another is chosen.
    app.add_node("node-c").await;
    let (status, page) = app.get_text(&format!("/users/end-users/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<option value=\"de-DE\" selected>"));
    assert!(page.contains("not installed on every node"));
    assert!(page.contains("node-c"));
    let (status, page) = app
        .post_text(
            &format!("/users/end-users/{id}"),
            &with(valid("hans"), "locale", "de-DE"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "locale").unwrap().contains("node-c"));
    let response = app
        .post_form(
            &format!("/users/end-users/{id}"),
            &with(valid("hans"), "locale", "en-US"),
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
}

#[tokio::test]
async fn setting_a_password_ends_the_users_sessions() {
    let app = admin_app().await;
    let id = add(&app, &valid("pat")).await;
    let browser = app.other_client();
    let signed_in = browser
        .post(app.url("/login"))
        .form(&[("user_id", "pat"), ("password", PASSWORD), ("next", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    let ok = browser.get(app.url("/user-options")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    let path = format!("/users/end-users/{id}/password");
    let (status, page) = app.get_text(&path).await;
    assert_eq!(status, 200);
    assert!(page.contains(">Password</label>") && page.contains(">Confirm Password</label>"));
    let (status, page) = app
        .post_text(
            &path,
            &[("password", "new-pass-123"), ("confirm", "new-pass-124")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "password")
            .unwrap()
            .contains("do not match")
    );
    let (status, _) = app
        .post_text(&path, &[("password", "short"), ("confirm", "short")])
        .await;
    assert_eq!(status, 422);
    // Still signed in: nothing was saved.
    let ok = browser.get(app.url("/user-options")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    let response = app
        .post_form(
            &path,
            &[("password", "new-pass-123"), ("confirm", "new-pass-123")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let ended = browser.get(app.url("/user-options")).send().await.unwrap();
    assert_eq!(ended.status().as_u16(), 303);
    assert!(location(&ended).contains("ended=1"));

    let fresh = app.other_client();
    let old = fresh
        .post(app.url("/login"))
        .form(&[("user_id", "pat"), ("password", PASSWORD), ("next", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(old.status().as_u16(), 401);
    let new = fresh
        .post(app.url("/login"))
        .form(&[
            ("user_id", "pat"),
            ("password", "new-pass-123"),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&new), "/user-options");
    assert!(
        audit_actions(&app)
            .await
            .contains(&("end_user.set_password".to_owned(), "pat".to_owned()))
    );

    // The End User pages never reach an administrator's account.
    let admin = store::users::find_by_user_id(&app.state.pool, "admin")
        .await
        .unwrap()
        .unwrap();
    for path in [
        format!("/users/end-users/{}", admin.id),
        format!("/users/end-users/{}/password", admin.id),
        format!("/users/end-users/{}/delete", admin.id),
    ] {
        assert_eq!(app.get(&path).await.status().as_u16(), 404, "{path}");
    }
    let response = app
        .post_form(
            &format!("/users/end-users/{}/password", admin.id),
            &[("password", "taken-over-1"), ("confirm", "taken-over-1")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 404);
}

// ---------------------------------------------------------------- Find and List

const FIRST: &[&str] = &[
    "Maria", "Mark", "Anna", "Andrew", "Jonas", "Zoë", "Marianne", "Ian", "Olga", "Sam",
];
const LAST: &[&str] = &[
    "Johnson", "Jones", "Anderson", "Smith", "Ørsted", "O'Brien", "Masters", "Lee", "Jonsson",
    "Mason",
];

/// A few hundred users with names, and what each looks like to a search.
fn people(count: usize) -> Vec<(String, String, String)> {
    (0..count)
        .map(|i| {
            let first = FIRST[i % FIRST.len()];
            let last = LAST[(i / FIRST.len() + i) % LAST.len()];
            let ascii: String = first
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_lowercase();
            (format!("{ascii}{i:03}"), first.to_owned(), last.to_owned())
        })
        .collect()
}

async fn seed_people(app: &TestApp, count: usize) -> Vec<(String, String, String)> {
    let people = people(count);
    let users: Vec<NamedEndUser> = people
        .iter()
        .map(|(id, first, last)| NamedEndUser {
            user_id: UserId::parse(id).unwrap(),
            first_name: first.clone(),
            last_name: last.clone(),
        })
        .collect();
    crate::support::seed::create_many_named_end_users(
        &app.state.pool,
        &users,
        "x",
        app.state.now(),
    )
    .await
    .unwrap();
    people
}

fn expected(
    people: &[(String, String, String)],
    field: SearchField,
    how: SearchMatch,
    text: &str,
) -> Vec<String> {
    let needle = text.to_lowercase();
    let mut ids: Vec<String> = people
        .iter()
        .filter(|(id, first, last)| {
            let value = match field {
                SearchField::UserId => id,
                SearchField::FirstName => first,
                SearchField::LastName => last,
            }
            .to_lowercase();
            match how {
                SearchMatch::BeginsWith => value.starts_with(&needle),
                SearchMatch::Contains => value.contains(&needle),
            }
        })
        .map(|(id, _, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

/// The user IDs a list page shows, in order.
fn listed_ids(page: &str) -> Vec<String> {
    page.split("<th scope=\"row\"><a href=\"/users/end-users/")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find('>')? + 1;
            let end = rest.find("</a>")?;
            Some(rest[start..end].to_owned())
        })
        .collect()
}

fn list_path(field: SearchField, how: SearchMatch, text: &str, page: i64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("field", field.as_str());
    q.append_pair("match", how.as_str());
    q.append_pair("text", text);
    q.append_pair("page", &page.to_string());
    format!("/users/end-users?{}", q.finish())
}

#[tokio::test]
async fn find_and_list_begins_with_and_contains_on_each_field() {
    let app = admin_app().await;
    let people = seed_people(&app, 400).await;
    // Direct in the store, every field and match, case ignored.
    let searches = [
        (SearchField::UserId, SearchMatch::BeginsWith, "MAR"),
        (SearchField::UserId, SearchMatch::Contains, "a01"),
        (SearchField::FirstName, SearchMatch::BeginsWith, "ma"),
        (SearchField::FirstName, SearchMatch::Contains, "ANN"),
        (SearchField::LastName, SearchMatch::BeginsWith, "Jon"),
        (SearchField::LastName, SearchMatch::Contains, "son"),
        (SearchField::LastName, SearchMatch::Contains, "o'b"),
        (SearchField::FirstName, SearchMatch::BeginsWith, "zo"),
        (SearchField::LastName, SearchMatch::Contains, "rst"),
        (SearchField::LastName, SearchMatch::BeginsWith, "x"),
        // Beyond ASCII, as typed: the same on both databases.
        (SearchField::LastName, SearchMatch::BeginsWith, "Ørs"),
        (SearchField::FirstName, SearchMatch::Contains, "ZOë"),
    ];
    for (field, how, text) in searches {
        let want = expected(&people, field, how, text);
        let search = Search::parse(field, how, text).unwrap();
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let page = store::users::search_end_users(&app.state.pool, &search, offset, 50)
                .await
                .unwrap();
            assert_eq!(page.total, want.len() as i64, "{field:?} {how:?} {text}");
            if page.rows.is_empty() {
                break;
            }
            got.extend(page.rows.into_iter().map(|r| r.user_id));
            offset += 50;
        }
        assert_eq!(got, want, "{field:?} {how:?} {text}");
    }
    assert!(
        expected(&people, SearchField::LastName, SearchMatch::Contains, "son").len() > 100,
        "the data pages"
    );

    // Over HTTP, with the pages linked by Previous and Next.
    let want = expected(&people, SearchField::LastName, SearchMatch::Contains, "son");
    let mut path = list_path(SearchField::LastName, SearchMatch::Contains, "son", 1);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_text(&path).await;
        assert_eq!(status, 200);
        pages += 1;
        let ids = listed_ids(&page);
        assert!(ids.len() <= 50);
        let first = got.len() + 1;
        got.extend(ids.iter().cloned());
        let showing = format!("Showing {first}\u{2013}{} of {}", got.len(), want.len());
        assert!(page.contains(&showing), "{showing}");
        assert_eq!(page.contains("rel=\"prev\""), pages > 1);
        let Some(next) = page
            .split("<a href=\"")
            .find_map(|s| s.split_once("\" rel=\"next\"").map(|(href, _)| href))
        else {
            break;
        };
        path = next.replace("&#38;", "&").replace("&amp;", "&");
    }
    assert_eq!(got, want);
    assert_eq!(pages, want.len().div_ceil(50));

    // The unfiltered list: every end user, by user ID, with the count.
    let (status, page) = app.get_text("/users/end-users").await;
    assert_eq!(status, 200);
    assert!(page.contains("Showing 1\u{2013}50 of 400"));
    let mut all: Vec<String> = people.iter().map(|p| p.0.clone()).collect();
    all.sort();
    assert_eq!(listed_ids(&page), all[..50]);
    assert!(!listed_ids(&page).contains(&"admin".to_owned()));
    let (_, page) = app.get_text("/users/end-users?page=8").await;
    assert!(page.contains("Showing 351\u{2013}400 of 400"));
    assert!(!page.contains("rel=\"next\""));
    assert_eq!(listed_ids(&page), all[350..]);
    // Beyond the last page: nothing listed, a way back.
    let (status, page) = app.get_text("/users/end-users?page=99").await;
    assert_eq!(status, 200);
    assert!(listed_ids(&page).is_empty());
    assert!(page.contains("page=8"));

    // Contains with fewer than 3 characters: said beside the box, no list.
    let (status, page) = app
        .get_text(&list_path(
            SearchField::FirstName,
            SearchMatch::Contains,
            "ma",
            1,
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        field_error(&page, "text").as_deref(),
        Some("Enter at least 3 characters to search within names.")
    );
    assert!(listed_ids(&page).is_empty());
    // Begins with takes one character; the form keeps the choices.
    let (_, page) = app
        .get_text(&list_path(
            SearchField::FirstName,
            SearchMatch::BeginsWith,
            "m",
            1,
        ))
        .await;
    assert_eq!(
        listed_ids(&page).len(),
        50.min(
            expected(
                &people,
                SearchField::FirstName,
                SearchMatch::BeginsWith,
                "m"
            )
            .len()
        )
    );
    assert!(page.contains("<option value=\"first_name\" selected>"));
    assert!(page.contains("<option value=\"begins\" selected>"));
    assert!(page.contains("value=\"m\""));
    // FTS5 syntax typed by the user is text, not a query.
    let (status, page) = app
        .get_text(&list_path(
            SearchField::LastName,
            SearchMatch::Contains,
            "\" OR \"a",
            1,
        ))
        .await;
    assert_eq!(status, 200);
    assert!(listed_ids(&page).is_empty());
    assert!(page.contains("No end user matches"));
    // LIKE wildcards are text too.
    let (_, page) = app
        .get_text(&list_path(
            SearchField::UserId,
            SearchMatch::BeginsWith,
            "%",
            1,
        ))
        .await;
    assert!(listed_ids(&page).is_empty());
}

/// Every search the page runs is answered from an index: the plan never
/// scans `users` (a scan of the trigram table's index is a virtual-table
/// lookup, not a scan of the users).
#[tokio::test]
async fn search_query_plans_use_indexes_never_a_scan_of_users() {
    let app = TestApp::spawn().await;
    seed_people(&app, 300).await;
    if store::Backend::of(&app.state.pool) == store::Backend::Postgres {
        return postgres_search_plans_use_indexes(&app).await;
    }
    // The unfiltered list walks the covering user_id index; only the
    // administrators (a few rows, no index holds the role) are read apart.
    let (page_sql, _, _) = store::users::search_sql(store::Backend::Sqlite, &Search::All);
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(&format!("EXPLAIN QUERY PLAN {page_sql}"))
            .bind(50_i64)
            .bind(0_i64)
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    assert!(
        plan.iter()
            .any(|row| row.3 == "SCAN users USING COVERING INDEX sqlite_autoindex_users_1"),
        "{plan:?}"
    );
    // As deployed (no statistics) and after ANALYZE, which may change plans.
    for analyzed in [false, true] {
        if analyzed {
            sqlx::query("ANALYZE")
                .execute(&app.state.pool)
                .await
                .unwrap();
        }
        for field in SearchField::ALL {
            for how in SearchMatch::ALL {
                let search = Search::parse(field, how, "Mar").unwrap();
                let (page_sql, count_sql, binds) =
                    store::users::search_sql(store::Backend::Sqlite, &search);
                for (what, sql, extra) in [("page", &page_sql, 2), ("count", &count_sql, 0)] {
                    let explain = format!("EXPLAIN QUERY PLAN {sql}");
                    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
                    for value in &binds {
                        query = query.bind(value.as_str());
                    }
                    for _ in 0..extra {
                        query = query.bind(50_i64);
                    }
                    let plan: Vec<String> = query
                        .fetch_all(&app.state.pool)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|row| row.3)
                        .collect();
                    let context =
                        format!("{field:?} {how:?} {what} (analyzed: {analyzed}): {plan:?}");
                    assert!(
                        // Walking the administrators' partial index reads
                        // only the administrators, never the end users.
                        !plan.iter().any(|step| {
                            let mut words = step.split_whitespace();
                            words.next() == Some("SCAN")
                                && words.next() == Some("users")
                                && !step.ends_with("USING COVERING INDEX users_admins")
                        }),
                        "{context}"
                    );
                    let expected = match (how, field) {
                        (SearchMatch::Contains, _) => "VIRTUAL TABLE INDEX",
                        (SearchMatch::BeginsWith, SearchField::UserId) => {
                            "INDEX users_user_id_role (user_id>? AND user_id<?)"
                        }
                        (SearchMatch::BeginsWith, SearchField::FirstName) => {
                            "INDEX users_first_name (first_name>? AND first_name<?)"
                        }
                        (SearchMatch::BeginsWith, SearchField::LastName) => {
                            "INDEX users_last_name (last_name>? AND last_name<?)"
                        }
                    };
                    assert!(plan.iter().any(|s| s.contains(expected)), "{context}");
                }
            }
        }
    }
}

/// ASVS 2.1: both administrators' Set Password forms (end user and
/// application user) name the rule a password fails, beside its field; the
/// user-ID rule uses the ID of the user whose password is set.
#[tokio::test]
async fn set_password_forms_name_the_rule_that_failed() {
    let app = admin_app().await;
    let end_user = app.create_end_user("Pat.Lee", PASSWORD).await;
    let response = app
        .post_form(
            "/users/application-users/new",
            &[
                ("user_id", "ops.lead"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let admin = store::users::find_by_user_id(&app.state.pool, "ops.lead")
        .await
        .unwrap()
        .expect("created")
        .id;
    for (path, id) in [
        (format!("/users/end-users/{end_user}/password"), "pat.lee"),
        (
            format!("/users/application-users/{admin}/password"),
            "OPS.LEAD",
        ),
    ] {
        let with_id = format!("my {id} passphrase");
        for (password, message) in [
            ("11 chars ok", "Use at least 12 characters."),
            (
                "1q2w3e4r5t6y",
                "This password is one of the 10,000 most common; choose another.",
            ),
            (
                with_id.as_str(),
                "The password must not contain the user ID.",
            ),
        ] {
            let (status, page) = app
                .post_text(&path, &[("password", password), ("confirm", password)])
                .await;
            assert_eq!(status, 422, "{path} {password}");
            assert_eq!(
                field_error(&page, "password").as_deref(),
                Some(message),
                "{path} {password}"
            );
        }
        let (status, _) = app
            .post_text(
                &path,
                &[
                    ("password", "a fine long phrase"),
                    ("confirm", "a fine long phrase"),
                ],
            )
            .await;
        assert!(status == 303 || status == 200, "{path}: {status}");
    }
}

/// PostgreSQL: with sequential scans priced out (300 rows would be read
/// whole otherwise), no search reads `users` by a sequential scan, and
/// each count is answered from the pattern indexes for prefixes or the
/// trigram indexes for substrings.
async fn postgres_search_plans_use_indexes(app: &TestApp) {
    use sqlx::Connection;
    let url = app.state.settings.database.clone();
    let store::Location::Postgres(url) = url else {
        unreachable!("a PostgreSQL pool has a PostgreSQL location")
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("ANALYZE users")
        .execute(&mut conn)
        .await
        .unwrap();
    for field in SearchField::ALL {
        for how in SearchMatch::ALL {
            let search = Search::parse(field, how, "Mar").unwrap();
            let (page_sql, count_sql, binds) =
                store::users::search_sql(store::Backend::Postgres, &search);
            for (what, sql, extra) in [("page", &page_sql, 2), ("count", &count_sql, 0)] {
                let explain = format!("EXPLAIN {sql}");
                let mut query = sqlx::query_scalar::<_, String>(&explain);
                for value in &binds {
                    query = query.bind(value.as_str());
                }
                for _ in 0..extra {
                    query = query.bind(50_i64);
                }
                let plan = query.fetch_all(&mut conn).await.unwrap().join("\n");
                assert!(
                    !plan.contains("Seq Scan on users"),
                    "{field:?} {how:?} {what}: {plan}"
                );
            }
            // At 300 users the planner may rather filter the role index's
            // rows; the search's own index must still be usable for its
            // filter (at 45,000 users it is the cheaper one).
            let column = field.as_str();
            let (_, _, binds) = store::users::search_sql(store::Backend::Postgres, &search);
            let plan = sqlx::query_scalar::<_, String>(&format!(
                "EXPLAIN SELECT id FROM users WHERE lower({column} COLLATE \"C\") LIKE $1"
            ))
            .bind(binds[0].as_str())
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .join("\n");
            let index = match how {
                SearchMatch::Contains => format!("users_{column}_trgm"),
                SearchMatch::BeginsWith => format!("users_{column}_prefix"),
            };
            assert!(plan.contains(&index), "{field:?} {how:?}: {plan}");
        }
    }
}
