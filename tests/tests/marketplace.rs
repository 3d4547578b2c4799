//! The marketplace example's API: business metrics move, bad input is a 4xx
//! with a JSON body, sessions set `user_id`, and secrets stay out of logs.

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{http_request, start_marketplace};

#[test]
fn business_events_move_their_metrics() {
    let app = start_marketplace(&[], &[]);
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        http_request(app.addr, "POST", path, headers, body)
    };
    let metrics = || Exposition::parse(&app.get("/metrics", &[]).body);

    // Declared before their first use, at 0.
    let before = metrics();
    assert_eq!(
        before.value("multiweb_products_created_total", &[]),
        Some(0.0)
    );
    assert_eq!(before.value("multiweb_active_users", &[]), Some(0.0));
    assert_eq!(
        before.value(
            "multiweb_transactions_completed_total",
            &[("method", "bank_transfer")]
        ),
        Some(0.0)
    );
    assert_eq!(
        before.help_of("multiweb_products_created_total"),
        Some("Total number of products created")
    );

    assert_eq!(
        post(
            "/api/v1/products/",
            &[],
            r#"{"name":"Lamp","price_cents":2500}"#
        )
        .status,
        201
    );
    let user = post("/api/v1/users/", &[], r#"{"name":"kim"}"#);
    assert_eq!(user.status, 201);
    let user_id = serde_json::from_str::<serde_json::Value>(&user.body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let login = post(
        "/api/v1/auth/login",
        &[],
        &format!(r#"{{"user_id":{user_id}}}"#),
    );
    assert_eq!(login.status, 200);
    let token = serde_json::from_str::<serde_json::Value>(&login.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    assert_eq!(
        post(
            "/api/v1/transactions/",
            &[("authorization", &bearer)],
            r#"{"amount_cents":1999,"method":"card"}"#
        )
        .status,
        201
    );
    assert_eq!(
        post(
            "/api/v1/messages/",
            &[("authorization", &bearer)],
            r#"{"to":1,"text":"hi"}"#
        )
        .status,
        201
    );

    let during = metrics();
    assert_eq!(
        during.value("multiweb_products_created_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        during.value("multiweb_users_registered_total", &[]),
        Some(1.0)
    );
    assert_eq!(during.value("multiweb_active_users", &[]), Some(1.0));
    assert_eq!(
        during.value(
            "multiweb_transactions_completed_total",
            &[("method", "card")]
        ),
        Some(1.0)
    );
    assert_eq!(
        during.value("multiweb_revenue_cents_total", &[]),
        Some(1999.0)
    );
    assert_eq!(during.value("multiweb_messages_sent_total", &[]), Some(1.0));

    assert_eq!(
        post("/api/v1/auth/logout", &[("authorization", &bearer)], "").status,
        204
    );
    assert_eq!(metrics().value("multiweb_active_users", &[]), Some(0.0));

    // The session's user is on the request's log lines; its token is nowhere.
    let message_line = app.wait_json(|v| v["message"] == "message sent");
    assert_eq!(message_line["user_id"], user_id.to_string());
    let raw = app.stdout_lines().join("\n");
    assert!(
        !raw.contains(&token),
        "the session token leaked into the log"
    );
}

#[test]
fn bad_input_is_a_client_error_with_a_json_body() {
    let app = start_marketplace(&[], &[]);
    let post = |path: &str, body: &str| http_request(app.addr, "POST", path, &[], body);

    // Bad JSON and missing fields: 4xx with a JSON error body, never a 500.
    for (path, body) in [
        ("/api/v1/products/", r#"{"name":"#),
        ("/api/v1/products/", r#"{"name":"x"}"#),
        (
            "/api/v1/transactions/",
            r#"{"amount_cents":1,"method":"cash"}"#,
        ),
        ("/api/v1/users/", "[]"),
    ] {
        let response = post(path, body);
        assert!(
            (400..500).contains(&response.status),
            "{path} {body}: {}",
            response.status
        );
        let error: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert!(error["error"].is_string(), "{}", response.body);
    }
    assert_eq!(app.get("/api/v1/products/4242", &[]).status, 404);
    let server_errors = Exposition::parse(&app.get("/metrics", &[]).body)
        .find("http_requests_total", &[("status", "500")])
        .count();
    assert_eq!(server_errors, 0);
}
