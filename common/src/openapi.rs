//! What every service's OpenAPI document shares: the schemas of the wire types defined here (money,
//! slot times, usernames, the error body), the Bearer scheme, and the answers every endpoint may
//! give. Each service describes its own routes (`#[utoipa::path]` next to the handler); the
//! documents are merged into one by the `openapi` crate.

use crate::{
    domain::{Balance, Money, SlotTime, Username},
    error::ErrorBody,
};
use serde_json::json;
use std::{borrow::Cow, collections::BTreeMap};
pub use utoipa::IntoResponses;
use utoipa::{
    Modify, PartialSchema, ToSchema,
    openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Type,
        response::Response,
        schema::Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// The name of the Bearer scheme, for `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// Adds what every part of the document refers to: the Bearer scheme (an access token from
/// `POST /api/token`) and the error body's schema.
pub struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
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

/// The schemas of wire types whose JSON is not their Rust shape (validated newtypes).
macro_rules! schemas {
    ($($type:ty => $schema:expr;)+) => {$(
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }
        impl ToSchema for $type {}
    )+};
}

/// A string schema matching `pattern`.
fn text(description: &str, pattern: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .examples([json!(example)])
}

schemas! {
    Money => ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some(
            "An amount in currency units with at most two decimals. What a request carries must \
             be above 0 and at most 1000000; a balance may grow past that.",
        ))
        .minimum(Some(0))
        .examples([json!(24.9)]);
    SlotTime => text(
        "A delivery slot, \"HH:MM\" on a 24-hour clock.",
        "^([01][0-9]|2[0-3]):[0-5][0-9]$",
        "09:00",
    );
    Username => text("3 to 32 letters, digits, '_', '.' or '-'.", "^[A-Za-z0-9_.-]{3,32}$", "alice")
        .min_length(Some(3))
        .max_length(Some(32));
}

/// A balance's JSON is [`Money`]'s, and so is its schema: the document names one `Money`, whose
/// description says that a balance may exceed what a request carries.
impl PartialSchema for Balance {
    fn schema() -> RefOr<Schema> {
        Money::schema()
    }
}

impl ToSchema for Balance {
    fn name() -> Cow<'static, str> {
        Money::name()
    }
}

/// Answers by status, as `IntoResponses` gives them.
pub type Answers = BTreeMap<String, RefOr<Response>>;

/// An error answer: `status` with the error body, and `Retry-After` when a retry may succeed.
pub fn refusal(status: u16, description: &str, retry_after: bool) -> (String, RefOr<Response>) {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1));
        let header = HeaderBuilder::new()
            .schema(Some(seconds))
            .description(Some("Seconds to wait"))
            .build();
        response = response.header("Retry-After", header);
    }
    (status.to_string(), response.build().into())
}

fn unavailable() -> (String, RefOr<Response>) {
    let description = "A store is down or the service is overloaded; retry after `Retry-After`";
    refusal(503, description, true)
}

fn unauthorized() -> (String, RefOr<Response>) {
    refusal(401, "No valid access token", false)
}

/// Declares sets of answers that endpoints share, for `responses(...)` next to their own: each
/// `Name = [answers, ...];` a type implementing `utoipa::IntoResponses`, where each `answers` is
/// anything yielding them ([`refusal`]s in an array, another set's `responses()`).
#[macro_export]
macro_rules! answer_sets {
    ($($(#[$doc:meta])* $name:ident = [$($answer:expr),+ $(,)?];)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl $crate::openapi::IntoResponses for $name {
            fn responses() -> $crate::openapi::Answers {
                let mut answers = $crate::openapi::Answers::new();
                $(answers.extend($answer);)+
                answers
            }
        }
    )+};
}

answer_sets! {
    /// What any endpoint may answer when a store it needs is down (or it is overloaded).
    Unavailable = [[unavailable()]];
    /// What an endpoint behind a Bearer token may answer besides its own.
    CustomerRefusals = [[unauthorized(), unavailable()]];
    /// What an operator's endpoint may answer besides its own.
    OperatorRefusals = [[
        unauthorized(),
        refusal(403, "`admin_only`: the token has no `admin` role", false),
        unavailable(),
    ]];
    /// What an endpoint taking a JSON body may answer about the body.
    BodyRefusals = [[
        refusal(400, "Malformed JSON, or a field is invalid or missing (`field` names it)", false),
        refusal(413, "The body is too large", false),
        refusal(415, "The body is not `application/json`", false),
    ]];
    /// What a customer's write (a JSON body, an optional `Idempotency-Key`) may answer besides
    /// its own.
    CustomerWrite = [
        BodyRefusals::responses(),
        CustomerRefusals::responses(),
        [refusal(422, "The Idempotency-Key was used before, for a different request", false)],
    ];
    /// What the rate-limited paths (sign-up and tokens: each costs a password hash) may answer at
    /// the gateway: too many requests from one address.
    RateLimited = [[refusal(429, "`too_many_requests` from this address; retry after `Retry-After`", true)]];
}

/// Whether `path` is an instance of the document's path `template`: the same elements, a `{…}`
/// element matching any one (a trailing slash ignored).
pub fn is_instance(template: &str, path: &str) -> bool {
    let (template, path): (Vec<_>, Vec<_>) = (
        template.split('/').collect(),
        path.trim_end_matches('/').split('/').collect(),
    );
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || t.starts_with('{'))
}
