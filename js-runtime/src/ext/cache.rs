//! The Cache API's ops: JavaScript's `Cache` (`12_caches.js`) hands the node a request as its
//! URL and headers, and gets back a stored answer as its status, body and headers.

use bytes::Bytes;
use deno_core::{op2, v8, ByteString, JsBuffer, OpState, ToV8};
use deno_error::JsErrorBox;

use super::CacheService;

/// The request a `match`, `put` or `delete` is about: a GET of `url` (absolute, http or
/// https, its fragment dropped) with the request's headers, given as name, value, name, ...
fn request(url: &str, headers: Vec<ByteString>) -> Result<http::request::Parts, JsErrorBox> {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let uri: http::Uri = url
        .parse()
        .map_err(|_| JsErrorBox::type_error(format!("the Cache API cannot key {url:?}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(JsErrorBox::type_error("the Cache API keeps only http and https URLs"));
    }
    let mut builder = http::Request::get(uri);
    for pair in headers.chunks_exact(2) {
        let name = http::HeaderName::from_bytes(&pair[0]);
        let value = http::HeaderValue::from_bytes(&pair[1]);
        // `Host` is the URL's; a header the request could not have carried is no header.
        if let (Ok(name), Ok(value)) = (name, value) {
            if name != http::header::HOST {
                builder = builder.header(name, value);
            }
        }
    }
    let request = builder.body(()).map_err(|e| JsErrorBox::type_error(e.to_string()))?;
    Ok(request.into_parts().0)
}

fn service(state: &OpState) -> Option<CacheService> {
    state.try_borrow::<CacheService>().cloned()
}

/// A stored answer as JavaScript gets it: `[status, body or null, name, value, name, ...]`.
pub struct Answer(http::Response<Bytes>);

impl<'a> ToV8<'a> for Answer {
    type Error = std::convert::Infallible;

    fn to_v8<'i>(
        self,
        scope: &mut v8::PinScope<'a, 'i>,
    ) -> Result<v8::Local<'a, v8::Value>, Self::Error> {
        let (head, body) = self.0.into_parts();
        let mut fields: Vec<v8::Local<v8::Value>> = Vec::with_capacity(2 + head.headers.len() * 2);
        fields.push(v8::Integer::new(scope, i32::from(head.status.as_u16())).into());
        fields.push(if body.is_empty() && head.status.as_u16() == 304 {
            v8::null(scope).into()
        } else {
            let store = v8::ArrayBuffer::new_backing_store_from_vec(body.to_vec()).make_shared();
            let buffer = v8::ArrayBuffer::with_backing_store(scope, &store);
            v8::Uint8Array::new(scope, buffer, 0, body.len())
                .map_or_else(|| v8::null(scope).into(), Into::into)
        });
        for (name, value) in &head.headers {
            for text in [name.as_str().as_bytes(), value.as_bytes()] {
                let text = v8::String::new_from_one_byte(scope, text, v8::NewStringType::Normal)
                    .unwrap_or_else(|| v8::String::empty(scope));
                fields.push(text.into());
            }
        }
        Ok(v8::Array::new_with_elements(scope, &fields).into())
    }
}

/// `cache.match(request)`: the stored answer, or `null`.
#[op2]
pub fn op_isola_cache_match(
    state: &mut OpState,
    #[string] cache: &str,
    #[string] url: &str,
    #[serde] headers: Vec<ByteString>,
) -> Result<Option<Answer>, JsErrorBox> {
    let request = request(url, headers)?;
    Ok(service(state).and_then(|s| s.0.lookup(cache, &request)).map(Answer))
}

/// `cache.put(request, response)`: the response's status, headers (name, value, ...) and
/// whole body.
#[op2]
pub fn op_isola_cache_put(
    state: &mut OpState,
    #[string] cache: &str,
    #[string] url: &str,
    #[serde] request_headers: Vec<ByteString>,
    #[smi] status: u32,
    #[serde] headers: Vec<ByteString>,
    #[buffer] body: JsBuffer,
) -> Result<(), JsErrorBox> {
    let request = request(url, request_headers)?;
    let mut response = http::Response::builder()
        .status(u16::try_from(status).unwrap_or(0))
        .body(Bytes::copy_from_slice(&body))
        .map_err(|e| JsErrorBox::type_error(e.to_string()))?;
    for pair in headers.chunks_exact(2) {
        let name = http::HeaderName::from_bytes(&pair[0]);
        let value = http::HeaderValue::from_bytes(&pair[1]);
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(JsErrorBox::type_error("the response has an invalid header"));
        };
        response.headers_mut().append(name, value);
    }
    let Some(service) = service(state) else { return Ok(()) };
    service.0.store(cache, &request, response).map_err(|e| JsErrorBox::type_error(e.to_string()))
}

/// `cache.delete(request)`: whether an entry was removed.
#[op2(fast)]
pub fn op_isola_cache_delete(
    state: &mut OpState,
    #[string] cache: &str,
    #[string] url: &str,
) -> Result<bool, JsErrorBox> {
    let request = request(url, Vec::new())?;
    Ok(service(state).is_some_and(|s| s.0.delete(cache, &request)))
}
