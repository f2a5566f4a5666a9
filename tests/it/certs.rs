//! System > Security > Certificate Management (TS-7) and the Certificate
//! Import Tool (TS-8) over a real port: upload refusals and acceptances, the
//! list with fingerprints, expiry warnings and anchored gateways, delete,
//! restart and audit entries, guards, and the Import Tool against
//! exchange-sim.

use presence_gateway::store;
use presence_gateway::tls::certinfo::{self, colon_fingerprint};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::sim::SimProcess;
use crate::support::{TestApp, admin_app, location};

async fn upload_file(app: &TestApp, file: &str, content: &[u8]) -> (u16, String) {
    let response = app
        .post_multipart(
            "/system/certificates",
            &[("file", Some(file), content), ("pem", None, b"")],
        )
        .await;
    let status = response.status().as_u16();
    if status == 303 {
        assert_eq!(location(&response), "/system/certificates");
        let (_, page) = app.get_text("/system/certificates").await;
        return (status, page);
    }
    (status, response.text().await.expect("body"))
}

async fn post_text(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = app.post_form(path, form).await;
    let status = response.status().as_u16();
    if status == 303 {
        let target = location(&response);
        let (_, page) = app.get_text(&target).await;
        return (status, page);
    }
    (status, response.text().await.expect("body"))
}

/// A test certificate: a CA, or a server certificate for `names`, valid
/// until `days` from now (negative: expired), self-signed.
pub(crate) struct TestCert {
    pub(crate) cert: rcgen::Certificate,
    pub(crate) key: KeyPair,
}

impl TestCert {
    pub(crate) fn ca(cn: &str, days: i64) -> TestCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self::finish(params, key, days)
    }

    pub(crate) fn server(name: &str, days: i64) -> TestCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        Self::finish(params, key, days)
    }

    fn finish(mut params: CertificateParams, key: KeyPair, days: i64) -> TestCert {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(days);
        let cert = params.self_signed(&key).expect("self-signed");
        TestCert { cert, key }
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    pub(crate) fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub(crate) fn fingerprint(&self) -> String {
        colon_fingerprint(&certinfo::sha256_hex(&self.der()))
    }
}

async fn stored(app: &TestApp) -> usize {
    store::trust::anchors(&app.state.pool)
        .await
        .expect("anchors")
        .len()
}

async fn change_summaries(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT summary FROM config_changes ORDER BY generation")
        .fetch_all(&app.state.pool)
        .await
        .expect("changes")
}

async fn change_restarts(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT restart FROM config_changes ORDER BY generation")
        .fetch_all(&app.state.pool)
        .await
        .expect("changes")
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    store::audit::page(&app.state.pool, None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|row| (row.action, row.target))
        .collect()
}

