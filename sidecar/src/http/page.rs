//! `GET /`: the node's page, one embedded HTML file (no external assets, works offline). It only
//! reads: it listens to `/events` and draws what they carry.

use axum::response::Response;

const PAGE: &str = include_str!("node.html");

pub async fn page() -> Response {
    dig_core::html::page_response(PAGE)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_self_contained() {
        assert_eq!(
            dig_core::html::self_contained_problems(super::PAGE),
            Vec::<String>::new()
        );
    }
}
