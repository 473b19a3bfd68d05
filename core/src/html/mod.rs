//! Serving a self-contained HTML page (the registry's and the node's `GET /`): one embedded file
//! whose inline `<script>` and `<style>` run under a per-response nonce, and nothing else. The
//! look and the small helpers both pages use are written once (`common.css`, `common.js`) and put
//! in place of the marks [`COMMON_CSS_MARK`] and [`COMMON_JS_MARK`].

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

/// Stands for the per-response nonce in a page's `<script>` and `<style>` tags.
pub const NONCE_MARK: &str = "__CSP_NONCE__";
/// Stands for the shared style sheet inside a page's `<style>`.
pub const COMMON_CSS_MARK: &str = "/*COMMON_CSS*/";
/// Stands for the shared helpers inside a page's `<script>`.
pub const COMMON_JS_MARK: &str = "/*COMMON_JS*/";
const COMMON_CSS: &str = include_str!("common.css");
const COMMON_JS: &str = include_str!("common.js");

/// `template` with the shared style and helpers in place (the nonce mark is left).
pub fn expand(template: &str) -> String {
    template
        .replace(COMMON_CSS_MARK, COMMON_CSS)
        .replace(COMMON_JS_MARK, COMMON_JS)
}

/// `template` with a fresh nonce, and a Content-Security-Policy that lets only its own inline
/// script and style run and only its own origin be fetched: text from peers or clients (an agent
/// version, an error) can never load or run anything, even if it slipped past the page's escaping.
pub fn page_response(template: &str) -> Response {
    let nonce = format!("{:032x}", rand::random::<u128>());
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        expand(template).replace(NONCE_MARK, &nonce),
    )
        .into_response()
}

/// Why `template` would not be self-contained under [`page_response`]'s policy: a `<script>` or
/// `<style>` without the nonce mark, or a reference to anything outside the page.
pub fn self_contained_problems(template: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for mark in [COMMON_CSS_MARK, COMMON_JS_MARK] {
        if !template.contains(mark) {
            problems.push(format!(
                "no {mark}: the page lacks the shared style or helpers"
            ));
        }
    }
    let template = &expand(template);
    for tag in ["<script", "<style"] {
        let all = template.matches(tag).count();
        let marked = template
            .matches(&format!("{tag} nonce=\"{NONCE_MARK}\""))
            .count();
        if all == 0 || all != marked {
            problems.push(format!("{marked} of {all} {tag} tags carry the nonce"));
        }
    }
    for external in ["src=\"", "href=\"http", "@import", "url(", " style=\""] {
        if template.contains(external) {
            problems.push(format!(
                "the page refers to something outside it: {external}"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_nonce_of_the_policy_replaces_every_mark() {
        let template = format!(
            "<style nonce=\"{NONCE_MARK}\">{COMMON_CSS_MARK}</style><script nonce=\"{NONCE_MARK}\">{COMMON_JS_MARK}</script>"
        );
        assert!(self_contained_problems(&template).is_empty());
        let response = page_response(&template);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap()
            .to_string();
        assert_eq!(nonce.len(), 32);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(html.matches(&format!("nonce=\"{nonce}\"")).count(), 2);
        assert!(!html.contains(NONCE_MARK));
        assert!(html.contains("function fill(") && html.contains(".badge"));
        let other = page_response(&template);
        assert_ne!(
            other.headers()[header::CONTENT_SECURITY_POLICY],
            policy.as_str(),
            "a new nonce per response"
        );
    }

    #[test]
    fn unmarked_blocks_and_outside_references_are_problems() {
        assert_eq!(self_contained_problems("<script></script>").len(), 4);
        let remote = format!(
            "<style nonce=\"{NONCE_MARK}\">{COMMON_CSS_MARK}</style><script nonce=\"{NONCE_MARK}\" src=\"https://cdn\">{COMMON_JS_MARK}</script>"
        );
        assert_eq!(self_contained_problems(&remote).len(), 1);
    }
}
