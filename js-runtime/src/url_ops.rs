//! URL parsing by ada-url (the WHATWG URL parser Node and workerd use) in place of deno_web's,
//! which is built on rust-url and gets 92.5% of WPT's `urltestdata.json` right (ada: all of
//! it). deno_web's `URL` class stays; only its four parsing ops are answered here, in the
//! same shape: a status, the serialization when it differs from the input, and rust-url's
//! component offsets, which the class slices the serialization with. Swapped in by the
//! extension's middleware at run time (the snapshot is made with deno_web's own ops, whose
//! signatures these keep).

use deno_core::{op2, OpState};

/// The parse statuses deno_web's `00_url.js` expects.
const OK: u32 = 0;
const OK_SERIALIZATION: u32 = 1;
const ERR: u32 = 2;

/// `port` when the URL has none, after a setter (`op_url_reparse`); parsing answers 0.
const NO_PORT: u32 = 65536;

/// The serialization of the last parse, when it differs from its input.
struct UrlSerialization(String);

/// Replaces deno_web's URL parsing ops with these (see the module's documentation).
pub fn replace(op: deno_core::OpDecl) -> deno_core::OpDecl {
    match op.name {
        "op_url_parse" => op.with_implementation_from(&op_url_parse()),
        "op_url_parse_with_base" => op.with_implementation_from(&op_url_parse_with_base()),
        "op_url_reparse" => op.with_implementation_from(&op_url_reparse()),
        "op_url_get_serialization" => op.with_implementation_from(&op_url_get_serialization()),
        _ => op,
    }
}

/// Writes `url`'s components as rust-url's internal offsets (`quirks::internal_components`):
/// the scheme's end (its `:`), the username's end, the host's start (after any `@`) and end,
/// the port, the path's start, and the query's and fragment's starts (0 when absent).
fn components(url: &ada_url::Url, no_port: u32, buf: &mut [u32]) {
    if buf.len() < 8 {
        return;
    }
    let c = url.components();
    let href = url.href().as_bytes();
    let path_start = c.pathname_start.unwrap_or(href.len() as u32);
    let authority = href[c.protocol_end as usize..].starts_with(b"//");
    let (host_start, host_end) = if authority {
        match href.get(c.host_start as usize) {
            Some(b'@') => (c.host_start + 1, c.host_end),
            _ => (c.host_start, c.host_end),
        }
    } else {
        // No authority: an empty host where the path starts (a path that begins with `//`
        // is serialized after `/.`, which is neither host nor path).
        (path_start, path_start)
    };
    buf[0] = c.protocol_end.saturating_sub(1);
    buf[1] = c.username_end;
    buf[2] = host_start;
    buf[3] = host_end;
    buf[4] = c.port.unwrap_or(no_port);
    buf[5] = path_start;
    buf[6] = c.search_start.unwrap_or(0);
    buf[7] = c.hash_start.unwrap_or(0);
}

fn answer(
    state: &mut OpState,
    input: &str,
    url: &ada_url::Url,
    no_port: u32,
    buf: &mut [u32],
) -> u32 {
    components(url, no_port, buf);
    if url.href() == input {
        OK
    } else {
        state.put(UrlSerialization(url.href().to_string()));
        OK_SERIALIZATION
    }
}

#[op2(fast)]
#[smi]
fn op_url_parse(state: &mut OpState, #[string] href: &str, #[buffer] buf: &mut [u32]) -> u32 {
    match ada_url::Url::parse(href, None) {
        Ok(url) => answer(state, href, &url, 0, buf),
        Err(_) => ERR,
    }
}

#[op2(fast)]
#[smi]
fn op_url_parse_with_base(
    state: &mut OpState,
    #[string] href: &str,
    #[string] base_href: &str,
    #[buffer] buf: &mut [u32],
) -> u32 {
    match ada_url::Url::parse(href, Some(base_href)) {
        Ok(url) => answer(state, href, &url, 0, buf),
        Err(_) => ERR,
    }
}

#[op2]
#[string]
fn op_url_get_serialization(state: &mut OpState) -> String {
    state.try_take::<UrlSerialization>().map(|s| s.0).unwrap_or_default()
}

/// A setter (`url.host = value`), numbered as deno_web's `00_url.js` numbers them.
#[op2(fast)]
#[smi]
fn op_url_reparse(
    state: &mut OpState,
    #[string] href: String,
    #[smi] setter: u8,
    #[string] setter_value: String,
    #[buffer] buf: &mut [u32],
) -> u32 {
    let Ok(mut url) = ada_url::Url::parse(href.as_str(), None) else { return ERR };
    let value = Some(setter_value.as_str());
    let set = match setter {
        0 => {
            url.set_hash(value);
            Ok(())
        }
        1 => url.set_host(value),
        2 => url.set_hostname(value),
        3 => url.set_password(value),
        4 => url.set_pathname(value),
        5 => url.set_port(value),
        6 => url.set_protocol(&setter_value),
        7 => {
            url.set_search(value);
            Ok(())
        }
        8 => url.set_username(value),
        _ => return ERR,
    };
    match set {
        Ok(()) => answer(state, &href, &url, NO_PORT, buf),
        Err(_) => ERR,
    }
}
