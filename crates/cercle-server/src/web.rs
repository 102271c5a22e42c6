//! The browser app, served by the node on the address of its API.
//!
//! The app's files (`web/dist`, built from `web/src` and committed, see ARCHITECTURE.md,
//! "Web app") are compiled into the binary, so the node serves them with nothing else
//! installed. `GET` and `HEAD` requests are answered here; everything else (gRPC, and
//! gRPC-web, which `tonic_web::GrpcWebLayer` turns into gRPC) goes on to the services. One
//! origin serves both, so the browser needs no CORS.
//!
//! The app signs in the browser with a key that never leaves it: the node, which serves
//! the page, could serve another script, so the pages are sent with a content security
//! policy that allows only the node's own scripts and connections.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tonic::body::Body;
use tonic::codegen::Bytes;

/// Whether the node serves the app (`cercle-node run --no-web` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Web {
    Served,
    Off,
}

/// One file of the app.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The app's files. `web/build.mjs` writes exactly these.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/dist/app.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../../web/dist/favicon.svg"),
    },
];

/// Only the node's own scripts, styles and connections; no frames, no plug-ins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// The answer to a `GET` or `HEAD` of `path`.
fn respond(method: &Method, path: &str) -> Response<Body> {
    let (status, content_type, bytes): (_, &str, &'static [u8]) = match asset(path) {
        Some(a) => (StatusCode::OK, a.content_type, a.bytes),
        None => (StatusCode::NOT_FOUND, "text/plain; charset=utf-8", b"not found\n"),
    };
    let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from_static(bytes) };
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // The files change with the binary: always ask again (they are small).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Serves the app's files in front of the gRPC services.
#[derive(Debug, Clone, Copy)]
pub struct WebLayer {
    web: Web,
}

impl WebLayer {
    pub fn new(web: Web) -> Self {
        WebLayer { web }
    }
}

impl<S> tower_layer::Layer<S> for WebLayer {
    type Service = WebService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebService { inner, web: self.web }
    }
}

#[derive(Debug, Clone)]
pub struct WebService<S> {
    inner: S,
    web: Web,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody> tower_service::Service<Request<ReqBody>> for WebService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method();
        if self.web == Web::Served && (method == Method::GET || method == Method::HEAD) {
            let response = respond(method, request.uri().path());
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, status: StatusCode, content_type: &str) {
        let response = respond(&method, path);
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], content_type, "{method} {path}");
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn serves_the_app_and_nothing_else() {
        check(Method::GET, "/", StatusCode::OK, "text/html; charset=utf-8");
        check(Method::GET, "/index.html", StatusCode::OK, "text/html; charset=utf-8");
        check(Method::HEAD, "/app.js", StatusCode::OK, "text/javascript; charset=utf-8");
        check(Method::GET, "/app.css", StatusCode::OK, "text/css; charset=utf-8");
        check(Method::GET, "/../Cargo.toml", StatusCode::NOT_FOUND, "text/plain; charset=utf-8");
        check(
            Method::GET,
            "/cercle.v1.Ledger/GetAccount",
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
        );
    }
}
