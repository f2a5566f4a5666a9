//! User Management > Application User (US-5) over a real port: the
//! administrators, created with a first password to change, deleted never
//! down to none nor by themselves, passwords set with sessions ended.

use presence_gateway::domain::refusal::{Refusal, UserRefusal};
use presence_gateway::store;

use crate::support::{ADMIN, TestApp, admin_app, field_error, location};

const FIRST_PASSWORD: &str = "second-console-1";

async fn create_admin(app: &TestApp, user_id: &str) -> i64 {
    let response = app
        .post_form(
            "/users/application-users/new",
            &[
                ("user_id", user_id),
                ("password", FIRST_PASSWORD),
                ("confirm", FIRST_PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303, "create {user_id}");
    assert_eq!(location(&response), "/users/application-users");
    store::users::find_by_user_id(&app.state.pool, user_id)
        .await
        .unwrap()
        .expect("created")
        .id
}

/// Signs `user_id` in with a client of its own and, when the first password
/// must be changed, changes it to `password`; returns that client.
async fn signed_in_client(
    app: &TestApp,
    user_id: &str,
    first: &str,
    password: &str,
) -> reqwest::Client {
    let client = app.other_client();
    let response = client
        .post(app.url("/login"))
        .form(&[("user_id", user_id), ("password", first), ("next", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "sign-in of {user_id}");
    if location(&response) == "/account/password" {
        let changed = client
            .post(app.url("/account/password"))
            .form(&[("current", first), ("new", password), ("confirm", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status().as_u16(), 303);
    }
    client
}

async fn status_of(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let response = client.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), location(&response))
}

#[tokio::test]
async fn end_users_cannot_reach_application_users() {
    let app = TestApp::spawn().await;
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    for path in [
        "/users/application-users",
        "/users/application-users/new",
        "/users/application-users/1/delete",
        "/users/application-users/1/password",
    ] {
        assert_eq!(app.get(path).await.status().as_u16(), 403, "{path}");
    }
    let refused = app
        .post_form(
            "/users/application-users/new",
            &[
                ("user_id", "erin-admin"),
                ("password", FIRST_PASSWORD),
                ("confirm", FIRST_PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status().as_u16(), 403);
    let refused = app
        .post_form("/users/application-users/1/delete", &[])
        .await;
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(
        store::users::count_admins(&app.state.pool).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn a_new_administrator_changes_the_password_at_first_sign_in() {
    let app = admin_app().await;
    let (status, page) = app.get_text("/users/application-users").await;
    assert_eq!(status, 200);
    assert!(page.contains(ADMIN));
    assert!(page.contains("1 administrator,"));
    let (status, page) = app.get_text("/users/application-users/new").await;
    assert_eq!(status, 200);
    for label in ["User ID", "Password", "Confirm Password"] {
        assert!(page.contains(&format!(">{label}</label>")), "{label}");
    }

    create_admin(&app, "second.admin").await;
    let (_, page) = app.get_text("/users/application-users").await;
    assert!(page.contains("Add successful"));
    assert!(page.contains("second.admin"));
    assert!(page.contains("Must be changed at next sign-in"));

    // The first password only leads to the password page.
    let client = app.other_client();
    let response = client
        .post(app.url("/login"))
        .form(&[
            ("user_id", "second.admin"),
            ("password", FIRST_PASSWORD),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/account/password");
    let (status, target) = status_of(&client, &app, "/users/application-users").await;
    assert_eq!((status, target.as_str()), (303, "/account/password"));
    let changed = client
        .post(app.url("/account/password"))
        .form(&[
            ("current", FIRST_PASSWORD),
            ("new", "chosen-by-me-1"),
            ("confirm", "chosen-by-me-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status().as_u16(), 303);
    let (status, _) = status_of(&client, &app, "/users/application-users").await;
    assert_eq!(status, 200);

    let audit: Vec<(String, String)> =
        sqlx::query_as("SELECT action, target FROM audit_log WHERE action LIKE 'app_user.%'")
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(
        audit,
        [("app_user.create".to_owned(), "second.admin".to_owned())]
    );
}

#[tokio::test]
async fn create_refuses_bad_ids_passwords_and_duplicates() {
    let app = admin_app().await;
    app.create_end_user("taken.by.end.user", "ember-lantern-pw-1")
        .await;
    let cases: [(&str, &str, &str, &str, &str); 8] = [
        (
            "",
            FIRST_PASSWORD,
            FIRST_PASSWORD,
            "user_id",
            "Enter a User ID.",
        ),
        (
            "bad id",
            FIRST_PASSWORD,
            FIRST_PASSWORD,
            "user_id",
            "may contain",
        ),
        (
            "ok.id",
            "short",
            "short",
            "password",
            "Use at least 12 characters.",
        ),
        (
            "ok.id",
            "LeaveMeAlone",
            "LeaveMeAlone",
            "password",
            "one of the 10,000 most common",
        ),
        (
            "ok.id",
            "was-OK.ID-once",
            "was-OK.ID-once",
            "password",
            "must not contain the user ID",
        ),
        (
            "ok.id",
            FIRST_PASSWORD,
            "other-pass-1",
            "password",
            "do not match",
        ),
        (
            "ADMIN",
            FIRST_PASSWORD,
            FIRST_PASSWORD,
            "user_id",
            "already exists",
        ),
        (
            "Taken.By.End.User",
            FIRST_PASSWORD,
            FIRST_PASSWORD,
            "user_id",
            "already exists",
        ),
    ];
    for (user_id, password, confirm, field, message) in cases {
        let (status, page) = app
            .post_text(
                "/users/application-users/new",
                &[
                    ("user_id", user_id),
                    ("password", password),
                    ("confirm", confirm),
                ],
            )
            .await;
        assert_eq!(status, 422, "{user_id:?}");
        let shown = field_error(&page, field)
            .unwrap_or_else(|| panic!("no message beside {field} for {user_id:?}"));
        assert!(shown.contains(message), "{shown}");
        assert!(!page.contains(FIRST_PASSWORD), "password never rendered");
    }
    assert_eq!(
        store::users::count_admins(&app.state.pool).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn delete_never_the_last_administrator_nor_yourself() {
    let app = admin_app().await;
    let me = store::users::find_by_user_id(&app.state.pool, ADMIN)
        .await
        .unwrap()
        .unwrap()
        .id;

    // Yourself: refused on the confirmation page and on the POST.
    let (status, page) = app
        .get_text(&format!("/users/application-users/{me}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains(&UserRefusal::DeleteSelf.to_string()));
    assert!(!page.contains("class=\"danger\""));
    let (status, page) = app
        .post_text(&format!("/users/application-users/{me}/delete"), &[])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains(&UserRefusal::DeleteSelf.to_string()));

    // Another administrator, signed in elsewhere: deleted with confirmation,
    // and their session ends.
    let other = create_admin(&app, "other.admin").await;
    let client = signed_in_client(&app, "other.admin", FIRST_PASSWORD, "other-chosen-1").await;
    assert_eq!(status_of(&client, &app, "/").await.0, 200);
    let (status, page) = app
        .get_text(&format!("/users/application-users/{other}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("other.admin"));
    assert!(page.contains("class=\"danger\""));
    let response = app
        .post_form(&format!("/users/application-users/{other}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (status, target) = status_of(&client, &app, "/").await;
    assert_eq!(status, 303);
    assert!(target.contains("ended=1"), "{target}");
    assert_eq!(
        store::users::count_admins(&app.state.pool).await.unwrap(),
        1
    );

    // The last administrator, asked by someone else (the store's rule, in
    // the same transaction as the delete).
    let refused = store::users::delete_admin(&app.state.pool, me, -1, "someone", 0).await;
    assert!(
        matches!(
            &refused,
            Err(presence_gateway::error::AppError::Refused(Refusal::User(
                UserRefusal::LastAdmin
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(
        store::users::count_admins(&app.state.pool).await.unwrap(),
        1
    );

    // Two administrators deleting each other at once: one of them remains.
    let a = create_admin(&app, "admin.a").await;
    let b = create_admin(&app, "admin.b").await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(me)
        .execute(&app.state.pool)
        .await
        .unwrap();
    let pool = app.state.pool.clone();
    let (ab, ba) = tokio::join!(
        store::users::delete_admin(&pool, b, a, "admin.a", 0),
        store::users::delete_admin(&pool, a, b, "admin.b", 0),
    );
    assert!(ab.is_ok() != ba.is_ok(), "{ab:?} {ba:?}");
    assert_eq!(store::users::count_admins(&pool).await.unwrap(), 1);
}

#[tokio::test]
async fn set_password_ends_their_sessions_and_asks_for_a_new_one() {
    let app = admin_app().await;
    let other = create_admin(&app, "reset.me").await;
    let client = signed_in_client(&app, "reset.me", FIRST_PASSWORD, "my-own-choice-1").await;
    assert_eq!(status_of(&client, &app, "/").await.0, 200);

    let path = format!("/users/application-users/{other}/password");
    let (status, page) = app.get_text(&path).await;
    assert_eq!(status, 200);
    assert!(page.contains("reset.me"));
    let (status, page) = app
        .post_text(&path, &[("password", "short"), ("confirm", "short")])
        .await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "password")
            .unwrap()
            .contains("Use at least 12 characters.")
    );
    assert_eq!(status_of(&client, &app, "/").await.0, 200, "nothing saved");

    let response = app
        .post_form(
            &path,
            &[
                ("password", "reset-by-admin-1"),
                ("confirm", "reset-by-admin-1"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (status, target) = status_of(&client, &app, "/").await;
    assert_eq!(status, 303);
    assert!(target.contains("ended=1"));
    let fresh = app.other_client();
    let response = fresh
        .post(app.url("/login"))
        .form(&[
            ("user_id", "reset.me"),
            ("password", "reset-by-admin-1"),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/account/password");

    // Your own password is changed where the current one is asked for.
    let me = store::users::find_by_user_id(&app.state.pool, ADMIN)
        .await
        .unwrap()
        .unwrap()
        .id;
    let (status, page) = app
        .get_text(&format!("/users/application-users/{me}/password"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/account/password\""));
    let response = app
        .post_form(
            &format!("/users/application-users/{me}/password"),
            &[
                ("password", "sneaky-change-1"),
                ("confirm", "sneaky-change-1"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/account/password");
    assert_eq!(
        status_of(&app.client, &app, "/").await.0,
        200,
        "still signed in"
    );

    // An end user's id is not an application user.
    let erin = app.create_end_user("erin", "ember-lantern-pw-1").await;
    assert_eq!(
        app.get(&format!("/users/application-users/{erin}/password"))
            .await
            .status()
            .as_u16(),
        404
    );
    let response = app
        .post_form(&format!("/users/application-users/{erin}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        store::users::find(&app.state.pool, erin)
            .await
            .unwrap()
            .is_some()
    );
}
