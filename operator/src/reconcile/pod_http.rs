//! Asking a pod over HTTP (its peer id, a node's drain report): a client bounded in time that
//! follows no redirect, and a GET whose answer is bounded in size, since a pod's answer is as
//! untrusted as the pod.

use std::time::Duration;

/// A client whose requests time out after `timeout` (connecting included) and never follow a
/// redirect. Build it after `main` installed the TLS crypto provider.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// `GET <url>`: the body of a success answer of at most `max_bytes`, or a message naming the URL.
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(format!("GET {url}: answer larger than {max_bytes} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
