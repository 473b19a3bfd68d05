//! `GET /`: the network page, one embedded HTML file (no external assets, works offline). It only
//! reads: it polls `/stats`, `/topology`, `/peers` and `/federation` and draws what they answer.

use axum::response::Response;

const PAGE: &str = include_str!("network.html");

pub fn page() -> Response {
    dig_core::html::page_response(PAGE)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_network_page_is_self_contained() {
        assert_eq!(
            dig_core::html::self_contained_problems(super::PAGE),
            Vec::<String>::new()
        );
    }
}
