//! The failures dashboard: a static page (HTML, CSS, JS compiled into the binary) served by the
//! log API at `GET /`. The page holds no data: it calls the JSON API from the browser, with the
//! bearer token when the API requires one, so serving it needs no authorisation of its own.

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// Scripts, styles and API calls from this origin only; no inline code, no frames, no forms
/// posting elsewhere. Log entries are shown as text, and this policy stops anything else.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", DASHBOARD_JS) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_style_from_its_own_origin_only() {
        assert!(INDEX_HTML.contains(r#"<script src="dashboard.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="dashboard.css">"#));
        for text in [INDEX_HTML, DASHBOARD_JS, DASHBOARD_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("<script>") && !text.contains(" style="));
        }
        // Entries are rendered as text, never parsed as HTML.
        assert!(
            !DASHBOARD_JS.contains("innerHTML") && !DASHBOARD_JS.contains("insertAdjacentHTML")
        );
    }
}
