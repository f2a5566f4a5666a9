//! Bulk Administration (US-4) over a real port and through the real binary:
//! the validation report names every bad row and nothing is written; a good
//! file applies in one transaction, or not at all when the database changed
//! in between; 16 MiB is the limit; export round-trips; `users import` and
//! `users export` with their exit statuses; locale synchronization.

use std::process::{Command, Output, Stdio};

use presence_gateway::store;

use crate::support::{TestApp, admin_app, binary, code, location};

const HEADER: &str = "user_id,first_name,last_name,mailbox,node,locale,calendar\n";
const MIB: usize = 1024 * 1024;

/// Installs `locale` on `node` (Locale Installation is another page's job).
async fn user_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&app.state.pool)
        .await
        .expect("count")
}

async fn restart_records(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM config_changes")
        .fetch_one(&app.state.pool)
        .await
        .expect("count")
}

async fn audit(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, target FROM audit_log ORDER BY id")
        .fetch_all(&app.state.pool)
        .await
        .expect("audit")
}

#[derive(Debug, sqlx::FromRow, PartialEq, Eq)]
struct Stored {
    user_id: String,
    role: String,
    first_name: String,
    last_name: String,
    mailbox: Option<String>,
    node: Option<String>,
    locale: String,
    #[sqlx(try_from = "presence_gateway::store::Flag")]
    calendar_enabled: bool,
    password_hash: String,
}

async fn stored(app: &TestApp, user_id: &str) -> Option<Stored> {
    sqlx::query_as(
        "SELECT user_id, role, first_name, last_name, mailbox, node, locale, calendar_enabled,
                password_hash
         FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&app.state.pool)
    .await
    .expect("user")
}

async fn upload(app: &TestApp, name: &str, csv: &[u8]) -> (u16, String) {
    let response = app
        .post_multipart("/bulk/import", &[("file", Some(name), csv)])
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The Apply token a clean report carries.
fn token(page: &str) -> String {
    let start = page
        .find("name=\"token\" value=\"")
        .unwrap_or_else(|| panic!("no Apply form in:\n{page}"))
        + "name=\"token\" value=\"".len();
    page[start..]
        .split('"')
        .next()
        .expect("token value")
        .to_owned()
}

async fn apply(app: &TestApp, token: &str) -> (u16, String) {
    let response = app
        .post_form("/bulk/import/apply", &[("token", token)])
        .await;
    let status = response.status().as_u16();
    if status == 303 {
        assert_eq!(location(&response), "/bulk");
        let (_, page) = app.get_text("/bulk").await;
        return (status, page);
    }
    (status, response.text().await.expect("body"))
}

/// The report's row for `row`, as text: `<td class="num">N</td>` onwards.
fn report_row(page: &str, row: usize) -> String {
    let marker = format!("<tr><td class=\"num\">{row}</td>");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("row {row} not in the report:\n{page}"));
    let end = page[start..].find("</tr>").expect("row end") + start;
    unescape(&page[start..end])
}

