//! The Cache API's ops: JavaScript's `Cache` (`10_caches.js`) hands the node a request as its
//! URL and headers, and gets back a stored answer as its status, body and headers.

use bytes::Bytes;
use std::borrow::Cow;

use deno_core::{op2, v8, JsBuffer, OpState, ToV8};
use deno_error::JsErrorBox;

use super::CacheService;

/// Header lines `name:value\n` (Latin-1 bytes, as JavaScript's header lists hold them) as
/// pairs; a line that is not a valid header is left out.
fn header_lines(lines: &[u8]) -> impl Iterator<Item = (http::HeaderName, http::HeaderValue)> + '_ {
    lines.split(|b| *b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = http::HeaderValue::from_bytes(&line[colon + 1..]).ok()?;
        Some((name, value))
    })
}

/// The request a `match`, `put` or `delete` is about: a GET of `url` (absolute, http or
/// https, its fragment dropped) with the request's header lines.
fn request(url: &str, headers: &[u8]) -> Result<http::request::Parts, JsErrorBox> {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let uri: http::Uri = url
        .parse()
        .map_err(|_| JsErrorBox::type_error(format!("the Cache API cannot key {url:?}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(JsErrorBox::type_error("the Cache API keeps only http and https URLs"));
    }
    let mut request = http::Request::get(uri).body(()).expect("a GET of a parsed URI");
    // `Host` is the URL's.
    let headers = header_lines(headers).filter(|(name, _)| name != http::header::HOST);
    request.headers_mut().extend(headers);
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
    #[string(onebyte)] headers: Cow<[u8]>,
) -> Result<Option<Answer>, JsErrorBox> {
    let request = request(url, &headers)?;
    Ok(service(state).and_then(|s| s.0.lookup(cache, &request)).map(Answer))
}

/// `cache.put(request, response)`: the response's status, header lines and whole body.
#[op2]
pub fn op_isola_cache_put(
    state: &mut OpState,
    #[string] cache: &str,
    #[string] url: &str,
    #[string(onebyte)] request_headers: Cow<[u8]>,
    #[smi] status: u32,
    #[string(onebyte)] headers: Cow<[u8]>,
    #[buffer] body: JsBuffer,
) -> Result<(), JsErrorBox> {
    let request = request(url, &request_headers)?;
    let mut response = http::Response::builder()
        .status(u16::try_from(status).unwrap_or(0))
        .body(Bytes::copy_from_slice(&body))
        .map_err(|e| JsErrorBox::type_error(e.to_string()))?;
    response.headers_mut().extend(header_lines(&headers));
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
    let request = request(url, &[])?;
    Ok(service(state).is_some_and(|s| s.0.delete(cache, &request)))
}
