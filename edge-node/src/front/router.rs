//! Picks the function for a request from the routes of every function: host and path
//! patterns, most specific first.

use config::Route;

/// A compiled routing table mapping requests to function indexes.
#[derive(Debug, Default, Clone)]
pub struct Router {
    /// (route, function index), most specific first.
    routes: Vec<(Route, usize)>,
}

/// How specific a route is: routes that name a host beat those that do not, an exact host
/// beats a wildcard host, then more literal path characters win, then fewer wildcards.
fn specificity(route: &Route) -> (u8, usize, usize, usize) {
    let host_rank = match &route.host {
        None => 0,
        Some(h) if h.starts_with("*.") => 1,
        Some(_) => 2,
    };
    let host_len = route.host.as_ref().map_or(0, |h| h.len());
    let literal = route.path.chars().filter(|c| *c != '*').count();
    let wildcards = route.path.matches('*').count();
    (host_rank, host_len, literal, usize::MAX - wildcards)
}

impl Router {
    /// Builds the table from each function's routes (`routes[i]` belongs to function `i`).
    pub fn new<'a>(routes: impl IntoIterator<Item = (usize, &'a [Route])>) -> Router {
        let mut table: Vec<(Route, usize)> =
            routes.into_iter().flat_map(|(i, rs)| rs.iter().map(move |r| (r.clone(), i))).collect();
        table.sort_by_key(|(route, _)| std::cmp::Reverse(specificity(route)));
        Router { routes: table }
    }

    /// The function index for a request to `host` (without port, any case) and `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        let host = host.to_ascii_lowercase();
        self.routes
            .iter()
            .find(|(route, _)| {
                host_matches(route.host.as_deref(), &host) && path_matches(&route.path, path)
            })
            .map(|(_, i)| *i)
    }
}

fn host_matches(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => p == host,
        },
    }
}

/// `*` matches any run of characters, `/` included; `/x/*` also matches `/x`.
fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(base) = pattern.strip_suffix("/*") {
        if path == base {
            return true;
        }
    }
    glob(pattern.as_bytes(), path.as_bytes())
}

/// Wildcard match where `*` matches any run of bytes (iterative, linear backtracking).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(specs: &[&[&str]]) -> Router {
        let parsed: Vec<Vec<Route>> =
            specs.iter().map(|rs| rs.iter().map(|r| Route::parse(r).unwrap()).collect()).collect();
        Router::new(parsed.iter().enumerate().map(|(i, r)| (i, r.as_slice())))
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&[
            &["/*"],
            &["/api/*"],
            &["/api/users/*"],
            &["api.example.com/*"],
            &["*.example.com/*"],
        ]);
        assert_eq!(r.find("localhost", "/"), Some(0));
        assert_eq!(r.find("localhost", "/api"), Some(1));
        assert_eq!(r.find("localhost", "/api/x"), Some(1));
        assert_eq!(r.find("localhost", "/api/users/7"), Some(2));
        assert_eq!(r.find("API.example.com", "/api/users/7"), Some(3));
        assert_eq!(r.find("www.example.com", "/"), Some(4));
        assert_eq!(r.find("example.com", "/"), Some(0), "*.example.com needs a subdomain");
    }

    #[test]
    fn wildcards_and_no_match() {
        let r = router(&[&["/hello/*"], &["/files/*.png"]]);
        assert_eq!(r.find("h", "/hello"), Some(0));
        assert_eq!(r.find("h", "/hello/a/b"), Some(0));
        assert_eq!(r.find("h", "/helloworld"), None);
        assert_eq!(r.find("h", "/files/a/b.png"), Some(1));
        assert_eq!(r.find("h", "/files/a/b.jpg"), None);
        assert_eq!(r.find("h", "/"), None);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any routes, any host and path: an answer or none, never a panic, and the answer
            /// names one of the routes' functions.
            #[test]
            fn any_request_finds_a_route_or_none(
                patterns in proptest::collection::vec("[a-z*./]{0,16}", 0..8),
                host in any::<String>(),
                path in any::<String>(),
            ) {
                let routes: Vec<Vec<config::Route>> = patterns
                    .iter()
                    .filter_map(|p| config::Route::parse(p).ok())
                    .map(|r| vec![r])
                    .collect();
                let router = Router::new(routes.iter().enumerate().map(|(i, r)| (i, r.as_slice())));
                if let Some(found) = router.find(&host, &path) {
                    prop_assert!(found < routes.len());
                }
            }
        }
    }
}