/// The text as written, from HTML-escaped text.
fn unescape(html: &str) -> String {
    html.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn bulk_bad_rows_are_each_named_and_nothing_is_written() {
    let app = admin_app().await;
    app.install_locale("test-node", "de-DE").await;
    app.create_end_user("existing", "existing-password").await;
    let users_before = user_count(&app).await;
    let audit_before = audit(&app).await.len();

    // A BOM, CRLF line ends and a quoted comma in good rows, among bad ones.
    let csv = "\u{feff}user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
               alice,\"Smith, Alice\",Archer,alice@example.com,test-node,de-DE,on\r\n\
               bob,Bob,Baker,,,,off\r\n\
               ALICE,Alice,Again,,,,on\r\n\
               carol,Carol,Cook,,,xx-XX,on\r\n\
               dave,Dave,Dunn,,,fr-FR,on\r\n\
               erin,Erin,Evans,not-a-mailbox,,,on\r\n\
               frank,Frank,Fisher,,,on\r\n\
               gina,Gina,Gray,,node-z,,on\r\n\
               admin,The,Admin,,,,on\r\n";
    let (status, page) = upload(&app, "users.csv", csv.as_bytes()).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Import Validation Report"), "{page}");
    assert!(page.contains("nothing was written"), "{page}");
    assert!(!page.contains("name=\"token\""), "no Apply for a bad file");
    assert!(report_row(&page, 2).contains("Create"));
    assert!(report_row(&page, 3).contains("Create"));
    assert!(report_row(&page, 4).contains("duplicate of row 2"));
    assert!(report_row(&page, 5).contains("not a locale this product knows"));
    assert!(report_row(&page, 6).contains("not installed on test-node"));
    assert!(report_row(&page, 7).contains("mailbox: Enter the test mailbox"));
    assert!(report_row(&page, 8).contains("Row 8 has 6 columns where 7 are expected"));
    assert!(report_row(&page, 9).contains("is not a registered node"));
    assert!(report_row(&page, 10).contains("is an administrator"));
    // Totals: 9 rows, 2 good, 7 in error.
    assert!(page.contains("<th scope=\"row\">Error</th><td class=\"num\">7</td>"));
    assert!(page.contains("<th scope=\"row\">Create</th><td class=\"num\">2</td>"));

    // Non-UTF-8 text is refused naming its row.
    let mut latin1 = HEADER.as_bytes().to_vec();
    latin1.extend_from_slice(b"rene,Ren\xe9,Roux,,,,on\n");
    let (status, page) = upload(&app, "latin1.csv", &latin1).await;
    assert_eq!(status, 422);
    assert!(
        report_row(&page, 2).contains("Row 2 is not UTF-8 text"),
        "{page}"
    );

    // File-level refusals, beside the field.
    for (file, body, message) in [
        ("empty.csv", "".as_bytes(), "The file is empty"),
        (
            "noheader.csv",
            "alice,Alice,Archer,,,,on\n".as_bytes(),
            "The header row is missing",
        ),
        (
            "header.csv",
            "id,first,last\nalice,,\n".as_bytes(),
            "The header row is wrong",
        ),
        ("only-header.csv", HEADER.as_bytes(), "no user rows"),
    ] {
        let (status, page) = upload(&app, file, body).await;
        assert_eq!(status, 422, "{file}");
        assert!(page.contains("id=\"file-error\""), "{file}: {page}");
        assert!(page.contains(message), "{file}: {page}");
    }
    let response = app
        .post_multipart("/bulk/import", &[("file", Some(""), b"")])
        .await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("Choose a CSV file")
    );

    assert_eq!(user_count(&app).await, users_before);
    assert_eq!(audit(&app).await.len(), audit_before);
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn bulk_good_file_applies_in_one_step() {
    let app = admin_app().await;
    app.install_locale("test-node", "de-DE").await;
    app.create_end_user("existing", "existing-password").await;
    let before = stored(&app, "existing").await.expect("existing");
    let users_before = user_count(&app).await;
    let restarts_before = restart_records(&app).await;

    let csv = format!(
        "{HEADER}alice,Alice,Archer,alice@example.com,test-node,de-de,on\n\
         bob,Bob,\"Baker, Jr.\",,,,FALSE\n\
         EXISTING,Ezra,Evans,ezra@example.com,,de-DE,yes\n"
    );
    let (status, page) = upload(&app, "good.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Every row is good"), "{page}");
    assert!(report_row(&page, 4).contains("Update"));
    let token = token(&page);
    // Nothing written by the check.
    assert_eq!(user_count(&app).await, users_before);

    let (status, page) = apply(&app, &token).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("Import applied: 2 created, 1 updated."),
        "{page}"
    );
    assert_eq!(user_count(&app).await, users_before + 2);

    let alice = stored(&app, "alice").await.expect("alice");
    assert_eq!(alice.role, "end_user");
    assert_eq!(
        (alice.first_name.as_str(), alice.last_name.as_str()),
        ("Alice", "Archer")
    );
    assert_eq!(alice.mailbox.as_deref(), Some("alice@example.com"));
    assert_eq!(alice.node.as_deref(), Some("test-node"));
    assert_eq!(alice.locale, "de-DE");
    assert!(alice.calendar_enabled);
    assert!(alice.password_hash.starts_with("$argon2id$"));
    let bob = stored(&app, "bob").await.expect("bob");
    assert_eq!(bob.last_name, "Baker, Jr.");
    assert_eq!((bob.node, bob.mailbox), (None, None));
    assert_eq!(bob.locale, "en-US");
    assert!(!bob.calendar_enabled);

    // The existing user: fields updated, ID spelling and password kept.
    let after = stored(&app, "existing").await.expect("existing");
    assert_eq!(after.user_id, "existing");
    assert_eq!(after.first_name, "Ezra");
    assert_eq!(after.mailbox.as_deref(), Some("ezra@example.com"));
    assert_eq!(after.locale, "de-DE");
    assert!(after.calendar_enabled);
    assert_eq!(after.password_hash, before.password_hash);
    let other = crate::support::client();
    let response = other
        .post(app.url("/login"))
        .form(&[
            ("user_id", "existing"),
            ("password", "existing-password"),
            ("next", ""),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(location(&response), "/user-options", "password untouched");

    // Users apply live: no restart record; one summary audit entry.
    assert_eq!(restart_records(&app).await, restarts_before);
    assert!(
        audit(&app)
            .await
            .contains(&("Bulk import".to_owned(), "2 created, 1 updated".to_owned()))
    );
    // The pending upload is gone: a second Apply is refused.
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .unwrap(),
        0
    );
    let (status, page) = apply(&app, &token).await;
    assert_eq!(status, 422);
    assert!(page.contains("no longer waiting to be applied"), "{page}");
    assert_eq!(user_count(&app).await, users_before + 2);
}

