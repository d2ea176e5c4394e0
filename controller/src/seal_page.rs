//! The sealing page (`gitseal-web`): `GET /seal/` and its script, stylesheet and wasm, static
//! and embedded in the binary, with a strict Content-Security-Policy. The page fetches
//! `../v1/cert.pem` once and seals in the browser; nothing it seals is ever sent here, and no
//! route of this module reads a body or touches a key.

use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use gitseal_web::assets;

/// `GET /seal/…`: one of the page's files, or 404.
pub async fn asset(uri: Uri) -> Response {
    match assets::asset(uri.path()) {
        Some(a) => with_security_headers(([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()),
        None => with_security_headers((StatusCode::NOT_FOUND, "not found\n").into_response()),
    }
}

/// `GET /seal`: to `/seal/`, relatively, so it also works behind the API server's service proxy.
pub async fn redirect() -> Response {
    with_security_headers((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "seal/")]).into_response())
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in assets::SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_comes_with_its_csp_and_unknown_files_are_404() {
        let page = asset(Uri::from_static("/seal/")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let wasm = asset(Uri::from_static("/seal/seal.wasm")).await;
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        let missing = asset(Uri::from_static("/seal/../v1/verify")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().contains_key("content-security-policy"));
        assert_eq!(redirect().await.headers()[header::LOCATION], "seal/");
    }

    async fn status_of(flags: &[&str], path: &str) -> StatusCode {
        use tower::ServiceExt as _;
        let shared = crate::testing::shared_with(flags, Box::new(std::io::sink()));
        let req = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        crate::http::router(shared).oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_router_serves_the_page_unless_disable_seal_page_is_set() {
        assert_eq!(status_of(&[], "/seal/app.js").await, StatusCode::OK);
        assert_eq!(status_of(&[], "/seal").await, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(status_of(&["--disable-seal-page"], "/seal/").await, StatusCode::NOT_FOUND);
        assert_eq!(status_of(&["--disable-seal-page"], "/v1/cert.pem").await, StatusCode::OK);
    }
}