#[tokio::test]
async fn certs_upload_refusals_store_nothing() {
    let app = admin_app().await;
    let changes_before = change_summaries(&app).await.len();
    let cert = TestCert::ca("Refusal CA", 365);

    // A certificate with its private key: the key is refused, and the
    // certificate with it.
    let with_key = format!("{}{}", cert.pem(), cert.key.serialize_pem());
    let (status, page) = upload_file(&app, "server.pem", with_key.as_bytes()).await;
    assert_eq!(status, 422);
    assert!(
        page.contains("this file contains a private key")
            || page.contains("This file contains a private key"),
        "{page}"
    );
    assert!(page.contains("the key stays on the Exchange server"));
    assert!(page.contains("id=\"file-error\""), "beside the field");
    assert!(page.contains("aria-invalid=\"true\""));

    // A private key alone, in DER.
    let (status, page) = upload_file(&app, "server.key", &cert.key.serialize_der()).await;
    assert_eq!(status, 422);
    assert!(page.contains("contains a private key"), "{page}");

    // Garbage.
    let (status, page) = upload_file(&app, "notes.txt", b"hello, this is not a certificate").await;
    assert_eq!(status, 422);
    assert!(page.contains("neither PEM certificates nor a DER certificate"));

    // A truncated DER certificate is garbage too.
    let der = cert.der();
    let (status, page) = upload_file(&app, "cut.der", &der[..der.len() / 2]).await;
    assert_eq!(status, 422);
    assert!(page.contains("nothing stored"), "{page}");

    // An empty file, and a form with neither file nor text.
    let (status, page) = upload_file(&app, "empty.pem", b"").await;
    assert_eq!(status, 422);
    assert!(
        page.contains("The file is empty: nothing stored."),
        "{page}"
    );
    let response = app
        .post_multipart(
            "/system/certificates",
            &[("file", Some(""), b""), ("pem", None, b"")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let page = response.text().await.expect("body");
    assert!(page.contains("Choose a certificate file"), "{page}");

    // A private key pasted into the text area: the message is beside it.
    let response = app
        .post_multipart(
            "/system/certificates",
            &[
                ("file", Some(""), b""),
                ("pem", None, cert.key.serialize_pem().as_bytes()),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let page = response.text().await.expect("body");
    assert!(page.contains("id=\"pem-error\""), "{page}");
    assert!(page.contains("contains a private key"));
    // The key is not rendered back into the text box.
    assert!(
        page.contains("The pasted text contains a private key"),
        "{page}"
    );
    assert!(page.contains("The text box was emptied"), "{page}");
    assert!(!page.contains("PRIVATE KEY"), "{page}");
    assert!(!page.contains(&cert.key.serialize_pem()[40..80]), "{page}");

    // 2 MiB: refused beside the file field, saying the limit and that
    // nothing was stored.
    let mut big = cert.pem().into_bytes();
    big.resize(2 * 1024 * 1024, b'\n');
    let response = app
        .post_multipart("/system/certificates", &[("file", Some("big.pem"), &big)])
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let page = response.text().await.expect("body");
    assert!(page.contains("id=\"file-error\""), "{page}");
    assert!(page.contains("larger than 1 MiB: nothing stored"), "{page}");
    // Far beyond the limit: refused before it is read, with the error page.
    let mut huge = cert.pem().into_bytes();
    huge.resize(9 * 1024 * 1024, b'\n');
    let response = app
        .post_multipart("/system/certificates", &[("file", Some("huge.pem"), &huge)])
        .await;
    assert_eq!(response.status().as_u16(), 413);
    let page = response.text().await.expect("body");
    assert!(page.contains("nothing was changed"), "{page}");

    assert_eq!(stored(&app).await, 0);
    assert_eq!(change_summaries(&app).await.len(), changes_before);
    assert!(
        !audit_actions(&app)
            .await
            .iter()
            .any(|(action, _)| action.starts_with("certificate"))
    );
}

/// A damaged PEM file is explained in plain words, never with the reader's
/// internal error; a PEM file saved with a UTF-8 byte-order mark (as Windows
/// editors do) is accepted.
#[tokio::test]
async fn certs_upload_damaged_pem_is_explained_and_a_byte_order_mark_is_accepted() {
    let app = admin_app().await;
    let cert = TestCert::ca("Damaged CA", 365);

    // One base64 character made impossible.
    let pem = cert.pem();
    let body_start = pem.find('\n').expect("BEGIN line") + 11;
    let damaged = format!("{}!{}", &pem[..body_start], &pem[body_start + 1..]);
    let (status, page) = upload_file(&app, "damaged.pem", damaged.as_bytes()).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains(
            "The PEM file is damaged: the base64 text of block 1 cannot be read. Nothing stored."
        ),
        "{page}"
    );
    assert!(
        !page.contains("InvalidData") && !page.contains("Custom {"),
        "{page}"
    );
    assert!(page.contains("id=\"file-error\""), "beside the field");

    // A BEGIN line without its END line.
    let cut = &pem[..pem.find("-----END").expect("END line")];
    let (status, page) = upload_file(&app, "cut.pem", cut.as_bytes()).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("The PEM file is damaged: block 1 has no -----END CERTIFICATE----- line."),
        "{page}"
    );

    // PEM-looking text without a certificate block.
    let (status, page) = upload_file(
        &app,
        "notes.pem",
        b"see -----BEGIN CERTIFICATE----- below\n",
    )
    .await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains(
            "No certificate found in the file: it must hold -----BEGIN CERTIFICATE----- \
             blocks or be one DER certificate."
        ),
        "{page}"
    );
    assert_eq!(stored(&app).await, 0);

    // The same certificate behind a UTF-8 byte-order mark is trusted.
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(pem.as_bytes());
    let (status, page) = upload_file(&app, "bom.pem", &with_bom).await;
    assert_eq!(status, 303, "{page}");
    assert!(page.contains(&cert.fingerprint()), "{page}");
    assert_eq!(stored(&app).await, 1);
}

#[tokio::test]
async fn certs_upload_der_and_pem_bundles_without_duplicates() {
    let app = admin_app().await;
    let changes_before = change_summaries(&app).await.len();
    let root = TestCert::ca("Contoso Root CA", 3650);
    let issuing = TestCert::ca("Contoso Issuing CA", 3650);
    let server = TestCert::server("exch1.contoso.example", 365);

    // DER.
    let (status, page) = upload_file(&app, "root.cer", &root.der()).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("1 certificate imported: CN=Contoso Root CA"),
        "{page}"
    );
    assert!(
        page.contains(&root.fingerprint()),
        "the list shows the fingerprint"
    );
    assert!(page.contains("CA: anchors any gateway whose chain leads to it"));
    assert!(page.contains("Presence Engine restart needed") || stored(&app).await == 1);

    // A PEM bundle with two certificates (and text around them).
    let bundle = format!("Issuing CA\n{}\nServer\n{}", issuing.pem(), server.pem());
    let (status, page) = upload_file(&app, "bundle.pem", bundle.as_bytes()).await;
    assert_eq!(status, 303);
    assert!(page.contains("2 certificates imported"), "{page}");
    assert!(page.contains(&issuing.fingerprint()));
    assert!(page.contains(&server.fingerprint()));
    assert!(page.contains("CN=exch1.contoso.example"));
    assert_eq!(stored(&app).await, 3);

    // Again, with one new one, pasted: the known ones are reported, not doubled.
    let other = TestCert::ca("Fabrikam Root CA", 3650);
    let pasted = format!("{}{}{}", root.pem(), issuing.pem(), other.pem());
    let response = app
        .post_multipart(
            "/system/certificates",
            &[("file", Some(""), b""), ("pem", None, pasted.as_bytes())],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, page) = app.get_text("/system/certificates").await;
    assert!(
        page.contains("1 certificate imported: CN=Fabrikam Root CA"),
        "{page}"
    );
    assert!(
        page.contains("2 certificates already trusted, not added again"),
        "{page}"
    );

    // Only duplicates: nothing imported, said so.
    let (status, page) = upload_file(&app, "root.pem", root.pem().as_bytes()).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("Nothing imported. 1 certificate already trusted"),
        "{page}"
    );
    assert_eq!(stored(&app).await, 4);

    // One restart-required change and one audit entry per certificate added.
    let summaries = change_summaries(&app).await;
    let ours = &summaries[changes_before..];
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert!(ours[0].starts_with("Imported certificate CN=Contoso Root CA (SHA-256 "));
    let short = &root.fingerprint()[..23];
    assert!(ours[0].contains(short), "{} should name {short}", ours[0]);
    assert!(
        change_restarts(&app).await[changes_before..]
            .iter()
            .all(|r| r == "required")
    );
    let imported: Vec<_> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(action, _)| action == "certificate imported")
        .collect();
    assert_eq!(imported.len(), 4);
    assert!(imported.iter().any(|(_, t)| t == "CN=Fabrikam Root CA"));
}

