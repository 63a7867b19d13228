//! What every service's OpenAPI document shares: the schemas of the wire types defined here (money,
//! slot times, usernames, the error body), the Bearer scheme, and the answers every endpoint may
//! give. Each service describes its own routes (`#[utoipa::path]` next to the handler); the
//! documents are merged into one by the `openapi` crate.

use crate::{
    domain::{Money, SlotTime, Username},
    error::ErrorBody,
};
use serde_json::json;
use utoipa::{
    IntoResponses, Modify, PartialSchema, ToSchema,
    openapi::{
        ObjectBuilder, OpenApi, RefOr, Type,
        schema::Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// The name of the Bearer scheme, for `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// Adds the Bearer scheme (an access token from `POST /api/token`) to a document.
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The `access` token of `POST /api/token`."))
                    .build(),
            ),
        );
    }
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some(
                "An amount in currency units with at most two decimals; what a request carries \
                 must be above 0 and at most 1000000.",
            ))
            .minimum(Some(0))
            .maximum(Some(Money::MAX_MINOR / 100))
            .examples([json!(24.9)])
            .into()
    }
}
impl ToSchema for Money {}

impl PartialSchema for SlotTime {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A delivery slot, \"HH:MM\" on a 24-hour clock."))
            .pattern(Some("^([01][0-9]|2[0-3]):[0-5][0-9]$"))
            .examples([json!("09:00")])
            .into()
    }
}
impl ToSchema for SlotTime {}

impl PartialSchema for Username {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("3 to 32 letters, digits, '_', '.' or '-'."))
            .min_length(Some(3))
            .max_length(Some(32))
            .pattern(Some("^[A-Za-z0-9_.-]{3,32}$"))
            .examples([json!("alice")])
            .into()
    }
}
impl ToSchema for Username {}

/// What any endpoint may answer when a store it needs is down (or it is overloaded).
#[derive(IntoResponses)]
pub enum Unavailable {
    #[response(
        status = 503,
        description = "A store is down or the service is overloaded; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
}

/// What an endpoint behind a Bearer token may answer besides its own.
#[derive(IntoResponses)]
pub enum CustomerRefusals {
    #[response(status = 401, description = "No valid access token")]
    Unauthorized(ErrorBody),
    #[response(
        status = 503,
        description = "A store is down; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
}

/// What an operator's endpoint may answer besides its own.
#[derive(IntoResponses)]
pub enum OperatorRefusals {
    #[response(status = 401, description = "No valid access token")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "`admin_only`: the token has no `admin` role"
    )]
    Forbidden(ErrorBody),
    #[response(
        status = 503,
        description = "A store is down; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
}

/// What an endpoint taking a JSON body may answer about the body.
#[derive(IntoResponses)]
pub enum BodyRefusals {
    #[response(
        status = 400,
        description = "Malformed JSON, or a field is invalid or missing (`field` names it)"
    )]
    BadRequest(ErrorBody),
    #[response(status = 413, description = "The body is too large")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "The body is not `application/json`")]
    NotJson(ErrorBody),
}

/// What the rate-limited paths (sign-up and tokens: each costs a password hash) may answer at the
/// gateway: too many requests from one address.
#[derive(IntoResponses)]
pub enum RateLimited {
    #[response(
        status = 429,
        description = "`too_many_requests` from this address; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    TooManyRequests(ErrorBody),
}
