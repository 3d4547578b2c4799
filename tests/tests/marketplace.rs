//! The marketplace example's API: business metrics move, bad input is a 4xx
//! with a JSON body, sessions set `user_id`, and secrets stay out of logs.

use multiweb_telemetry::testing::Exposition;
use multiweb_tests::{http_request, start_marketplace, start_marketplace_in};

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

/// `|~ "status=[45][0-9]{2}"` on a raw line.
fn status_4xx_5xx(line: &str) -> bool {
    line.match_indices("status=").any(|(i, _)| {
        let code = line.as_bytes().get(i + 7..i + 10).unwrap_or_default();
        code.len() == 3
            && matches!(code[0], b'4' | b'5')
            && code[1..].iter().all(u8::is_ascii_digit)
    })
}

#[test]
fn the_guides_logql_filters_select_the_right_lines() {
    let app = start_marketplace(&[], &[]);
    assert_eq!(app.get("/api/v1/debug/slow?ms=1100", &[]).status, 200);
    assert_eq!(
        app.get("/api/v1/products/", &[("x-user-id", "123")]).status,
        200
    );
    assert_eq!(app.get("/api/v1/debug/error", &[]).status, 500);
    assert_eq!(app.get("/api/v1/products/77", &[]).status, 404);
    app.wait_json(|v| v["url.path"] == "/api/v1/products/77" && v["status"] == 404);
    let raw = app.stdout_lines();
    let lines: Vec<serde_json::Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let access = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<String> {
        lines
            .iter()
            .filter(|l| pred(l))
            .map(|l| format!("{} {}", l["path"].as_str().unwrap_or("-"), l["message"]))
            .collect()
    };
    // | json | duration > 1.0
    let slow = access(&|l| l["duration"].as_f64().is_some_and(|d| d > 1.0));
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(slow[0].starts_with("/api/v1/debug/slow "));
    // | json | level="error": the handler's own error line and the access line
    let errors = access(&|l| l["level"] == "error");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        lines
            .iter()
            .filter(|l| l["level"] == "error")
            .all(|l| l["http.route"] == "/api/v1/debug/error")
    );
    // Scenario 2: | json | level="error" | line_format "{{.timestamp}}
    // {{.path}} {{.error}}" prints a path and an error for both lines of
    // the failing request.
    for line in lines.iter().filter(|l| l["level"] == "error") {
        assert!(line["timestamp"].is_string(), "{line}");
        assert_eq!(line["path"], "/api/v1/debug/error", "{line}");
        assert_eq!(line["error"], "simulated failure", "{line}");
    }
    // `path` is the route template on every line of a routed request, the
    // raw path where no route matched.
    let not_found = lines
        .iter()
        .find(|l| l["url.path"] == "/api/v1/products/77" && l["status"] == 404)
        .unwrap();
    assert_eq!(not_found["path"], "/api/v1/products/{id}", "{not_found}");
    // | json | user_id="123": the handler's line and the access line of that request
    let user = access(&|l| l["user_id"] == "123");
    assert_eq!(user.len(), 2, "{user:?}");
    // | json | status=~"2.."
    let ok = access(&|l| {
        l["status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))
    });
    assert_eq!(ok.len(), 2, "{ok:?}");
    // |~ "status=[45][0-9]{2}" on the raw lines: the 500 and the 404
    let raw_matches: Vec<&String> = raw.iter().filter(|l| status_4xx_5xx(l)).collect();
    assert_eq!(raw_matches.len(), 2, "{raw_matches:#?}");
    // line_format "{{.timestamp}} {{.message}}" has both fields on every line
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["message"].is_string())
    );
}

/// A product created through the API is still there after the example
/// restarts on its default database: SQLite, in `marketplace.db` under the
/// working directory.
#[test]
fn a_product_survives_a_restart_on_sqlite() {
    let dir = multiweb_tests::stack::temp_dir("sqlite-restart");
    let app = start_marketplace_in(&dir, &[], &[]);
    let created = http_request(
        app.addr,
        "POST",
        "/api/v1/products/",
        &[],
        r#"{"name":"Sturdy Desk","price_cents":15900}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = app.stop();
    assert!(status.success(), "{status}");
    assert!(dir.join("marketplace.db").is_file());

    let app = start_marketplace_in(&dir, &[], &[]);
    let read = app.get(&format!("/api/v1/products/{id}"), &[]);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.body,
        format!(r#"{{"id":{id},"name":"Sturdy Desk","price_cents":15900}}"#)
    );
    let health: serde_json::Value = serde_json::from_str(&app.get("/health", &[]).body).unwrap();
    assert_eq!(health["database"], "up");
    assert_eq!(health["db.system"], "sqlite");
    assert_eq!(health["cache"], "off");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}
