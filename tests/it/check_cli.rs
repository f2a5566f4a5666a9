//! `presence-gateway check` as a person runs it (TS-9): usage errors exit 2,
//! a run with a failing check 1, a clean run 0; `--json` prints one object;
//! without `--trust` the data directory's trust store is read. The peer is
//! the real exchange-sim.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sim::{ACCOUNT, PASSWORD, PASSWORD_ENV, SimProcess};
use crate::support::{binary, code};

/// A variable holding a password exchange-sim does not accept.
const WRONG_PASSWORD_ENV: &str = "CHECK_TEST_WRONG_PASSWORD";

/// Runs `check` with `args` (at most 60 s) in a data directory of its own.
fn check(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("check")
        .args(args)
        .env(PASSWORD_ENV, PASSWORD)
        .env(WRONG_PASSWORD_ENV, "not the password")
        .env_remove("UNSET_PASSWORD_VARIABLE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("check ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("?").to_owned(),
                c["status"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let dir = crate::support::private_tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--type",
                "ews",
                "--host",
                "ex.example.com",
                "--account",
                "svc@example.com",
            ],
            "--password-env",
        ),
        (
            vec![
                "--type",
                "ews",
                "--host",
                "ex.example.com",
                "--account",
                "svc@example.com",
                "--password-env",
                "UNSET_PASSWORD_VARIABLE",
            ],
            "UNSET_PASSWORD_VARIABLE is not set",
        ),
        (
            vec!["--type", "ews", "--host", "ex.example.com", "--no-dns"],
            "--connect",
        ),
        (
            vec!["--type", "ews", "--host", "ex.example.com", "--frobnicate"],
            "--frobnicate",
        ),
        (
            vec!["--type", "ews", "--host", "https://ex.example.com/EWS"],
            "not a URL",
        ),
        (vec!["--type", "lotus", "--host", "ex.example.com"], "lotus"),
        (
            vec![
                "--type",
                "ews",
                "--host",
                "ex.example.com",
                "--timeout",
                "0",
            ],
            "--timeout",
        ),
        (
            vec![
                "--type",
                "ews",
                "--host",
                "ex.example.com",
                "--account",
                "svc",
                "--password-env",
                PASSWORD_ENV,
            ],
            "user@domain",
        ),
    ];
    for (args, message) in cases {
        let output = check(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(code(&output), 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: wanted {message:?} in {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn a_clean_run_against_exchange_sim_exits_0_with_the_json_of_ts9() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let port = sim.port().to_string();
    let ca = sim.dir.path().join("ca.pem");
    let ca = ca.to_str().expect("path");
    let data = crate::support::private_tempdir().unwrap();
    let output = check(
        data.path(),
        &[
            "--type",
            "ews",
            "--host",
            "localhost",
            "--port",
            &port,
            "--trust",
            ca,
            "--account",
            ACCOUNT,
            "--password-env",
            PASSWORD_ENV,
            "--mailbox",
            "user@example.com",
            "--json",
        ],
    );
    let report = json(&output);
    assert_eq!(code(&output), 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["verdict"], "Verified");
    assert_eq!(report["matched_name"], "localhost");
    assert!(
        report["address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(":{port}")))
    );
    let got = statuses(&report);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["dns", "tcp", "tls", "chain", "validity", "name", "auth"]
    );
    assert!(got.iter().all(|(_, s)| s == "pass"), "{got:?}");
    for c in report["checks"].as_array().unwrap() {
        for field in ["verdict", "detail"] {
            assert!(c[field].as_str().is_some_and(|v| !v.is_empty()), "{c}");
        }
        assert!(c["elapsed_ms"].as_u64().is_some(), "{c}");
    }
    let auth = &report["checks"][6]["detail"];
    assert!(
        auth.as_str().unwrap().contains("Exchange"),
        "version reported: {auth}"
    );
    assert!(
        auth.as_str()
            .unwrap()
            .contains("Authentication: NTLMv2, bound to this TLS connection."),
        "--auth auto speaks NTLMv2 when it is offered: {auth}"
    );
    assert!(
        auth.as_str()
            .unwrap()
            .contains("Schemes offered: Negotiate, NTLM, Basic"),
        "{auth}"
    );
    let chain = report["chain"].as_array().expect("chain");
    assert!(chain.len() >= 2);
    for entry in chain {
        for field in [
            "subject",
            "issuer",
            "not_before",
            "not_after",
            "sha256",
            "status",
        ] {
            assert!(entry.get(field).is_some(), "{field} in {entry}");
        }
    }
    assert!(chain.iter().any(|e| e["status"] == "trusted"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(PASSWORD));
    assert!(!String::from_utf8_lossy(&output.stderr).contains(PASSWORD));

    // The text report says the same.
    let output = check(
        data.path(),
        &[
            "--type",
            "ews",
            "--host",
            "localhost",
            "--port",
            &port,
            "--trust",
            ca,
        ],
    );
    assert_eq!(code(&output), 0);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("Verified\n"), "{text}");
    assert!(text.contains("auth     skip"), "{text}");
}

/// `--auth` against exchange-sim configured as Exchange is: Windows
/// authentication only with Extended Protection, Basic only, both.
#[test]
fn auth_modes_ntlmv2_with_channel_binding_then_basic() {
    let run = |sim: &SimProcess, account: &str, password_env: &str, mode: &str| {
        let port = sim.port().to_string();
        let ca = sim.dir.path().join("ca.pem");
        let data = crate::support::private_tempdir().unwrap();
        let output = check(
            data.path(),
            &[
                "--type",
                "ews",
                "--host",
                "localhost",
                "--port",
                &port,
                "--trust",
                ca.to_str().expect("path"),
                "--account",
                account,
                "--password-env",
                password_env,
                "--mailbox",
                "user@example.com",
                "--auth",
                mode,
                "--json",
            ],
        );
        let report = json(&output);
        let auth = &report["checks"][6];
        (
            code(&output),
            auth["status"].as_str().unwrap_or("?").to_owned(),
            auth["verdict"].as_str().unwrap_or("?").to_owned(),
            auth["detail"].as_str().unwrap_or("?").to_owned(),
        )
    };
    const NTLM_USED: &str = "Authentication: NTLMv2, bound to this TLS connection.";

    // Windows authentication only, channel binding required: auto passes
    // with NTLMv2, a wrong password is rejected, Basic Only cannot proceed.
    let windows_only = SimProcess::start(&[
        "--account",
        "EXAMPLE\\svc",
        "--password-env",
        PASSWORD_ENV,
        "--no-basic",
        "--extended-protection",
    ]);
    let (code_, status, _, detail) = run(&windows_only, "example\\SVC", PASSWORD_ENV, "auto");
    assert_eq!((code_, status.as_str()), (0, "pass"), "{detail}");
    assert!(detail.contains(NTLM_USED), "{detail}");
    assert!(
        detail.contains("Schemes offered: Negotiate, NTLM."),
        "{detail}"
    );
    let (code_, status, verdict, detail) =
        run(&windows_only, "EXAMPLE\\svc", WRONG_PASSWORD_ENV, "auto");
    assert_eq!((code_, status.as_str()), (1, "fail"), "{detail}");
    assert_eq!(verdict, "Failed - Authentication Rejected");
    assert!(detail.contains("(401)"), "{detail}");
    let (code_, status, verdict, detail) =
        run(&windows_only, "EXAMPLE\\svc", PASSWORD_ENV, "basic");
    assert_eq!((code_, status.as_str()), (1, "fail"), "{detail}");
    assert_eq!(verdict, "Failed - Authentication Rejected");
    assert!(detail.contains("no credentials were sent"), "{detail}");
    assert!(
        detail.contains("choose Auto (NTLMv2, then Basic)"),
        "{detail}"
    );

    // Behind a TLS offloader Extended Protection refuses NTLMv2: auto then
    // tries Basic, and says what probably happened.
    let offloaded = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--extended-protection",
        "--tls-offload",
    ]);
    let (code_, status, _, detail) = run(&offloaded, ACCOUNT, PASSWORD_ENV, "auto");
    assert_eq!((code_, status.as_str()), (0, "pass"), "{detail}");
    assert!(
        detail.contains(
            "Authentication: NTLMv2 failed (Exchange refused the NTLMv2 answer (401)); \
             Basic was tried next and Exchange accepted it."
        ),
        "{detail}"
    );
    assert!(detail.contains("terminates TLS"), "{detail}");

    // Basic only: auto falls back to Basic and says why.
    let basic_only = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--no-ntlm",
    ]);
    let (code_, status, _, detail) = run(&basic_only, ACCOUNT, PASSWORD_ENV, "auto");
    assert_eq!((code_, status.as_str()), (0, "pass"), "{detail}");
    assert!(
        detail.contains("Authentication: Basic (the server does not offer NTLM)."),
        "{detail}"
    );

    // Both offered: Basic Only sends Basic, auto NTLMv2 with a UPN.
    let both = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let (code_, _, _, detail) = run(&both, ACCOUNT, PASSWORD_ENV, "basic");
    assert_eq!(code_, 0, "{detail}");
    assert!(detail.contains("Authentication: Basic."), "{detail}");
    let (code_, _, _, detail) = run(&both, "SVC@example.com", PASSWORD_ENV, "auto");
    assert_eq!(code_, 0, "{detail}");
    assert!(detail.contains(NTLM_USED), "{detail}");
}

