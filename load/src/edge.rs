//! One shopper's HTTP session with an edge, step by step as the storefront page takes them:
//! guest identity, proof-of-work challenge (solved here), purchase link, buy, and the order
//! routes. The crowd's buyers and the scalper's attacks are both made of these steps.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use flashgate_core::pow;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::{json, Value};

/// The HTTP client every session shares.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Headers a browser sends (the edge scores their absence).
/// The longest any request may go unanswered (a held poll is held 20 s at most).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const BROWSER: &[(&str, &str)] = &[
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
];

/// One answer from the edge.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The JSON body every `/api` answer has (`null` when it was not JSON).
    pub body: Value,
    /// Time from sending to the whole body.
    pub latency: Duration,
}

impl Reply {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The refusal's stable code, `-` when there is none.
    pub fn code(&self) -> &str {
        self.body.get("code").and_then(Value::as_str).unwrap_or("-")
    }

    /// `STEP STATUS CODE`, the name a refusal is tallied under.
    pub fn refusal(&self, step: &str) -> String {
        format!("{step} {} {}", self.status, self.code())
    }

    /// A refusal worth trying again (the shop is busy, or a limit): the wait it asks for
    /// (`retry_after`, else a second); `None` for any other answer.
    pub fn try_again_after(&self) -> Option<Duration> {
        matches!(self.status, 429 | 503).then(|| {
            let seconds = self.body["retry_after"].as_u64().unwrap_or(1).max(1);
            Duration::from_secs(seconds)
        })
    }

    /// A string field of the body.
    pub fn text(&self, field: &str) -> anyhow::Result<&str> {
        self.body[field]
            .as_str()
            .with_context(|| format!("no {field} in {}", self.body))
    }
}

/// A solved challenge: what `POST /api/events/{id}/link` takes.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The challenge token, as issued.
    pub challenge: String,
    /// The nonce that meets its difficulty.
    pub nonce: u64,
}

/// A browser's session with one edge.
#[derive(Clone)]
pub struct Session {
    client: HttpClient,
    base: String,
    headers: Vec<(String, String)>,
}

impl Session {
    /// A browser at `base` (`http://host:port`), from `client_ip` when given (sent as
    /// `CF-Connecting-IP` for local workerd and `spin-client-addr` for `wasmtime serve`, the
    /// headers each platform sets itself in production).
    pub fn browser(client: &HttpClient, base: &str, client_ip: Option<&str>) -> Self {
        let mut headers: Vec<(String, String)> = BROWSER
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(ip) = client_ip {
            headers.push(("cf-connecting-ip".into(), ip.to_owned()));
            // What Spin sets (as `ip:port`); `wasmtime serve` passes it through from the client.
            headers.push(("spin-client-addr".into(), format!("{ip}:443")));
        }
        Self {
            client: client.clone(),
            base: base.trim_end_matches('/').to_owned(),
            headers,
        }
    }

    /// An automation client (a script's user agent, no browser headers) at `base`.
    pub fn automation(client: &HttpClient, base: &str) -> Self {
        Self {
            client: client.clone(),
            base: base.trim_end_matches('/').to_owned(),
            headers: vec![("user-agent".into(), "python-requests/2.31.0".into())],
        }
    }

    /// One exchange: `method path` with a JSON `body`.
    pub async fn send(&self, method: &str, path: &str, body: &str) -> anyhow::Result<Reply> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Session::send`] with `extra` headers for this exchange only.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let started = Instant::now();
        // An edge that dropped a request (a restarted workerd) must not hang its actor: no
        // answer, held polls included, takes this long.
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))??;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            latency: started.elapsed(),
        })
    }

    /// `POST /api/session/guest` (demo mode); on success the session carries the token.
    pub async fn sign_in_as_guest(&mut self) -> anyhow::Result<Reply> {
        let reply = self.send("POST", "/api/session/guest", "{}").await?;
        if reply.ok() {
            let auth = format!("Bearer {}", reply.text("token")?);
            self.headers.push(("authorization".into(), auth));
        }
        Ok(reply)
    }

    /// `POST /api/events/{event}/challenge`.
    pub async fn challenge(&self, event: i64) -> anyhow::Result<Reply> {
        self.send("POST", &format!("/api/events/{event}/challenge"), "{}")
            .await
    }

    /// Solves an issued challenge (on a blocking thread: it is CPU work).
    pub async fn solve(challenge: &Reply) -> anyhow::Result<Answer> {
        let token = challenge.text("challenge")?.to_owned();
        let bits = challenge.body["bits"].as_u64().context("bits")? as u8;
        let puzzle = token.clone();
        let nonce = tokio::task::spawn_blocking(move || pow::solve(&puzzle, bits, 0, 1 << 32))
            .await?
            .context("proof of work not found")?;
        Ok(Answer {
            challenge: token,
            nonce,
        })
    }

    /// `POST /api/events/{event}/link` with a solved challenge.
    pub async fn link(&self, event: i64, answer: &Answer) -> anyhow::Result<Reply> {
        let body = json!({ "challenge": answer.challenge, "nonce": answer.nonce }).to_string();
        self.send("POST", &format!("/api/events/{event}/link"), &body)
            .await
    }

    /// `POST {link path}`: the buy.
    pub async fn buy(&self, link: &Reply) -> anyhow::Result<Reply> {
        self.send("POST", link.text("path")?, "{}").await
    }

    /// `POST /api/orders/{no}/{action}` (`cancel`), or a route an attacker tries.
    pub async fn order_action(&self, path: &str) -> anyhow::Result<Reply> {
        self.send("POST", path, "{}").await
    }

    /// `GET /api/orders/{no}`.
    pub async fn order(&self, order_no: &str) -> anyhow::Result<Reply> {
        self.send("GET", &format!("/api/orders/{order_no}"), "")
            .await
    }
}