#[tokio::test]
async fn bulk_apply_is_all_or_nothing_when_the_database_changed() {
    let app = admin_app().await;
    store::nodes::register(&app.state.pool, "node-b", "127.0.0.2:8080", app.state.now())
        .await
        .expect("second node");
    let users_before = user_count(&app).await;
    let csv = format!(
        "{HEADER}amy,Amy,Adams,,test-node,,on\n\
         ben,Ben,Brown,,node-b,,on\n"
    );
    let (status, page) = upload(&app, "two-nodes.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    let token = token(&page);

    // node-b leaves the cluster before Apply: checked again, refused whole.
    sqlx::query("DELETE FROM nodes WHERE name = 'node-b'")
        .execute(&app.state.pool)
        .await
        .expect("delete node");
    let (status, page) = apply(&app, &token).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("changed since the file was checked"),
        "{page}"
    );
    assert!(report_row(&page, 3).contains("\"node-b\" is not a registered node"));
    assert_eq!(
        user_count(&app).await,
        users_before,
        "amy was not written either"
    );
    assert!(stored(&app, "amy").await.is_none());

    // Another administrator's token, or a made-up one, applies nothing.
    let (status, _) = apply(&app, "0000").await;
    assert_eq!(status, 422);
}

/// Valid rows of about `row_len` bytes each, until the file reaches `target`
/// bytes at most.
fn big_csv(target: usize) -> (Vec<u8>, usize) {
    let mut csv = HEADER.as_bytes().to_vec();
    // Names and IDs near their 64-character limits.
    let pad = "n".repeat(58);
    let id_pad = "i".repeat(50);
    let mut rows = 0;
    loop {
        let row = format!(
            "u{rows:07}.{id_pad},First{pad},Last{pad},user{rows:07}@example.com,test-node,,on\n"
        );
        if csv.len() + row.len() > target {
            return (csv, rows);
        }
        csv.extend_from_slice(row.as_bytes());
        rows += 1;
    }
}

