//! The marketplace's routes and handlers, over the database of
//! [`store`](crate::store) and the optional cache of [`cache`](crate::cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use multiweb_telemetry::business::LabelValue as _;
use multiweb_telemetry::business_metric;

use crate::business::{
    ACTIVE_USERS, MESSAGES_SENT, PRODUCTS_CREATED, PaymentMethod, REVENUE_CENTS,
    TRANSACTIONS_COMPLETED, USERS_REGISTERED,
};
use crate::cache::Cache;
use crate::payment::{ChargeError, Payments};
use crate::store::{Product, Store, StoreError};

/// What the handlers share.
pub(crate) struct App {
    pub(crate) store: Arc<Store>,
    pub(crate) cache: Option<Arc<Cache>>,
    /// The payment service transactions are charged with.
    payments: Payments,
    /// Session token -> user id. Tokens are never logged.
    sessions: Mutex<HashMap<String, u64>>,
    next_session: Mutex<u64>,
}

impl App {
    pub(crate) fn new(
        store: Arc<Store>,
        cache: Option<Arc<Cache>>,
        payments: Payments,
    ) -> AppState {
        Arc::new(Self {
            store,
            cache,
            payments,
            sessions: Mutex::new(HashMap::new()),
            next_session: Mutex::new(0),
        })
    }
}

pub(crate) type AppState = Arc<App>;

/// A user that always exists (the migration creates it), for `--demo-load`
/// and first steps.
pub(crate) const DEMO_USER: u64 = 1_000;

/// An error answered as `{"error": "..."}`.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // Bad JSON or missing fields are the client's error: 4xx, never 500.
        Self(rejection.status(), rejection.body_text())
    }
}

impl From<ChargeError> for ApiError {
    fn from(error: ChargeError) -> Self {
        match error {
            ChargeError::Unavailable => Self(
                StatusCode::BAD_GATEWAY,
                "payment service unavailable".into(),
            ),
            ChargeError::Declined => Self(StatusCode::PAYMENT_REQUIRED, "payment declined".into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable => Self(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable".into(),
            ),
            StoreError::MissingReference => {
                Self(StatusCode::UNPROCESSABLE_ENTITY, "no such product".into())
            }
            StoreError::Failed => Self(StatusCode::INTERNAL_SERVER_ERROR, "database error".into()),
        }
    }
}

/// A number of cents the database can hold.
fn cents(value: u64) -> Result<i64, ApiError> {
    i64::try_from(value).map_err(|_| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount out of range".into(),
        )
    })
}

/// The authenticated user, from `x-user-id` or a session's bearer token;
/// recorded as `user_id` on the request's logs and span.
pub(crate) struct User(pub(crate) Option<u64>);

impl FromRequestParts<AppState> for User {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = user_from_headers(&parts.headers, state);
        if let Some(id) = user {
            multiweb_telemetry::http::record_user_id(&id.to_string());
        }
        Ok(Self(user))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn user_from_headers(headers: &HeaderMap, state: &AppState) -> Option<u64> {
    if let Some(id) = headers
        .get("x-user-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        return Some(id);
    }
    let token = bearer(headers)?;
    sessions(state).get(token).copied()
}

fn sessions(state: &AppState) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
    state
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/products/", get(list_products).post(create_product))
        .route("/api/v1/products/{id}", get(get_product))
        .route("/api/v1/users/", post(register_user))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/transactions/", post(complete_transaction))
        .route("/api/v1/messages/", post(send_message))
        .route("/api/v1/debug/error", get(debug_error))
        .route("/api/v1/debug/slow", get(debug_slow))
        .route("/api/v1/debug/panic", get(debug_panic))
        .route("/health", get(health))
        .with_state(state)
}

/// `GET /health`: 200 when the database answers, else 503; the cache's
/// state is reported but does not fail the check (reads fall back to the
/// database).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = state.store.is_up().await;
    let cache = match &state.cache {
        None => "off",
        Some(cache) if cache.is_up().await => "up",
        Some(_) => "down",
    };
    let (status, text) = if database {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    let body = json!({
        "status": text,
        "database": if database { "up" } else { "down" },
        "db.system": state.store.system(),
        "cache": cache,
    });
    (status, Json(body))
}

/// `GET /api/v1/products/`: the guide's `list_products`.
#[tracing::instrument(name = "list_products", skip_all)]
async fn list_products(
    State(state): State<AppState>,
    _user: User,
) -> Result<Json<Vec<Product>>, ApiError> {
    let products = state.store.products().await?;
    tracing::info!(count = products.len(), "listed products");
    Ok(Json(products))
}

#[derive(Deserialize)]
struct NewProduct {
    name: String,
    price_cents: u64,
}