/// Auto falls back to Basic, when Basic is offered, whenever NTLMv2 cannot
/// complete, and says why NTLMv2 failed and how Basic fared.
#[test]
fn auto_falls_back_to_basic_whenever_ntlmv2_cannot_complete() {
    let run = |sim: &SimProcess, password_env: &str| {
        let port = sim.port().to_string();
        let ca = sim.dir.path().join("ca.pem");
        let data = crate::support::private_tempdir().unwrap();
        let output = check(
            data.path(),
            &[
                "--type",
                "ews",
                "--host",
                "localhost",
                "--port",
                &port,
                "--trust",
                ca.to_str().expect("path"),
                "--account",
                ACCOUNT,
                "--password-env",
                password_env,
                "--mailbox",
                "user@example.com",
                "--json",
            ],
        );
        let report = json(&output);
        let auth = &report["checks"][6];
        (
            code(&output),
            auth["status"].as_str().unwrap_or("?").to_owned(),
            auth["detail"].as_str().unwrap_or("?").to_owned(),
        )
    };
    for (answer, why) in [
        (
            "missing",
            "NTLMv2 failed (the server sent no NTLM challenge)",
        ),
        (
            "garbled",
            "NTLMv2 failed (the server's NTLM challenge cannot be read",
        ),
    ] {
        let sim = SimProcess::start(&[
            "--account",
            ACCOUNT,
            "--password-env",
            PASSWORD_ENV,
            "--ntlm-challenge",
            answer,
        ]);
        let (code_, status, detail) = run(&sim, PASSWORD_ENV);
        assert_eq!((code_, status.as_str()), (0, "pass"), "{answer}: {detail}");
        assert!(detail.contains(why), "{answer}: {detail}");
        assert!(
            detail.contains("Basic was tried next and Exchange accepted it."),
            "{answer}: {detail}"
        );
        let (code_, status, detail) = run(&sim, WRONG_PASSWORD_ENV);
        assert_eq!((code_, status.as_str()), (1, "fail"), "{answer}: {detail}");
        assert!(detail.contains(why), "{answer}: {detail}");
        assert!(
            detail.contains("Basic was tried next and was rejected too."),
            "{answer}: {detail}"
        );
    }
    // Without Basic there is nothing to fall back to: the report says why
    // NTLMv2 stopped.
    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--no-basic",
        "--ntlm-challenge",
        "missing",
    ]);
    let (code_, status, detail) = run(&sim, PASSWORD_ENV);
    assert_eq!((code_, status.as_str()), (1, "fail"), "{detail}");
    assert!(
        detail.contains("could not complete: the server sent no NTLM challenge"),
        "{detail}"
    );
    assert!(detail.contains("does not offer Basic"), "{detail}");
}

