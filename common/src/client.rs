//! The HTTP client services use to call each other's `/internal/` endpoints: it carries the service
//! token and the caller's request id, and has bounded connect and request timeouts.

use crate::config::ExposeSecret;
use crate::{config::SecretString, internal};
use anyhow::{Context, Result};
use reqwest::{Method, RequestBuilder};
use std::time::Duration;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Clone, Debug)]
pub struct InternalClient {
    http: reqwest::Client,
    base_url: String,
    token: SecretString,
}

impl InternalClient {
    pub fn new(base_url: &str, token: SecretString, timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A request to `path` (starting with `/internal/`), tagged with `request_id`.
    pub fn request(&self, method: Method, path: &str, request_id: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header(internal::HEADER, self.token.expose_secret())
            .header(REQUEST_ID_HEADER, request_id)
    }
}
