//! The page, embedded: one HTML file, its script and stylesheet, and the committed `.wasm`
//! (built from this crate by `web/build.sh`; tests/run.sh rebuilds it and fails if it differs).
//! The controller and `gitseal web` serve these under `/seal/` with [`SECURITY_HEADERS`].

/// One static file of the page.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path below the page's directory (`""` is the page itself).
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("../page/index.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../page/app.js") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../page/app.css") },
    Asset { name: "seal.wasm", content_type: "application/wasm", body: include_bytes!("../page/seal.wasm") },
];

/// The directory the page is served under; the page refers to its files relatively and to the
/// certificate as `../v1/cert.pem`, so it also works behind the API server's service proxy.
pub const PREFIX: &str = "/seal/";

/// The file at `path` (`/seal/`, `/seal/app.js`, …), if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let name = path.strip_prefix(PREFIX)?;
    ASSETS.iter().find(|a| a.name == name)
}

/// The Content-Security-Policy of every page response: the page's own script and wasm, and
/// connections back to where it came from (the certificate), nothing else; no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers for every response of the page.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];
