//! A scripted API server for reconciler tests (tower-test): each test states the exact requests
//! it expects, in order, and what the server answers.

use http::{Method, Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// One request as received.
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
    responder: Responder,
}

impl Received {
    pub fn respond(self, code: u16, body: Value) {
        self.responder.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    pub fn not_found(self) {
        let message = format!("{} not found", self.path);
        let mut body = status(404, "NotFound");
        body["message"] = json!(message);
        self.respond(404, body);
    }

    /// Answers a server-side apply with the applied object, as created.
    pub fn echo(self, status: Option<Value>) {
        let mut object = self.body.clone();
        object["metadata"]["resourceVersion"] = json!("1");
        object["metadata"]["generation"] = json!(1);
        if let Some(status) = status {
            object["status"] = status;
        }
        self.respond(200, object);
    }
}

/// A failed API call's `Status` body, as the API server answers it.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

pub struct MockApi {
    handle: Handle,
}

impl MockApi {
    pub fn new() -> (Client, Self) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), Self { handle })
    }

    pub async fn next(&mut self) -> Received {
        let (request, responder) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.handle.next_request(),
        )
        .await
        .expect("the reconciler sent no further request within 10 s")
        .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Received {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body,
            responder,
        }
    }

    /// The next request must be a server-side apply by `dig-operator` (forced) of `path`.
    pub async fn expect_apply(&mut self, path: &str) -> Received {
        let request = self.next().await;
        assert_eq!(
            (&request.method, request.path.as_str()),
            (&Method::PATCH, path),
            "expected an apply of {path}"
        );
        assert!(
            request.query.contains("fieldManager=dig-operator"),
            "{path}: {}",
            request.query
        );
        assert!(
            request.query.contains("force=true"),
            "{path}: {}",
            request.query
        );
        assert_eq!(
            request.content_type, "application/apply-patch+yaml",
            "{path}"
        );
        request
    }

    pub async fn expect(&mut self, method: Method, path: &str) -> Received {
        let request = self.next().await;
        assert_eq!(
            (&request.method, request.path.as_str()),
            (&method, path),
            "unexpected request"
        );
        request
    }

    /// The next request must be `method` of `path`; answers `code` with `body` and returns the
    /// request's body.
    pub async fn step(&mut self, method: Method, path: &str, code: u16, body: Value) -> Value {
        let request = self.expect(method, path).await;
        let sent = request.body.clone();
        request.respond(code, body);
        sent
    }

    /// The next request must publish an event with `reason`.
    pub async fn expect_event(&mut self, namespace: &str, reason: &str, type_: &str) -> Value {
        let request = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
            )
            .await;
        assert_eq!(request.body["reason"], reason, "{}", request.body);
        assert_eq!(request.body["type"], type_, "{}", request.body);
        let body = request.body.clone();
        request.respond(201, body.clone());
        body
    }
}