#[tokio::test]
async fn certs_list_warns_of_expiry_and_names_anchored_gateways() {
    let app = admin_app().await;
    let soon = TestCert::ca("Soon Expiring CA", 10);
    let expired = TestCert::ca("Expired CA", -3);
    let fine = TestCert::ca("Long Lived CA", 900);
    let self_signed = TestCert::server("exch1.example.com", 300);
    let bundle = format!(
        "{}{}{}{}",
        soon.pem(),
        expired.pem(),
        fine.pem(),
        self_signed.pem()
    );
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", "Exchange One"),
                ("server", "exch1.example.com"),
                ("account_name", "svc@example.com"),
                ("password", "Pa55-word-1"),
                ("confirm", "Pa55-word-1"),
                ("port", "443"),
                ("test_mailbox", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (status, page) = upload_file(&app, "all.pem", bundle.as_bytes()).await;
    assert_eq!(status, 303);
    assert!(page.contains("4 certificates imported"), "{page}");

    // The warnings are words, not colour only.
    let row = |subject: &str| -> String {
        let start = page
            .find(&format!("<th scope=\"row\">{subject}</th>"))
            .unwrap_or_else(|| panic!("row {subject} in {page}"));
        let end = page[start..]
            .find("</tr>")
            .map_or(page.len(), |e| start + e);
        page[start..end].to_owned()
    };
    let soon_row = row("CN=Soon Expiring CA");
    assert!(
        soon_row.contains("Warning: Expires in 9 days")
            || soon_row.contains("Warning: Expires in 10 days"),
        "{soon_row}"
    );
    assert!(row("CN=Expired CA").contains("Warning: Expired on"));
    assert!(!row("CN=Long Lived CA").contains("Warning"));
    let server_row = row("CN=exch1.example.com");
    assert!(
        server_row.contains("Exchange One (exch1.example.com)"),
        "{server_row}"
    );
    assert!(row("CN=Long Lived CA").contains("CA: anchors any gateway"));
}

#[tokio::test]
async fn certs_delete_asks_first_and_records_the_restart() {
    let app = admin_app().await;
    let cert = TestCert::ca("To Be Deleted CA", 365);
    let (status, _) = upload_file(&app, "ca.pem", cert.pem().as_bytes()).await;
    assert_eq!(status, 303);
    let id: i64 = sqlx::query_scalar("SELECT id FROM trusted_certificates")
        .fetch_one(&app.state.pool)
        .await
        .expect("id");

    let (status, page) = app
        .get_text(&format!("/system/certificates/{id}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("CN=To Be Deleted CA"));
    assert!(page.contains(&cert.fingerprint()));
    assert!(page.contains("must restart"));
    assert_eq!(
        stored(&app).await,
        1,
        "the confirmation page deletes nothing"
    );

    let (status, page) = post_text(&app, &format!("/system/certificates/{id}/delete"), &[]).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("Deleted certificate CN=To Be Deleted CA"),
        "{page}"
    );
    assert!(page.contains("No certificate is trusted yet"));
    assert_eq!(stored(&app).await, 0);
    let summaries = change_summaries(&app).await;
    assert!(
        summaries
            .last()
            .is_some_and(|s| s.starts_with("Deleted certificate CN=To Be Deleted CA (SHA-256 "))
    );
    assert_eq!(
        change_restarts(&app).await.last().map(String::as_str),
        Some("required")
    );
    assert!(audit_actions(&app).await.contains(&(
        "certificate deleted".to_owned(),
        "CN=To Be Deleted CA".to_owned()
    )));

    let again = app
        .post_form(&format!("/system/certificates/{id}/delete"), &[])
        .await;
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(
        app.get(&format!("/system/certificates/{id}/delete"))
            .await
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn certs_pages_are_for_administrators_only() {
    let app = TestApp::spawn().await;
    let response = app.get("/system/certificates").await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(location(&response).starts_with("/login"));

    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    for path in [
        "/system/certificates",
        "/system/certificates/import",
        "/system/certificates/1/delete",
    ] {
        assert_eq!(app.get(path).await.status().as_u16(), 403, "GET {path}");
    }
    let cert = TestCert::ca("End User CA", 365);
    let response = app
        .post_multipart(
            "/system/certificates",
            &[("file", Some("ca.pem"), cert.pem().as_bytes())],
        )
        .await;
    assert_eq!(response.status().as_u16(), 403);
    for path in [
        "/system/certificates/import",
        "/system/certificates/import/accept",
        "/system/certificates/1/delete",
    ] {
        let response = app
            .post_form(path, &[("host", "127.0.0.1"), ("port", "443")])
            .await;
        assert_eq!(response.status().as_u16(), 403, "POST {path}");
    }
    assert_eq!(stored(&app).await, 0);

    // The administrator finds the page in the System menu.
    let admin = admin_app().await;
    let (_, home) = admin.get_text("/").await;
    assert!(home.contains("href=\"/system/certificates\""), "{home}");
}

/// The checkbox values (fingerprints) of the fetched chain, and which are ticked.
fn checkboxes(page: &str) -> Vec<(String, bool)> {
    page.split("name=\"accept\" value=\"")
        .skip(1)
        .map(|rest| {
            let value = rest.split('"').next().unwrap_or_default().to_owned();
            let ticked = rest
                .split('>')
                .next()
                .is_some_and(|tag| tag.contains("checked"));
            (value, ticked)
        })
        .collect()
}

#[tokio::test]
async fn certs_import_tool_trusts_the_ticked_ca_of_exchange_sim() {
    let app = admin_app().await;
    let sim = SimProcess::start(&[]);
    let ca_pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    let ca_der = rustls_pemfile::certs(&mut ca_pem.as_slice())
        .next()
        .expect("one certificate")
        .expect("PEM");
    let ca_sha = certinfo::sha256_hex(&ca_der);

    let (status, page) = app.get_text("/system/certificates/import").await;
    assert_eq!(status, 200);
    assert!(page.contains("value=\"443\""), "port 443 by default");
    let (_, list) = app.get_text("/system/certificates").await;
    assert!(list.contains("href=\"/system/certificates/import\""));

    let port = sim.port().to_string();
    let (status, page) = post_text(
        &app,
        "/system/certificates/import",
        &[("host", "127.0.0.1"), ("port", &port)],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("Chain presented by 127.0.0.1:{port}")));
    let boxes = checkboxes(&page);
    assert_eq!(boxes.len(), 2, "leaf and CA: {boxes:?}");
    assert!(!boxes[0].1, "the server certificate is not ticked");
    assert_eq!(boxes[1], (ca_sha.clone(), true), "the CA is ticked");
    assert!(page.contains(&colon_fingerprint(&ca_sha)));
    assert!(page.contains("Not trusted"));
    assert!(page.contains("Accept Certificate Chain"));

    let (status, page) = post_text(
        &app,
        "/system/certificates/import/accept",
        &[("host", "127.0.0.1"), ("port", &port), ("accept", &ca_sha)],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    assert!(page.contains("1 certificate imported"), "{page}");
    let anchors = store::trust::anchors(&app.state.pool)
        .await
        .expect("anchors");
    assert_eq!(anchors.len(), 1);
    assert_eq!(anchors[0].as_ref(), ca_der.as_ref());
    assert!(
        change_summaries(&app)
            .await
            .last()
            .is_some_and(|s| s.starts_with("Imported certificate "))
    );

    // Fetched again, the CA shows as already trusted.
    let (_, page) = post_text(
        &app,
        "/system/certificates/import",
        &[("host", "127.0.0.1"), ("port", &port)],
    )
    .await;
    assert!(page.contains("Already trusted"));
}

#[tokio::test]
async fn certs_import_tool_refuses_what_the_server_does_not_present() {
    let app = admin_app().await;
    let sim = SimProcess::start(&[]);
    let port = sim.port().to_string();

    // A fingerprint the server does not present (tampered or stale).
    let stranger = TestCert::ca("Stranger CA", 365);
    let stranger_sha = certinfo::sha256_hex(&stranger.der());
    let (status, page) = post_text(
        &app,
        "/system/certificates/import/accept",
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("accept", &stranger_sha),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("does not present the certificate"), "{page}");
    assert!(page.contains(&stranger.fingerprint()));
    assert!(page.contains("nothing was imported"));
    assert_eq!(checkboxes(&page).len(), 2, "the chain as presented now");

    // A valid tick with a tampered one beside it: all or nothing.
    let ca_sha = checkboxes(&page)[1].0.clone();
    let (status, _) = post_text(
        &app,
        "/system/certificates/import/accept",
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("accept", &ca_sha),
            ("accept", "not-a-fingerprint"),
        ],
    )
    .await;
    assert_eq!(status, 422);

    // Nothing ticked.
    let (status, page) = post_text(
        &app,
        "/system/certificates/import/accept",
        &[("host", "127.0.0.1"), ("port", &port)],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("Tick at least one certificate"));
    assert_eq!(stored(&app).await, 0);

    // Connection failures and bad input, beside the Host field.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port().to_string()
    };
    let (status, page) = post_text(
        &app,
        "/system/certificates/import",
        &[("host", "127.0.0.1"), ("port", &closed)],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"host-error\""), "{page}");
    assert!(page.contains("connection refused"), "{page}");
    let (status, page) = post_text(
        &app,
        "/system/certificates/import",
        &[("host", "https://exch1.example.com/"), ("port", "443")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("not a URL"), "{page}");
    let (status, page) = post_text(
        &app,
        "/system/certificates/import",
        &[("host", "127.0.0.1"), ("port", "70000")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"port-error\""), "{page}");
    assert_eq!(stored(&app).await, 0);
}
