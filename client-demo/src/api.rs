//! The HTTP and WebSocket calls the terminal client makes, with the server's error
//! bodies turned into readable messages.

use arena_protocol::http::{Room, RoomsResponse, Session};
use arena_protocol::ErrorBody;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Result<Api, String> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(format!(
                "--server must be an http:// or https:// URL, not {base:?}"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api { base, http })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        Ok(self.call_with_headers(method, path, token, body).await?.0)
    }

    /// [`Api::call`], also returning the answer's headers.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(Value, reqwest::header::HeaderMap), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(match serde_json::from_str::<ErrorBody>(&text) {
                Ok(e) => format!("{path}: {} ({})", e.error.message, e.error.code),
                Err(_) => format!("{path}: HTTP {status}"),
            });
        }
        Ok((serde_json::from_str(&text).unwrap_or(Value::Null), headers))
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<Value, String> {
        self.call(
            "POST",
            "/auth/register",
            "",
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<Session, String> {
        let v = self
            .call(
                "POST",
                "/auth/login",
                "",
                Some(json!({"username": username, "password": password})),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| format!("unexpected login answer: {e}"))
    }

    pub async fn rooms(&self, token: &str) -> Result<Vec<Room>, String> {
        let v = self.call("GET", "/lobby/rooms", token, None).await?;
        let rooms: RoomsResponse = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(rooms.rooms)
    }

    /// Open the game socket with the token in the Authorization header.
    pub async fn connect(&self, token: &str) -> Result<Socket, String> {
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        req.headers_mut().insert("authorization", auth);
        match tokio_tungstenite::connect_async(req).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok());
                Err(match body {
                    Some(e) => format!("upgrade refused: {} ({})", e.error.message, e.error.code),
                    None => format!("upgrade refused: HTTP {}", resp.status()),
                })
            }
            Err(e) => Err(format!("cannot connect to {url}: {e}")),
        }
    }
}
