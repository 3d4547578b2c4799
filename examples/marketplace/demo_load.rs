//! `--demo-load`: a built-in traffic generator, so every dashboard panel
//! fills without writing a client. Requests go through the same router,
//! layer included, in-process.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::api::DEMO_USER;

/// Logs the demo user in, stays a while, and logs out: moves
/// `multiweb_active_users`.
async fn session(app: Router) {
    let login = Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"user_id":{DEMO_USER}}}"#)));
    let Ok(login) = login else { return };
    let Ok(response) = app.clone().oneshot(login).await;
    let Ok(body) = response.into_body().collect().await else {
        return;
    };
    let token = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned));
    let Some(token) = token else { return };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logout = Request::post("/api/v1/auth/logout")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty());
    if let Ok(logout) = logout {
        let _ = app.oneshot(logout).await;
    }
}

/// Sends a mix of requests forever: reads, writes, logins, transactions,
/// messages, some 404s, errors and slow calls.
pub(crate) async fn run(app: Router) {
    let mut tick: u64 = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        tick += 1;
        let user = (tick % 7 + 1).to_string();
        let (method, uri, body) = match tick % 20 {
            0 => ("POST", "/api/v1/users/", r#"{"name":"demo"}"#.to_owned()),
            1 => (
                "POST",
                "/api/v1/products/",
                r#"{"name":"Lamp","price_cents":2500}"#.to_owned(),
            ),
            2 => (
                "POST",
                "/api/v1/transactions/",
                format!(
                    r#"{{"amount_cents":{},"method":"card"}}"#,
                    1_000 + tick % 5_000
                ),
            ),
            3 => (
                "POST",
                "/api/v1/transactions/",
                r#"{"amount_cents":5000,"method":"bank_transfer"}"#.to_owned(),
            ),
            4 => (
                "POST",
                "/api/v1/messages/",
                r#"{"to":1,"text":"hello"}"#.to_owned(),
            ),
            5 => ("GET", "/api/v1/products/999", String::new()),
            6 if tick % 40 == 6 => ("GET", "/api/v1/debug/error", String::new()),
            7 if tick % 100 == 7 => ("GET", "/api/v1/debug/slow?ms=700", String::new()),
            8 => {
                tokio::spawn(session(app.clone()));
                continue;
            }
            9 => ("GET", "/api/v1/products/1", String::new()),
            _ => ("GET", "/api/v1/products/", String::new()),
        };
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-user-id", user)
            .body(Body::from(body));
        let Ok(request) = request else { continue };
        let app = app.clone();
        // Slow calls must not hold the others back.
        tokio::spawn(async move {
            let _ = app.oneshot(request).await;
        });
    }
}