#[tokio::test]
async fn bulk_sixteen_mib_is_checked_and_larger_refused() {
    let app = admin_app().await;
    // Just under 16 MiB: checked, clean; the good rows shown as counts only.
    let (csv, rows) = big_csv(16 * MIB - 1024);
    let (status, page) = upload(&app, "big.csv", &csv).await;
    assert_eq!(status, 200, "{}", &page[..page.len().min(4000)]);
    assert!(page.contains(&format!(
        "<th scope=\"row\">Create</th><td class=\"num\">{rows}</td>"
    )));
    assert!(page.contains("Every row is good"));
    assert!(
        !page.contains("<table class=\"grid report\">"),
        "no 50,000-row table"
    );
    assert!(page.len() < 64 * 1024, "the page is {} bytes", page.len());
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .unwrap(),
        1
    );

    // A big file with errors lists the errors, not the good rows.
    let mut with_errors = csv.clone();
    with_errors.extend_from_slice(b"bad id,,,,,,on\n");
    with_errors.truncate(16 * MIB);
    let (status, page) = upload(&app, "big-bad.csv", &with_errors).await;
    assert_eq!(status, 422);
    assert!(
        page.contains("Rows with errors"),
        "{}",
        &page[..page.len().min(4000)]
    );
    assert!(report_row(&page, rows + 2).contains("user_id:"));

    // Over 16 MiB: refused beside the field.
    let (over, _) = big_csv(16 * MIB + 200 * 1024);
    let (status, page) = upload(&app, "over.csv", &over).await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"file-error\""), "{page}");
    assert!(
        page.contains("larger than 16 MiB: nothing imported"),
        "{page}"
    );
    // Far beyond: refused before it is read.
    let huge = vec![b'x'; 40 * MIB];
    let response = app
        .post_multipart("/bulk/import", &[("file", Some("huge.csv"), &huge)])
        .await;
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(user_count(&app).await, 1, "only the administrator");
}

#[tokio::test]
async fn bulk_export_round_trips() {
    let app = admin_app().await;
    app.install_locale("test-node", "fr-FR").await;
    let csv = format!(
        "{HEADER}zoe,Zoë,\"Quote \"\"Q\"\" Zed\",zoe@example.com,test-node,fr-FR,on\n\
         adam,Adam,\"Comma, Inc\",,,,off\n"
    );
    let (status, page) = upload(&app, "seed.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = apply(&app, &token(&page)).await;
    assert_eq!(status, 303);

    let response = app.get("/bulk/export").await;
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/csv"));
    assert_eq!(
        header("content-disposition"),
        "attachment; filename=\"users.csv\""
    );
    let exported = response.bytes().await.expect("csv").to_vec();
    let text = String::from_utf8(exported.clone()).expect("utf-8");
    assert_eq!(
        text,
        "user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
         adam,Adam,\"Comma, Inc\",,,en-US,off\r\n\
         zoe,Zoë,\"Quote \"\"Q\"\" Zed\",zoe@example.com,test-node,fr-FR,on\r\n",
        "end users only, sorted by user ID"
    );

    // Imported again: every row an update, nothing in error.
    let (status, page) = upload(&app, "users.csv", &exported).await;
    assert_eq!(status, 200, "{page}");
    assert!(report_row(&page, 2).contains("Update"));
    assert!(report_row(&page, 3).contains("Update"));
    assert!(page.contains("<th scope=\"row\">Create</th><td class=\"num\">0</td>"));
    assert!(page.contains("<th scope=\"row\">Error</th><td class=\"num\">0</td>"));
}

/// OWASP "CSV Injection": a name a spreadsheet would run as a formula is
/// exported behind a `'` (console and shell alike), and that export imports
/// back to the names as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_export_quotes_formula_cells_and_import_restores_them() {
    let app = admin_app().await;
    let csv = format!(
        "{HEADER}eve,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",+1,,,,on\n\
         fay,-2,@SUM(A1),,,,off\n"
    );
    let (status, page) = upload(&app, "seed.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = apply(&app, &token(&page)).await;
    assert_eq!(status, 303);
    let eve = stored(&app, "eve").await.expect("eve");
    assert_eq!(eve.first_name, "=HYPERLINK(\"http://evil.example\",\"x\")");

    let expected = "user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
                    eve,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",'+1,,,en-US,on\r\n\
                    fay,'-2,'@SUM(A1),,,en-US,off\r\n";
    let response = app.get("/bulk/export").await;
    assert_eq!(response.status().as_u16(), 200);
    let exported = response.bytes().await.expect("csv").to_vec();
    assert_eq!(String::from_utf8_lossy(&exported), expected);

    // The shell's export follows the same rule.
    let output = run_on(&app, &["export"]);
    assert_eq!(code(&output), 0, "{output:?}");
    assert_eq!(stdout(&output), expected);

    // Imported again, the quotes come off: every row repeats what is stored.
    let (status, page) = upload(&app, "users.csv", &exported).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<th scope=\"row\">Error</th><td class=\"num\">0</td>"));
    assert!(
        page.contains("<td class=\"num\">2 (2 without change)</td>"),
        "{page}"
    );
    assert!(report_row(&page, 2).contains("Update"));
    let fay = stored(&app, "fay").await.expect("fay");
    assert_eq!(
        (fay.first_name.as_str(), fay.last_name.as_str()),
        ("-2", "@SUM(A1)")
    );
}