#[tracing::instrument(name = "create_product", skip_all)]
#[business_metric(count = PRODUCTS_CREATED)]
async fn create_product(
    State(state): State<AppState>,
    _user: User,
    body: Result<Json<NewProduct>, JsonRejection>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let Json(new) = body?;
    if new.name.trim().is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name must not be empty".into(),
        ));
    }
    let product = state
        .store
        .create_product(new.name, cents(new.price_cents)?)
        .await?;
    tracing::info!(product_id = product.id, "product created");
    Ok((StatusCode::CREATED, Json(product)))
}

/// `GET /api/v1/products/{id}`: from the cache when there is one and it has
/// the product, else from the database (and then cached).
async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<Product>, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no product {id}"));
    let id = i64::try_from(id).map_err(|_| not_found())?;
    if let Some(cache) = &state.cache
        && let Some(product) = cache.product(id).await
    {
        return Ok(Json(product));
    }
    let product = state.store.product(id).await?.ok_or_else(not_found)?;
    if let Some(cache) = &state.cache {
        cache.put(&product).await;
    }
    Ok(Json(product))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
}

#[business_metric(count = USERS_REGISTERED)]
async fn register_user(
    State(state): State<AppState>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(new) = body?;
    let id = state.store.register_user(&new.name).await?;
    multiweb_telemetry::http::record_user_id(&id.to_string());
    tracing::info!("user registered");
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

#[derive(Deserialize)]
struct Login {
    user_id: u64,
}

async fn login(
    State(state): State<AppState>,
    body: Result<Json<Login>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(login) = body?;
    let known = match i64::try_from(login.user_id) {
        Ok(id) => state.store.user_exists(id).await?,
        Err(_) => false,
    };
    if !known {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "unknown user".into()));
    }
    let serial = {
        let mut next = state
            .next_session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    let token = format!(
        "tok-{:x}-{:x}",
        login.user_id,
        serial.wrapping_mul(0x9e37_79b9)
    );
    let mut sessions = sessions(&state);
    sessions.insert(token.clone(), login.user_id);
    let active = sessions.len();
    drop(sessions);
    ACTIVE_USERS.set(active as f64);
    multiweb_telemetry::http::record_user_id(&login.user_id.to_string());
    tracing::info!("logged in");
    Ok(Json(json!({ "token": token })))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let token =
        bearer(&headers).ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "no session".into()))?;
    let mut sessions = sessions(&state);
    let user = sessions
        .remove(token)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "no such session".into()))?;
    let active = sessions.len();
    drop(sessions);
    ACTIVE_USERS.set(active as f64);
    multiweb_telemetry::http::record_user_id(&user.to_string());
    tracing::info!("logged out");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Transaction {
    amount_cents: u64,
    method: PaymentMethod,
    /// The product bought, if any: it must exist.
    product_id: Option<i64>,
}

async fn complete_transaction(
    State(state): State<AppState>,
    User(user): User,
    body: Result<Json<Transaction>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(transaction) = body?;
    let user = user.and_then(|id| i64::try_from(id).ok());
    let method = PaymentMethod::VALUES[transaction.method.index()];
    // A call to the second service: its span, and the payment service's
    // request span, are children of this request's span.
    state
        .payments
        .charge(transaction.amount_cents, method)
        .await?;
    state
        .store
        .record_transaction(
            user,
            transaction.product_id,
            cents(transaction.amount_cents)?,
            method,
        )
        .await?;
    TRANSACTIONS_COMPLETED.increment(&transaction.method);
    REVENUE_CENTS.increment_by(transaction.amount_cents);
    tracing::info!(
        amount_cents = transaction.amount_cents,
        "transaction completed"
    );
    Ok((StatusCode::CREATED, Json(json!({ "status": "completed" }))))
}

#[derive(Deserialize)]
struct Message {
    to: u64,
    text: String,
}

async fn send_message(
    User(user): User,
    body: Result<Json<Message>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(message) = body?;
    if user.is_none() {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "log in to send messages".into(),
        ));
    }
    MESSAGES_SENT.increment();
    tracing::info!(to = message.to, length = message.text.len(), "message sent");
    Ok((StatusCode::CREATED, Json(json!({ "status": "sent" }))))
}

/// `GET /api/v1/debug/error`: always 500, so the error panels and the
/// `HighErrorRate` alert can be seen moving.
async fn debug_error() -> ApiError {
    tracing::error!(error = "simulated failure", "debug error endpoint called");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "simulated failure".into(),
    )
}

/// `GET /api/v1/debug/panic`: the handler panics; `CatchPanicLayer` turns
/// that into a 500 and the process keeps serving.
async fn debug_panic() -> &'static str {
    panic!("simulated panic in a handler")
}

#[derive(Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

/// `GET /api/v1/debug/slow?ms=N`: answers after N milliseconds (at most 30 s).
async fn debug_slow(Query(params): Query<SlowParams>) -> Json<serde_json::Value> {
    let ms = params.ms.unwrap_or(1_000).min(30_000);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}