#[test]
fn failing_checks_exit_1_and_credentials_wait_for_a_verified_chain() {
    let sim = SimProcess::start(&["--behave", "fault"]);
    let port = sim.port().to_string();
    let ca = sim.dir.path().join("ca.pem");
    let ca = ca.to_str().expect("path");
    let data = crate::support::private_tempdir().unwrap();
    // Trusted: credentials go, the fault is named.
    let output = check(
        data.path(),
        &[
            "--type",
            "ews",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--trust",
            ca,
            "--account",
            ACCOUNT,
            "--password-env",
            PASSWORD_ENV,
            "--mailbox",
            "user@example.com",
            "--json",
        ],
    );
    let report = json(&output);
    assert_eq!(code(&output), 1, "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][6]["status"], "fail");
    assert!(
        report["checks"][6]["detail"]
            .as_str()
            .unwrap()
            .contains("ErrorImpersonateUserDenied")
    );

    // Not trusted (no --trust, an empty data directory): auth is skipped.
    let output = check(
        data.path(),
        &[
            "--type",
            "ews",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--account",
            ACCOUNT,
            "--password-env",
            PASSWORD_ENV,
            "--json",
        ],
    );
    let report = json(&output);
    assert_eq!(code(&output), 1);
    assert_eq!(report["verdict"], "Failed - Certificate Missing From Chain");
    assert_eq!(report["checks"][6]["status"], "skip");
}

#[tokio::test]
async fn without_trust_the_data_directorys_trust_store_is_read() {
    let sim = SimProcess::start(&[]);
    let port = sim.port().to_string();
    let ca_pem = std::fs::read(sim.dir.path().join("ca.pem")).unwrap();
    let ca = rustls_pemfile::certs(&mut ca_pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let data = crate::support::private_tempdir().unwrap();
    {
        let settings = crate::support::test_settings(data.path(), Some("first-console-pass"));
        let clock = std::sync::Arc::new(presence_gateway::clock::ManualClock::new(
            time::OffsetDateTime::now_utc(),
        ));
        let state = presence_gateway::cmd::serve::prepare(settings, clock)
            .await
            .unwrap()
            .state;
        let info = presence_gateway::tls::certinfo::parse(&ca).unwrap();
        presence_gateway::store::trust::insert(&state.pool, &ca, &info, "admin", 0)
            .await
            .unwrap();
        state.pool.close().await;
    }
    let output = tokio::task::spawn_blocking({
        let data = data.path().to_owned();
        move || {
            check(
                &data,
                &[
                    "--type",
                    "ews",
                    "--host",
                    "localhost",
                    "--port",
                    &port,
                    "--json",
                ],
            )
        }
    })
    .await
    .unwrap();
    let report = json(&output);
    assert_eq!(code(&output), 0, "{report:#}");
    assert_eq!(report["checks"][3]["status"], "pass");
}

#[test]
fn webdav_propfind_on_the_calendar_folder() {
    let sim = SimProcess::start(&[
        "--account",
        "CORP\\receiveas",
        "--password-env",
        PASSWORD_ENV,
        "--calendar-folder",
        "Kalender",
    ]);
    let port = sim.port().to_string();
    let ca = sim.dir.path().join("ca.pem");
    let ca = ca.to_str().expect("path");
    let data = crate::support::private_tempdir().unwrap();
    let base = [
        "--type",
        "webdav",
        "--host",
        "localhost",
        "--port",
        &port,
        "--trust",
        ca,
        "--account",
        "CORP\\receiveas",
        "--password-env",
        PASSWORD_ENV,
        "--mailbox",
        "user@example.com",
        "--json",
    ];
    let mut args = base.to_vec();
    args.extend(["--calendar-folder", "Kalender"]);
    let output = check(data.path(), &args);
    let report = json(&output);
    assert_eq!(code(&output), 0, "{report:#}");
    // Exchange 2003/2007 WebDAV URLs take the mailbox alias as well as the
    // address: /exchange/user/Kalender/.
    let alias: Vec<&str> = args
        .iter()
        .map(|a| if *a == "user@example.com" { "user" } else { a })
        .collect();
    let output = check(data.path(), &alias);
    let report = json(&output);
    assert_eq!(code(&output), 0, "{report:#}");
    assert!(
        report["checks"][6]["detail"]
            .as_str()
            .unwrap()
            .contains("/exchange/user/Kalender/"),
        "{report:#}"
    );
    // EWS impersonation names a mailbox by its address: an alias is a usage
    // error.
    let ews: Vec<&str> = alias
        .iter()
        .map(|a| if *a == "webdav" { "ews" } else { a })
        .collect();
    let output = check(data.path(), &ews);
    assert_eq!(code(&output), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--mailbox: Enter the test mailbox as an e-mail address"),
        "{stderr}"
    );
    // The default folder name is wrong for this (German) mailbox: 404 says why.
    let output = check(data.path(), &base);
    let report = json(&output);
    assert_eq!(code(&output), 1);
    let detail = report["checks"][6]["detail"].as_str().unwrap();
    assert!(
        detail.contains("localized calendar folder name"),
        "{detail}"
    );
}

/// The tenant exchange-sim plays for `--type graph` (GR-7): a verified
/// domain, the application's client ID, and its secret in PASSWORD_ENV.
const GRAPH_DOMAIN: &str = "contoso.onmicrosoft.com";
const GRAPH_CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
const GRAPH_MAILBOX: &str = "room@contoso.com";

async fn graph_sim() -> SimProcess {
    let sim = SimProcess::start(&[
        "--graph-secret-env",
        PASSWORD_ENV,
        "--graph-domain",
        GRAPH_DOMAIN,
        "--graph-client-id",
        GRAPH_CLIENT,
    ]);
    let (status, body) = sim
        .control(
            "POST",
            "/sim/calendars",
            &format!("{GRAPH_MAILBOX},2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\n"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sim
}

/// `check --type graph` against exchange-sim's Graph face, as the Custom
/// cloud: with the right secret and a Test Mailbox every check passes and
/// the schedule is read; a wrong secret fails auth with the AADSTS code and
/// what to copy from Entra ID.
#[tokio::test]
async fn graph_verified_with_a_mailbox_and_a_wrong_secret_explained() {
    let sim = graph_sim().await;
    let base = format!("https://localhost:{}", sim.port());
    let ca = sim.dir.path().join("ca.pem");
    let data = crate::support::private_tempdir().unwrap();
    let run = |secret_env: &'static str, json: bool| {
        let base = base.clone();
        let ca = ca.clone();
        let data = data.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let ca = ca.to_str().expect("path").to_owned();
            let mut args = vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GRAPH_CLIENT,
                "--secret-env",
                secret_env,
                "--signin-url",
                &base,
                "--graph-url",
                &base,
                "--trust",
                &ca,
                "--mailbox",
                GRAPH_MAILBOX,
            ];
            if json {
                args.push("--json");
            }
            check(&data, &args)
        })
    };

    let output = run(PASSWORD_ENV, true).await.unwrap();
    let report = json(&output);
    assert_eq!(code(&output), 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["verdict"], "Verified");
    let got = statuses(&report);
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["dns", "tcp", "tls", "chain", "validity", "name", "auth"]
    );
    assert!(got.iter().all(|(_, s)| s == "pass"), "{got:?}");
    let auth = report["checks"][6]["detail"].as_str().unwrap_or_default();
    assert!(auth.contains(GRAPH_MAILBOX), "{auth}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(PASSWORD));
    assert!(!String::from_utf8_lossy(&output.stderr).contains(PASSWORD));

    // The text report says the same.
    let output = run(PASSWORD_ENV, false).await.unwrap();
    assert_eq!(code(&output), 0);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("Verified\n"), "{text}");

    let output = run(WRONG_PASSWORD_ENV, true).await.unwrap();
    let report = json(&output);
    assert_eq!(code(&output), 1, "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][5]["status"], "pass", "{report:#}");
    assert_eq!(report["checks"][6]["status"], "fail", "{report:#}");
    let auth = report["checks"][6]["detail"].as_str().unwrap_or_default();
    assert!(auth.contains("AADSTS7000215"), "{auth}");
    assert!(auth.contains("Value"), "{auth}");
}

#[test]
fn graph_usage_errors_exit_2_with_a_message() {
    let dir = crate::support::private_tempdir().unwrap();
    const GUID: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--type", "graph", "--client-id", GUID], "--tenant"),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                "not-a-guid",
            ],
            "GUID",
        ),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GUID,
                "--signin-url",
                "https://localhost:1",
            ],
            "--graph-url",
        ),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GUID,
                "--cloud",
                "global",
                "--signin-url",
                "https://localhost:1",
                "--graph-url",
                "https://localhost:1",
            ],
            "--cloud",
        ),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GUID,
                "--host",
                "ex.example.com",
            ],
            "--host",
        ),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GUID,
                "--secret-env",
                "UNSET_PASSWORD_VARIABLE",
            ],
            "UNSET_PASSWORD_VARIABLE is not set",
        ),
        (
            vec![
                "--type",
                "graph",
                "--tenant",
                GRAPH_DOMAIN,
                "--client-id",
                GUID,
                "--signin-url",
                "http://localhost:1",
                "--graph-url",
                "https://localhost:1",
            ],
            "https",
        ),
        (vec!["--type", "ews"], "--host"),
        (
            vec![
                "--type",
                "ews",
                "--host",
                "ex.example.com",
                "--tenant",
                GRAPH_DOMAIN,
            ],
            "--tenant",
        ),
    ];
    for (args, message) in cases {
        let output = check(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(code(&output), 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: wanted {message:?} in {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}