#[tokio::test]
async fn bulk_pages_are_for_administrators_only() {
    let app = TestApp::spawn().await;
    app.create_end_user("erin", "ember-lantern-pw").await;
    let response = app.sign_in("erin", "ember-lantern-pw").await;
    assert_eq!(response.status().as_u16(), 303);
    for path in ["/bulk", "/bulk/export"] {
        let (status, _) = app.get_text(path).await;
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = upload(&app, "x.csv", HEADER.as_bytes()).await;
    assert_eq!(status, 403);
}

async fn sync(app: &TestApp, form: &[(&str, &str)]) -> (u16, String) {
    let response = app.post_form("/bulk/locales", form).await;
    let status = response.status().as_u16();
    if status == 303 {
        let (_, page) = app.get_text(&location(&response)).await;
        return (status, page);
    }
    (status, response.text().await.expect("body"))
}

async fn locale_of(app: &TestApp, user_id: &str) -> String {
    stored(app, user_id).await.expect("user").locale
}

#[tokio::test]
async fn bulk_locale_synchronization() {
    let app = admin_app().await;
    store::nodes::register(&app.state.pool, "node-b", "127.0.0.2:8080", app.state.now())
        .await
        .expect("second node");
    for node in ["test-node", "node-b"] {
        app.install_locale(node, "de-DE").await;
    }
    app.install_locale("test-node", "fr-FR").await;
    let csv = format!(
        "{HEADER}u1,,,,test-node,,on\nu2,,,,test-node,,on\nu3,,,,node-b,,on\nu4,,,,,,off\n"
    );
    let (status, page) = upload(&app, "sync.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(apply(&app, &token(&page)).await.0, 303);
    let restarts_before = restart_records(&app).await;

    // The page offers only locales installed everywhere.
    let (_, page) = app.get_text("/bulk").await;
    assert!(page.contains("<option value=\"de-DE\""), "{page}");
    assert!(!page.contains("<option value=\"fr-FR\""));
    assert!(
        unescape(&page).contains("Every user's locale is installed"),
        "{page}"
    );

    // Listed users.
    let (status, page) = sync(
        &app,
        &[
            ("target", "users"),
            ("user_ids", "u1\r\nU4\r\n\r\n"),
            ("locale", "de-DE"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    assert!(
        page.contains("User Locale set to German (Deutsch) for 2 users."),
        "{page}"
    );
    assert_eq!(locale_of(&app, "u1").await, "de-DE");
    assert_eq!(locale_of(&app, "u4").await, "de-DE");
    assert_eq!(locale_of(&app, "u2").await, "en-US");

    // All users on a node.
    let (status, page) = sync(
        &app,
        &[
            ("target", "node"),
            ("node", "test-node"),
            ("locale", "de-DE"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert!(page.contains("for 1 user. 1 had it already."), "{page}");
    assert_eq!(locale_of(&app, "u2").await, "de-DE");
    assert_eq!(locale_of(&app, "u3").await, "en-US");

    // Refusals change nothing: an unknown user among known ones, a locale
    // not installed everywhere.
    let (status, page) = sync(
        &app,
        &[
            ("target", "users"),
            ("user_ids", "u3\nnobody"),
            ("locale", "en-US"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("No end user has the User ID nobody"),
        "{page}"
    );
    assert_eq!(locale_of(&app, "u1").await, "de-DE");
    let (status, page) = sync(
        &app,
        &[("target", "users"), ("user_ids", "u3"), ("locale", "fr-FR")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("is not installed on node-b"), "{page}");
    assert_eq!(locale_of(&app, "u3").await, "en-US");

    // A locale uninstalled from a node: those users are reported, and
    // synchronized to a usable locale.
    sqlx::query("DELETE FROM node_locales WHERE node = 'node-b' AND locale = 'de-DE'")
        .execute(&app.state.pool)
        .await
        .expect("uninstall");
    let (_, page) = app.get_text("/bulk").await;
    assert!(
        page.contains("3 users have locales not installed on every node"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>u1</td><td>de-DE</td></tr>"),
        "{page}"
    );
    let (status, page) = sync(&app, &[("target", "stale"), ("locale", "en-US")]).await;
    assert_eq!(status, 303);
    assert!(page.contains("for 3 users."), "{page}");
    for user in ["u1", "u2", "u4"] {
        assert_eq!(locale_of(&app, user).await, "en-US");
    }
    assert_eq!(
        restart_records(&app).await,
        restarts_before,
        "users apply live"
    );
    assert!(
        audit(&app)
            .await
            .iter()
            .any(|(action, _)| action == "Locale synchronization")
    );
}

// ------------------------------------------------------------------ the shell

/// `users ARGS` on the app's data directory and database.
fn run_on(app: &TestApp, args: &[&str]) -> Output {
    run_with(app.dir.path(), &app.database_env(), args)
}

fn run(data_dir: &std::path::Path, args: &[&str]) -> Output {
    run_with(data_dir, &[], args)
}

fn run_with(data_dir: &std::path::Path, envs: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(binary())
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("users")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run presence-gateway users")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cli_import_export_and_dry_run() {
    let app = TestApp::spawn().await;

    let files = crate::support::private_tempdir().expect("temp dir");
    let users_before = user_count(&app).await;

    let bad = files.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("{HEADER}kim,Kim,King,,,,on\nkim,Kim,Again,,,,on\n"),
    )
    .unwrap();
    let output = run_on(&app, &["import", bad.to_str().unwrap()]);
    assert_eq!(code(&output), 1, "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("row 2: create kim"), "{text}");
    assert!(
        text.contains("row 3: error kim: user_id: duplicate of row 2"),
        "{text}"
    );
    assert!(text.contains("Nothing written"), "{text}");
    assert_eq!(user_count(&app).await, users_before);

    let good = files.path().join("good.csv");
    std::fs::write(
        &good,
        format!("{HEADER}kim,Kim,King,kim@example.com,test-node,,on\nlee,Lee,Long,,,,off\n"),
    )
    .unwrap();
    let output = run_on(&app, &["import", "--dry-run", good.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{output:?}");
    assert!(stdout(&output).contains("Dry run: nothing written."));
    assert_eq!(user_count(&app).await, users_before);

    let output = run_on(&app, &["import", good.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{output:?}");
    assert!(stdout(&output).contains("Import applied: 2 created, 0 updated."));
    assert_eq!(user_count(&app).await, users_before + 2);
    assert_eq!(
        stored(&app, "kim").await.expect("kim").node.as_deref(),
        Some("test-node")
    );

    // Export to standard output and to a file; the export imports again as
    // updates only.
    let output = run_on(&app, &["export"]);
    assert_eq!(code(&output), 0, "{output:?}");
    assert_eq!(
        stdout(&output),
        "user_id,first_name,last_name,mailbox,node,locale,calendar\r\n\
         kim,Kim,King,kim@example.com,test-node,en-US,on\r\n\
         lee,Lee,Long,,,en-US,off\r\n"
    );
    let exported = files.path().join("users.csv");
    let output = run_on(&app, &["export", "--output", exported.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{output:?}");
    let output = run_on(&app, &["import", "--dry-run", exported.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("row 2: update kim (no change)"), "{text}");
    assert!(
        text.contains("0 to create, 2 to update (2 unchanged), 0 errors"),
        "{text}"
    );

    // Usage errors: exit 2, nothing written.
    let missing = files.path().join("missing.csv");
    let output = run_on(&app, &["import", missing.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    let (over, _) = big_csv(16 * MIB + 1024);
    let over_file = files.path().join("over.csv");
    std::fs::write(&over_file, over).unwrap();
    let output = run_on(&app, &["import", over_file.to_str().unwrap()]);
    assert_eq!(code(&output), 2, "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("larger than 16 MiB"));
    let output = run(files.path(), &["export"]);
    assert_eq!(code(&output), 2, "no database there: {output:?}");
    let output = run_on(&app, &["import"]);
    assert_eq!(code(&output), 2, "no file named: {output:?}");
    assert_eq!(user_count(&app).await, users_before + 2);
}

#[tokio::test]
async fn bulk_checked_files_wait_an_hour_at_most() {
    let app = admin_app().await;
    let csv = format!("{HEADER}late,Late,Comer,,,,on\n");
    let (status, page) = upload(&app, "late.csv", csv.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    let token = token(&page);
    // An hour and a minute, the session kept alive meanwhile.
    for minutes in [25, 25, 11] {
        app.clock.advance(time::Duration::minutes(minutes));
        assert_eq!(app.get_text("/bulk").await.0, 200);
    }
    let (status, page) = apply(&app, &token).await;
    assert_eq!(status, 422);
    assert!(page.contains("no longer waiting to be applied"), "{page}");
    assert!(stored(&app, "late").await.is_none());
    // The next check clears the expired upload away.
    let (status, _) = upload(&app, "late.csv", csv.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn bulk_many_rows_apply_across_statement_batches() {
    let app = admin_app().await;
    // 1,000 rows: several full batches and a short last one.
    let mut csv = HEADER.to_owned();
    for i in 0..1000 {
        csv.push_str(&format!(
            "m{i:04},First{i},Last{i},m{i:04}@example.com,,,on\n"
        ));
    }
    let (status, page) = upload(&app, "many.csv", csv.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("<table class=\"grid report\">"),
        "counts only"
    );
    let (status, page) = apply(&app, &token(&page)).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("Import applied: 1000 created, 0 updated."),
        "{page}"
    );
    assert_eq!(user_count(&app).await, 1001);
    for id in ["m0000", "m0255", "m0256", "m0999"] {
        let user = stored(&app, id).await.expect(id);
        assert_eq!(user.mailbox, Some(format!("{id}@example.com")));
    }
    // Again with one name changed: one write, the rest unchanged.
    let csv = csv.replace("m0600,First600,", "m0600,Changed,");
    let (status, page) = upload(&app, "many.csv", csv.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(page.contains("1000 (999 without change)"), "{page}");
    let (status, page) = apply(&app, &token(&page)).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("Import applied: 0 created, 1000 updated."),
        "{page}"
    );
    assert_eq!(
        stored(&app, "m0600").await.expect("m0600").first_name,
        "Changed"
    );
}

// ------------------------------------------- limits on memory and concurrency

/// Waits (at most 30 s) for `busy()` to say `want`: the gate is taken and
/// released by other tasks, so the tests wait for the state rather than
/// sleeping for a guessed time.
async fn wait_for_gate(app: &TestApp, want: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.imports.is_busy() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "the import gate never became {}",
            if want { "busy" } else { "free" }
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An administrator's session cookie (`pg_session=...`), for requests sent
/// by hand over a raw connection.
async fn session_cookie(app: &TestApp) -> String {
    use crate::support::{ADMIN, ADMIN_PASSWORD, bare_client};
    let response = bare_client()
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[
            ("user_id", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("next", ""),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status().as_u16(), 303, "admin sign-in");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pg_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// An upload over a raw connection that sends its headers and only the
/// first half of its body, then waits: the import it starts holds the
/// node's gate until the rest is sent or the connection is dropped.
/// Returns the connection and the unsent rest of the body.
async fn half_sent_upload(app: &TestApp, csv: &[u8]) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let cookie = session_cookie(app).await;
    let body = crate::support::multipart(&[("file", Some("slow.csv"), csv)]);
    let head = format!(
        "POST /bulk/import HTTP/1.1\r\nHost: {addr}\r\nOrigin: {base}\r\n\
         Sec-Fetch-Site: same-origin\r\nCookie: {cookie}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n",
        addr = app.addr,
        base = app.base,
        boundary = crate::support::BOUNDARY,
        len = body.len(),
    );
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).await.expect("send half the body");
    stream.flush().await.expect("flush");
    (stream, rest.to_vec())
}

#[tokio::test]
async fn bulk_one_import_at_a_time_per_node() {
    let app = admin_app().await;
    let users_before = user_count(&app).await;
    let (slow_csv, _) = big_csv(256 * 1024);
    let (mut stream, rest) = half_sent_upload(&app, &slow_csv).await;
    wait_for_gate(&app, true).await;

    // A second import while the first is still uploading: told so beside
    // the file field, and nothing checked or kept.
    let small = format!("{HEADER}kim,Kim,King,,,,on\n");
    let (status, page) = upload(&app, "second.csv", small.as_bytes()).await;
    assert_eq!(status, 409, "{page}");
    let message = crate::support::field_error(&page, "file").expect("a message beside the file");
    assert!(
        message.contains("An import is running on this node: try again when it has finished."),
        "{message}"
    );
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .expect("pending"),
        0
    );

    // The first one finishes normally (its rows name an unregistered node,
    // so it is a report with errors), and the node is free again.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(&rest).await.expect("send the rest");
        let mut response = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            stream.read_to_end(&mut response),
        )
        .await
        .expect("the first import answers")
        .expect("read the answer");
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 422") || response.starts_with("HTTP/1.1 200"),
            "{}",
            &response[..response.len().min(2000)]
        );
        assert!(response.contains("Import Validation Report"));
    }
    wait_for_gate(&app, false).await;
    let (status, page) = upload(&app, "second.csv", small.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        user_count(&app).await,
        users_before,
        "checks write no users"
    );
}

#[tokio::test]
async fn bulk_a_dropped_upload_writes_nothing_and_frees_the_node() {
    let app = admin_app().await;
    let users_before = user_count(&app).await;
    let (csv, _) = big_csv(256 * 1024);
    let (stream, _rest) = half_sent_upload(&app, &csv).await;
    wait_for_gate(&app, true).await;
    // The client goes away mid-upload.
    drop(stream);
    wait_for_gate(&app, false).await;
    assert_eq!(user_count(&app).await, users_before);
    assert_eq!(
        crate::support::seed::count_pending(&app.state.pool)
            .await
            .expect("pending"),
        0,
        "nothing kept for Apply"
    );

    // The next import works, through to Apply.
    let good = format!("{HEADER}kim,Kim,King,,,,on\nlee,Lee,Long,,,,off\n");
    let (status, page) = upload(&app, "good.csv", good.as_bytes()).await;
    assert_eq!(status, 200, "{page}");
    let (status, page) = apply(&app, &token(&page)).await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(user_count(&app).await, users_before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_an_apply_dropped_mid_work_writes_nothing_and_frees_the_node() {
    let app = admin_app().await;
    let users_before = user_count(&app).await;
    let audit_before = audit(&app).await.len();
    let (csv, _) = big_csv(16 * MIB - 1024);
    let csv = bytes::Bytes::from(csv);
    let hash = store::bulk::unusable_password_hash().await.expect("hash");
    let work = app.state.imports.try_start().expect("the node is free");
    // The request's future, dropped while its 16 MiB file is being checked
    // on the blocking thread (as when the client leaves or the request times
    // out): reading that many rows takes far longer than 50 ms.
    let applying = store::bulk::apply(
        &app.state.pool,
        csv.clone(),
        &hash,
        "admin",
        app.state.now(),
        None,
        &work,
    );
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(50), applying).await;
    assert!(outcome.is_err(), "the apply was still running: {outcome:?}");
    drop(work);
    wait_for_gate(&app, false).await;
    assert_eq!(user_count(&app).await, users_before, "nothing half-written");
    assert_eq!(audit(&app).await.len(), audit_before);

    // The next import on this node runs.
    let work = app
        .state
        .imports
        .try_start()
        .expect("the node is free again");
    let report = store::bulk::check(&app.state.pool, csv, &work)
        .await
        .expect("check")
        .expect("readable");
    assert!(report.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cli_import_of_an_endless_file_stops_at_the_limit() {
    let app = TestApp::spawn().await;
    let data = app.dir.path().to_owned();
    let users_before = user_count(&app).await;
    // /dev/zero says its length is 0 and never ends: only counting the
    // bytes read stops it.
    let mut child = Command::new(binary())
        .envs(app.database_env())
        .arg("--data-dir")
        .arg(&data)
        .args(["users", "import", "/dev/zero"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run presence-gateway users import");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("users import /dev/zero still running after 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/dev/zero is larger than 16 MiB: nothing imported"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(user_count(&app).await, users_before);
}
